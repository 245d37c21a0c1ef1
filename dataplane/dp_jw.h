/*
 * dp_jw.h - a JSON text writer over the request's memory pool, for
 * translators that build request and response bodies in another provider's
 * format. Growing reallocates within the pool (the old block is released
 * with the pool at the end of the request), so nothing outlives the request
 * and nothing needs freeing. Worker threads; not shared.
 */
#ifndef DP_JW_H
#define DP_JW_H

#include <stdint.h>

#include <h2o.h>

typedef struct dp_jw {
    h2o_mem_pool_t *pool;
    char *buf;
    size_t len, cap;
} dp_jw_t;

void dp_jw_init(dp_jw_t *w, h2o_mem_pool_t *pool, size_t initial_cap);
void dp_jw_raw(dp_jw_t *w, const char *s, size_t n);
#define dp_jw_lit(w, s) dp_jw_raw((w), (s), sizeof(s) - 1)
/* A JSON string literal (quotes included) of n raw bytes, escaped. */
void dp_jw_str(dp_jw_t *w, const char *s, size_t n);
/* The inside of a JSON string token copied verbatim: s must already be a
 * valid JSON string body (escapes intact, no quotes), e.g. a token's text. */
void dp_jw_str_verbatim(dp_jw_t *w, const char *s, size_t n);
void dp_jw_int(dp_jw_t *w, int64_t v);
/* The text so far (not NUL-terminated); valid until the next append. */
static inline h2o_iovec_t dp_jw_iov(const dp_jw_t *w)
{
    return h2o_iovec_init(w->buf, w->len);
}

#endif
