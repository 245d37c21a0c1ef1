/*
 * buf.c - append-only byte buffer allocated from an h2o memory pool.
 *
 * Growing copies the contents into a new pool allocation twice as large; the
 * old block is released with the pool. Initial capacities are chosen by the
 * callers so that the common responses never grow.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mock_buf_init(mock_buf_t *buf, h2o_mem_pool_t *pool, size_t cap)
{
    if (cap < 64)
        cap = 64;
    buf->pool = pool;
    buf->base = h2o_mem_alloc_pool(pool, cap);
    buf->len = 0;
    buf->cap = cap;
}

char *mock_buf_reserve(mock_buf_t *buf, size_t n)
{
    if (buf->cap - buf->len < n) {
        size_t cap = buf->cap * 2;
        while (cap - buf->len < n)
            cap *= 2;
        char *base = h2o_mem_alloc_pool(buf->pool, cap);
        memcpy(base, buf->base, buf->len);
        buf->base = base;
        buf->cap = cap;
    }
    return buf->base + buf->len;
}

void mock_buf_append(mock_buf_t *buf, const char *s, size_t n)
{
    if (n == 0)
        return;
    memcpy(mock_buf_reserve(buf, n), s, n);
    buf->len += n;
}

void mock_buf_append_str(mock_buf_t *buf, const char *s)
{
    mock_buf_append(buf, s, strlen(s));
}

size_t mock_u64toa(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i != n; ++i)
        dst[i] = tmp[n - 1 - i];
    return n;
}

void mock_buf_append_u64(mock_buf_t *buf, uint64_t v)
{
    char *dst = mock_buf_reserve(buf, 20);
    buf->len += mock_u64toa(dst, v);
}

void mock_buf_append_i64(mock_buf_t *buf, int64_t v)
{
    if (v < 0) {
        mock_buf_append_lit(buf, "-");
        mock_buf_append_u64(buf, (uint64_t)0 - (uint64_t)v);
    } else {
        mock_buf_append_u64(buf, (uint64_t)v);
    }
}

void mock_buf_appendf(mock_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    char *dst = mock_buf_reserve(buf, 128);
    size_t room = buf->cap - buf->len;

    va_start(ap, fmt);
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        dst = mock_buf_reserve(buf, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(dst, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    buf->len += (size_t)n;
}

void mock_buf_append_json_chars(mock_buf_t *buf, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* worst case: every byte becomes \u00XX */
    char *dst = mock_buf_reserve(buf, n * 6);
    char *p = dst;

    for (size_t i = 0; i != n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"':
            *p++ = '"';
            break;
        case '\\':
            *p++ = '\\';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        default:
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
            break;
        }
    }
    buf->len += (size_t)(p - dst);
}

void mock_buf_append_json_str(mock_buf_t *buf, const char *s, size_t n)
{
    mock_buf_append_lit(buf, "\"");
    mock_buf_append_json_chars(buf, s, n);
    mock_buf_append_lit(buf, "\"");
}

h2o_iovec_t mock_escaped_copy(h2o_mem_pool_t *pool, const char *s, size_t n)
{
    mock_buf_t buf;

    mock_buf_init(&buf, pool, n + 16);
    mock_buf_append_json_chars(&buf, s, n);
    return h2o_iovec_init(buf.base, buf.len);
}
