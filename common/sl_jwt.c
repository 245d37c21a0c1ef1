/* sl_jwt.c - RS256 JWT signing and verification over OpenSSL 3, and the
 * Google service-account assertion. */
#include "sl_jwt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sl_b64.h"
#include "sl_crypto.h"
#include "sl_json.h"

/* Refuses to prompt for a passphrase: encrypted keys simply fail to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int check_rsa(EVP_PKEY *key, sl_err_t *err)
{
    if (!EVP_PKEY_is_a(key, "RSA"))
        return sl_err_set(err, SL_EINVAL, "jwt: key is not an RSA key");
    if (EVP_PKEY_get_bits(key) < SL_JWT_MIN_RSA_BITS)
        return sl_err_set(err, SL_EINVAL, "jwt: RSA key of %d bits is shorter than %d", EVP_PKEY_get_bits(key),
                          SL_JWT_MIN_RSA_BITS);
    return 0;
}

int sl_jwt_load_private_pem(const char *pem, size_t len, EVP_PKEY **out, sl_err_t *err)
{
    if (pem == NULL || len == 0 || len > INT32_MAX)
        return sl_err_set(err, SL_EINVAL, "jwt: empty private key");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL)
        return sl_err_set(err, SL_EINVAL, "jwt: cannot read a PEM private key (unencrypted PKCS#8 or PKCS#1 RSA)");
    int rc = check_rsa(key, err);
    if (rc < 0) {
        EVP_PKEY_free(key);
        return rc;
    }
    *out = key;
    return 0;
}

int sl_jwt_load_public_pem(const char *pem, size_t len, EVP_PKEY **out, sl_err_t *err)
{
    if (pem == NULL || len == 0 || len > INT32_MAX)
        return sl_err_set(err, SL_EINVAL, "jwt: empty public key");
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    if (memmem(pem, len, "-----BEGIN CERTIFICATE-----", 27) != NULL) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (cert) {
            key = X509_get_pubkey(cert);
            X509_free(cert);
        }
    } else {
        key = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL)
        return sl_err_set(err, SL_EINVAL, "jwt: cannot read a PEM public key or certificate");
    int rc = check_rsa(key, err);
    if (rc < 0) {
        EVP_PKEY_free(key);
        return rc;
    }
    *out = key;
    return 0;
}

/* Parses s[0..len) into malloc'd tokens; the root must be an object.
 * Returns the token array (free()) or NULL. */
static sl_json_tok_t *parse_object(const char *s, size_t len)
{
    int n = sl_json_parse(s, len, NULL, 0, NULL);
    if (n < 1)
        return NULL;
    sl_json_tok_t *toks = malloc((size_t)n * sizeof(*toks));
    if (toks == NULL)
        return NULL;
    if (sl_json_parse(s, len, toks, (size_t)n, NULL) != n || toks[0].type != SL_JSON_OBJECT) {
        free(toks);
        return NULL;
    }
    return toks;
}

static int is_json_object(const char *s, size_t len)
{
    sl_json_tok_t *toks = parse_object(s, len);
    free(toks);
    return toks != NULL;
}

static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

int sl_jwt_sign_rs256(EVP_PKEY *key, const char *kid, const char *claims, size_t claims_len, char **token,
                      sl_err_t *err)
{
    int rc = check_rsa(key, err);
    if (rc < 0)
        return rc;
    if (claims == NULL || !is_json_object(claims, claims_len))
        return sl_err_set(err, SL_EINVAL, "jwt: claims are not a JSON object");

    /* {"alg":"RS256","typ":"JWT","kid":"..."} */
    static const char h1[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"", h2[] = ",\"kid\":\"";
    size_t hlen = sizeof(h1) - 1 + (kid ? sizeof(h2) - 1 + sl_json_escaped_len(kid, strlen(kid)) + 1 : 0) + 1;
    char *header = malloc(hlen + 1);
    if (header == NULL)
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    char *w = header;
    memcpy(w, h1, sizeof(h1) - 1);
    w += sizeof(h1) - 1;
    if (kid) {
        memcpy(w, h2, sizeof(h2) - 1);
        w = sl_json_escape(w + sizeof(h2) - 1, kid, strlen(kid));
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';

    size_t siglen = (size_t)EVP_PKEY_get_size(key);
    /* Parts are encoded in order straight into the token; each encoding may
     * write up to 2 padding-sized bytes plus a NUL past its end, which the
     * next part or the slack at the end absorbs. */
    size_t total = b64url_len(hlen) + 1 + b64url_len(claims_len) + 1 + b64url_len(siglen) + 3;
    char *tok = malloc(total);
    uint8_t *sig = malloc(siglen);
    if (tok == NULL || sig == NULL) {
        free(header), free(tok), free(sig);
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    }
    size_t off = sl_b64url_encode((const uint8_t *)header, hlen, tok);
    tok[off++] = '.';
    off += sl_b64url_encode((const uint8_t *)claims, claims_len, tok + off);
    free(header);

    rc = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)tok, off) != 1)
        rc = sl_err_set(err, SL_ECRYPTO, "jwt: RSA signing failed (is it a private key?)");
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (rc == 0) {
        tok[off++] = '.';
        sl_b64url_encode(sig, siglen, tok + off);
        *token = tok;
    } else {
        free(tok);
    }
    free(sig);
    return rc;
}

void sl_jwt_free(sl_jwt_t *jwt)
{
    free(jwt->header);
    free(jwt->claims);
    memset(jwt, 0, sizeof(*jwt));
}

/* Decodes one base64url segment into a malloc'd NUL-terminated buffer. */
static int decode_segment(const char *s, size_t len, const char *what, char **out, size_t *outlen, sl_err_t *err)
{
    if (len == 0)
        return sl_err_set(err, SL_EINVAL, "jwt: empty %s segment", what);
    char *buf = malloc(SL_B64_DECODED_MAX(len) + 1);
    if (buf == NULL)
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    if (sl_b64url_decode(s, len, (uint8_t *)buf, SL_B64_DECODED_MAX(len), outlen) < 0) {
        free(buf);
        return sl_err_set(err, SL_EINVAL, "jwt: %s segment is not base64url", what);
    }
    buf[*outlen] = '\0';
    *out = buf;
    return 0;
}

int sl_jwt_verify_rs256(EVP_PKEY *key, const char *token, size_t len, sl_jwt_t *out, sl_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (token == NULL || len == 0 || len > SL_JWT_MAX_LEN)
        return sl_err_set(err, SL_EINVAL, "jwt: token empty or longer than %d bytes", SL_JWT_MAX_LEN);
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1)) != NULL)
        return sl_err_set(err, SL_EINVAL, "jwt: a token has exactly three dot-separated segments");

    sl_json_tok_t *toks = NULL;
    char *sig = NULL;
    size_t siglen;
    int rc = decode_segment(token, (size_t)(d1 - token), "header", &out->header, &out->header_len, err);
    if (rc < 0)
        goto fail;
    toks = parse_object(out->header, out->header_len);
    if (toks == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "jwt: header is not a JSON object");
        goto fail;
    }
    int alg = sl_json_find(out->header, toks, 0, "alg", 3);
    if (alg < 0 || toks[alg].type != SL_JSON_STRING || !sl_json_str_eq(out->header, &toks[alg], "RS256", 5)) {
        rc = sl_err_set(err, SL_EINVAL, "jwt: alg must be RS256");
        goto fail;
    }
    if (sl_json_find(out->header, toks, 0, "crit", 4) >= 0) {
        rc = sl_err_set(err, SL_EINVAL, "jwt: critical header extensions are not supported");
        goto fail;
    }
    free(toks);
    toks = NULL;

    rc = check_rsa(key, err);
    if (rc < 0)
        goto fail;
    rc = decode_segment(d2 + 1, (size_t)(token + len - d2 - 1), "signature", &sig, &siglen, err);
    if (rc < 0)
        goto fail;
    if (siglen != (size_t)EVP_PKEY_get_size(key)) {
        rc = sl_err_set(err, SL_EPERM, "jwt: signature does not verify");
        goto fail;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
        goto fail;
    }
    int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, (const unsigned char *)sig, siglen, (const unsigned char *)token,
                              (size_t)(d2 - token)) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok) {
        rc = sl_err_set(err, SL_EPERM, "jwt: signature does not verify");
        goto fail;
    }

    rc = decode_segment(d1 + 1, (size_t)(d2 - d1 - 1), "claims", &out->claims, &out->claims_len, err);
    if (rc < 0)
        goto fail;
    toks = parse_object(out->claims, out->claims_len);
    if (toks == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "jwt: claims are not a JSON object");
        goto fail;
    }
    free(toks);
    free(sig);
    return 0;

fail:
    free(toks);
    free(sig);
    sl_jwt_free(out);
    return rc;
}

int sl_jwt_google_claims(const char *client_email, const char *scope, const char *token_uri, int64_t now, char **out,
                         sl_err_t *err)
{
    if (client_email == NULL || client_email[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "jwt: empty client_email");
    if (token_uri == NULL || token_uri[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "jwt: empty token_uri");
    if (scope == NULL)
        scope = SL_JWT_GOOGLE_SCOPE;
    size_t cap = 64 + 2 * 21 + sl_json_escaped_len(client_email, strlen(client_email)) +
                 sl_json_escaped_len(scope, strlen(scope)) + sl_json_escaped_len(token_uri, strlen(token_uri));
    char *buf = malloc(cap);
    if (buf == NULL)
        return sl_err_set(err, SL_ENOMEM, "jwt: out of memory");
    char *w = buf;
    memcpy(w, "{\"iss\":\"", 8);
    w = sl_json_escape(w + 8, client_email, strlen(client_email));
    memcpy(w, "\",\"scope\":\"", 11);
    w = sl_json_escape(w + 11, scope, strlen(scope));
    memcpy(w, "\",\"aud\":\"", 9);
    w = sl_json_escape(w + 9, token_uri, strlen(token_uri));
    snprintf(w, cap - (size_t)(w - buf), "\",\"iat\":%" PRId64 ",\"exp\":%" PRId64 "}", now, now + SL_JWT_MAX_LIFETIME);
    *out = buf;
    return 0;
}

int sl_jwt_google_assertion(EVP_PKEY *key, const char *kid, const char *client_email, const char *scope,
                            const char *token_uri, int64_t now, char **token, sl_err_t *err)
{
    char *claims;
    int rc = sl_jwt_google_claims(client_email, scope, token_uri, now, &claims, err);
    if (rc < 0)
        return rc;
    rc = sl_jwt_sign_rs256(key, kid, claims, strlen(claims), token, err);
    free(claims);
    return rc;
}

/* Copies the string member name of the root object into out. */
static int get_string(const char *js, const sl_json_tok_t *toks, const char *name, char *out, size_t cap)
{
    int i = sl_json_find(js, toks, 0, name, strlen(name));
    if (i < 0 || toks[i].type != SL_JSON_STRING)
        return SL_EINVAL;
    size_t n = sl_json_str_copy(js, &toks[i], out, cap);
    return (n == SIZE_MAX || n == 0) ? SL_EINVAL : 0;
}

int sl_jwt_check_google_claims(const char *claims, size_t len, const char *token_uri, int64_t now, int64_t skew,
                               sl_jwt_google_t *out, sl_err_t *err)
{
    memset(out, 0, sizeof(*out));
    sl_json_tok_t *toks = parse_object(claims, len);
    if (toks == NULL)
        return sl_err_set(err, SL_EINVAL, "jwt: claims are not a JSON object");
    int rc = 0;
    int aud = sl_json_find(claims, toks, 0, "aud", 3);
    int iat = sl_json_find(claims, toks, 0, "iat", 3), exp = sl_json_find(claims, toks, 0, "exp", 3);
    if (get_string(claims, toks, "iss", out->iss, sizeof(out->iss)) < 0)
        rc = sl_err_set(err, SL_EINVAL, "jwt: iss must be a non-empty string");
    else if (get_string(claims, toks, "scope", out->scope, sizeof(out->scope)) < 0)
        rc = sl_err_set(err, SL_EINVAL, "jwt: scope must be a non-empty string");
    else if (aud < 0 || toks[aud].type != SL_JSON_STRING ||
             !sl_json_str_eq(claims, &toks[aud], token_uri, strlen(token_uri)))
        rc = sl_err_set(err, SL_EINVAL, "jwt: aud must be \"%s\"", token_uri);
    else if (iat < 0 || exp < 0 || sl_json_int64(claims, &toks[iat], &out->iat) < 0 ||
             sl_json_int64(claims, &toks[exp], &out->exp) < 0)
        rc = sl_err_set(err, SL_EINVAL, "jwt: iat and exp must be integers");
    else if (out->exp <= out->iat || out->exp - out->iat > SL_JWT_MAX_LIFETIME)
        rc = sl_err_set(err, SL_EPERM, "jwt: token must be a short-lived token (60 minutes): exp - iat is %" PRId64,
                        out->exp - out->iat);
    else if (out->iat > now + skew)
        rc = sl_err_set(err, SL_EPERM, "jwt: iat %" PRId64 " is in the future (now %" PRId64 ")", out->iat, now);
    else if (out->exp < now - skew)
        rc = sl_err_set(err, SL_EPERM, "jwt: token expired at %" PRId64 " (now %" PRId64 ")", out->exp, now);
    free(toks);
    return rc;
}
