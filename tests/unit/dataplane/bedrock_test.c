/* bedrock_test.c - the Amazon Bedrock translator (dataplane/providers/
 * bedrock.c): OpenAI chat requests to Converse bodies, signed heads that
 * verify as AWS verifies them, Converse responses and ConverseStream event
 * sequences back to OpenAI, error mapping, InvokeModel embeddings, and
 * malformed input refused without harm. The Bedrock sides are written from
 * the Converse / ConverseStream API reference. */
#include "provider_fixture.h"

#include <time.h>

#include "bedrock.h"
#include "sl_sigv4.h"

#define AKID "AKIDEXAMPLE0000TEST1"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* ---- fixtures ------------------------------------------------------------------ */

static Sluice__Config__V1__Provider__ParamsEntry region_entry = SLUICE__CONFIG__V1__PROVIDER__PARAMS_ENTRY__INIT;
static Sluice__Config__V1__Provider__ParamsEntry *region_entries[] = {&region_entry};
static Sluice__Config__V1__Provider prov_pb = SLUICE__CONFIG__V1__PROVIDER__INIT;

static dp_provider_t provider(const char *region)
{
    region_entry.key = "region";
    region_entry.value = (char *)region;
    prov_pb.n_params = region != NULL ? 1 : 0;
    prov_pb.params = region_entries;
    dp_provider_t p = {.name = "bedrock",
                       .kind = "bedrock",
                       .host = "bedrock-runtime.us-east-1.amazonaws.com",
                       .port = 443,
                       .is_ssl = 1,
                       .path_prefix = "",
                       .authority = "bedrock-runtime.us-east-1.amazonaws.com",
                       .authority_len = 39,
                       .pb = &prov_pb};
    return p;
}

static dp_credential_t credential(const char *secret)
{
    dp_credential_t c = {.id = "aws", .secret = secret, .secret_len = strlen(secret), .weight = 1};
    return c;
}

static const char *const plain_secret = "{\"access_key_id\":\"" AKID "\",\"secret_access_key\":\"" SECRET "\"}";

typedef struct built {
    int rc;
    dp_upstream_req_t out;
    char *head, *body;
} built_t;

static built_t build_with(const dp_provider_t *p, const dp_credential_t *c, const char *body, const char *model)
{
    built_t b = {0};
    dp_chat_req_t in = chat_req(body);
    h2o_headers_t hdrs = {NULL};
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("x-custom"), 0, NULL, H2O_STRLIT("not forwarded"));
    b.rc = dp_provider_bedrock.build_chat(&pool, p, c, h2o_iovec_init(model, strlen(model)), &in, &hdrs,
                                          h2o_iovec_init(H2O_STRLIT("0123456789abcdef0123456789abcdef")), &b.out);
    if (b.rc != 0)
        return b;
    assert_int_equal(b.out.nbufs, 2);
    b.head = iovdup(b.out.bufs[0]);
    b.body = iovdup(b.out.bufs[1]);
    assert_int_equal(b.out.body_len, b.out.bufs[1].len);
    return b;
}

static built_t build(const char *body, const char *model)
{
    dp_provider_t p = provider("us-east-1");
    dp_credential_t c = credential(plain_secret);
    return build_with(&p, &c, body, model);
}

static void check_converse(const char *openai, const char *want)
{
    built_t b = build(openai, "anthropic.claude-3-5-sonnet-20240620-v1:0");
    if (b.rc != 0)
        fail_msg("build failed (%s) for %s", b.out.error != NULL ? b.out.error : "?", openai);
    if (strcmp(b.body, want) != 0)
        fail_msg("request %s\n got  %s\n want %s", openai, b.body, want);
    assert_true(valid_json(b.body, strlen(b.body)));
}

static void check_refused(const char *openai, int status, const char *words)
{
    built_t b = build(openai, "anthropic.claude-3-haiku-20240307-v1:0");
    if (b.rc != SL_EINVAL)
        fail_msg("accepted %s", openai);
    assert_int_equal(b.out.error_status, status);
    assert_non_null(b.out.error);
    if (strstr(b.out.error, words) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", b.out.error, words);
}

/* ---- requests ----------------------------------------------------------------- */

static void test_text_and_system(void **state)
{
    check_converse("{\"model\":\"claude\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                   "{\"role\":\"user\",\"content\":\"Hello \\\"there\\\"\"}],\"max_tokens\":256,\"temperature\":0.2,"
                   "\"top_p\":0.9,\"stop\":[\"END\",\"\\n\\n\"]}",
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Hello \\\"there\\\"\"}]}],"
                   "\"system\":[{\"text\":\"Be brief.\"}],\"inferenceConfig\":{\"maxTokens\":256,\"temperature\":0.2,"
                   "\"topP\":0.9,\"stopSequences\":[\"END\",\"\\n\\n\"]}}");
    /* developer messages and text parts, several system messages in order;
     * consecutive user turns merge; an empty assistant text is dropped */
    check_converse("{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":"
                   "\"A\"},{\"type\":\"text\",\"text\":\"B\"}]},{\"role\":\"user\",\"content\":\"one\"},{\"role\":"
                   "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"two\"}]},{\"role\":\"assistant\",\"content\":"
                   "\"reply\"},{\"role\":\"system\",\"content\":\"C\"},{\"role\":\"user\",\"content\":\"three\"}],"
                   "\"stop\":\"x\",\"max_completion_tokens\":10}",
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"one\"},{\"text\":\"two\"}]},"
                   "{\"role\":\"assistant\",\"content\":[{\"text\":\"reply\"}]},{\"role\":\"user\",\"content\":"
                   "[{\"text\":\"three\"}]}],\"system\":[{\"text\":\"A\"},{\"text\":\"B\"},{\"text\":\"C\"}],"
                   "\"inferenceConfig\":{\"maxTokens\":10,\"stopSequences\":[\"x\"]}}");
    /* nothing to configure: no inferenceConfig at all */
    check_converse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":null,"
                   "\"temperature\":null,\"n\":1,\"stream\":false}",
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}");
}

static void test_images(void **state)
{
    check_converse(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is it?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"low\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,\\/9j\\/4AAQ\"}}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"What is it?\"},{\"image\":{\"format\":\"png\","
        "\"source\":{\"bytes\":\"iVBORw0KGgo=\"}}},{\"image\":{\"format\":\"jpeg\",\"source\":{\"bytes\":\"/9j/"
        "4AAQ\"}}}"
        "]}]}");
    check_converse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                   "\"image_url\":{\"url\":\"data:image/webp;base64,UklGRg==\"}}]}]}",
                   "{\"messages\":[{\"role\":\"user\",\"content\":[{\"image\":{\"format\":\"webp\",\"source\":"
                   "{\"bytes\":\"UklGRg==\"}}}]}]}");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"https://example.com/cat.png\"}}]}]}",
                  400, "data: URLs");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"data:image/tiff;base64,AAAA\"}}]}]}",
                  400, "png, jpeg, gif and webp");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"data:image/png,rawbytes\"}}]}]}",
                  400, "base64");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"data:image/png;base64,a\\\"b\"}}]}]}",
                  400, "outside base64");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                  "\"input_audio\":{}}]}]}",
                  400, "text and image_url");
}

static void test_tools_round_trip(void **state)
{
    /* a tool offered, the assistant's call (arguments are JSON text in a
     * string), two results merged into one user turn with the next text */
    check_converse(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris and Rome?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"tooluse_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\": \\\"Paris\\\"}\"}},"
        "{\"id\":\"tooluse_2\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"tooluse_1\",\"content\":\"18C sunny\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"tooluse_2\",\"content\":[{\"type\":\"text\",\"text\":\"21C\"}]},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}},\"required\":"
        "[\"location\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"noop\"}}],\"tool_choice\":\"required\"}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Weather in Paris and Rome?\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"tooluse_1\",\"name\":\"get_weather\","
        "\"input\":{\"location\": \"Paris\"}}},{\"toolUse\":{\"toolUseId\":\"tooluse_2\",\"name\":\"get_weather\","
        "\"input\":{}}}]},{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"tooluse_1\",\"content\":"
        "[{\"text\":\"18C sunny\"}]}},{\"toolResult\":{\"toolUseId\":\"tooluse_2\",\"content\":[{\"text\":\"21C\"}]}},"
        "{\"text\":\"Thanks\"}]}],"
        "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"get_weather\",\"description\":\"Current weather\","
        "\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}},"
        "\"required\":[\"location\"]}}}},{\"toolSpec\":{\"name\":\"noop\",\"inputSchema\":{\"json\":{\"type\":"
        "\"object\",\"properties\":{}}}}}],\"toolChoice\":{\"any\":{}}}}");
    /* tool_choice forms */
    const char *pre = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]";
    const char *tools = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],\"toolConfig\":{\"tools\":"
                        "[{\"toolSpec\":{\"name\":\"f\",\"inputSchema\":{\"json\":{}}}}]";
    char req[1024], want[1024];
    snprintf(req, sizeof(req), "%s,\"tool_choice\":\"auto\"}", pre);
    snprintf(want, sizeof(want), "%s,\"toolChoice\":{\"auto\":{}}}}", tools);
    check_converse(req, want);
    snprintf(req, sizeof(req), "%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}", pre);
    snprintf(want, sizeof(want), "%s,\"toolChoice\":{\"tool\":{\"name\":\"f\"}}}}", tools);
    check_converse(req, want);
    snprintf(req, sizeof(req), "%s}", pre);
    snprintf(want, sizeof(want), "%s}}", tools);
    check_converse(req, want);
    /* "none" without tool history: no tools offered at all */
    snprintf(req, sizeof(req), "%s,\"tool_choice\":\"none\"}", pre);
    check_converse(req, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}");
    snprintf(req, sizeof(req), "%s,\"tool_choice\":\"sometimes\"}", pre);
    check_refused(req, 400, "tool_choice");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":"
                  "\"code_interpreter\"}]}",
                  400, "function");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":"
                  "{\"name\":\"f\",\"arguments\":\"{not json\"}}]}]}",
                  400, "not valid JSON");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "tool_call_id");
}

static void test_other_refusals(void **state)
{
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 400,
                  "n must be 1");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"hi\"}]}", 400, "roles");
    check_refused("{\"model\":\"m\",\"messages\":[]}", 400, "no user or assistant message");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "content");
    check_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", 400,
                  "temperature");
    /* configuration problems are not the client's */
    dp_provider_t p = provider(NULL);
    dp_credential_t c = credential(plain_secret);
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    built_t b = build_with(&p, &c, body, "m");
    assert_int_equal(b.rc, SL_EINVAL);
    assert_int_equal(b.out.error_status, 0);
    assert_non_null(strstr(b.out.error, "region"));
    p = provider("us-east-1");
    static const char *const bad[] = {"sk-not-json", "{\"access_key_id\":\"A\"}",
                                      "{\"access_key_id\":\"A/B\","
                                      "\"secret_access_key\":\"s\"}",
                                      "{\"access_key_id\":\"A\",\"secret_access_key\":"
                                      "\"s\",\"session_token\":\"a\\r\\nx-evil: 1\"}",
                                      "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = credential(bad[i]);
        b = build_with(&p, &c, body, "m");
        assert_int_equal(b.rc, SL_EINVAL);
        assert_int_equal(b.out.error_status, 0);
        assert_non_null(strstr(b.out.error, "access_key_id"));
    }
}

/* Splits a built head into headers and verifies it as AWS would. */
static const char *lookup(void *ctx, const char *akid, size_t len)
{
    return len == strlen(AKID) && memcmp(akid, AKID, len) == 0 ? (const char *)ctx : NULL;
}

static int verify(const built_t *b, const char *secret, const char *region, sl_sigv4_verdict_t *v)
{
    sl_sigv4_kv_t hdrs[32];
    size_t n = 0;
    char *line = strstr(b->head, "\r\n") + 2;
    const char *sp1 = strchr(b->head, ' '), *sp2 = strchr(sp1 + 1, ' ');
    while (strncmp(line, "\r\n", 2) != 0) {
        char *end = strstr(line, "\r\n"), *colon = strchr(line, ':');
        assert_true(colon != NULL && colon < end && n < 32);
        hdrs[n++] = (sl_sigv4_kv_t){line, (size_t)(colon - line), colon + 2, (size_t)(end - colon - 2)};
        line = end + 2;
    }
    sl_sigv4_verify_input_t in = {
        .method = "POST",
        .path = sp1 + 1,
        .path_len = (size_t)(sp2 - sp1 - 1),
        .headers = hdrs,
        .nheaders = n,
        .body = b->body,
        .body_len = strlen(b->body),
        .region = region,
        .service = "bedrock",
        .now = time(NULL),
        .lookup = lookup,
        .lookup_ctx = (void *)secret,
    };
    return sl_sigv4_verify(&in, v, NULL, 0);
}

static void test_signed_head(void **state)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    built_t b = build(body, "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_int_equal(b.rc, 0);
    const char *start = "POST /model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse HTTP/1.1\r\n"
                        "host: bedrock-runtime.us-east-1.amazonaws.com\r\ncontent-type: application/json\r\n"
                        "accept: application/json\r\nx-request-id: 0123456789abcdef0123456789abcdef\r\nx-amz-date: ";
    if (strncmp(b.head, start, strlen(start)) != 0)
        fail_msg("head:\n%s", b.head);
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\ncontent-length: %zu\r\n\r\n", strlen(b.body));
    assert_non_null(strstr(b.head, cl));
    assert_non_null(strstr(b.head, "\r\nauthorization: AWS4-HMAC-SHA256 Credential=" AKID "/"));
    assert_non_null(strstr(b.head, "/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;"
                                   "x-amz-date;x-request-id, Signature="));
    assert_null(strstr(b.head, "x-custom"));
    assert_null(strstr(b.head, SECRET));
    sl_sigv4_verdict_t v;
    assert_int_equal(verify(&b, SECRET, "us-east-1", &v), 0);
    /* the wrong secret or region is caught */
    assert_int_equal(verify(&b, "wrong", "us-east-1", &v), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
    assert_int_equal(verify(&b, SECRET, "eu-west-1", &v), SL_EPERM);

    /* streaming, a session token, an ARN model id, a test endpoint */
    dp_provider_t p = provider("eu-central-1");
    p.host = "127.0.0.1";
    p.port = 4566;
    p.is_ssl = 0;
    p.authority = "127.0.0.1:4566"; /* as the snapshot derives it */
    p.authority_len = 14;
    dp_credential_t c = credential("{\"secret_access_key\":\"" SECRET "\",\"access_key_id\":\"" AKID
                                   "\",\"session_token\":\"FQoGZXIvYXdzEJr//token=\"}");
    b = build_with(&p, &c, "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   "arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-v1:0");
    assert_int_equal(b.rc, 0);
    start = "POST /model/arn%3Aaws%3Abedrock%3Aeu-central-1%3A123456789012%3Ainference-profile%2Feu.anthropic.claude-3-"
            "haiku-v1%3A0/converse-stream HTTP/1.1\r\nhost: 127.0.0.1:4566\r\n";
    if (strncmp(b.head, start, strlen(start)) != 0)
        fail_msg("head:\n%s", b.head);
    assert_non_null(strstr(b.head, "\r\naccept: application/vnd.amazon.eventstream\r\n"));
    assert_non_null(strstr(b.head, "\r\nx-amz-security-token: FQoGZXIvYXdzEJr//token=\r\n"));
    assert_non_null(strstr(b.head, "x-amz-date;x-amz-security-token;x-request-id, Signature="));
    assert_int_equal(verify(&b, SECRET, "eu-central-1", &v), 0);

    /* a credential's own region parameter wins over the provider's */
    Sluice__Config__V1__Credential__ParamsEntry e = SLUICE__CONFIG__V1__CREDENTIAL__PARAMS_ENTRY__INIT;
    Sluice__Config__V1__Credential__ParamsEntry *es[] = {&e};
    Sluice__Config__V1__Credential cpb = SLUICE__CONFIG__V1__CREDENTIAL__INIT;
    e.key = "region";
    e.value = "ap-south-1";
    cpb.n_params = 1;
    cpb.params = es;
    c = credential(plain_secret);
    c.pb = &cpb;
    b = build_with(&p, &c, body, "m");
    assert_int_equal(b.rc, 0);
    assert_int_equal(verify(&b, SECRET, "ap-south-1", &v), 0);
}

/* ---- responses ---------------------------------------------------------------- */

static dp_xlate_ctx_t xctx(int include_usage)
{
    return xlate_ctx("chatcmpl-r1", "claude", include_usage);
}

static void check_response(const char *converse, const char *want, int64_t in, int64_t cached, int64_t out)
{
    dp_xlate_ctx_t x = xctx(0);
    h2o_iovec_t got;
    dp_tokens_t t = {0};
    assert_int_equal(dp_provider_bedrock.translate_response(&pool, &x, converse, strlen(converse), &got, &t), 0);
    if (got.len != strlen(want) || memcmp(got.base, want, got.len) != 0)
        fail_msg("response %s\n got  %.*s\n want %s", converse, (int)got.len, got.base, want);
    assert_true(t.seen);
    assert_int_equal(t.input, in);
    assert_int_equal(t.cached_input, cached);
    assert_int_equal(t.output, out);
}

#define OPENAI_HEAD                                                                                                    \
    "{\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"claude\","

static void test_response_text_and_usage(void **state)
{
    check_response(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"Hello \\\"you\\\"\\n\"},"
        "{\"text\":\"again.\"}]}},\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":12,\"outputTokens\":5,"
        "\"totalTokens\":17},\"metrics\":{\"latencyMs\":321}}",
        OPENAI_HEAD "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello \\\"you\\\"\\n"
                    "again.\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
                    "\"completion_tokens\":5,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
        12, 0, 5);
    /* cache reads and writes are prompt tokens; reads are the cached part */
    check_response("{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"ok\"}]}},\"stopReason\":"
                   "\"max_tokens\",\"usage\":{\"inputTokens\":10,\"outputTokens\":3,\"totalTokens\":1513,"
                   "\"cacheReadInputTokens\":1000,\"cacheWriteInputTokens\":500}}",
                   OPENAI_HEAD
                   "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"logprobs\":"
                   "null,\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1510,\"completion_tokens\":3,"
                   "\"total_tokens\":1513,\"prompt_tokens_details\":{\"cached_tokens\":1000}}}",
                   1510, 1000, 3);
}

static void test_response_tool_use(void **state)
{
    check_response(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"Let me check.\"},{\"toolUse\":"
        "{\"toolUseId\":\"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q\",\"name\":\"get_weather\",\"input\":{\"location\":"
        "\"Paris\",\"unit\":\"c\"}}}]}},\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":30,\"outputTokens\":"
        "20,\"totalTokens\":50}}",
        OPENAI_HEAD "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Let me check.\","
                    "\"tool_calls\":[{\"id\":\"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q\",\"type\":\"function\",\"function\":"
                    "{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\":\\\"Paris\\\",\\\"unit\\\":\\\"c\\\"}"
                    "\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":30,"
                    "\"completion_tokens\":20,\"total_tokens\":50,\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
        30, 0, 20);
    /* only tool calls: content is null */
    check_response(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":"
        "\"a\",\"input\":{}}},{\"toolUse\":{\"toolUseId\":\"t2\",\"name\":\"b\",\"input\":{\"q\":[1,2]}}}]}},"
        "\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":1,\"outputTokens\":2,\"totalTokens\":3}}",
        OPENAI_HEAD "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
                    "[{\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}},"
                    "{\"id\":\"t2\",\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":"
                    "\"{\\\"q\\\":[1,2]}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":"
                    "{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":"
                    "{\"cached_tokens\":0}}}",
        1, 0, 2);
}

static void test_stop_reasons(void **state)
{
    static const struct {
        const char *bedrock, *openai;
    } cases[] = {
        {"end_turn", "stop"},
        {"stop_sequence", "stop"},
        {"max_tokens", "length"},
        {"tool_use", "tool_calls"},
        {"content_filtered", "content_filter"},
        {"guardrail_intervened", "content_filter"},
        {"model_context_window_exceeded", "length"},
        {"something_new", "stop"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512], want[128];
        snprintf(body, sizeof(body),
                 "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[]}},\"stopReason\":\"%s\","
                 "\"usage\":{\"inputTokens\":1,\"outputTokens\":0,\"totalTokens\":1}}",
                 cases[i].bedrock);
        snprintf(want, sizeof(want), "\"finish_reason\":\"%s\"", cases[i].openai);
        dp_xlate_ctx_t x = xctx(0);
        h2o_iovec_t got;
        dp_tokens_t t = {0};
        assert_int_equal(dp_provider_bedrock.translate_response(&pool, &x, body, strlen(body), &got, &t), 0);
        assert_non_null(memmem(got.base, got.len, want, strlen(want)));
        assert_non_null(memmem(got.base, got.len, "\"content\":\"\"", 12));
    }
}

/* ---- streams -------------------------------------------------------------------- */

typedef struct ev {
    const char *type, *payload;
} ev_t;

/* Feeds events; returns the output and the OR of every flag (and checks
 * that only the last event says DONE). */
static char *run_stream(const ev_t *evs, size_t n, int include_usage, int *flags_or, int *content_events,
                        dp_tokens_t *t)
{
    dp_xlate_ctx_t x = xctx(include_usage);
    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
    *flags_or = 0;
    *content_events = 0;
    for (size_t i = 0; i < n; i++) {
        int f = dp_provider_bedrock.translate_event(&pool, &x, evs[i].type, strlen(evs[i].type), evs[i].payload,
                                                    strlen(evs[i].payload), &buf, t);
        if (f & DP_EV_DONE)
            assert_int_equal(i, n - 1);
        if (f & DP_EV_CONTENT)
            (*content_events)++;
        *flags_or |= f;
    }
    char *s = h2o_mem_alloc_pool(&pool, buf->size + 1);
    memcpy(s, buf->bytes, buf->size);
    s[buf->size] = '\0';
    h2o_buffer_dispose(&buf);
    return s;
}

#define CHUNK                                                                                                          \
    "data: {\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"             \
    "\"claude\",\"choices\":[{\"index\":0,\"delta\":{"
#define END_NULL "},\"logprobs\":null,\"finish_reason\":null}]}\n\n"

static const ev_t text_stream[] = {
    {"messageStart", "{\"role\":\"assistant\",\"p\":\"abcd\"}"},
    {"contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hello\"},\"p\":\"ab\"}"},
    {"contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\" \\\"world\\\"\\n\"},\"p\":\"a\"}"},
    {"contentBlockStop", "{\"contentBlockIndex\":0,\"p\":\"abcdefgh\"}"},
    {"messageStop", "{\"stopReason\":\"end_turn\",\"p\":\"abc\"}"},
    {"metadata", "{\"usage\":{\"inputTokens\":25,\"outputTokens\":3,\"totalTokens\":128,\"cacheReadInputTokens\":100,"
                 "\"cacheWriteInputTokens\":0},\"metrics\":{\"latencyMs\":412},\"p\":\"abcdefghijk\"}"},
};

static void test_stream_text(void **state)
{
    int flags, content;
    dp_tokens_t t = {0};
    char *got = run_stream(text_stream, 6, 1, &flags, &content, &t);
    const char *want =
        CHUNK "\"role\":\"assistant\",\"content\":\"\"" END_NULL CHUNK "\"content\":\"Hello\"" END_NULL CHUNK
              "\"content\":\" \\\"world\\\"\\n\"" END_NULL CHUNK "},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
              "data: {\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
              "\"claude\",\"choices\":[],\"usage\":{\"prompt_tokens\":125,\"completion_tokens\":3,\"total_tokens\":128,"
              "\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n";
    if (strcmp(got, want) != 0)
        fail_msg("got\n%s\nwant\n%s", got, want);
    assert_int_equal(content, 2);
    assert_true(flags & DP_EV_DONE);
    assert_true(flags & DP_EV_USAGE);
    assert_true(t.seen);
    assert_int_equal(t.input, 125);
    assert_int_equal(t.cached_input, 100);
    assert_int_equal(t.output, 3);

    /* without include_usage: no usage chunk, tokens still read */
    dp_tokens_t t2 = {0};
    got = run_stream(text_stream, 6, 0, &flags, &content, &t2);
    assert_null(strstr(got, "\"usage\""));
    assert_int_equal(t2.input, 125);
    /* every chunk is one valid JSON object after "data: " */
    for (char *p = got; *p != '\0';) {
        assert_true(strncmp(p, "data: ", 6) == 0);
        char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_true(valid_json(p + 6, (size_t)(end - p - 6)));
        p = end + 2;
    }
}

static void test_stream_tool_use(void **state)
{
    static const ev_t evs[] = {
        {"messageStart", "{\"role\":\"assistant\"}"},
        {"contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Checking.\"}}"},
        {"contentBlockStop", "{\"contentBlockIndex\":0}"},
        {"contentBlockStart",
         "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_abc\",\"name\":\"get_weather\"}}}"},
        {"contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"location\\\"\"}}}"},
        {"contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\": \\\"Paris\\\"}\"}}}"},
        {"contentBlockStop", "{\"contentBlockIndex\":1}"},
        {"contentBlockStart",
         "{\"contentBlockIndex\":2,\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_def\",\"name\":\"get_time\"}}}"},
        {"contentBlockDelta", "{\"contentBlockIndex\":2,\"delta\":{\"toolUse\":{\"input\":\"{}\"}}}"},
        {"contentBlockStop", "{\"contentBlockIndex\":2}"},
        /* metadata before messageStop: DONE waits for both */
        {"metadata", "{\"usage\":{\"inputTokens\":40,\"outputTokens\":22,\"totalTokens\":62},\"metrics\":"
                     "{\"latencyMs\":9}}"},
        {"messageStop", "{\"stopReason\":\"tool_use\"}"},
    };
    int flags, content;
    dp_tokens_t t = {0};
    char *got = run_stream(evs, sizeof(evs) / sizeof(evs[0]), 1, &flags, &content, &t);
    const char *want =
        CHUNK "\"role\":\"assistant\",\"content\":\"\"" END_NULL CHUNK "\"content\":\"Checking.\"" END_NULL CHUNK
              "\"tool_calls\":[{\"index\":0,\"id\":\"tooluse_abc\",\"type\":\"function\",\"function\":{\"name\":"
              "\"get_weather\",\"arguments\":\"\"}}]" END_NULL CHUNK
              "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"location\\\"\"}}]" END_NULL CHUNK
              "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\": \\\"Paris\\\"}\"}}]" END_NULL CHUNK
              "\"tool_calls\":[{\"index\":1,\"id\":\"tooluse_def\",\"type\":\"function\",\"function\":{\"name\":"
              "\"get_time\",\"arguments\":\"\"}}]" END_NULL CHUNK
              "\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]" END_NULL CHUNK
              "},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n"
              "data: {\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
              "\"claude\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":22,\"total_tokens\":62,"
              "\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n";
    if (strcmp(got, want) != 0)
        fail_msg("got\n%s\nwant\n%s", got, want);
    assert_int_equal(content, 6);
    assert_int_equal(t.input, 40);
    assert_int_equal(t.output, 22);
}

static void test_stream_preamble_and_errors(void **state)
{
    dp_xlate_ctx_t x = xctx(0);
    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
    dp_tokens_t t = {0};
    /* the role chunk is preamble: written, but not content */
    assert_int_equal(dp_provider_bedrock.translate_event(&pool, &x, H2O_STRLIT("messageStart"),
                                                         H2O_STRLIT("{\"role\":\"assistant\"}"), &buf, &t),
                     0);
    assert_true(buf->size > 0);
    size_t before = buf->size;
    /* an empty text delta and unknown events add nothing */
    assert_int_equal(dp_provider_bedrock.translate_event(
                         &pool, &x, H2O_STRLIT("contentBlockDelta"),
                         H2O_STRLIT("{\"contentBlockIndex\":0,\"delta\":{\"text\":\"\"}}"), &buf, &t),
                     0);
    assert_int_equal(
        dp_provider_bedrock.translate_event(&pool, &x, H2O_STRLIT("somethingNew"), H2O_STRLIT("{}"), &buf, &t), 0);
    assert_int_equal(dp_provider_bedrock.translate_event(&pool, &x, H2O_STRLIT("contentBlockDelta"),
                                                         H2O_STRLIT("not json"), &buf, &t),
                     0);
    assert_int_equal(buf->size, before);
    /* in-stream exceptions */
    static const char *const exceptions[] = {"internalServerException", "modelStreamErrorException",
                                             "throttlingException", "validationException",
                                             "serviceUnavailableException"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(dp_provider_bedrock.translate_event(&pool, &x, exceptions[i], strlen(exceptions[i]),
                                                             H2O_STRLIT("{\"message\":\"boom\"}"), &buf, &t),
                         DP_EV_ERROR);
    assert_int_equal(buf->size, before);
    assert_false(t.seen);
    h2o_buffer_dispose(&buf);
}

/* ---- errors ------------------------------------------------------------------- */

static void check_error(int status, const char *body, int want_status, const char *type, const char *code,
                        const char *message)
{
    check_mapped(&dp_provider_bedrock, status, body, want_status, type, code, message);
}

static void test_errors(void **state)
{
    check_error(400,
                "{\"message\":\"1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy "
                "constraint: Member must have value greater than or equal to 1\"}",
                400, "invalid_request_error", "invalid_request",
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: "
                "Member must have value greater than or equal to 1");
    check_error(429, "{\"message\":\"Too many requests, please wait before trying again.\"}", 429, "rate_limit_error",
                "rate_limit_exceeded", "Too many requests, please wait before trying again.");
    check_error(503, "{\"message\":\"Bedrock is unable to process your request.\"}", 503, "api_error", "upstream_error",
                "Bedrock is unable to process your request.");
    check_error(500, "{\"Message\":\"Internal \\\"error\\\"\"}", 500, "api_error", "upstream_error",
                "Internal \"error\"");
    check_error(403,
                "{\"message\":\"The request signature we calculated does not match the signature you provided. Check "
                "your AWS Secret Access Key and signing method.\\n\\nThe Canonical String for this request should have "
                "been\\n'POST\\n/model/x/converse'\"}",
                502, "api_error", "upstream_auth_failed",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method.");
    check_error(403, "{\"message\":\"You don't have access to the model with the specified model ID.\"}", 502,
                "api_error", "upstream_auth_failed", "You don't have access to the model with the specified model ID.");
    check_error(404, "{\"message\":\"Could not resolve the foundation model.\"}", 404, "invalid_request_error",
                "model_not_found", "Could not resolve the foundation model.");
    check_error(408, "{\"message\":\"Model has timed out in processing the request.\"}", 504, "api_error",
                "upstream_timeout", "Model has timed out in processing the request.");
    check_error(424, "{\"message\":\"The model returned an error.\"}", 502, "api_error", "upstream_model_error",
                "The model returned an error.");
    check_error(502, "<html>bad gateway</html>", 502, "api_error", "upstream_error", "");
    check_error(413, "", 413, "invalid_request_error", "upstream_error", "");
    /* long messages are cut, never overflow */
    char big[3000];
    strcpy(big, "{\"message\":\"");
    size_t n = strlen(big);
    memset(big + n, 'x', 2000);
    strcpy(big + n + 2000, "\"}");
    dp_upstream_error_t e;
    dp_provider_bedrock.map_error(400, big, strlen(big), &e);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    assert_string_equal(e.message + sizeof(e.message) - 4, "...");
}

/* ---- embeddings ------------------------------------------------------------------ */

static built_t build_embed(const char *body, const char *model)
{
    static sl_json_tok_t toks[256];
    built_t b = {0};
    assert_true(sl_json_parse(body, strlen(body), toks, 256, NULL) > 0);
    dp_provider_t p = provider("us-east-1");
    dp_credential_t c = credential(plain_secret);
    b.rc = dp_bedrock_build_embeddings(&pool, &p, &c, h2o_iovec_init(model, strlen(model)), body, strlen(body), toks,
                                       h2o_iovec_init(H2O_STRLIT("rid")), &b.out);
    if (b.rc == 0) {
        b.head = h2o_strdup(&pool, b.out.bufs[0].base, b.out.bufs[0].len).base;
        b.body = h2o_strdup(&pool, b.out.bufs[1].base, b.out.bufs[1].len).base;
    }
    return b;
}

static void test_embeddings(void **state)
{
    assert_int_equal(dp_bedrock_embed_family(H2O_STRLIT("amazon.titan-embed-text-v2:0")), DP_BEDROCK_EMBED_TITAN);
    assert_int_equal(dp_bedrock_embed_family(H2O_STRLIT("us.cohere.embed-english-v3")), DP_BEDROCK_EMBED_COHERE);
    assert_int_equal(dp_bedrock_embed_family(H2O_STRLIT("anthropic.claude-3-haiku")), DP_BEDROCK_EMBED_NONE);

    built_t b = build_embed("{\"model\":\"titan\",\"input\":\"hello world\",\"dimensions\":256}",
                            "amazon.titan-embed-text-v2:0");
    assert_int_equal(b.rc, 0);
    assert_string_equal(b.body, "{\"inputText\":\"hello world\",\"dimensions\":256}");
    assert_true(strncmp(b.head, "POST /model/amazon.titan-embed-text-v2%3A0/invoke HTTP/1.1\r\n", 60) == 0);
    sl_sigv4_verdict_t v;
    assert_int_equal(verify(&b, SECRET, "us-east-1", &v), 0);
    b = build_embed("{\"model\":\"titan\",\"input\":[\"a\",\"b\"]}", "amazon.titan-embed-text-v2:0");
    assert_int_equal(b.rc, SL_EINVAL);
    assert_non_null(strstr(b.out.error, "one input"));
    b = build_embed("{\"model\":\"c\",\"input\":[\"a b\",\"c\"]}", "cohere.embed-english-v3");
    assert_int_equal(b.rc, 0);
    assert_string_equal(b.body, "{\"texts\":[\"a b\",\"c\"],\"input_type\":\"search_document\"}");
    b = build_embed("{\"model\":\"c\",\"input\":\"q\",\"input_type\":\"search_query\"}", "cohere.embed-english-v3");
    assert_string_equal(b.body, "{\"texts\":[\"q\"],\"input_type\":\"search_query\"}");
    b = build_embed("{\"model\":\"c\",\"input\":[[1,2,3]]}", "cohere.embed-english-v3");
    assert_int_equal(b.rc, SL_EINVAL);
    b = build_embed("{\"model\":\"c\",\"input\":\"x\"}", "meta.llama3");
    assert_int_equal(b.rc, SL_EINVAL);

    /* Titan's answer */
    const char *titan = "{\"embedding\":[0.5,-0.25,1e-3],\"inputTextTokenCount\":2}";
    h2o_iovec_t out;
    dp_tokens_t t = {0};
    assert_int_equal(dp_bedrock_translate_embeddings(&pool, h2o_iovec_init(H2O_STRLIT("titan")), 0, titan,
                                                     strlen(titan), -1, &out, &t),
                     0);
    const char *want = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
                       "[0.5,-0.25,1e-3]}],\"model\":\"titan\",\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.base, want, out.len);
    assert_int_equal(t.input, 2);
    /* base64: little-endian float32 (0.5 = 00 00 00 3f, -0.25 = 00 00 80 be) */
    const char *two = "{\"embedding\":[0.5,-0.25],\"inputTextTokenCount\":2}";
    assert_int_equal(
        dp_bedrock_translate_embeddings(&pool, h2o_iovec_init(H2O_STRLIT("titan")), 1, two, strlen(two), -1, &out, &t),
        0);
    assert_non_null(memmem(out.base, out.len, "\"embedding\":\"AAAAPwAAgL4=\"", 26));
    /* Cohere's answer: tokens from the header */
    const char *cohere = "{\"embeddings\":[[0.1,0.2],[0.3,0.4]],\"id\":\"x\",\"response_type\":\"embeddings_floats\","
                         "\"texts\":[\"a b\",\"c\"]}";
    dp_tokens_t t2 = {0};
    assert_int_equal(dp_bedrock_translate_embeddings(&pool, h2o_iovec_init(H2O_STRLIT("cohere")), 0, cohere,
                                                     strlen(cohere), 3, &out, &t2),
                     0);
    want = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.1,0.2]},{\"object\":"
           "\"embedding\",\"index\":1,\"embedding\":[0.3,0.4]}],\"model\":\"cohere\",\"usage\":{\"prompt_tokens\":3,"
           "\"total_tokens\":3}}";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.base, want, out.len);
    assert_int_equal(t2.input, 3);
    /* through the provider table's hooks: the header's token count, base64 */
    assert_non_null(dp_provider_bedrock.build_embeddings);
    assert_non_null(dp_provider_bedrock.translate_embeddings);
    static sl_json_tok_t etoks[64];
    const char *ereq = "{\"model\":\"c\",\"input\":[\"a b\",\"c\"],\"encoding_format\":\"base64\"}";
    dp_chat_req_t ein = {.body = ereq, .len = strlen(ereq), .toks = etoks, .max_tokens = -1};
    ein.ntoks = sl_json_parse(ereq, ein.len, etoks, 64, NULL);
    ein.model_tok = sl_json_find(ereq, etoks, 0, "model", 5);
    dp_provider_t p = provider("us-east-1");
    dp_credential_t c = credential(plain_secret);
    dp_upstream_req_t up = {0};
    h2o_headers_t none = {NULL};
    assert_int_equal(dp_provider_bedrock.build_embeddings(&pool, &p, &c,
                                                          h2o_iovec_init(H2O_STRLIT("cohere.embed-english-v3")), &ein,
                                                          &none, h2o_iovec_init(H2O_STRLIT("rid")), &up),
                     0);
    assert_int_equal(up.bufs[1].len, strlen("{\"texts\":[\"a b\",\"c\"],\"input_type\":\"search_document\"}"));
    h2o_headers_t uh = {NULL};
    h2o_add_header_by_str(&pool, &uh, H2O_STRLIT("x-amzn-bedrock-input-token-count"), 0, NULL, H2O_STRLIT("3"));
    dp_xlate_ctx_t x = xctx(0);
    x.model = h2o_iovec_init(H2O_STRLIT("cohere.embed-english-v3"));
    const char *halves = "{\"embeddings\":[[0.5],[-0.25]],\"id\":\"x\",\"response_type\":\"embeddings_floats\"}";
    dp_tokens_t t3 = {0};
    assert_int_equal(dp_provider_bedrock.translate_embeddings(&pool, &x, &ein, &uh, halves, strlen(halves), &out, &t3),
                     0);
    want = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":\"AAAAPw==\"},"
           "{\"object\":\"embedding\",\"index\":1,\"embedding\":\"AACAvg==\"}],\"model\":\"cohere.embed-english-v3\","
           "\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}";
    if (out.len != strlen(want) || memcmp(out.base, want, out.len) != 0)
        fail_msg("got %.*s", (int)out.len, out.base);
    assert_int_equal(t3.input, 3);

    const char *bad = "{\"embeddings\":[[\"x\"]]}";
    assert_int_equal(
        dp_bedrock_translate_embeddings(&pool, h2o_iovec_init(H2O_STRLIT("c")), 0, bad, strlen(bad), 3, &out, &t2),
        SL_EINVAL);
}

/* ---- malformed input (bounded mutation) ---------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    return (uint32_t)xorshift64(&rng);
}

static void mutate(char *s, size_t len)
{
    static const char alphabet[] = "{}[]\",:\\0123456789-+.eEtruefalsnl \t\n";
    int k = 1 + (int)(next_rand() % 3);
    for (int i = 0; i < k; i++)
        s[next_rand() % len] = alphabet[next_rand() % (sizeof(alphabet) - 1)];
}

static void test_mutations(void **state)
{
    static const char *const requests[] = {
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{"
        "\"type\":"
        "\"text\",\"text\":\"hi\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{\"id\":\"t\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"t\",\"content\":"
        "\"r\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]"
        ","
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},\"max_tokens\":5,\"temperature\":1,"
        "\"stop\":[\"x\"]}",
    };
    static const char *const responses[] = {
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"a\"},{\"toolUse\":{\"toolUseId\":"
        "\"t\",\"name\":\"f\",\"input\":{\"x\":[1,2]}}}]}},\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":1,"
        "\"outputTokens\":2,\"totalTokens\":3,\"cacheReadInputTokens\":4}}",
    };
    dp_provider_t p = provider("us-east-1");
    dp_credential_t c = credential(plain_secret);
    clock_t deadline = clock() + 5 * CLOCKS_PER_SEC;
    int accepted = 0, refused = 0;
    for (int round = 0; round < 3000 && clock() < deadline; round++) {
        h2o_mem_pool_t local;
        h2o_mem_init_pool(&local);
        /* requests */
        size_t len = strlen(requests[0]);
        char *s = h2o_mem_alloc_pool(&local, len + 1);
        memcpy(s, requests[0], len + 1);
        mutate(s, len);
        static sl_json_tok_t toks[512];
        int n = sl_json_parse(s, len, toks, 512, NULL);
        if (n > 0 && toks[0].type == SL_JSON_OBJECT) {
            dp_chat_req_t in = {.body = s, .len = len, .toks = toks, .ntoks = n, .max_tokens = 5};
            in.model_tok = sl_json_find(s, toks, 0, "model", 5);
            dp_upstream_req_t out = {0};
            h2o_headers_t none = {NULL};
            int rc = dp_provider_bedrock.build_chat(&local, &p, &c, h2o_iovec_init(H2O_STRLIT("m")), &in, &none,
                                                    h2o_iovec_init(H2O_STRLIT("rid")), &out);
            assert_true(rc == 0 || rc == SL_EINVAL);
            if (rc == 0) {
                accepted++;
                assert_true(valid_json(out.bufs[1].base, out.bufs[1].len));
            } else {
                refused++;
                assert_non_null(out.error);
            }
        }
        /* responses */
        len = strlen(responses[0]);
        s = h2o_mem_alloc_pool(&local, len + 1);
        memcpy(s, responses[0], len + 1);
        mutate(s, len);
        dp_xlate_ctx_t x = xctx(1);
        h2o_iovec_t got;
        dp_tokens_t t = {0};
        int rc = dp_provider_bedrock.translate_response(&local, &x, s, len, &got, &t);
        assert_true(rc == 0 || rc == SL_EINVAL);
        if (rc == 0)
            assert_true(valid_json(got.base, got.len));
        /* stream events */
        h2o_buffer_t *buf;
        h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
        dp_xlate_ctx_t sx = xctx(1);
        for (size_t i = 0; i < sizeof(text_stream) / sizeof(text_stream[0]); i++) {
            size_t pl = strlen(text_stream[i].payload);
            char *e = h2o_mem_alloc_pool(&local, pl + 1);
            memcpy(e, text_stream[i].payload, pl + 1);
            if (next_rand() % 2)
                mutate(e, pl);
            int f = dp_provider_bedrock.translate_event(&local, &sx, text_stream[i].type, strlen(text_stream[i].type),
                                                        e, pl, &buf, &t);
            assert_true(f >= 0 && f <= (DP_EV_USAGE | DP_EV_CONTENT | DP_EV_DONE | DP_EV_ERROR));
        }
        h2o_buffer_dispose(&buf);
        /* error bodies */
        dp_upstream_error_t ue;
        dp_provider_bedrock.map_error(400 + (int)(next_rand() % 200), s, len, &ue);
        assert_true(strlen(ue.message) < sizeof(ue.message));
        h2o_mem_clear_pool(&local);
    }
    assert_true(accepted > 0);
    assert_true(refused > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_system),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_tools_round_trip),
        cmocka_unit_test(test_other_refusals),
        cmocka_unit_test(test_signed_head),
        cmocka_unit_test(test_response_text_and_usage),
        cmocka_unit_test(test_response_tool_use),
        cmocka_unit_test(test_stop_reasons),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tool_use),
        cmocka_unit_test(test_stream_preamble_and_errors),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
