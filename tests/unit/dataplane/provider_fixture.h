/*
 * provider_fixture.h - the setup the provider translator tests share
 * (anthropic, bedrock, openai, vertex; gauth for its pool): a request pool
 * made fresh for every test, client chat requests tokenized the way the
 * request path tokenizes them, a translation context, error mapping
 * checks, and the xorshift generator of the bounded-mutation tests.
 *
 * Include it from one test file, before the headers of what it tests: it
 * brings cmocka and the headers cmocka needs first. Everything here is
 * static; helpers a test does not use cost nothing.
 */
#ifndef PROVIDER_FIXTURE_H
#define PROVIDER_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_provider.h"
#include "sl_err.h"
#include "sl_json.h"

/* The request's memory pool: made by setup(), cleared by teardown(). */
static h2o_mem_pool_t pool;

static inline int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static inline int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

/* Whether s[0..n) is one valid JSON value. */
static inline int valid_json(const char *s, size_t n)
{
    return sl_json_parse(s, n, NULL, 0, NULL) > 0;
}

/* v as a NUL-terminated string in pool memory. */
static inline char *iovdup(h2o_iovec_t v)
{
    char *s = h2o_mem_alloc_pool(&pool, v.len + 1);
    if (v.len != 0)
        memcpy(s, v.base, v.len);
    s[v.len] = '\0';
    return s;
}

/* A client chat request as the request path hands it to translators:
 * tokenized (tokens in pool memory), with model, stream and max_tokens
 * (max_completion_tokens first) read from body, which must outlive *in.
 * Returns 0, or -1 when body is not valid JSON. */
static inline int chat_req_parse(const char *body, dp_chat_req_t *in)
{
    size_t len = strlen(body), cap = len / 2 + 2;
    sl_json_tok_t *toks = h2o_mem_alloc_pool(&pool, cap * sizeof(*toks));
    *in = (dp_chat_req_t){.body = body, .len = len, .toks = toks, .max_tokens = -1};
    in->ntoks = sl_json_parse(body, len, toks, cap, NULL);
    if (in->ntoks < 1)
        return -1;
    in->model_tok = sl_json_find(body, toks, 0, "model", 5);
    int s = sl_json_find(body, toks, 0, "stream", 6);
    in->stream = s > 0 && toks[s].type == SL_JSON_TRUE;
    int mt = sl_json_find(body, toks, 0, "max_completion_tokens", 21);
    if (mt < 0)
        mt = sl_json_find(body, toks, 0, "max_tokens", 10);
    int64_t v;
    if (mt > 0 && sl_json_int64(body, &toks[mt], &v) == 0 && v >= 0)
        in->max_tokens = v;
    return 0;
}

/* chat_req_parse() of a body that must be valid JSON. */
static inline dp_chat_req_t chat_req(const char *body)
{
    dp_chat_req_t in;
    assert_int_equal(chat_req_parse(body, &in), 0);
    return in;
}

/* A translation context as the request path makes one (id and model are
 * string literals). */
static inline dp_xlate_ctx_t xlate_ctx(const char *id, const char *model, int include_usage)
{
    dp_xlate_ctx_t c = {.id = h2o_iovec_init(id, strlen(id)),
                        .model = h2o_iovec_init(model, strlen(model)),
                        .created = 1700000000,
                        .include_usage = include_usage};
    return c;
}

/* What ops->map_error answers to an upstream status with body (NULL: no
 * body). The answer starts out as garbage: map_error must set every field
 * it promises. */
static inline dp_upstream_error_t map_upstream_error(const dp_provider_ops_t *ops, int status, const char *body)
{
    dp_upstream_error_t e;
    memset(&e, 0xff, sizeof(e));
    ops->map_error(status, body, body != NULL ? strlen(body) : 0, &e);
    return e;
}

/* Checks that map_error wraps the error (no relayed body) with these
 * status, type, code (NULL: null) and message. */
static inline void check_mapped(const dp_provider_ops_t *ops, int status, const char *body, int want_status,
                                const char *want_type, const char *want_code, const char *want_message)
{
    dp_upstream_error_t e = map_upstream_error(ops, status, body);
    assert_int_equal(e.pass_body, 0);
    assert_int_equal(e.status, want_status);
    assert_string_equal(e.type, want_type);
    if (want_code == NULL)
        assert_null(e.code);
    else
        assert_string_equal(e.code, want_code);
    assert_string_equal(e.message, want_message);
}

/* The next number of the xorshift64 sequence in *state (never 0). */
static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

#endif
