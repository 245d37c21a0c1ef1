/* Tests for common/sl_evstream.c: CRC-32, encoder, incremental decoder and
 * its error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sl_evstream.h"

/* CRC-32 computed bit by bit, independently of the table in the library. */
static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_crc32_check_value(void **state)
{
    assert_int_equal(sl_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(crc32_bitwise((const uint8_t *)"123456789", 9), 0xCBF43926u);
    assert_int_equal(sl_crc32(0, "", 0), 0);
    /* Incremental use gives the same result as one call. */
    assert_int_equal(sl_crc32(sl_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    assert_int_equal(sl_crc32(0, buf, sizeof(buf)), crc32_bitwise(buf, sizeof(buf)));
}

/* Two messages written out byte by byte from the format description: the
 * prelude, headers, payload and both CRCs. The CRC bytes are those published
 * with a public encoder's documentation; the test recomputes them. */
/* clang-format off */
static const uint8_t known_plain[] = {
    0x00, 0x00, 0x00, 0x1e,                   /* total length 30 */
    0x00, 0x00, 0x00, 0x00,                   /* headers length 0 */
    0xba, 0xf2, 0xf6, 0x8a,                   /* prelude CRC */
    '{', '"', 'f', 'o', 'o', '"', ':', ' ', '"', 'b', 'a', 'r', '"', '}',
    0xae, 0x72, 0x58, 0xe4,                   /* message CRC */
};

static const uint8_t known_header[] = {
    0x00, 0x00, 0x00, 0x3e, /* total length 62 */
    0x00, 0x00, 0x00, 0x20, /* headers length 32 */
    0x40, 0x5d, 0xf9, 0x46, /* prelude CRC */
    12, 'c', 'o', 'n', 't', 'e', 'n', 't', '-', 't', 'y', 'p', 'e',
    7, 0x00, 16, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '/', 'j', 's', 'o', 'n',
    '{', '"', 'f', 'o', 'o', '"', ':', ' ', '"', 'b', 'a', 'r', '"', '}',
    0x6f, 0xa2, 0xbf, 0x3b, /* message CRC */
};
/* clang-format on */

static void check_crcs(const uint8_t *m, size_t n)
{
    assert_int_equal(be32(m), n);
    assert_int_equal(be32(m + 8), crc32_bitwise(m, 8));
    assert_int_equal(be32(m + n - 4), crc32_bitwise(m, n - 4));
}

static void test_known_vectors(void **state)
{
    check_crcs(known_plain, sizeof(known_plain));
    check_crcs(known_header, sizeof(known_header));

    uint8_t out[128];
    size_t n;
    const char *payload = "{\"foo\": \"bar\"}";
    assert_int_equal(sl_evs_encode(NULL, 0, payload, 14, out, sizeof(out), &n), 0);
    assert_int_equal(n, sizeof(known_plain));
    assert_memory_equal(out, known_plain, n);

    sl_evs_header_t h = sl_evs_hdr_string("content-type", "application/json");
    assert_int_equal(sl_evs_encoded_size(&h, 1, 14), sizeof(known_header));
    assert_int_equal(sl_evs_encode(&h, 1, payload, 14, out, sizeof(out), &n), 0);
    assert_int_equal(n, sizeof(known_header));
    assert_memory_equal(out, known_header, n);

    sl_evs_message_t m;
    size_t used;
    sl_err_t err;
    assert_int_equal(sl_evs_parse(known_header, sizeof(known_header), 0, &m, &used, &err), 1);
    assert_int_equal(used, sizeof(known_header));
    assert_int_equal(m.nheaders, 1);
    assert_int_equal(m.headers[0].type, SL_EVS_STRING);
    assert_int_equal(m.headers[0].len, 16);
    assert_memory_equal(m.headers[0].data, "application/json", 16);
    assert_int_equal(m.payload_len, 14);
    assert_memory_equal(m.payload, payload, 14);
    /* content-type without the colon is not the well-known header. */
    assert_null(m.content_type.p);
}

static const uint8_t uuid[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21};

/* Builds a message with one header of every type. */
static size_t encode_all_types(uint8_t *out, size_t cap, const char *payload)
{
    sl_evs_header_t h[] = {
        sl_evs_hdr_string(SL_EVS_H_EVENT_TYPE, "contentBlockDelta"),
        sl_evs_hdr_string(SL_EVS_H_CONTENT_TYPE, "application/json"),
        sl_evs_hdr_string(SL_EVS_H_MESSAGE_TYPE, "event"),
        sl_evs_hdr_bool("yes", 1),
        sl_evs_hdr_bool("no", 0),
        sl_evs_hdr_int("byte", SL_EVS_BYTE, -7),
        sl_evs_hdr_int("short", SL_EVS_INT16, -12345),
        sl_evs_hdr_int("int", SL_EVS_INT32, -2000000000),
        sl_evs_hdr_int("long", SL_EVS_INT64, -9000000000000000000LL),
        sl_evs_hdr_bytes("bytes", "\x00\x01\xff", 3),
        sl_evs_hdr_int("ts", SL_EVS_TIMESTAMP, 1767225600123LL),
        sl_evs_hdr_uuid("id", uuid),
        sl_evs_hdr_string("empty", ""),
    };
    size_t n;
    assert_int_equal(sl_evs_encode(h, sizeof(h) / sizeof(h[0]), payload, strlen(payload), out, cap, &n), 0);
    return n;
}

static void check_all_types(const sl_evs_message_t *m, const char *payload)
{
    assert_int_equal(m->nheaders, 13);
    assert_true(sl_evs_str_eq(m->event_type, "contentBlockDelta"));
    assert_true(sl_evs_str_eq(m->content_type, "application/json"));
    assert_true(sl_evs_str_eq(m->message_type, SL_EVS_MSG_EVENT));
    assert_null(m->exception_type.p);
    assert_int_equal(sl_evs_find(m, "yes")->type, SL_EVS_TRUE);
    assert_int_equal(sl_evs_find(m, "yes")->num, 1);
    assert_int_equal(sl_evs_find(m, "no")->type, SL_EVS_FALSE);
    assert_int_equal(sl_evs_find(m, "no")->num, 0);
    assert_int_equal(sl_evs_find(m, "byte")->num, -7);
    assert_int_equal(sl_evs_find(m, "short")->num, -12345);
    assert_int_equal(sl_evs_find(m, "int")->num, -2000000000);
    assert_true(sl_evs_find(m, "long")->num == -9000000000000000000LL);
    assert_int_equal(sl_evs_find(m, "bytes")->len, 3);
    assert_memory_equal(sl_evs_find(m, "bytes")->data, "\x00\x01\xff", 3);
    assert_int_equal(sl_evs_find(m, "ts")->type, SL_EVS_TIMESTAMP);
    assert_true(sl_evs_find(m, "ts")->num == 1767225600123LL);
    assert_int_equal(sl_evs_find(m, "id")->len, 16);
    assert_memory_equal(sl_evs_find(m, "id")->data, uuid, 16);
    assert_int_equal(sl_evs_find(m, "empty")->len, 0);
    assert_null(sl_evs_find(m, "absent"));
    assert_int_equal(m->payload_len, strlen(payload));
    assert_memory_equal(m->payload, payload, m->payload_len);
}

static void test_round_trip_all_types(void **state)
{
    uint8_t buf[512];
    const char *payload = "{\"delta\":{\"text\":\"Hello\"},\"contentBlockIndex\":0}";
    size_t n = encode_all_types(buf, sizeof(buf), payload);
    check_crcs(buf, n);
    sl_evs_message_t m;
    size_t used;
    assert_int_equal(sl_evs_parse(buf, n, 0, &m, &used, NULL), 1);
    assert_int_equal(used, n);
    assert_ptr_equal(m.frame, buf);
    assert_int_equal(m.frame_len, n);
    check_all_types(&m, payload);
    /* Every proper prefix asks for more. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sl_evs_parse(buf, i, 0, &m, &used, NULL), 0);
}

/* ---- decoder ---- */

typedef struct collected {
    int count;
    char events[8][32];
    char payloads[8][64];
    int stop_after;
} collected_t;

static int collect(void *ctx, const sl_evs_message_t *m)
{
    collected_t *c = ctx;
    if (c->count < 8) {
        snprintf(c->events[c->count], sizeof(c->events[0]), "%.*s", (int)m->event_type.len,
                 m->event_type.p ? m->event_type.p : "");
        snprintf(c->payloads[c->count], sizeof(c->payloads[0]), "%.*s", (int)m->payload_len, (const char *)m->payload);
    }
    c->count++;
    if (c->stop_after && c->count == c->stop_after)
        return 42;
    return 0;
}

/* Three Bedrock-shaped messages in a row. */
static void make_stream(sl_buf_t *b)
{
    assert_int_equal(sl_evs_encode_event(b, SL_EVS_EV_MESSAGE_START, "{\"role\":\"assistant\"}", 20), 0);
    const char *d = "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}";
    assert_int_equal(sl_evs_encode_event(b, SL_EVS_EV_CONTENT_BLOCK_DELTA, d, strlen(d)), 0);
    assert_int_equal(sl_evs_encode_event(b, SL_EVS_EV_MESSAGE_STOP, "{\"stopReason\":\"end_turn\"}", 25), 0);
}

static void check_stream(const collected_t *c)
{
    assert_int_equal(c->count, 3);
    assert_string_equal(c->events[0], "messageStart");
    assert_string_equal(c->events[1], "contentBlockDelta");
    assert_string_equal(c->events[2], "messageStop");
    assert_string_equal(c->payloads[0], "{\"role\":\"assistant\"}");
    assert_string_equal(c->payloads[1], "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}");
    assert_string_equal(c->payloads[2], "{\"stopReason\":\"end_turn\"}");
}

static void test_decoder_every_split_point(void **state)
{
    sl_buf_t b = {0};
    make_stream(&b);
    for (size_t i = 0; i <= b.len; i++) {
        for (size_t j = i; j <= b.len; j += 7) {
            sl_evs_decoder_t d;
            collected_t c = {0};
            sl_err_t err;
            sl_evs_decoder_init(&d, 0);
            assert_int_equal(sl_evs_decoder_feed(&d, b.data, i, collect, &c, &err), 0);
            assert_int_equal(sl_evs_decoder_feed(&d, b.data + i, j - i, collect, &c, &err), 0);
            assert_int_equal(sl_evs_decoder_feed(&d, b.data + j, b.len - j, collect, &c, &err), 0);
            assert_int_equal(sl_evs_decoder_finish(&d, &err), 0);
            check_stream(&c);
            sl_evs_decoder_free(&d);
        }
    }
    sl_buf_free(&b);
}

static void test_decoder_byte_at_a_time(void **state)
{
    sl_buf_t b = {0};
    uint8_t all[512];
    make_stream(&b);
    size_t n = encode_all_types(all, sizeof(all), "x");
    sl_buf_append(&b, all, n);
    sl_evs_decoder_t d;
    collected_t c = {0};
    sl_err_t err;
    sl_evs_decoder_init(&d, 0);
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(sl_evs_decoder_feed(&d, b.data + i, 1, collect, &c, &err), 0);
    assert_int_equal(c.count, 4);
    assert_string_equal(c.events[3], "contentBlockDelta");
    assert_string_equal(c.payloads[3], "x");
    assert_int_equal(sl_evs_decoder_finish(&d, &err), 0);
    sl_evs_decoder_free(&d);
    sl_buf_free(&b);
}

static int check_all_cb(void *ctx, const sl_evs_message_t *m)
{
    check_all_types(m, ctx);
    return 0;
}

static void test_decoder_split_message_keeps_headers(void **state)
{
    uint8_t buf[512];
    const char *payload = "payload";
    size_t n = encode_all_types(buf, sizeof(buf), payload);
    for (size_t i = 1; i < n; i++) {
        sl_evs_decoder_t d;
        sl_evs_decoder_init(&d, 0);
        assert_int_equal(sl_evs_decoder_feed(&d, buf, i, check_all_cb, (void *)payload, NULL), 0);
        assert_int_equal(sl_evs_decoder_feed(&d, buf + i, n - i, check_all_cb, (void *)payload, NULL), 0);
        assert_int_equal(sl_evs_decoder_finish(&d, NULL), 0);
        sl_evs_decoder_free(&d);
    }
}

static int feed_all(const uint8_t *p, size_t n, size_t max, sl_err_t *err, int *count)
{
    sl_evs_decoder_t d;
    collected_t c = {0};
    sl_evs_decoder_init(&d, max);
    int rc = sl_evs_decoder_feed(&d, p, n, collect, &c, err);
    if (rc == 0)
        rc = sl_evs_decoder_finish(&d, err);
    sl_evs_decoder_free(&d);
    if (count)
        *count = c.count;
    return rc;
}

static void test_corrupted_prelude_crc(void **state)
{
    uint8_t m[sizeof(known_header)];
    sl_err_t err;
    memcpy(m, known_header, sizeof(m));
    m[9] ^= 0x01;
    assert_int_equal(feed_all(m, sizeof(m), 0, &err, NULL), SL_EINVAL);
    assert_non_null(strstr(err.msg, "prelude crc mismatch"));
    /* A damaged length is caught by the prelude CRC too. */
    memcpy(m, known_header, sizeof(m));
    m[3] ^= 0x10;
    assert_int_equal(feed_all(m, sizeof(m), 0, &err, NULL), SL_EINVAL);
    assert_non_null(strstr(err.msg, "prelude crc mismatch"));
}

static void test_corrupted_message_crc(void **state)
{
    uint8_t m[sizeof(known_header)];
    sl_err_t err;
    int count;
    for (size_t i = 12; i < sizeof(m); i++) {
        memcpy(m, known_header, sizeof(m));
        m[i] ^= 0x20;
        assert_int_equal(feed_all(m, sizeof(m), 0, &err, &count), SL_EINVAL);
        assert_non_null(strstr(err.msg, "message crc mismatch"));
        assert_int_equal(count, 0);
    }
}

static void test_truncated_stream(void **state)
{
    sl_err_t err;
    int count;
    uint8_t two[2 * sizeof(known_plain)];
    memcpy(two, known_plain, sizeof(known_plain));
    memcpy(two + sizeof(known_plain), known_plain, sizeof(known_plain));
    assert_int_equal(feed_all(two, sizeof(two) - 1, 0, &err, &count), SL_EINVAL);
    assert_int_equal(count, 1);
    assert_non_null(strstr(err.msg, "truncated: 29 of 30 bytes"));
    assert_int_equal(feed_all(two, sizeof(known_plain) + 5, 0, &err, &count), SL_EINVAL);
    assert_non_null(strstr(err.msg, "truncated: 5 bytes of a message prelude"));
    assert_int_equal(feed_all(two, sizeof(known_plain), 0, &err, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(feed_all(two, 0, 0, &err, &count), 0);
    assert_int_equal(count, 0);
}

/* A prelude with a valid CRC announcing total and headers lengths. */
static void make_prelude(uint8_t p[12], uint32_t total, uint32_t hlen)
{
    uint32_t v[2] = {total, hlen};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            p[4 * k + i] = (uint8_t)(v[k] >> (24 - 8 * i));
    uint32_t crc = crc32_bitwise(p, 8);
    for (int i = 0; i < 4; i++)
        p[8 + i] = (uint8_t)(crc >> (24 - 8 * i));
}

static void test_absurd_lengths_rejected(void **state)
{
    uint8_t p[12];
    sl_err_t err;
    make_prelude(p, 0xffffffffu, 0);
    assert_int_equal(feed_all(p, sizeof(p), 0, &err, NULL), SL_ETOOBIG);
    assert_non_null(strstr(err.msg, "exceeds the 16777216-byte limit"));
    make_prelude(p, 16 * 1024 * 1024 + 1, 0);
    assert_int_equal(feed_all(p, sizeof(p), 0, &err, NULL), SL_ETOOBIG);
    /* The limit can be lowered. */
    make_prelude(p, 4096, 0);
    assert_int_equal(feed_all(p, sizeof(p), 1024, &err, NULL), SL_ETOOBIG);
    /* Lengths that contradict each other. */
    make_prelude(p, 15, 0);
    assert_int_equal(feed_all(p, sizeof(p), 0, &err, NULL), SL_EINVAL);
    assert_non_null(strstr(err.msg, "inconsistent"));
    make_prelude(p, 40, 25);
    assert_int_equal(feed_all(p, sizeof(p), 0, &err, NULL), SL_EINVAL);
    /* Rejected even when the prelude arrives a byte at a time. */
    sl_evs_decoder_t d;
    collected_t c = {0};
    make_prelude(p, 0x7fffffffu, 0);
    sl_evs_decoder_init(&d, 0);
    int rc = 0;
    for (size_t i = 0; i < sizeof(p) && rc == 0; i++)
        rc = sl_evs_decoder_feed(&d, p + i, 1, collect, &c, &err);
    assert_int_equal(rc, SL_ETOOBIG);
    assert_true(d.cap <= 4096);
    assert_int_equal(sl_evs_decoder_feed(&d, known_plain, sizeof(known_plain), collect, &c, &err), SL_ETOOBIG);
    assert_int_equal(sl_evs_decoder_finish(&d, &err), SL_ETOOBIG);
    sl_evs_decoder_free(&d);
}

/* Wraps headers bytes into a message with correct CRCs. */
static size_t wrap(const uint8_t *headers, size_t hlen, uint8_t *out)
{
    make_prelude(out, (uint32_t)(hlen + 16), (uint32_t)hlen);
    memcpy(out + 12, headers, hlen);
    uint32_t crc = crc32_bitwise(out, 12 + hlen);
    for (int i = 0; i < 4; i++)
        out[12 + hlen + i] = (uint8_t)(crc >> (24 - 8 * i));
    return hlen + 16;
}

static void test_malformed_headers_rejected(void **state)
{
    uint8_t m[128];
    sl_err_t err;
    size_t n;
    static const uint8_t unknown_type[] = {1, 'a', 10};
    n = wrap(unknown_type, sizeof(unknown_type), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), SL_EINVAL);
    assert_non_null(strstr(err.msg, "unknown value type 10"));
    static const uint8_t name_past_end[] = {5, 'a', 'b'};
    n = wrap(name_past_end, sizeof(name_past_end), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), SL_EINVAL);
    static const uint8_t string_past_end[] = {1, 'a', 7, 0, 9, 'x'};
    n = wrap(string_past_end, sizeof(string_past_end), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), SL_EINVAL);
    static const uint8_t int_past_end[] = {1, 'a', 4, 0, 0};
    n = wrap(int_past_end, sizeof(int_past_end), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), SL_EINVAL);
    static const uint8_t empty_name[] = {0, 0};
    n = wrap(empty_name, sizeof(empty_name), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), SL_EINVAL);
    static const uint8_t ok[] = {1, 'a', 0, 1, 'b', 2, 0xff};
    n = wrap(ok, sizeof(ok), m);
    assert_int_equal(feed_all(m, n, 0, &err, NULL), 0);
}

static void test_too_many_headers(void **state)
{
    sl_evs_header_t h[SL_EVS_MAX_HEADERS + 1];
    uint8_t out[1024];
    size_t n;
    sl_err_t err;
    for (int i = 0; i <= SL_EVS_MAX_HEADERS; i++)
        h[i] = sl_evs_hdr_bool("h", 1);
    assert_int_equal(sl_evs_encode(h, SL_EVS_MAX_HEADERS, NULL, 0, out, sizeof(out), &n), 0);
    assert_int_equal(feed_all(out, n, 0, &err, NULL), 0);
    assert_int_equal(sl_evs_encode(h, SL_EVS_MAX_HEADERS + 1, NULL, 0, out, sizeof(out), &n), 0);
    assert_int_equal(feed_all(out, n, 0, &err, NULL), SL_EINVAL);
    assert_non_null(strstr(err.msg, "more than 32 headers"));
}

static void test_callback_stop_is_sticky(void **state)
{
    sl_buf_t b = {0};
    make_stream(&b);
    sl_evs_decoder_t d;
    collected_t c = {.stop_after = 2};
    sl_evs_decoder_init(&d, 0);
    assert_int_equal(sl_evs_decoder_feed(&d, b.data, b.len, collect, &c, NULL), 42);
    assert_int_equal(c.count, 2);
    assert_int_equal(sl_evs_decoder_feed(&d, b.data, b.len, collect, &c, NULL), 42);
    assert_int_equal(c.count, 2);
    assert_int_equal(sl_evs_decoder_finish(&d, NULL), 42);
    sl_evs_decoder_free(&d);
    sl_buf_free(&b);
}

static void test_encoder_rejects_invalid(void **state)
{
    uint8_t out[64];
    size_t n;
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    sl_evs_header_t h = sl_evs_hdr_string("", "x");
    assert_int_equal(sl_evs_encode(&h, 1, NULL, 0, out, sizeof(out), &n), SL_EINVAL);
    h = sl_evs_hdr_string(longname, "x");
    assert_int_equal(sl_evs_encode(&h, 1, NULL, 0, out, sizeof(out), &n), SL_EINVAL);
    h = sl_evs_hdr_int("s", SL_EVS_INT16, 40000);
    assert_int_equal(sl_evs_encode(&h, 1, NULL, 0, out, sizeof(out), &n), SL_EINVAL);
    h = sl_evs_hdr_int("b", SL_EVS_BYTE, 128);
    assert_int_equal(sl_evs_encode(&h, 1, NULL, 0, out, sizeof(out), &n), SL_EINVAL);
    h = sl_evs_hdr_int("x", 10, 0);
    assert_int_equal(sl_evs_encode(&h, 1, NULL, 0, out, sizeof(out), &n), SL_EINVAL);
    static char big[SL_EVS_MAX_VALUE_LEN + 2];
    memset(big, 'v', sizeof(big) - 1);
    h = sl_evs_hdr_string("big", big);
    assert_int_equal(sl_evs_encoded_size(&h, 1, 0), 0);
    h = sl_evs_hdr_string("ok", "value");
    assert_int_equal(sl_evs_encode(&h, 1, "p", 1, out, 10, &n), SL_ETOOBIG);
    assert_int_equal(sl_evs_encode(&h, 1, "p", 1, out, sizeof(out), &n), 0);
}

static void test_bedrock_exception_message(void **state)
{
    sl_buf_t b = {0};
    const char *body = "{\"message\":\"Too many requests, please wait before trying again.\"}";
    assert_int_equal(sl_evs_encode_exception(&b, SL_EVS_EX_THROTTLING, body, strlen(body)), 0);
    sl_evs_message_t m;
    size_t used;
    assert_int_equal(sl_evs_parse((const uint8_t *)b.data, b.len, 0, &m, &used, NULL), 1);
    assert_true(sl_evs_str_eq(m.exception_type, "throttlingException"));
    assert_true(sl_evs_str_eq(m.message_type, "exception"));
    assert_true(sl_evs_str_eq(m.content_type, "application/json"));
    assert_null(m.event_type.p);
    assert_int_equal(m.payload_len, strlen(body));
    sl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_check_value),          cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_round_trip_all_types),       cmocka_unit_test(test_decoder_every_split_point),
        cmocka_unit_test(test_decoder_byte_at_a_time),     cmocka_unit_test(test_decoder_split_message_keeps_headers),
        cmocka_unit_test(test_corrupted_prelude_crc),      cmocka_unit_test(test_corrupted_message_crc),
        cmocka_unit_test(test_truncated_stream),           cmocka_unit_test(test_absurd_lengths_rejected),
        cmocka_unit_test(test_malformed_headers_rejected), cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_callback_stop_is_sticky),    cmocka_unit_test(test_encoder_rejects_invalid),
        cmocka_unit_test(test_bedrock_exception_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
