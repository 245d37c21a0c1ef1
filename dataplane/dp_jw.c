/* dp_jw.c - JSON text writer over an h2o memory pool. */
#include "dp_jw.h"

#include <stdio.h>
#include <string.h>

void dp_jw_init(dp_jw_t *w, h2o_mem_pool_t *pool, size_t initial_cap)
{
    w->pool = pool;
    w->cap = initial_cap < 64 ? 64 : initial_cap;
    w->buf = h2o_mem_alloc_pool(pool, w->cap);
    w->len = 0;
}

static void reserve(dp_jw_t *w, size_t extra)
{
    if (w->len + extra <= w->cap)
        return;
    size_t cap = w->cap * 2;
    while (cap < w->len + extra)
        cap *= 2;
    char *nb = h2o_mem_alloc_pool(w->pool, cap);
    memcpy(nb, w->buf, w->len);
    w->buf = nb;
    w->cap = cap;
}

void dp_jw_raw(dp_jw_t *w, const char *s, size_t n)
{
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void dp_jw_str(dp_jw_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    reserve(w, n + 2);
    w->buf[w->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            reserve(w, 2);
            w->buf[w->len++] = (char)c;
            continue;
        }
        reserve(w, 7);
        w->buf[w->len++] = '\\';
        switch (c) {
        case '"': w->buf[w->len++] = '"'; break;
        case '\\': w->buf[w->len++] = '\\'; break;
        case '\n': w->buf[w->len++] = 'n'; break;
        case '\r': w->buf[w->len++] = 'r'; break;
        case '\t': w->buf[w->len++] = 't'; break;
        case '\b': w->buf[w->len++] = 'b'; break;
        case '\f': w->buf[w->len++] = 'f'; break;
        default:
            w->buf[w->len++] = 'u';
            w->buf[w->len++] = '0';
            w->buf[w->len++] = '0';
            w->buf[w->len++] = hex[c >> 4];
            w->buf[w->len++] = hex[c & 15];
        }
    }
    reserve(w, 1);
    w->buf[w->len++] = '"';
}

void dp_jw_str_verbatim(dp_jw_t *w, const char *s, size_t n)
{
    reserve(w, n + 2);
    w->buf[w->len++] = '"';
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len++] = '"';
}

void dp_jw_int(dp_jw_t *w, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    dp_jw_raw(w, tmp, (size_t)n);
}
