/* reqlog_test.c - request log lines, sampling and content opt-in
 * (dataplane/dp_reqlog.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_reqlog.h"
#include "dp_snapshot.h"
#include "sl_err.h"
#include "sl_json.h"

/* ---- helpers ------------------------------------------------------------- */

/* Parses line as JSON; returns the token array (caller frees). */
static sl_json_tok_t *parse(const char *line, size_t len)
{
    size_t cap = len / 2 + 2;
    sl_json_tok_t *t = malloc(cap * sizeof(*t));
    assert_non_null(t);
    int n = sl_json_parse(line, len, t, cap, NULL);
    assert_true(n >= 1);
    assert_int_equal(t[0].type, SL_JSON_OBJECT);
    return t;
}

/* The unescaped string value of member name, or NULL (null or absent);
 * caller frees. */
static char *str_field(const char *js, const sl_json_tok_t *t, const char *name)
{
    int v = sl_json_find(js, t, 0, name, strlen(name));
    if (v < 0 || t[v].type != SL_JSON_STRING)
        return NULL;
    size_t n = sl_json_str_len(js, &t[v]);
    char *s = malloc(n + 1);
    assert_int_equal(sl_json_str_copy(js, &t[v], s, n + 1), n);
    return s;
}

static int64_t int_field(const char *js, const sl_json_tok_t *t, const char *name)
{
    int v = sl_json_find(js, t, 0, name, strlen(name));
    int64_t x = -1;
    assert_true(v > 0);
    assert_int_equal(sl_json_int64(js, &t[v], &x), 0);
    return x;
}

static int type_of(const char *js, const sl_json_tok_t *t, const char *name)
{
    int v = sl_json_find(js, t, 0, name, strlen(name));
    return v < 0 ? 0 : t[v].type;
}

static dp_reqlog_rec_t base_rec(void)
{
    return (dp_reqlog_rec_t){
        .request_id = "0123456789abcdef0123456789abcdef",
        .method = h2o_iovec_init(H2O_STRLIT("POST")),
        .path = h2o_iovec_init(H2O_STRLIT("/v1/chat/completions")),
        .key_id = "vk_acme_prod",
        .tenant_id = "acme_corp",
        .requested_model = h2o_iovec_init(H2O_STRLIT("gpt-4o")),
        .requested_provider = "openai",
        .provider = "backup",
        .served_model = h2o_iovec_init(H2O_STRLIT("gpt-4o")),
        .stream = 1,
        .status = 200,
        .upstream_status = 200,
        .attempts = 2,
        .outcome = "failover",
        .input_tokens = 12,
        .cached_input_tokens = 4,
        .output_tokens = 30,
        .cost_nano = 330000,
        .total_ns = 250000000,
        .upstream_ns = 249000000,
        .ttft_ns = 80123456,
    };
}

/* ---- sampling and flags --------------------------------------------------- */

static void test_parse_rate(void **state)
{
    double r = -1;
    assert_int_equal(dp_reqlog_parse_rate("0", &r), 0);
    assert_true(r == 0.0);
    assert_int_equal(dp_reqlog_parse_rate("1", &r), 0);
    assert_true(r == 1.0);
    assert_int_equal(dp_reqlog_parse_rate("0.25", &r), 0);
    assert_true(r == 0.25);
    const char *bad[] = {"", "1.5", "-0.1", "abc", "0.5x", "nan", "inf", " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dp_reqlog_parse_rate(bad[i], &r), SL_EINVAL);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void test_sampling_rate_and_errors(void **state)
{
    uint64_t seed = 42;
    assert_int_equal(dp_reqlog_init(1, 0.1), 0);
    int kept = 0;
    for (int i = 0; i < 100000; i++)
        kept += dp_reqlog_sampled(splitmix(&seed), 0);
    assert_true(kept > 9500 && kept < 10500); /* 10000 +- 5.3 sd */
    for (int i = 0; i < 1000; i++)
        assert_true(dp_reqlog_sampled(splitmix(&seed), 1));

    assert_int_equal(dp_reqlog_init(1, 0.0), 0);
    for (int i = 0; i < 1000; i++) {
        assert_false(dp_reqlog_sampled(splitmix(&seed), 0));
        assert_true(dp_reqlog_sampled(splitmix(&seed), 1));
    }
    assert_int_equal(dp_reqlog_init(1, 1.0), 0);
    assert_true(dp_reqlog_sampled(UINT64_MAX, 0));
}

/* dp_reqlog_format's line is not NUL-terminated; the tests search it with
 * string functions, so they get a terminated copy. */
static size_t fmt(const dp_reqlog_rec_t *r, char **out)
{
    size_t n = dp_reqlog_format(r, out);
    if (*out != NULL) {
        char *t = realloc(*out, n + 1);
        assert_non_null(t);
        t[n] = '\0';
        *out = t;
    }
    return n;
}

/* ---- line format ----------------------------------------------------------- */

static void test_line_has_every_field_and_no_content(void **state)
{
    assert_int_equal(dp_reqlog_init(1, 1.0), 0);
    dp_reqlog_rec_t r = base_rec();
    char *line = NULL;
    size_t n = fmt(&r, &line);
    assert_true(n > 0);
    sl_json_tok_t *t = parse(line, n);
    char *s;
    assert_string_equal(s = str_field(line, t, "module"), "request");
    free(s);
    assert_string_equal(s = str_field(line, t, "request_id"), "0123456789abcdef0123456789abcdef");
    free(s);
    assert_string_equal(s = str_field(line, t, "requested_provider"), "openai");
    free(s);
    assert_string_equal(s = str_field(line, t, "provider"), "backup");
    free(s);
    assert_string_equal(s = str_field(line, t, "cost_usd"), "0.00033");
    free(s);
    assert_string_equal(s = str_field(line, t, "outcome"), "failover");
    free(s);
    assert_non_null(s = str_field(line, t, "ts"));
    assert_int_equal(strlen(s), 24); /* 2026-11-28T01:02:03.456Z */
    free(s);
    assert_int_equal(int_field(line, t, "attempts"), 2);
    assert_int_equal(int_field(line, t, "cached_input_tokens"), 4);
    assert_int_equal(int_field(line, t, "overhead_us"), 1000);
    assert_int_equal(int_field(line, t, "upstream_ms"), 249);
    assert_int_equal(int_field(line, t, "duration_ms"), 250);
    assert_int_equal(type_of(line, t, "ttft_ms"), SL_JSON_NUMBER);
    assert_non_null(strstr(line, "\"ttft_ms\":80.123,"));
    assert_int_equal(type_of(line, t, "error"), SL_JSON_NULL);
    assert_int_equal(type_of(line, t, "stream"), SL_JSON_TRUE);
    assert_int_equal(type_of(line, t, "prompt"), 0);
    assert_int_equal(type_of(line, t, "completion"), 0);
    assert_int_equal(type_of(line, t, "sample_rate"), 0);
    free(t);
    free(line);
}

static void test_unauthenticated_request_has_nulls(void **state)
{
    dp_reqlog_rec_t r = {.request_id = "ffffffffffffffffffffffffffffffff",
                         .method = h2o_iovec_init(H2O_STRLIT("GET")),
                         .path = h2o_iovec_init(H2O_STRLIT("/nope")),
                         .status = 404,
                         .outcome = "rejected",
                         .error = "unknown_url",
                         .total_ns = 1000};
    char *line = NULL;
    size_t n = fmt(&r, &line);
    sl_json_tok_t *t = parse(line, n);
    const char *nulls[] = {"key_id", "tenant_id", "model", "requested_provider", "provider", "served_model", "ttft_ms"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        assert_int_equal(type_of(line, t, nulls[i]), SL_JSON_NULL);
    assert_int_equal(int_field(line, t, "status"), 404);
    free(t);
    free(line);
}

static void test_hostile_strings_stay_one_json_line(void **state)
{
    dp_reqlog_rec_t r = base_rec();
    static const char err[] = "bad \"quote\" \\ back\nnew\x01 \xff\xfe half \xc3";
    r.error = err;
    r.requested_model = h2o_iovec_init("m\0x\"", 4);
    char big[600];
    memset(big, 'a', sizeof(big));
    r.path = h2o_iovec_init(big, sizeof(big));
    char *line = NULL;
    size_t n = fmt(&r, &line);
    assert_null(memchr(line, '\n', n));
    sl_json_tok_t *t = parse(line, n); /* valid JSON, valid UTF-8 */
    char *s = str_field(line, t, "error");
    assert_non_null(strstr(s, "\"quote\""));
    assert_non_null(strstr(s, "\xef\xbf\xbd")); /* U+FFFD for the stray bytes */
    free(s);
    s = str_field(line, t, "path");
    assert_int_equal(strlen(s), 200); /* names are cut at 200 bytes */
    free(s);
    free(t);
    free(line);
}

static void test_sample_rate_is_written_when_sampling(void **state)
{
    assert_int_equal(dp_reqlog_init(1, 0.05), 0);
    dp_reqlog_rec_t r = base_rec();
    char *line = NULL;
    fmt(&r, &line);
    assert_non_null(strstr(line, ",\"sample_rate\":0.05"));
    free(line);
    assert_int_equal(dp_reqlog_init(1, 1.0), 0);
}

/* ---- content ---------------------------------------------------------------- */

static void test_completion_text_of_each_shape(void **state)
{
    char out[64];
    int cut = -1;
    const char *openai = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                         "\"content\":\"mock word1 \\\"q\\\"\"}}]}";
    size_t n = dp_reqlog_completion_text(openai, strlen(openai), out, sizeof(out), &cut);
    assert_int_equal(cut, 0);
    assert_int_equal(n, strlen("mock word1 \"q\""));
    assert_memory_equal(out, "mock word1 \"q\"", n);

    const char *sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
                      "data: {\"choices\":[{\"delta\":{\"content\":\"mock\"}}]}\r\n\r\n"
                      "data: {\"choices\":[{\"delta\":{\"content\":\" word1\"}}]}\n\n"
                      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
                      "data: [DONE]\n\n";
    n = dp_reqlog_completion_text(sse, strlen(sse), out, sizeof(out), &cut);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "mock word1", 10);

    const char *anth = "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"hi \"},"
                       "{\"type\":\"tool_use\",\"id\":\"t\"},{\"type\":\"text\",\"text\":\"there\"}]}";
    n = dp_reqlog_completion_text(anth, strlen(anth), out, sizeof(out), &cut);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "hi there", 8);

    const char *anth_sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n"
                           "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                           "\"delta\":{\"type\":\"text_delta\",\"text\":\"mock\"}}\n\n"
                           "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                           "\"end_turn\"}}\n\n";
    n = dp_reqlog_completion_text(anth_sse, strlen(anth_sse), out, sizeof(out), &cut);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "mock", 4);

    /* cut on a character boundary: 2-byte characters into 7 bytes give 6 */
    const char *wide = "{\"choices\":[{\"message\":{\"content\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}}]}";
    n = dp_reqlog_completion_text(wide, strlen(wide), out, 7, &cut);
    assert_int_equal(cut, 1);
    assert_int_equal(n, 6);

    /* garbage gives nothing, not a crash */
    n = dp_reqlog_completion_text("data: {nope\n\n{", 14, out, sizeof(out), &cut);
    assert_int_equal(n, 0);
}

static void test_content_fields_when_opted_in(void **state)
{
    assert_int_equal(dp_reqlog_init(1, 1.0), 0);
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"secret plan\"}]}";
    sl_json_tok_t toks[32];
    int nt = sl_json_parse(body, strlen(body), toks, 32, NULL);
    assert_true(nt > 0);
    dp_chat_req_t chat = {.body = body, .len = strlen(body), .toks = toks, .ntoks = nt};
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    dp_reqlog_capture_t *cap = NULL;
    const char *a = "data: {\"choices\":[{\"delta\":{\"content\":\"mo\"}}]}\n\ndata: {\"choi";
    const char *b = "ces\":[{\"delta\":{\"content\":\"ck\"}}]}\n\ndata: [DONE]\n\n";
    dp_reqlog_capture(&cap, &pool, a, strlen(a));
    dp_reqlog_capture(&cap, &pool, b, strlen(b));
    dp_reqlog_rec_t r = base_rec();
    r.chat = &chat;
    r.capture = cap;
    char *line = NULL;
    size_t n = fmt(&r, &line);
    sl_json_tok_t *t = parse(line, n);
    char *s = str_field(line, t, "prompt");
    assert_string_equal(s, "[{\"role\":\"user\",\"content\":\"secret plan\"}]");
    free(s);
    s = str_field(line, t, "completion");
    assert_string_equal(s, "mock");
    free(s);
    assert_int_equal(type_of(line, t, "prompt_truncated"), SL_JSON_FALSE);
    assert_int_equal(type_of(line, t, "completion_truncated"), SL_JSON_FALSE);
    free(t);
    free(line);
    h2o_mem_clear_pool(&pool);
}

static void test_capture_is_bounded(void **state)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    dp_reqlog_capture_t *cap = NULL;
    char chunk[10000];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 40; i++)
        dp_reqlog_capture(&cap, &pool, chunk, sizeof(chunk));
    assert_int_equal(cap->len, DP_REQLOG_CAPTURE_MAX);
    assert_int_equal(cap->truncated, 1);
    h2o_mem_clear_pool(&pool);
}

/* A full snapshot with two keys, one opting in to content logging. */
static uint8_t pepper[32];
static void apply_snapshot(int64_t version, const char *md_a, const char *md_b)
{
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = version;
    m.full = 1;
    m.key_pepper.data = pepper;
    m.key_pepper.len = 32;
    Sluice__Config__V1__VirtualKey kv[2], *kp[2];
    uint8_t hashes[2][32];
    const char *md[2] = {md_a, md_b};
    for (int i = 0; i < 2; i++) {
        sluice__config__v1__virtual_key__init(&kv[i]);
        kv[i].id = i == 0 ? "vk_a" : "vk_b";
        kv[i].tenant_id = "t";
        memset(hashes[i], i + 1, 32);
        kv[i].key_hash.data = hashes[i];
        kv[i].key_hash.len = 32;
        kv[i].metadata_json = (char *)md[i];
        kp[i] = &kv[i];
    }
    m.keys = kp;
    m.n_keys = 2;
    size_t len = sluice__sync__v1__snapshot__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    sluice__sync__v1__snapshot__pack(&m, buf);
    Sluice__Sync__V1__Snapshot *u = sluice__sync__v1__snapshot__unpack(NULL, len, buf);
    free(buf);
    assert_int_equal(dp_snapshot_apply(u), 0);
}

static const dp_key_t *key(const dp_snapshot_t *s, int fill)
{
    uint8_t h[32];
    memset(h, fill, 32);
    return dp_snapshot_find_key(s, h);
}

static void test_content_opt_in_follows_the_snapshot(void **state)
{
    assert_int_equal(dp_snapshot_init(1), 0);
    assert_int_equal(dp_reqlog_init(1, 1.0), 0);
    apply_snapshot(1, "{\"log_content\": true, \"billing_code\": \"X\"}", "{\"log_content\": false}");
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_true(dp_reqlog_content_enabled(0, s, key(s, 1)));
    assert_false(dp_reqlog_content_enabled(0, s, key(s, 2)));
    assert_true(dp_reqlog_content_enabled(0, s, key(s, 1)));  /* cached */
    assert_false(dp_reqlog_content_enabled(7, s, key(s, 1))); /* no such worker */
    dp_snapshot_release(s);
    /* the next version turns it off for a and on for b */
    apply_snapshot(2, "{}", "{\"nested\": {\"x\": 1}, \"log_content\": true}");
    dp_snapshot_quiescent(0);
    s = dp_snapshot_acquire();
    assert_false(dp_reqlog_content_enabled(0, s, key(s, 1)));
    assert_true(dp_reqlog_content_enabled(0, s, key(s, 2)));
    dp_snapshot_release(s);
    apply_snapshot(3, "{\"log_content\": \"yes\"}", "not json log_content");
    dp_snapshot_quiescent(0);
    s = dp_snapshot_acquire();
    assert_false(dp_reqlog_content_enabled(0, s, key(s, 1))); /* only the JSON value true counts */
    assert_false(dp_reqlog_content_enabled(0, s, key(s, 2)));
    dp_snapshot_release(s);
    dp_snapshot_quiescent(0);
    dp_snapshot_reclaim();
    dp_snapshot_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rate),
        cmocka_unit_test(test_sampling_rate_and_errors),
        cmocka_unit_test(test_line_has_every_field_and_no_content),
        cmocka_unit_test(test_unauthenticated_request_has_nulls),
        cmocka_unit_test(test_hostile_strings_stay_one_json_line),
        cmocka_unit_test(test_sample_rate_is_written_when_sampling),
        cmocka_unit_test(test_completion_text_of_each_shape),
        cmocka_unit_test(test_content_fields_when_opted_in),
        cmocka_unit_test(test_capture_is_bounded),
        cmocka_unit_test(test_content_opt_in_follows_the_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
