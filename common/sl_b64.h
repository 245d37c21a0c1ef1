/*
 * sl_b64.h - base64 (RFC 4648 section 4, padded) and base64url (section 5)
 * decoding, plus padded standard encoding. Unpadded base64url encoding lives
 * in sl_crypto.h (sl_b64url_encode).
 *
 * Decoders are strict: characters outside the alphabet, whitespace, bad
 * padding and non-zero trailing bits are rejected, so one byte string has
 * exactly one accepted encoding (what signature checks over encoded text
 * rely on).
 *
 * Nothing allocates; the caller provides output buffers. Thread-safe.
 */
#ifndef SL_B64_H
#define SL_B64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode len bytes with padding, NUL included. */
#define SL_B64_ENCODED_SIZE(len) (4 * (((len) + 2) / 3) + 1)
/* Upper bound of the decoded size of len encoded characters. */
#define SL_B64_DECODED_MAX(len) (3 * (((len) + 3) / 4))

/* Standard alphabet with '=' padding; out must hold SL_B64_ENCODED_SIZE(len)
 * bytes. Returns the length written (NUL excluded). */
size_t sl_b64_encode(const uint8_t *in, size_t len, char *out);

/* Decodes padded standard base64 (length a multiple of 4). Writes at most
 * cap bytes to out and the decoded length to *outlen. Returns 0, SL_EINVAL
 * (not canonical base64) or SL_ETOOBIG (out too small). */
int sl_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* Decodes base64url without padding (as in JWS, RFC 7515 section 2).
 * Same returns as sl_b64_decode; '=' is rejected. */
int sl_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen);

#endif
