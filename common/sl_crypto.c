/* sl_crypto.c - hashing, key derivation and sealing over OpenSSL 3. */
#include "sl_crypto.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

int sl_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : SL_ECRYPTO;
}

void sl_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sl_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen)
{
    if (inlen != 2 * outlen)
        return SL_EINVAL;
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return SL_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

size_t sl_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];
        out[n++] = tab[v >> 6 & 63];
        out[n++] = tab[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];
        out[n++] = tab[v >> 6 & 63];
    }
    out[n] = '\0';
    return n;
}

void sl_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len, uint8_t out[SL_HASH_LEN])
{
    unsigned int outlen = SL_HASH_LEN;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen);
}

void sl_sha256(const void *data, size_t len, uint8_t out[SL_HASH_LEN])
{
    SHA256(data, len, out);
}

int sl_hkdf(const uint8_t *ikm, size_t ikmlen, const char *info, uint8_t *out, size_t outlen)
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    int ok = pctx != NULL && EVP_PKEY_derive_init(pctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set1_hkdf_key(pctx, ikm, (int)ikmlen) > 0 &&
             EVP_PKEY_CTX_add1_hkdf_info(pctx, (const unsigned char *)info, (int)strlen(info)) > 0 &&
             EVP_PKEY_derive(pctx, out, &outlen) > 0;
    EVP_PKEY_CTX_free(pctx);
    return ok ? 0 : SL_ECRYPTO;
}

int sl_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int sl_read_token_file(const char *path, char *out, size_t cap, sl_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return sl_err_set(err, SL_EIO, "could not open \"%s\": %s", path, strerror(errno));
    size_t n = fread(out, 1, cap - 1, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (more)
        return sl_err_set(err, SL_EINVAL, "token file \"%s\" is too long", path);
    out[n] = '\0';
    size_t start = 0;
    while (start < n && isspace((unsigned char)out[start]))
        start++;
    while (n > start && isspace((unsigned char)out[n - 1]))
        n--;
    memmove(out, out + start, n - start);
    out[n - start] = '\0';
    if (n == start)
        return sl_err_set(err, SL_EINVAL, "token file \"%s\" is empty", path);
    return 0;
}

int sl_read_master_key(const char *path, uint8_t key[32], sl_err_t *err)
{
    char hex[80];
    int rc = sl_read_token_file(path, hex, sizeof(hex), err);
    if (rc != 0)
        return rc;
    if (sl_hex_decode(hex, strlen(hex), key, 32) != 0)
        return sl_err_set(err, SL_EINVAL, "master key file \"%s\" must hold 64 hex characters", path);
    OPENSSL_cleanse(hex, sizeof(hex));
    return 0;
}

void sl_derive_pepper(const uint8_t master[32], uint8_t pepper[32])
{
    sl_hkdf(master, 32, "sluice virtual key pepper v1", pepper, 32);
}

void sl_derive_credential_key(const uint8_t master[32], uint8_t key[32])
{
    sl_hkdf(master, 32, "sluice provider credential key v1", key, 32);
}

void sl_derive_cache_key(const char *node_token, uint8_t key[32])
{
    sl_hkdf((const uint8_t *)node_token, strlen(node_token), "sluice snapshot cache key v1", key, 32);
}

int sl_vkey_generate(char out[SL_KEY_SECRET_LEN + 1])
{
    uint8_t raw[32];
    if (sl_random(raw, sizeof(raw)) != 0)
        return SL_ECRYPTO;
    memcpy(out, SL_KEY_PREFIX, SL_KEY_PREFIX_LEN);
    sl_b64url_encode(raw, sizeof(raw), out + SL_KEY_PREFIX_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

void sl_vkey_hash(const uint8_t pepper[32], const char *secret, size_t len, uint8_t out[SL_HASH_LEN])
{
    sl_hmac_sha256(pepper, 32, secret, len, out);
}

int sl_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *in, size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, ok;
    if (c == NULL)
        return SL_ENOMEM;
    ok = sl_random(out, 12) == 0 && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, out) == 1 &&
         (aad == NULL || EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1) &&
         EVP_EncryptUpdate(c, out + 12, &outl, in, (int)len) == 1 && EVP_EncryptFinal_ex(c, out + 12 + outl, &outl) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : SL_ECRYPTO;
}

int sl_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *c;
    int outl = 0, ok;
    if (len < SL_SEAL_OVERHEAD)
        return SL_EINVAL;
    size_t ctlen = len - SL_SEAL_OVERHEAD;
    if ((c = EVP_CIPHER_CTX_new()) == NULL)
        return SL_ENOMEM;
    ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
         (aad == NULL || EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1) &&
         EVP_DecryptUpdate(c, out, &outl, in + 12, (int)ctlen) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 12 + ctlen)) == 1 &&
         EVP_DecryptFinal_ex(c, out + outl, &outl) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : SL_ECRYPTO;
}
