/*
 * sl_crypto.h - the cryptography Sluice relies on, over OpenSSL 3.
 *
 * Virtual keys: a secret is "sk-sluice-" + 43 base64url characters (256
 * random bits). Only HMAC-SHA-256(pepper, secret) is stored or shipped; the
 * pepper derives from the master key. Provider credentials are sealed with
 * AES-256-GCM under a key derived from the master key; the snapshot cache is
 * sealed under a key derived from the node token.
 *
 * Every function is thread-safe and allocation-free unless noted.
 */
#ifndef SL_CRYPTO_H
#define SL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "sl_err.h"

#define SL_KEY_PREFIX "sk-sluice-"
#define SL_KEY_PREFIX_LEN 10
#define SL_KEY_SECRET_LEN (SL_KEY_PREFIX_LEN + 43)
#define SL_HASH_LEN 32
#define SL_SEAL_OVERHEAD (12 + 16) /* nonce + tag */

/* Fills buf with cryptographically random bytes. Returns 0 or SL_ECRYPTO. */
int sl_random(void *buf, size_t len);

/* Lower-case hex; out must hold 2*len+1 bytes. */
void sl_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*outlen hex characters. Returns 0 or SL_EINVAL. */
int sl_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen);

/* Unpadded base64url; out must hold 4*ceil(len/3)+1 bytes. Returns length. */
size_t sl_b64url_encode(const uint8_t *in, size_t len, char *out);

void sl_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len, uint8_t out[SL_HASH_LEN]);
void sl_sha256(const void *data, size_t len, uint8_t out[SL_HASH_LEN]);

/* HKDF-SHA-256 (RFC 5869) with an empty salt. Returns 0 or SL_ECRYPTO. */
int sl_hkdf(const uint8_t *ikm, size_t ikmlen, const char *info, uint8_t *out, size_t outlen);

/* Constant-time equality of two buffers of length len. */
int sl_ct_equal(const void *a, const void *b, size_t len);

/* Reads a file holding one token (surrounding whitespace trimmed) into out
 * (NUL-terminated). Returns 0, SL_EIO or SL_EINVAL (empty or too long). */
int sl_read_token_file(const char *path, char *out, size_t cap, sl_err_t *err);

/* Reads a master key file: 64 hex characters (openssl rand -hex 32). */
int sl_read_master_key(const char *path, uint8_t key[32], sl_err_t *err);

/* Derives the purpose keys from the master key. */
void sl_derive_pepper(const uint8_t master[32], uint8_t pepper[32]);
void sl_derive_credential_key(const uint8_t master[32], uint8_t key[32]);
/* Snapshot cache key from the node token. */
void sl_derive_cache_key(const char *node_token, uint8_t key[32]);

/* Writes a new secret (SL_KEY_SECRET_LEN chars + NUL) into out. */
int sl_vkey_generate(char out[SL_KEY_SECRET_LEN + 1]);
/* HMAC-SHA-256(pepper, secret). */
void sl_vkey_hash(const uint8_t pepper[32], const char *secret, size_t len, uint8_t out[SL_HASH_LEN]);

/* AES-256-GCM. sealed = nonce(12) || ciphertext || tag(16); out must hold
 * len + SL_SEAL_OVERHEAD bytes. aad may be NULL. */
int sl_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *in, size_t len, uint8_t *out);
/* Inverse of sl_seal; out must hold len - SL_SEAL_OVERHEAD bytes. Returns 0,
 * SL_EINVAL (too short) or SL_ECRYPTO (wrong key, tampered). */
int sl_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t len, uint8_t *out);

#endif
