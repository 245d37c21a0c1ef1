/* sl_b64.c - strict base64 and base64url codecs (RFC 4648). */
#include "sl_b64.h"

#include "sl_err.h"

static const char std_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sl_b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t n = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = std_alphabet[v >> 18 & 63];
        out[n++] = std_alphabet[v >> 12 & 63];
        out[n++] = std_alphabet[v >> 6 & 63];
        out[n++] = std_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = std_alphabet[v >> 18 & 63];
        out[n++] = std_alphabet[v >> 12 & 63];
        out[n++] = '=';
        out[n++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = std_alphabet[v >> 18 & 63];
        out[n++] = std_alphabet[v >> 12 & 63];
        out[n++] = std_alphabet[v >> 6 & 63];
        out[n++] = '=';
    }
    out[n] = '\0';
    return n;
}

/* Value of c in the chosen alphabet, or -1. */
static int sextet(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decodes len characters without padding. A trailing group of 1 character is
 * impossible; trailing bits that do not fit a byte must be zero. */
static int decode_unpadded(const char *in, size_t len, int url, uint8_t *out, size_t cap, size_t *outlen)
{
    size_t rem = len % 4;
    if (rem == 1)
        return SL_EINVAL;
    size_t need = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > cap)
        return SL_ETOOBIG;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sextet(in[i], url);
        if (v < 0)
            return SL_EINVAL;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return SL_EINVAL;
    *outlen = n;
    return 0;
}

int sl_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    if (len % 4 != 0)
        return SL_EINVAL;
    size_t pad = 0;
    if (len > 0 && in[len - 1] == '=')
        pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
    return decode_unpadded(in, len - pad, 0, out, cap, outlen);
}

int sl_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    return decode_unpadded(in, len, 1, out, cap, outlen);
}
