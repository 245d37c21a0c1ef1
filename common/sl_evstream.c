/* sl_evstream.c - AWS event stream framing: CRC-32, parser, incremental
 * decoder and encoder. */
#include "sl_evstream.h"

#include <stdlib.h>

/* clang-format off */
static const uint32_t crc_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
    0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
    0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
    0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
    0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
    0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
    0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
    0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
    0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
    0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
    0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
    0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
    0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
    0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
    0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
    0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
    0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
    0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
    0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
    0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
    0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
    0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};
/* clang-format on */

uint32_t sl_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        p[i - 1] = (uint8_t)v;
        v >>= 8;
    }
}

const sl_evs_header_t *sl_evs_find(const sl_evs_message_t *m, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name_len == n && memcmp(m->headers[i].name, name, n) == 0)
            return &m->headers[i];
    return NULL;
}

/* Checks the prelude at p (12 bytes) and returns the total length. */
static int check_prelude(const uint8_t *p, size_t max, size_t *total, sl_err_t *err)
{
    uint32_t tlen = (uint32_t)get_be(p, 4), hlen = (uint32_t)get_be(p + 4, 4);
    uint32_t crc = (uint32_t)get_be(p + 8, 4), want = sl_crc32(0, p, 8);
    if (crc != want)
        return sl_err_set(err, SL_EINVAL, "event stream prelude crc mismatch (got %08x, computed %08x)", crc, want);
    if (tlen > max)
        return sl_err_set(err, SL_ETOOBIG, "event stream message of %u bytes exceeds the %zu-byte limit", tlen, max);
    if (tlen < SL_EVS_OVERHEAD || hlen > tlen - SL_EVS_OVERHEAD)
        return sl_err_set(err, SL_EINVAL, "event stream message lengths are inconsistent (total %u, headers %u)", tlen,
                          hlen);
    *total = tlen;
    return 0;
}

static void set_well_known(sl_evs_message_t *m, const sl_evs_header_t *h)
{
    static const struct {
        const char *name;
        size_t off;
    } known[] = {
        {SL_EVS_H_EVENT_TYPE, offsetof(sl_evs_message_t, event_type)},
        {SL_EVS_H_MESSAGE_TYPE, offsetof(sl_evs_message_t, message_type)},
        {SL_EVS_H_CONTENT_TYPE, offsetof(sl_evs_message_t, content_type)},
        {SL_EVS_H_EXCEPTION_TYPE, offsetof(sl_evs_message_t, exception_type)},
    };
    if (h->type != SL_EVS_STRING)
        return;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (h->name_len == strlen(known[i].name) && memcmp(h->name, known[i].name, h->name_len) == 0) {
            sl_evs_str_t *s = (sl_evs_str_t *)((char *)m + known[i].off);
            if (s->p == NULL)
                *s = (sl_evs_str_t){(const char *)h->data, h->len};
            return;
        }
    }
}

/* Fixed value sizes by type; -1 for length-prefixed, -2 for unknown. */
static int value_size(uint8_t type)
{
    switch (type) {
    case SL_EVS_TRUE:
    case SL_EVS_FALSE:
        return 0;
    case SL_EVS_BYTE:
        return 1;
    case SL_EVS_INT16:
        return 2;
    case SL_EVS_INT32:
        return 4;
    case SL_EVS_INT64:
    case SL_EVS_TIMESTAMP:
        return 8;
    case SL_EVS_UUID:
        return 16;
    case SL_EVS_BYTES:
    case SL_EVS_STRING:
        return -1;
    default:
        return -2;
    }
}

static int parse_headers(const uint8_t *p, size_t len, sl_evs_message_t *m, sl_err_t *err)
{
    size_t pos = 0;
    while (pos < len) {
        if (m->nheaders == SL_EVS_MAX_HEADERS)
            return sl_err_set(err, SL_EINVAL, "event stream message has more than %d headers", SL_EVS_MAX_HEADERS);
        sl_evs_header_t *h = &m->headers[m->nheaders];
        size_t nlen = p[pos++];
        if (nlen == 0)
            return sl_err_set(err, SL_EINVAL, "event stream header with an empty name");
        if (len - pos < nlen + 1)
            return sl_err_set(err, SL_EINVAL, "event stream header name runs past the headers");
        *h = (sl_evs_header_t){.name = (const char *)p + pos, .name_len = nlen};
        pos += nlen;
        h->type = p[pos++];
        int size = value_size(h->type);
        if (size == -2)
            return sl_err_set(err, SL_EINVAL, "event stream header \"%.*s\" has unknown value type %u", (int)nlen,
                              h->name, h->type);
        if (size == -1) {
            if (len - pos < 2)
                return sl_err_set(err, SL_EINVAL, "event stream header \"%.*s\" value runs past the headers", (int)nlen,
                                  h->name);
            h->len = (size_t)get_be(p + pos, 2);
            pos += 2;
        } else {
            h->len = (size_t)size;
        }
        if (len - pos < h->len)
            return sl_err_set(err, SL_EINVAL, "event stream header \"%.*s\" value runs past the headers", (int)nlen,
                              h->name);
        const uint8_t *v = p + pos;
        switch (h->type) {
        case SL_EVS_TRUE:
            h->num = 1;
            break;
        case SL_EVS_FALSE:
            h->num = 0;
            break;
        case SL_EVS_BYTE:
            h->num = (int8_t)v[0];
            break;
        case SL_EVS_INT16:
            h->num = (int16_t)(uint16_t)get_be(v, 2);
            break;
        case SL_EVS_INT32:
            h->num = (int32_t)(uint32_t)get_be(v, 4);
            break;
        case SL_EVS_INT64:
        case SL_EVS_TIMESTAMP:
            h->num = (int64_t)get_be(v, 8);
            break;
        default:
            h->data = v;
            break;
        }
        pos += h->len;
        set_well_known(m, h);
        m->nheaders++;
    }
    return 0;
}

int sl_evs_parse(const uint8_t *p, size_t len, size_t max, sl_evs_message_t *m, size_t *used, sl_err_t *err)
{
    size_t total;
    if (len < SL_EVS_PRELUDE_LEN) {
        *used = SL_EVS_PRELUDE_LEN;
        return 0;
    }
    int rc = check_prelude(p, max ? max : SL_EVS_DEFAULT_MAX, &total, err);
    if (rc < 0)
        return rc;
    *used = total;
    if (len < total)
        return 0;
    uint32_t crc = (uint32_t)get_be(p + total - 4, 4), want = sl_crc32(0, p, total - 4);
    if (crc != want)
        return sl_err_set(err, SL_EINVAL, "event stream message crc mismatch (got %08x, computed %08x)", crc, want);
    size_t hlen = (size_t)get_be(p + 4, 4);
    m->frame = p;
    m->frame_len = total;
    m->nheaders = 0;
    m->event_type = m->message_type = m->content_type = m->exception_type = (sl_evs_str_t){NULL, 0};
    rc = parse_headers(p + SL_EVS_PRELUDE_LEN, hlen, m, err);
    if (rc < 0)
        return rc;
    m->payload = p + SL_EVS_PRELUDE_LEN + hlen;
    m->payload_len = total - SL_EVS_OVERHEAD - hlen;
    return 1;
}

void sl_evs_decoder_init(sl_evs_decoder_t *d, size_t max)
{
    memset(d, 0, offsetof(sl_evs_decoder_t, msg));
    d->max = max ? max : SL_EVS_DEFAULT_MAX;
}

void sl_evs_decoder_free(sl_evs_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = d->need = 0;
}

static int reserve(sl_evs_decoder_t *d, size_t n, sl_err_t *err)
{
    if (n <= d->cap)
        return 0;
    size_t cap = d->cap ? d->cap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(d->buf, cap);
    if (p == NULL)
        return sl_err_set(err, SL_ENOMEM, "out of memory buffering an event stream message of %zu bytes", n);
    d->buf = p;
    d->cap = cap;
    return 0;
}

/* Moves up to want - d->len bytes of input into the buffer. */
static void take(sl_evs_decoder_t *d, const uint8_t **in, size_t *avail, size_t want)
{
    size_t n = want - d->len;
    if (n > *avail)
        n = *avail;
    if (n == 0)
        return;
    memcpy(d->buf + d->len, *in, n);
    d->len += n;
    *in += n;
    *avail -= n;
}

static int fail(sl_evs_decoder_t *d, int rc)
{
    d->failed = rc;
    return rc;
}

int sl_evs_decoder_feed(sl_evs_decoder_t *d, const void *data, size_t len, sl_evs_on_message cb, void *ctx,
                        sl_err_t *err)
{
    const uint8_t *in = data;
    size_t avail = len, used;
    int rc;
    if (d->failed)
        return d->failed;
    for (;;) {
        if (d->len > 0) {
            /* Finish the message started in an earlier chunk. */
            if (d->need == 0) {
                take(d, &in, &avail, SL_EVS_PRELUDE_LEN);
                if (d->len < SL_EVS_PRELUDE_LEN)
                    return 0;
                if ((rc = check_prelude(d->buf, d->max, &d->need, err)) < 0)
                    return fail(d, rc);
                if ((rc = reserve(d, d->need, err)) < 0)
                    return fail(d, rc);
            }
            take(d, &in, &avail, d->need);
            if (d->len < d->need)
                return 0;
            rc = sl_evs_parse(d->buf, d->len, d->max, &d->msg, &used, err);
            d->len = d->need = 0;
            if (rc < 0)
                return fail(d, rc);
            if ((rc = cb(ctx, &d->msg)) != 0)
                return fail(d, rc);
            continue;
        }
        if (avail == 0)
            return 0;
        rc = sl_evs_parse(in, avail, d->max, &d->msg, &used, err);
        if (rc < 0)
            return fail(d, rc);
        if (rc == 1) {
            in += used;
            avail -= used;
            if ((rc = cb(ctx, &d->msg)) != 0)
                return fail(d, rc);
            continue;
        }
        /* An incomplete message: keep what there is. The prelude, when
         * complete, was checked by sl_evs_parse, so used is sane. */
        d->need = avail >= SL_EVS_PRELUDE_LEN ? used : 0;
        if ((rc = reserve(d, d->need ? d->need : SL_EVS_PRELUDE_LEN, err)) < 0)
            return fail(d, rc);
        memcpy(d->buf, in, avail);
        d->len = avail;
        return 0;
    }
}

int sl_evs_decoder_finish(sl_evs_decoder_t *d, sl_err_t *err)
{
    if (d->failed)
        return d->failed;
    if (d->len > 0) {
        if (d->need)
            return sl_err_set(err, SL_EINVAL, "event stream truncated: %zu of %zu bytes of the last message", d->len,
                              d->need);
        return sl_err_set(err, SL_EINVAL, "event stream truncated: %zu bytes of a message prelude", d->len);
    }
    return 0;
}

/* Encoded size of one header, or 0 when it is invalid. */
static size_t header_size(const sl_evs_header_t *h)
{
    if (h->name_len == 0 || h->name_len > 255)
        return 0;
    int size = value_size(h->type);
    switch (h->type) {
    case SL_EVS_BYTE:
        if (h->num < INT8_MIN || h->num > INT8_MAX)
            return 0;
        break;
    case SL_EVS_INT16:
        if (h->num < INT16_MIN || h->num > INT16_MAX)
            return 0;
        break;
    case SL_EVS_INT32:
        if (h->num < INT32_MIN || h->num > INT32_MAX)
            return 0;
        break;
    case SL_EVS_UUID:
        if (h->data == NULL || h->len != 16)
            return 0;
        break;
    case SL_EVS_BYTES:
    case SL_EVS_STRING:
        if (h->len > SL_EVS_MAX_VALUE_LEN || (h->len > 0 && h->data == NULL))
            return 0;
        return 1 + h->name_len + 1 + 2 + h->len;
    default:
        if (size < 0)
            return 0;
        break;
    }
    return 1 + h->name_len + 1 + (size_t)size;
}

size_t sl_evs_encoded_size(const sl_evs_header_t *h, size_t n, size_t payload_len)
{
    size_t total = SL_EVS_OVERHEAD + payload_len;
    for (size_t i = 0; i < n; i++) {
        size_t s = header_size(&h[i]);
        if (s == 0)
            return 0;
        total += s;
    }
    return total;
}

int sl_evs_encode(const sl_evs_header_t *h, size_t n, const void *payload, size_t payload_len, uint8_t *out, size_t cap,
                  size_t *outlen)
{
    size_t total = sl_evs_encoded_size(h, n, payload_len);
    if (total == 0)
        return SL_EINVAL;
    if (total > UINT32_MAX || total > cap)
        return SL_ETOOBIG;
    size_t hlen = total - SL_EVS_OVERHEAD - payload_len;
    put_be(out, total, 4);
    put_be(out + 4, hlen, 4);
    put_be(out + 8, sl_crc32(0, out, 8), 4);
    uint8_t *w = out + SL_EVS_PRELUDE_LEN;
    for (size_t i = 0; i < n; i++) {
        *w++ = (uint8_t)h[i].name_len;
        memcpy(w, h[i].name, h[i].name_len);
        w += h[i].name_len;
        *w++ = h[i].type;
        int size = value_size(h[i].type);
        if (h[i].type == SL_EVS_BYTES || h[i].type == SL_EVS_STRING) {
            put_be(w, h[i].len, 2);
            w += 2;
            if (h[i].len)
                memcpy(w, h[i].data, h[i].len);
            w += h[i].len;
        } else if (h[i].type == SL_EVS_UUID) {
            memcpy(w, h[i].data, 16);
            w += 16;
        } else if (size > 0) {
            put_be(w, (uint64_t)h[i].num, (size_t)size);
            w += size;
        }
    }
    if (payload_len)
        memcpy(w, payload, payload_len);
    w += payload_len;
    put_be(w, sl_crc32(0, out, total - 4), 4);
    *outlen = total;
    return 0;
}

int sl_evs_encode_buf(sl_buf_t *b, const sl_evs_header_t *h, size_t n, const void *payload, size_t payload_len)
{
    size_t total = sl_evs_encoded_size(h, n, payload_len), outlen;
    if (total == 0)
        return SL_EINVAL;
    if (total > UINT32_MAX)
        return SL_ETOOBIG;
    sl_buf_reserve(b, total);
    int rc = sl_evs_encode(h, n, payload, payload_len, (uint8_t *)b->data + b->len, total, &outlen);
    if (rc == 0) {
        b->len += outlen;
        b->data[b->len] = '\0';
    }
    return rc;
}

int sl_evs_encode_event(sl_buf_t *b, const char *event_type, const char *json, size_t json_len)
{
    sl_evs_header_t h[3] = {
        sl_evs_hdr_string(SL_EVS_H_EVENT_TYPE, event_type),
        sl_evs_hdr_string(SL_EVS_H_CONTENT_TYPE, "application/json"),
        sl_evs_hdr_string(SL_EVS_H_MESSAGE_TYPE, SL_EVS_MSG_EVENT),
    };
    return sl_evs_encode_buf(b, h, 3, json, json_len);
}

int sl_evs_encode_exception(sl_buf_t *b, const char *exception_type, const char *json, size_t json_len)
{
    sl_evs_header_t h[3] = {
        sl_evs_hdr_string(SL_EVS_H_EXCEPTION_TYPE, exception_type),
        sl_evs_hdr_string(SL_EVS_H_CONTENT_TYPE, "application/json"),
        sl_evs_hdr_string(SL_EVS_H_MESSAGE_TYPE, SL_EVS_MSG_EXCEPTION),
    };
    return sl_evs_encode_buf(b, h, 3, json, json_len);
}
