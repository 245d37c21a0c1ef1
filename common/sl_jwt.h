/*
 * sl_jwt.h - RS256 JSON Web Tokens (RFC 7515 / RFC 7519) for Google's
 * service-account OAuth 2.0 flow: the data plane signs an assertion with the
 * account's private key and trades it at token_uri for an access token
 * (grant_type urn:ietf:params:oauth:grant-type:jwt-bearer); the mock's token
 * endpoint verifies the assertion the same way Google does.
 *
 * Only RS256 (RSASSA-PKCS1-v1_5 with SHA-256) is produced or accepted: a
 * token whose header names another algorithm ("none", "HS256", ...) or
 * carries "crit" is refused before any signature check, segments must be
 * strict unpadded base64url, and header and claims must each be one JSON
 * object.
 *
 * Memory: keys are OpenSSL EVP_PKEY objects owned by the caller (free with
 * EVP_PKEY_free()); tokens and claims returned through char ** are malloc'd
 * and freed by the caller with free(); an sl_jwt_t is released with
 * sl_jwt_free(). Nothing here aborts on allocation failure (SL_ENOMEM).
 *
 * Threads: every function is thread-safe; an EVP_PKEY may be shared by
 * threads for signing and verifying.
 */
#ifndef SL_JWT_H
#define SL_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "sl_err.h"

#define SL_JWT_GOOGLE_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define SL_JWT_GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"
#define SL_JWT_GRANT_TYPE "urn:ietf:params:oauth:grant-type:jwt-bearer"
/* grant_type as it appears form-encoded in the token request body. */
#define SL_JWT_GRANT_TYPE_FORM "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
#define SL_JWT_MAX_LIFETIME 3600   /* exp - iat, seconds */
#define SL_JWT_MAX_LEN (64 * 1024) /* longer tokens are refused */
#define SL_JWT_MIN_RSA_BITS 2048

/* Loads an RSA private key from PEM ("BEGIN PRIVATE KEY" as in a service
 * account's private_key, with its \n escapes already decoded, or "BEGIN RSA
 * PRIVATE KEY"). Encrypted keys, non-RSA keys and keys under 2048 bits are
 * refused. Returns 0 with *out set, or SL_EINVAL with err. */
int sl_jwt_load_private_pem(const char *pem, size_t len, EVP_PKEY **out, sl_err_t *err);

/* Loads an RSA public key from PEM: "BEGIN PUBLIC KEY" or an X.509
 * "BEGIN CERTIFICATE" (Google publishes its keys as both). */
int sl_jwt_load_public_pem(const char *pem, size_t len, EVP_PKEY **out, sl_err_t *err);

/* Signs claims (one JSON object, claims_len bytes) as an RS256 JWT with
 * header {"alg":"RS256","typ":"JWT","kid":kid} ("kid" left out when kid is
 * NULL). Returns 0 with *token set to a malloc'd NUL-terminated string,
 * SL_EINVAL (not an RSA private key, claims not a JSON object),
 * SL_ENOMEM or SL_ECRYPTO. */
int sl_jwt_sign_rs256(EVP_PKEY *key, const char *kid, const char *claims, size_t claims_len, char **token,
                      sl_err_t *err);

/* A verified token: its decoded header and claims, NUL-terminated JSON
 * text. Free with sl_jwt_free(). */
typedef struct sl_jwt {
    char *header;
    size_t header_len;
    char *claims;
    size_t claims_len;
} sl_jwt_t;

/* Verifies token[0..len) against key (a public key, or a private key whose
 * public half is meant). Returns 0 with *out filled, or SL_EINVAL
 * (malformed token, alg not RS256, "crit" present), SL_EPERM (signature
 * does not verify under key) or SL_ENOMEM, with err. Time claims are not
 * looked at: see sl_jwt_check_google_claims(). */
int sl_jwt_verify_rs256(EVP_PKEY *key, const char *token, size_t len, sl_jwt_t *out, sl_err_t *err);
void sl_jwt_free(sl_jwt_t *jwt);

/* Builds the claims of a Google service-account assertion:
 * {"iss":client_email,"scope":scope,"aud":token_uri,"iat":now,"exp":now+3600}.
 * scope NULL means SL_JWT_GOOGLE_SCOPE. *out is malloc'd. Returns 0,
 * SL_EINVAL (empty email or token_uri) or SL_ENOMEM. */
int sl_jwt_google_claims(const char *client_email, const char *scope, const char *token_uri, int64_t now, char **out,
                         sl_err_t *err);

/* The two steps above in one: a signed assertion ready for the token
 * request body "grant_type=" SL_JWT_GRANT_TYPE_FORM "&assertion=" token
 * (the token is base64url and dots: no further escaping needed). kid is the
 * account's private_key_id. */
int sl_jwt_google_assertion(EVP_PKEY *key, const char *kid, const char *client_email, const char *scope,
                            const char *token_uri, int64_t now, char **token, sl_err_t *err);

/* What a token endpoint learns from a valid assertion. */
typedef struct sl_jwt_google {
    char iss[256];
    char scope[1024];
    int64_t iat, exp;
} sl_jwt_google_t;

/* Checks the claims of a verified assertion as Google's token endpoint
 * does: iss and scope non-empty strings, aud equal to token_uri, iat and exp
 * integers with iat < exp <= iat + 3600, iat not more than skew seconds
 * ahead of now and exp not behind now. Returns 0 with *out filled, or
 * SL_EINVAL (malformed or wrong audience) / SL_EPERM (outside its time
 * window) with err. */
int sl_jwt_check_google_claims(const char *claims, size_t len, const char *token_uri, int64_t now, int64_t skew,
                               sl_jwt_google_t *out, sl_err_t *err);

#endif
