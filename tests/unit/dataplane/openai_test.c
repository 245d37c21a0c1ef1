/* openai_test.c - the OpenAI translator (dataplane/providers/openai.c):
 * request splicing (model rewrite, stream_options injection), headers,
 * usage extraction from bodies and stream events, error mapping; plus the
 * error shape (dp_error.c) and pricing (dp_price.c) it relies on. */
#include "provider_fixture.h"

#include "dp_error.h"
#include "dp_price.h"

static dp_provider_t provider(const char *host, uint16_t port, int ssl, const char *prefix)
{
    dp_provider_t p = {.name = "openai", .kind = "openai", .host = host, .port = port, .is_ssl = ssl,
                       .path_prefix = prefix};
    /* what the snapshot derives from the base URL */
    static char auth[4][300];
    static int next;
    char *a = auth[next++ % 4];
    int v6 = strchr(host, ':') != NULL;
    if (port == (ssl ? 443 : 80))
        snprintf(a, 300, v6 ? "[%s]" : "%s", host);
    else
        snprintf(a, 300, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    p.authority = a;
    p.authority_len = strlen(a);
    return p;
}

static const dp_credential_t cred = {.id = "primary", .secret = "sk-upstream", .secret_len = 11, .weight = 1};

/* Builds the upstream request for body and returns head and body as strings
 * (pool memory). */
static void build(const char *body, int stream, const char *served, const h2o_headers_t *hdrs, char **head,
                  char **outbody)
{
    dp_chat_req_t in = chat_req(body);
    in.stream = stream;
    dp_provider_t p = provider("api.openai.com", 443, 1, "/v1");
    h2o_headers_t empty = {NULL};
    dp_upstream_req_t out = {0};
    const dp_provider_ops_t *ops = dp_provider_ops_for("openai");
    assert_non_null(ops);
    assert_int_equal(ops->build_chat(&pool, &p, &cred, h2o_iovec_init(served, strlen(served)), &in,
                                     hdrs != NULL ? hdrs : &empty, h2o_iovec_init(H2O_STRLIT("rid")), &out),
                     0);
    assert_true(out.nbufs >= 2 && out.nbufs <= DP_UPSTREAM_MAX_BUFS);
    *head = iovdup(out.bufs[0]);
    size_t n = 0;
    for (size_t i = 1; i < out.nbufs; i++)
        n += out.bufs[i].len;
    assert_int_equal(n, out.body_len);
    *outbody = h2o_mem_alloc_pool(&pool, n + 1);
    n = 0;
    for (size_t i = 1; i < out.nbufs; i++) {
        memcpy(*outbody + n, out.bufs[i].base, out.bufs[i].len);
        n += out.bufs[i].len;
    }
    (*outbody)[n] = '\0';
    char cl[64];
    snprintf(cl, sizeof(cl), "content-length: %zu\r\n\r\n", n);
    assert_non_null(strstr(*head, cl));
    /* the result is valid JSON */
    assert_true(valid_json(*outbody, n));
}

static void check_body(const char *body, int stream, const char *served, const char *want)
{
    char *head, *out;
    build(body, stream, served, NULL, &head, &out);
    if (strcmp(out, want) != 0)
        fail_msg("body %s\n got  %s\n want %s", body, out, want);
}

static void test_non_stream_forwarded_verbatim(void **state)
{
    const char *b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5}";
    check_body(b, 0, "gpt-4o", b);
}

static void test_model_prefix_rewritten(void **state)
{
    check_body("{\"model\":\"openai/gpt-4o\",\"messages\":[]}", 0, "gpt-4o", "{\"model\":\"gpt-4o\",\"messages\":[]}");
    /* escaped model names are normalized */
    check_body("{\"messages\":[],\"model\":\"gpt\\u002d4o\"}", 0, "gpt-4o", "{\"messages\":[],\"model\":\"gpt-4o\"}");
}

static void test_stream_options_injection(void **state)
{
    check_body("{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[]}", 1, "gpt-4o",
               "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[],\"stream_options\":{\"include_usage\":true}}");
    check_body("{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[] \n}", 1, "gpt-4o",
               "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[] \n,\"stream_options\":{\"include_usage\":true}}");
    check_body("{\"stream_options\":{},\"model\":\"gpt-4o\",\"messages\":[]}", 1, "gpt-4o",
               "{\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\",\"messages\":[]}");
    check_body("{\"stream_options\":null,\"model\":\"gpt-4o\",\"messages\":[]}", 1, "gpt-4o",
               "{\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\",\"messages\":[]}");
    check_body("{\"model\":\"gpt-4o\",\"messages\":[],\"stream_options\":{\"include_usage\":false}}", 1, "gpt-4o",
               "{\"model\":\"gpt-4o\",\"messages\":[],\"stream_options\":{\"include_usage\":true}}");
    check_body("{\"model\":\"gpt-4o\",\"messages\":[],\"stream_options\":{\"x\":1}}", 1, "gpt-4o",
               "{\"model\":\"gpt-4o\",\"messages\":[],\"stream_options\":{\"include_usage\":true,\"x\":1}}");
    const char *already = "{\"model\":\"gpt-4o\",\"messages\":[],\"stream_options\":{\"include_usage\":true}}";
    check_body(already, 1, "gpt-4o", already);
    /* both splices in one body, in either order */
    check_body("{\"model\":\"openai/gpt-4o\",\"stream_options\":{\"include_usage\":false},\"messages\":[]}", 1,
               "gpt-4o", "{\"model\":\"gpt-4o\",\"stream_options\":{\"include_usage\":true},\"messages\":[]}");
    check_body("{\"stream_options\":{\"include_usage\":0},\"model\":\"openai/gpt-4o\",\"messages\":[]}", 1, "gpt-4o",
               "{\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\",\"messages\":[]}");
}

static void test_request_head(void **state)
{
    h2o_headers_t hdrs = {NULL};
    h2o_add_header(&pool, &hdrs, H2O_TOKEN_AUTHORIZATION, NULL, H2O_STRLIT("Bearer sk-sluice-client"));
    h2o_add_header(&pool, &hdrs, H2O_TOKEN_CONNECTION, NULL, H2O_STRLIT("keep-alive"));
    h2o_add_header(&pool, &hdrs, H2O_TOKEN_ACCEPT_ENCODING, NULL, H2O_STRLIT("gzip"));
    h2o_add_header(&pool, &hdrs, H2O_TOKEN_USER_AGENT, NULL, H2O_STRLIT("OpenAI/Python 1.0"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("x-api-key"), 0, NULL, H2O_STRLIT("sk-sluice-client"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("x-stainless-lang"), 0, NULL, H2O_STRLIT("python"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("openai-organization"), 0, NULL, H2O_STRLIT("org-x"));
    char *head, *body;
    build("{\"model\":\"gpt-4o\",\"messages\":[],\"stream\":true}", 1, "gpt-4o", &hdrs, &head, &body);
    const char *start = "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\n";
    assert_true(strncmp(head, start, strlen(start)) == 0);
    assert_non_null(strstr(head, "\r\nauthorization: Bearer sk-upstream\r\n"));
    assert_non_null(strstr(head, "\r\naccept: text/event-stream\r\n"));
    assert_non_null(strstr(head, "\r\nuser-agent: OpenAI/Python 1.0\r\n"));
    assert_non_null(strstr(head, "\r\nx-stainless-lang: python\r\n"));
    assert_non_null(strstr(head, "\r\nx-request-id: rid\r\n"));
    assert_null(strstr(head, "sk-sluice-client"));
    assert_null(strstr(head, "gzip"));
    assert_null(strstr(head, "keep-alive"));
    assert_null(strstr(head, "org-x"));
}

static void test_non_default_port_and_azure(void **state)
{
    static sl_json_tok_t toks[32];
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[]}";
    dp_chat_req_t in = {.body = body, .len = strlen(body), .toks = toks};
    in.ntoks = sl_json_parse(body, in.len, toks, 32, NULL);
    in.model_tok = sl_json_find(body, toks, 0, "model", 5);
    dp_provider_t p = provider("127.0.0.1", 8080, 0, "");
    h2o_headers_t empty = {NULL};
    dp_upstream_req_t out = {0};
    assert_int_equal(dp_provider_ops_for("openai_compatible")
                         ->build_chat(&pool, &p, &cred, h2o_iovec_init(H2O_STRLIT("gpt-4o")), &in, &empty,
                                      h2o_iovec_init(H2O_STRLIT("rid")), &out),
                     0);
    const char *start = "POST /chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n";
    assert_true(strncmp(out.bufs[0].base, start, strlen(start)) == 0);

    dp_provider_t az = provider("res.openai.azure.com", 443, 1, "");
    memset(&out, 0, sizeof(out));
    assert_int_equal(dp_provider_ops_for("azure_openai")
                         ->build_chat(&pool, &az, &cred, h2o_iovec_init(H2O_STRLIT("my-deploy")), &in, &empty,
                                      h2o_iovec_init(H2O_STRLIT("rid")), &out),
                     0);
    assert_true(strncmp(out.bufs[0].base, "POST /openai/deployments/my-deploy/chat/completions?api-version=", 64) ==
                0);
    assert_non_null(memmem(out.bufs[0].base, out.bufs[0].len, "\r\napi-key: sk-upstream\r\n", 24));
    /* deployment names cannot smuggle a path */
    assert_int_equal(dp_provider_ops_for("azure_openai")
                         ->build_chat(&pool, &az, &cred, h2o_iovec_init(H2O_STRLIT("../x")), &in, &empty,
                                      h2o_iovec_init(H2O_STRLIT("rid")), &out),
                     SL_EINVAL);
    /* other kinds have translators of their own */
    assert_false(dp_provider_ops_for("anthropic")->openai_format);
    assert_null(dp_provider_ops_for("nope"));
}

static void test_usage_from_body(void **state)
{
    const dp_provider_ops_t *ops = dp_provider_ops_for("openai");
    const char *b = "{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":34,"
                    "\"total_tokens\":1234,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}";
    dp_tokens_t t = {0};
    assert_int_equal(ops->parse_usage(&pool, b, strlen(b), &t), 0);
    assert_true(t.seen);
    assert_int_equal(t.input, 1200);
    assert_int_equal(t.cached_input, 1024);
    assert_int_equal(t.output, 34);

    dp_tokens_t none = {0};
    assert_int_equal(ops->parse_usage(&pool, "{\"id\":\"x\"}", 10, &none), 0);
    assert_false(none.seen);
    assert_int_equal(ops->parse_usage(&pool, "{\"id\":", 6, &none), SL_EINVAL);

    /* a big body goes through the pool-allocated token array */
    size_t n = 200000;
    char *big = malloc(n + 200);
    size_t k = (size_t)sprintf(big, "{\"choices\":[");
    while (k < n)
        k += (size_t)sprintf(big + k, "1,");
    k += (size_t)sprintf(big + k, "1],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}");
    dp_tokens_t bt = {0};
    assert_int_equal(ops->parse_usage(&pool, big, k, &bt), 0);
    assert_int_equal(bt.input, 5);
    assert_int_equal(bt.output, 6);
    free(big);
}

static void test_stream_events(void **state)
{
    const dp_provider_ops_t *ops = dp_provider_ops_for("openai");
    dp_tokens_t t = {0};
    const char *content = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}";
    assert_int_equal(ops->parse_event(&pool, content, strlen(content), &t), DP_EV_CONTENT);
    assert_false(t.seen);
    const char *role = "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}";
    assert_int_equal(ops->parse_event(&pool, role, strlen(role), &t), 0);
    const char *tool = "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}";
    assert_int_equal(ops->parse_event(&pool, tool, strlen(tool), &t), DP_EV_CONTENT);
    const char *usage = "{\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":16,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":4}}}";
    assert_int_equal(ops->parse_event(&pool, usage, strlen(usage), &t), DP_EV_USAGE);
    assert_true(t.seen);
    assert_int_equal(t.input, 10);
    assert_int_equal(t.cached_input, 4);
    assert_int_equal(t.output, 16);
    assert_int_equal(ops->parse_event(&pool, "[DONE]", 6, &t), DP_EV_DONE);
    const char *err = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}";
    assert_int_equal(ops->parse_event(&pool, err, strlen(err), &t), DP_EV_ERROR);
    assert_int_equal(ops->parse_event(&pool, "not json", 8, &t), 0);
}

static void test_error_mapping(void **state)
{
    const dp_provider_ops_t *ops = dp_provider_ops_for("openai");
    dp_upstream_error_t ue;
    const char *shaped = "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
    ops->map_error(400, shaped, strlen(shaped), &ue);
    assert_int_equal(ue.status, 400);
    assert_true(ue.pass_body);
    ops->map_error(503, "<html>oops</html>", 17, &ue);
    assert_int_equal(ue.status, 503);
    assert_false(ue.pass_body);
    assert_string_equal(ue.type, "api_error");
    ops->map_error(429, "rate limited", 12, &ue);
    assert_int_equal(ue.status, 429);
    assert_string_equal(ue.code, "rate_limit_exceeded");
    /* the provider refusing our credential is not the client's 401 */
    ops->map_error(401, shaped, strlen(shaped), &ue);
    assert_int_equal(ue.status, 502);
    assert_false(ue.pass_body);
    assert_string_equal(ue.code, "upstream_auth_failed");
}

static void test_error_shape(void **state)
{
    dp_error_t e = {.status = 401, .type = "invalid_request_error", .code = "invalid_api_key",
                    .message = "bad \"key\"\n"};
    h2o_iovec_t j = dp_error_json(&pool, &e);
    const char *want = "{\"error\":{\"message\":\"bad \\\"key\\\"\\n\",\"type\":\"invalid_request_error\","
                       "\"param\":null,\"code\":\"invalid_api_key\"}}\n";
    assert_int_equal(j.len, strlen(want));
    assert_memory_equal(j.base, want, j.len);
    dp_error_t e2 = {.status = 400, .type = "invalid_request_error", .param = "model", .message = "x"};
    j = dp_error_json(&pool, &e2);
    assert_true(dp_error_is_openai_shaped(j.base, j.len - 1));
    assert_non_null(memmem(j.base, j.len, "\"param\":\"model\",\"code\":null", 27));
    assert_false(dp_error_is_openai_shaped("{\"error\":\"x\"}", 13));
    assert_false(dp_error_is_openai_shaped("[]", 2));
    char buf[16];
    assert_int_equal(dp_json_escape(buf, "a\x01", 2), 9);
    assert_memory_equal(buf, "\"a\\u0001\"", 9);
}

static void test_pricing(void **state)
{
    dp_model_t m = {.input_micro_per_mtok = 2500000, .output_micro_per_mtok = 10000000,
                    .cached_input_micro_per_mtok = 1250000};
    dp_tokens_t t = {.input = 1000, .cached_input = 400, .output = 100};
    /* 600 x 2.5 + 400 x 1.25 + 100 x 10 USD per Mtok = 1500 + 500 + 1000 micro-USD */
    assert_int_equal(dp_price_cost(&m, &t), 3000000);
    m.cached_input_micro_per_mtok = 0; /* cached falls back to the input price */
    assert_int_equal(dp_price_cost(&m, &t), 3500000);
    assert_int_equal(dp_price_cost(NULL, &t), 0);
    dp_tokens_t odd = {.input = 10, .cached_input = 50, .output = 0}; /* cached > input: clamp */
    assert_int_equal(dp_price_cost(&m, &odd), 125000);
    dp_tokens_t huge = {.input = INT64_MAX, .output = INT64_MAX};
    assert_int_equal(dp_price_cost(&m, &huge), INT64_MAX);
    assert_int_equal(dp_price_estimate(&m, 1000, 1000), 12500000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_non_stream_forwarded_verbatim), cmocka_unit_test(test_model_prefix_rewritten),
        cmocka_unit_test(test_stream_options_injection),      cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_non_default_port_and_azure),    cmocka_unit_test(test_usage_from_body),
        cmocka_unit_test(test_stream_events),                 cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_error_shape),                   cmocka_unit_test(test_pricing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
