/* vertex_test.c - the Vertex AI translator (dataplane/providers/vertex.c):
 * OpenAI requests into generateContent bodies (text, system, images, tools
 * and a function-calling round trip, generation settings), the upstream
 * request line and headers for Gemini and Claude (rawPredict), recorded
 * Gemini answers and streams into OpenAI completions and chunks (finish
 * reasons, usage with cached and thinking tokens), error mapping, and
 * malformed inputs. */
#include "provider_fixture.h"

#include "dp_gauth.h"
#include "token_server.h"
#include "vertex.h"

static const dp_provider_ops_t *ops = &dp_provider_vertex;

/* The Gemini body for an OpenAI request (NUL-terminated pool copy). */
static const char *gemini(const char *body)
{
    dp_chat_req_t in = chat_req(body);
    h2o_iovec_t out;
    const char *msg = NULL, *param = NULL;
    int rc = dp_vertex_gemini_body(&pool, &in, &out, &msg, &param);
    if (rc != 0)
        fail_msg("translation failed: %s", msg);
    assert_true(valid_json(out.base, out.len));
    return h2o_strdup(&pool, out.base, out.len).base;
}

static void gemini_fails(const char *body, const char *needle)
{
    dp_chat_req_t in = chat_req(body);
    h2o_iovec_t out;
    const char *msg = NULL, *param = NULL;
    assert_int_equal(dp_vertex_gemini_body(&pool, &in, &out, &msg, &param), SL_EINVAL);
    assert_non_null(msg);
    if (strstr(msg, needle) == NULL)
        fail_msg("\"%s\" not in \"%s\"", needle, msg);
}

/* ---- requests ---------------------------------------------------------------- */

static void test_text_and_system(void **state)
{
    assert_string_equal(
        gemini("{\"model\":\"gemini-2.0-flash\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
               "{\"role\":\"user\",\"content\":\"Hello there\"},{\"role\":\"assistant\",\"content\":\"Hi!\"},"
               "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No emoji.\"}]},"
               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Say \\\"ok\\\"\"}]}],"
               "\"max_tokens\":100,\"temperature\":0.2,\"top_p\":0.9,\"stop\":[\"END\",\"STOP\"],\"seed\":7,"
               "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"n\":1,\"stream\":false,\"user\":\"u1\"}"),
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Hello there\"}]},"
        "{\"role\":\"model\",\"parts\":[{\"text\":\"Hi!\"}]},"
        "{\"role\":\"user\",\"parts\":[{\"text\":\"Say \\\"ok\\\"\"}]}],"
        "\"systemInstruction\":{\"parts\":[{\"text\":\"Be brief.\"},{\"text\":\"No emoji.\"}]},"
        "\"generationConfig\":{\"maxOutputTokens\":100,\"temperature\":0.2,\"topP\":0.9,"
        "\"presencePenalty\":0.5,\"frequencyPenalty\":-0.5,\"seed\":7,\"stopSequences\":[\"END\",\"STOP\"]}}");
    /* nothing optional: no generationConfig; a stop string; empty texts left out */
    assert_string_equal(gemini("{\"model\":\"g\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\"},"
                               "{\"role\":\"user\",\"content\":\"hi\"}]}"),
                        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}");
    assert_string_equal(gemini("{\"model\":\"g\",\"max_completion_tokens\":5,\"max_tokens\":9,\"stop\":\"x\","
                               "\"cachedContent\":\"projects/p/locations/l/cachedContents/c1\","
                               "\"response_format\":{\"type\":\"json_object\"},"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
                        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}],\"generationConfig\":"
                        "{\"maxOutputTokens\":5,\"stopSequences\":[\"x\"],\"responseMimeType\":\"application/json\"},"
                        "\"cachedContent\":\"projects/p/locations/l/cachedContents/c1\"}");
}

static void test_images_and_media(void **state)
{
    assert_string_equal(
        gemini("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":["
               "{\"type\":\"text\",\"text\":\"What is in these?\"},"
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\","
               "\"detail\":\"high\"}},"
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https:\\/\\/example.com\\/cat.JPG?size=large\"}},"
               "{\"type\":\"image_url\",\"image_url\":\"gs://bucket/doc.pdf\"},"
               "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklGRg==\",\"format\":\"wav\"}},"
               "{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,JVBERi0=\","
               "\"filename\":\"a.pdf\"}}]}]}"),
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"What is in these?\"},"
        "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},"
        "{\"fileData\":{\"mimeType\":\"image/jpeg\",\"fileUri\":\"https://example.com/cat.JPG?size=large\"}},"
        "{\"fileData\":{\"mimeType\":\"application/pdf\",\"fileUri\":\"gs://bucket/doc.pdf\"}},"
        "{\"inlineData\":{\"mimeType\":\"audio/wav\",\"data\":\"UklGRg==\"}},"
        "{\"inlineData\":{\"mimeType\":\"application/pdf\",\"data\":\"JVBERi0=\"}}]}]}");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                 "\"image_url\":{\"url\":\"https://example.com/image\"}}]}]}",
                 "cannot be told from its extension");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                 "\"image_url\":{\"url\":\"data:image/png,rawbytes\"}}]}]}",
                 "base64");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                 "\"image_url\":{\"url\":\"data:ima\\\"ge;base64,AAAA\"}}]}]}",
                 "invalid media type");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                 "\"image_url\":{\"url\":\"ftp://x/y.png\"}}]}]}",
                 "data:, http(s):// or gs://");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\","
                 "\"image_url\":{\"url\":\"gs://x/y.png\"}}]}]}",
                 "only text content parts");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\","
                 "\"file\":{\"file_id\":\"file-1\"}}]}]}",
                 "file ids are not supported");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}",
                 "unsupported content part type");
}

static void test_function_calling_round_trip(void **state)
{
    /* turn 1: tools offered, the model must call one */
    assert_string_equal(
        gemini("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],"
               "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current "
               "weather\",\"strict\":true,\"parameters\":{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
               "\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"additionalProperties\":"
               "{\"type\":\"boolean\"},\"unit\":{\"oneOf\":[{\"type\":\"string\",\"enum\":[\"c\",\"f\"]},{\"type\":"
               "\"null\"}]}},\"required\":[\"location\"],\"additionalProperties\":false}}},"
               "{\"type\":\"function\",\"function\":{\"name\":\"now\",\"parameters\":{\"type\":\"object\","
               "\"properties\":{}}}}],\"tool_choice\":\"required\"}"),
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Weather in Paris?\"}]}],"
        "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"Current weather\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},"
        "\"additionalProperties\":{\"type\":\"boolean\"},\"unit\":{\"anyOf\":[{\"type\":\"string\",\"enum\":[\"c\","
        "\"f\"]},{\"type\":\"null\"}]}},\"required\":[\"location\"]}},{\"name\":\"now\"}]}],"
        "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\"}}}");

    /* turn 2: the assistant's calls and the tool results go back */
    assert_string_equal(
        gemini("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris and Rome?\"},"
               "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
               "{\"id\":\"call_0\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
               "\"arguments\":\"{\\\"location\\\": \\\"Paris\\\"}\"}},"
               "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},"
               "{\"role\":\"tool\",\"tool_call_id\":\"call_0\",\"content\":\"{\\\"temp\\\":21}\"},"
               "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":[{\"type\":\"text\",\"text\":\"12:\"},"
               "{\"type\":\"text\",\"text\":\"00\"}]},"
               "{\"role\":\"user\",\"content\":\"thanks\"}],"
               "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}],"
               "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}"),
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Weather in Paris and Rome?\"}]},"
        "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"location\":"
        "\"Paris\"}}},{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}]},"
        "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"content\":"
        "\"{\\\"temp\\\":21}\"}}},{\"functionResponse\":{\"name\":\"get_time\",\"response\":{\"content\":"
        "\"12:00\"}}}]},{\"role\":\"user\",\"parts\":[{\"text\":\"thanks\"}]}],"
        "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\"}]}],"
        "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"get_weather\"]}}}");

    /* a reused id answers the nearest call */
    const char *b = gemini(
        "{\"model\":\"g\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_0\",\"type\":"
        "\"function\",\"function\":{\"name\":\"first\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":"
        "\"call_0\",\"content\":\"a\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_0\",\"type\":"
        "\"function\",\"function\":{\"name\":\"second\",\"arguments\":{\"k\":1}}}]},{\"role\":\"tool\","
        "\"tool_call_id\":\"call_0\",\"content\":\"b\"}],\"tool_choice\":\"none\",\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"first\"}}]}");
    assert_non_null(strstr(b, "{\"functionResponse\":{\"name\":\"first\",\"response\":{\"content\":\"a\"}}}"));
    assert_non_null(strstr(b, "{\"functionResponse\":{\"name\":\"second\",\"response\":{\"content\":\"b\"}}}"));
    assert_non_null(strstr(b, "{\"functionCall\":{\"name\":\"second\",\"args\":{\"k\":1}}}"));
    assert_non_null(strstr(b, "\"mode\":\"NONE\""));

    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"x\"}]}",
                 "unknown tool_call_id");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}]}",
                 "must be a JSON object");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{bad\"}}]}]}",
                 "must be a JSON object");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                 "\"web_search\"}]}",
                 "only function tools");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}",
                 "tool_choice");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
                 "unsupported message role");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
                 "must be a number");
    gemini_fails("{\"model\":\"g\",\"messages\":{}}", "messages array");
    gemini_fails("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n other than 1");
}

/* ---- the upstream request ------------------------------------------------------ */

static EVP_PKEY *key;
static char *account;
static token_server_t ts;

static int group_setup(void **state)
{
    account = ts_make_account(&key, SL_JWT_GOOGLE_TOKEN_URI, "sa-project");
    if (account == NULL || ts_start(&ts, key, 3600) != 0)
        return -1;
    dp_gauth_cred_t c = {
        .provider = "vertex", .cred_id = "sa", .secret = account, .secret_len = strlen(account), .token_uri = ts.uri};
    return dp_gauth_set_credentials(&c, 1);
}

static int group_teardown(void **state)
{
    dp_gauth_stop();
    ts_stop(&ts);
    free(account);
    EVP_PKEY_free(key);
    return 0;
}

static Sluice__Config__V1__Provider__ParamsEntry param_project = {
    PROTOBUF_C_MESSAGE_INIT(&sluice__config__v1__provider__params_entry__descriptor), "project", "my-proj"};
static Sluice__Config__V1__Provider__ParamsEntry param_location = {
    PROTOBUF_C_MESSAGE_INIT(&sluice__config__v1__provider__params_entry__descriptor), "location", "europe-west4"};

static int build(const char *body, const char *model, int with_params, const char *cred_id, char **head, char **outbody,
                 dp_upstream_req_t *out)
{
    static Sluice__Config__V1__Provider__ParamsEntry *params[2] = {&param_project, &param_location};
    Sluice__Config__V1__Provider pb = SLUICE__CONFIG__V1__PROVIDER__INIT;
    pb.n_params = with_params ? 2 : 0;
    pb.params = params;
    dp_provider_t p = {.name = "vertex",
                       .kind = "vertex",
                       .host = "127.0.0.1",
                       .port = 8443,
                       .is_ssl = 1,
                       .path_prefix = "",
                       .authority = "127.0.0.1:8443",
                       .authority_len = 14,
                       .pb = &pb};
    dp_credential_t cred = {.id = cred_id, .secret = account, .secret_len = strlen(account), .weight = 1};
    dp_chat_req_t in = chat_req(body);
    h2o_headers_t hdrs = {NULL};
    *out = (dp_upstream_req_t){0};
    for (int i = 0; i < 500; i++) {
        int rc = ops->build_chat(&pool, &p, &cred, h2o_iovec_init(model, strlen(model)), &in, &hdrs,
                                 h2o_iovec_init(H2O_STRLIT("rid")), out);
        if (rc != SL_EUNAVAIL || strcmp(cred_id, "sa") != 0) {
            if (rc != 0)
                return rc;
            break;
        }
        struct timespec t = {0, 10000000};
        nanosleep(&t, NULL); /* the first token is on its way */
    }
    assert_int_equal(out->nbufs, 2);
    *head = h2o_strdup(&pool, out->bufs[0].base, out->bufs[0].len).base;
    *outbody = h2o_strdup(&pool, out->bufs[1].base, out->bufs[1].len).base;
    assert_int_equal(out->body_len, out->bufs[1].len);
    assert_true(valid_json(*outbody, strlen(*outbody)));
    return 0;
}

static void test_build_gemini_request(void **state)
{
    char *head, *body;
    dp_upstream_req_t out;
    assert_int_equal(build("{\"model\":\"gemini-2.0-flash\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                           "gemini-2.0-flash", 1, "sa", &head, &body, &out),
                     0);
    char expect[512];
    snprintf(expect, sizeof(expect),
             "POST /v1/projects/my-proj/locations/europe-west4/publishers/google/models/gemini-2.0-flash:"
             "generateContent HTTP/1.1\r\nhost: 127.0.0.1:8443\r\nauthorization: Bearer ya29.test-1\r\n"
             "content-type: application/json\r\naccept: application/json\r\nx-request-id: rid\r\n"
             "content-length: %zu\r\n\r\n",
             strlen(body));
    assert_string_equal(head, expect);
    assert_string_equal(body, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}");

    /* streaming; project from the account, default location */
    assert_int_equal(build("{\"model\":\"g\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                           "gemini-1.5-pro-002", 0, "sa", &head, &body, &out),
                     0);
    assert_true(strncmp(head,
                        "POST /v1/projects/sa-project/locations/us-central1/publishers/google/models/"
                        "gemini-1.5-pro-002:streamGenerateContent?alt=sse HTTP/1.1\r\n",
                        strlen("POST /v1/projects/sa-project/locations/us-central1/publishers/google/models/"
                               "gemini-1.5-pro-002:streamGenerateContent?alt=sse HTTP/1.1\r\n")) == 0);
    assert_non_null(strstr(head, "\r\naccept: text/event-stream\r\n"));
    assert_int_equal(atomic_load(&ts.requests), 1); /* one token for every request */

    /* a model name that would break the URL */
    assert_int_equal(build("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                           "../../x:predict?", 1, "sa", &head, &body, &out),
                     SL_EINVAL);
    assert_int_equal(out.error_status, 400);
    /* an untranslatable request is the client's error */
    assert_int_equal(build("{\"model\":\"g\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "g", 1, "sa",
                           &head, &body, &out),
                     SL_EINVAL);
    assert_int_equal(out.error_status, 400);
    assert_non_null(strstr(out.error, "role"));
    /* no token for this credential: unavailable, with the reason */
    assert_int_equal(build("{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "g", 1, "other",
                           &head, &body, &out),
                     SL_EUNAVAIL);
    assert_int_equal(out.error_status, 0);
    assert_non_null(out.error);
}

static void test_build_claude_request(void **state)
{
    char *head, *body;
    dp_upstream_req_t out;
    assert_int_equal(build("{\"model\":\"claude-3-5-haiku@20241022\",\"max_tokens\":50,\"stream\":true,\"messages\":"
                           "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"hi\"}]}",
                           "claude-3-5-haiku@20241022", 1, "sa", &head, &body, &out),
                     0);
    assert_true(strncmp(head,
                        "POST /v1/projects/my-proj/locations/europe-west4/publishers/anthropic/models/"
                        "claude-3-5-haiku@20241022:streamRawPredict HTTP/1.1\r\n",
                        100) == 0);
    assert_non_null(strstr(head, "\r\nauthorization: Bearer ya29.test-"));
    assert_null(strstr(head, "x-api-key"));
    assert_non_null(strstr(body, "\"anthropic_version\":\"vertex-2023-10-16\""));
    assert_null(strstr(body, "\"model\""));
    assert_non_null(strstr(body, "\"max_tokens\":50"));
    assert_non_null(strstr(body, "\"stream\":true"));
    assert_non_null(strstr(body, "Be brief."));

    assert_int_equal(build("{\"model\":\"claude-sonnet-4@20250514\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"hi\"}]}",
                           "claude-sonnet-4@20250514", 1, "sa", &head, &body, &out),
                     0);
    assert_non_null(strstr(head, "/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict HTTP/1.1\r\n"));
    assert_non_null(strstr(body, "\"max_tokens\":"));
    assert_true(dp_vertex_is_claude(H2O_STRLIT("Claude-x")));
    assert_false(dp_vertex_is_claude(H2O_STRLIT("gemini-claude")));
}

/* ---- complete answers ---------------------------------------------------------- */

static dp_xlate_ctx_t ctx(int include_usage)
{
    return xlate_ctx("chatcmpl-r1", "gemini-2.0-flash", include_usage);
}

static const char *respond(const char *body, dp_tokens_t *tk)
{
    dp_xlate_ctx_t c = ctx(0);
    h2o_iovec_t out;
    *tk = (dp_tokens_t){0};
    assert_int_equal(ops->translate_response(&pool, &c, body, strlen(body), &out, tk), 0);
    assert_true(valid_json(out.base, out.len));
    return h2o_strdup(&pool, out.base, out.len).base;
}

/* A Vertex answer as it comes over the wire (pretty-printed). */
static const char text_answer[] =
    "{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"role\": \"model\",\n        \"parts\": [\n"
    "          {\n            \"text\": \"The sky is blue \"\n          },\n          {\n            \"text\": "
    "\"because of \\\"Rayleigh\\\" scattering.\\n\"\n          }\n        ]\n      },\n      \"finishReason\": "
    "\"STOP\",\n      \"avgLogprobs\": -0.21\n    }\n  ],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 12,\n"
    "    \"candidatesTokenCount\": 9,\n    \"totalTokenCount\": 21,\n    \"trafficType\": \"ON_DEMAND\"\n  },\n"
    "  \"modelVersion\": \"gemini-2.0-flash\",\n  \"createTime\": \"2025-01-01T00:00:00.000000Z\",\n"
    "  \"responseId\": \"abc\"\n}\n";

static void test_response_text(void **state)
{
    dp_tokens_t tk;
    assert_string_equal(
        respond(text_answer, &tk),
        "{\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"
        "\"gemini-2.0-flash\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"The sky is blue because of \\\"Rayleigh\\\" scattering.\\n\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
        "\"completion_tokens\":9,\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    assert_true(tk.seen);
    assert_int_equal(tk.input, 12);
    assert_int_equal(tk.output, 9);
    assert_int_equal(tk.cached_input, 0);
}

static void test_response_function_call(void **state)
{
    dp_tokens_t tk;
    const char *b = respond(
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\","
        "\"args\":{\n  \"location\": \"Paris\",\n  \"days\": [1, 2]\n}}},{\"functionCall\":{\"name\":\"now\"}}]},"
        "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":30,\"candidatesTokenCount\":8,"
        "\"totalTokenCount\":38}}",
        &tk);
    assert_string_equal(b, "{\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"
                           "\"gemini-2.0-flash\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"content\":null,\"tool_calls\":[{\"id\":\"call_0\",\"type\":\"function\",\"function\":"
                           "{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\":\\\"Paris\\\",\\\"days\\\":"
                           "[1,2]}\"}},{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"now\","
                           "\"arguments\":\"{}\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":"
                           "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":8,\"total_tokens\":"
                           "38,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
}

static void test_response_finish_reasons_and_usage(void **state)
{
    dp_tokens_t tk;
    const char *b = respond("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"cut\"}]},\"finishReason\":"
                            "\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":100,\"candidatesTokenCount\":5,"
                            "\"thoughtsTokenCount\":20,\"cachedContentTokenCount\":64,\"totalTokenCount\":125}}",
                            &tk);
    assert_non_null(strstr(b, "\"content\":\"cut\""));
    assert_non_null(strstr(b, "\"finish_reason\":\"length\""));
    assert_non_null(strstr(b, "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":25,\"total_tokens\":125,"
                              "\"prompt_tokens_details\":{\"cached_tokens\":64},\"completion_tokens_details\":"
                              "{\"reasoning_tokens\":20}}"));
    assert_int_equal(tk.input, 100);
    assert_int_equal(tk.cached_input, 64);
    assert_int_equal(tk.output, 25);

    static const char *const filtered[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"};
    for (size_t i = 0; i < sizeof(filtered) / sizeof(filtered[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"candidates\":[{\"finishReason\":\"%s\",\"safetyRatings\":[]}]}", filtered[i]);
        b = respond(body, &tk);
        assert_non_null(strstr(b, "\"content\":null"));
        assert_non_null(strstr(b, "\"finish_reason\":\"content_filter\""));
        assert_false(tk.seen);
    }
    /* a blocked prompt has no candidates at all */
    b = respond("{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":7,"
                "\"totalTokenCount\":7}}",
                &tk);
    assert_non_null(strstr(b, "\"content\":null,\"refusal\":null},\"logprobs\":null,\"finish_reason\":"
                              "\"content_filter\""));
    assert_int_equal(tk.input, 7);
    assert_int_equal(tk.output, 0);
    /* thought parts are not content; OTHER is a plain stop */
    b = respond("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true},{\"text\":\"4\"}]},"
                "\"finishReason\":\"OTHER\"}]}",
                &tk);
    assert_non_null(strstr(b, "\"content\":\"4\""));
    assert_non_null(strstr(b, "\"finish_reason\":\"stop\""));
    /* a Claude answer through rawPredict */
    b = respond("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":"
                "[{\"type\":\"text\",\"text\":\"hello\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
                "\"usage\":{\"input_tokens\":10,\"output_tokens\":3,\"cache_read_input_tokens\":4}}",
                &tk);
    assert_non_null(strstr(b, "\"content\":\"hello\""));
    assert_int_equal(tk.input, 14);
    assert_int_equal(tk.cached_input, 4);
    assert_int_equal(tk.output, 3);

    dp_xlate_ctx_t c = ctx(0);
    h2o_iovec_t out;
    assert_int_equal(ops->translate_response(&pool, &c, H2O_STRLIT("not json"), &out, &tk), SL_EINVAL);
    assert_int_equal(ops->translate_response(&pool, &c, H2O_STRLIT("[]"), &out, &tk), SL_EINVAL);
    /* usage alone, for relayed bodies */
    tk = (dp_tokens_t){0};
    assert_int_equal(ops->parse_usage(&pool, text_answer, strlen(text_answer), &tk), 0);
    assert_int_equal(tk.input, 12);
    assert_int_equal(tk.output, 9);
}

/* ---- streams --------------------------------------------------------------------- */

typedef struct stream {
    dp_xlate_ctx_t c;
    h2o_buffer_t *out;
    dp_tokens_t tk;
} stream_t;

static void stream_open(stream_t *s, int include_usage)
{
    s->c = ctx(include_usage);
    h2o_buffer_init(&s->out, &h2o_socket_buffer_prototype);
    s->tk = (dp_tokens_t){0};
}

static int feed(stream_t *s, const char *event, const char *data)
{
    return ops->translate_event(&pool, &s->c, event, strlen(event), data, strlen(data), &s->out, &s->tk);
}

static const char *take(stream_t *s)
{
    const char *r = h2o_strdup(&pool, s->out->bytes, s->out->size).base;
    h2o_buffer_consume(&s->out, s->out->size);
    return r;
}

#define HEAD                                                                                                           \
    "data: {\"id\":\"chatcmpl-r1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"             \
    "\"gemini-2.0-flash\",\"choices\":["

static void test_stream_text(void **state)
{
    stream_t s;
    stream_open(&s, 1);
    /* the recorded sequence of a streamGenerateContent?alt=sse answer */
    assert_int_equal(feed(&s, "",
                          "{\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": "
                          "\"The\"}]}}],\"usageMetadata\": {\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": "
                          "\"gemini-2.0-flash\",\"createTime\": \"2025-01-01T00:00:00Z\",\"responseId\": \"r\"}"),
                     DP_EV_CONTENT);
    assert_string_equal(take(&s),
                        HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                             "\"finish_reason\":null}],\"usage\":null}\n\n" HEAD
                             "{\"index\":0,\"delta\":{\"content\":\"The\"},\"logprobs\":null,\"finish_reason\":null}],"
                             "\"usage\":null}\n\n");
    /* intermediate usage updates the counts but does not end the stream */
    assert_int_equal(feed(&s, "",
                          "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" sky\"}]}}],"
                          "\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":2,"
                          "\"totalTokenCount\":10}}"),
                     DP_EV_CONTENT | DP_EV_USAGE);
    assert_string_equal(take(&s), HEAD "{\"index\":0,\"delta\":{\"content\":\" sky\"},\"logprobs\":null,"
                                       "\"finish_reason\":null}],\"usage\":null}\n\n");
    assert_int_equal(s.tk.output, 2);
    assert_int_equal(feed(&s, "",
                          "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" is\"}]},"
                          "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":8,"
                          "\"candidatesTokenCount\":3,\"totalTokenCount\":11,\"cachedContentTokenCount\":4}}"),
                     DP_EV_CONTENT | DP_EV_USAGE | DP_EV_DONE);
    assert_string_equal(take(&s),
                        HEAD "{\"index\":0,\"delta\":{\"content\":\" is\"},\"logprobs\":null,\"finish_reason\":null}],"
                             "\"usage\":null}\n\n" HEAD
                             "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}"
                             "\n\n" HEAD "],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":3,\"total_tokens\":11,"
                             "\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n");
    assert_true(s.tk.seen);
    assert_int_equal(s.tk.input, 8);
    assert_int_equal(s.tk.cached_input, 4);
    assert_int_equal(s.tk.output, 3);
    h2o_buffer_dispose(&s.out);
}

static void test_stream_tool_call_and_late_usage(void **state)
{
    stream_t s;
    stream_open(&s, 0);
    assert_int_equal(feed(&s, "",
                          "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{"
                          "\"name\":\"get_weather\",\"args\":{\"location\":\"Paris\"}}}]},\"finishReason\":"
                          "\"STOP\"}]}"),
                     DP_EV_CONTENT);
    assert_string_equal(take(&s),
                        HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                             "\"finish_reason\":null}]}\n\n" HEAD
                             "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_0\",\"type\":"
                             "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\":"
                             "\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n" HEAD
                             "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n");
    /* the usage comes on its own after the finish: the end, no usage chunk
     * since the client did not ask */
    assert_int_equal(feed(&s, "", "{\"usageMetadata\":{\"promptTokenCount\":20,\"candidatesTokenCount\":6}}"),
                     DP_EV_USAGE | DP_EV_DONE);
    assert_string_equal(take(&s), "");
    assert_int_equal(s.tk.input, 20);
    assert_int_equal(s.tk.output, 6);
    h2o_buffer_dispose(&s.out);

    /* an in-stream error: nothing appended, the request path words it */
    stream_open(&s, 0);
    assert_int_equal(feed(&s, "", "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"), DP_EV_CONTENT);
    take(&s);
    assert_int_equal(feed(&s, "",
                          "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":"
                          "\"UNAVAILABLE\"}}"),
                     DP_EV_ERROR);
    assert_string_equal(take(&s), "");
    assert_int_equal(feed(&s, "", "{not json"), DP_EV_ERROR);
    h2o_buffer_dispose(&s.out);

    /* a safety stop mid-stream */
    stream_open(&s, 0);
    assert_int_equal(feed(&s, "",
                          "{\"candidates\":[{\"finishReason\":\"SAFETY\"}],\"usageMetadata\":"
                          "{\"promptTokenCount\":5,\"candidatesTokenCount\":0}}"),
                     DP_EV_USAGE | DP_EV_DONE);
    const char *o = take(&s);
    assert_non_null(strstr(o, "\"role\":\"assistant\""));
    assert_non_null(strstr(o, "\"finish_reason\":\"content_filter\""));
    h2o_buffer_dispose(&s.out);
}

static void test_stream_claude_events(void **state)
{
    stream_t s;
    stream_open(&s, 0);
    int f = feed(&s, "message_start",
                 "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
                 "\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"usage\":{\"input_tokens\":"
                 "10,\"output_tokens\":1}}}");
    assert_false(f & DP_EV_CONTENT);
    feed(&s, "content_block_start",
         "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
         "\"text\",\"text\":\"\"}}");
    f = feed(&s, "content_block_delta",
             "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
             "\"text_delta\",\"text\":\"hi\"}}");
    assert_true(f & DP_EV_CONTENT);
    feed(&s, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
    feed(&s, "message_delta",
         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":"
         "{\"output_tokens\":2}}");
    f = feed(&s, "message_stop", "{\"type\":\"message_stop\"}");
    assert_true(f & DP_EV_DONE);
    const char *o = take(&s);
    assert_non_null(strstr(o, "\"content\":\"hi\""));
    assert_int_equal(s.tk.input, 10);
    assert_int_equal(s.tk.output, 2);
    h2o_buffer_dispose(&s.out);
}

/* ---- embeddings ----------------------------------------------------------------- */

static void test_embeddings(void **state)
{
    const char *req = "{\"model\":\"text-embedding-005\",\"input\":[\"hello world\",\"x\"],\"dimensions\":8,"
                      "\"input_type\":\"RETRIEVAL_QUERY\"}";
    dp_chat_req_t in = chat_req(req);
    h2o_iovec_t body;
    const char *msg = NULL;
    assert_int_equal(dp_vertex_embeddings_body(&pool, in.body, in.toks, &body, &msg), 0);
    assert_int_equal(body.len, strlen("{\"instances\":[{\"content\":\"hello world\",\"task_type\":\"RETRIEVAL_QUERY\"},"
                                      "{\"content\":\"x\",\"task_type\":\"RETRIEVAL_QUERY\"}],\"parameters\":"
                                      "{\"outputDimensionality\":8}}"));
    assert_memory_equal(body.base,
                        "{\"instances\":[{\"content\":\"hello world\",\"task_type\":\"RETRIEVAL_QUERY\"},"
                        "{\"content\":\"x\",\"task_type\":\"RETRIEVAL_QUERY\"}],\"parameters\":"
                        "{\"outputDimensionality\":8}}",
                        body.len);
    in = chat_req("{\"model\":\"m\",\"input\":\"one\"}");
    assert_int_equal(dp_vertex_embeddings_body(&pool, in.body, in.toks, &body, &msg), 0);
    assert_memory_equal(body.base, "{\"instances\":[{\"content\":\"one\"}]}", body.len);
    in = chat_req("{\"model\":\"m\",\"input\":[[1,2,3]]}");
    assert_int_equal(dp_vertex_embeddings_body(&pool, in.body, in.toks, &body, &msg), SL_EINVAL);
    assert_non_null(strstr(msg, "token arrays"));
    in = chat_req("{\"model\":\"m\",\"input\":[]}");
    assert_int_equal(dp_vertex_embeddings_body(&pool, in.body, in.toks, &body, &msg), SL_EINVAL);
    in = chat_req("{\"model\":\"m\",\"input\":\"a\",\"dimensions\":0}");
    assert_int_equal(dp_vertex_embeddings_body(&pool, in.body, in.toks, &body, &msg), SL_EINVAL);

    /* the upstream request */
    Sluice__Config__V1__Provider pb = SLUICE__CONFIG__V1__PROVIDER__INIT;
    dp_provider_t p = {.name = "vertex",
                       .kind = "vertex",
                       .host = "us-central1-aiplatform.googleapis.com",
                       .port = 443,
                       .is_ssl = 1,
                       .path_prefix = "",
                       .authority = "us-central1-aiplatform.googleapis.com",
                       .authority_len = 37,
                       .pb = &pb};
    dp_credential_t cred = {.id = "sa", .secret = account, .secret_len = strlen(account), .weight = 1};
    h2o_headers_t hdrs = {NULL};
    dp_upstream_req_t out = {0};
    in = chat_req(req);
    int rc = SL_EUNAVAIL;
    for (int i = 0; i < 500 && rc == SL_EUNAVAIL; i++) {
        rc = ops->build_embeddings(&pool, &p, &cred, h2o_iovec_init(H2O_STRLIT("text-embedding-005")), &in, &hdrs,
                                   h2o_iovec_init(H2O_STRLIT("rid")), &out);
        if (rc == SL_EUNAVAIL) {
            struct timespec t = {0, 10000000};
            nanosleep(&t, NULL);
        }
    }
    assert_int_equal(rc, 0);
    const char *head = h2o_strdup(&pool, out.bufs[0].base, out.bufs[0].len).base;
    assert_true(strncmp(head,
                        "POST /v1/projects/sa-project/locations/us-central1/publishers/google/models/"
                        "text-embedding-005:predict HTTP/1.1\r\nhost: us-central1-aiplatform.googleapis.com\r\n"
                        "authorization: Bearer ya29.test-",
                        166) == 0);
    assert_int_equal(ops->build_embeddings(&pool, &p, &cred, h2o_iovec_init(H2O_STRLIT("claude-3")), &in, &hdrs,
                                           h2o_iovec_init(H2O_STRLIT("rid")), &out),
                     SL_EINVAL);
    assert_int_equal(out.error_status, 400);

    /* the answer */
    static const char answer[] =
        "{\"predictions\": [{\"embeddings\": {\"statistics\": {\"truncated\": false, \"token_count\": 2}, "
        "\"values\": [0.5, -0.25]}}, {\"embeddings\": {\"statistics\": {\"truncated\": false, \"token_count\": 1}, "
        "\"values\": [1, 0]}}], \"metadata\": {\"billableCharacterCount\": 12}}";
    dp_xlate_ctx_t c = {.model = h2o_iovec_init(H2O_STRLIT("text-embedding-005"))};
    dp_tokens_t tk = {0};
    h2o_iovec_t o;
    in = chat_req("{\"model\":\"text-embedding-005\",\"input\":[\"hello world\",\"x\"]}");
    assert_int_equal(ops->translate_embeddings(&pool, &c, &in, NULL, answer, strlen(answer), &o, &tk), 0);
    assert_string_equal(h2o_strdup(&pool, o.base, o.len).base,
                        "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
                        "[0.5,-0.25]},{\"object\":\"embedding\",\"index\":1,\"embedding\":[1,0]}],\"model\":"
                        "\"text-embedding-005\",\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}");
    assert_true(tk.seen);
    assert_int_equal(tk.input, 3);
    assert_int_equal(tk.output, 0);
    in = chat_req("{\"model\":\"text-embedding-005\",\"input\":\"x\",\"encoding_format\":\"base64\"}");
    assert_int_equal(ops->translate_embeddings(&pool, &c, &in, NULL, answer, strlen(answer), &o, &tk), 0);
    /* 0.5 and -0.25 as float32 little-endian: 00 00 00 3f 00 00 80 be */
    assert_non_null(strstr(h2o_strdup(&pool, o.base, o.len).base, "\"embedding\":\"AAAAPwAAgL4=\""));
    assert_int_equal(ops->translate_embeddings(&pool, &c, &in, NULL, H2O_STRLIT("{\"predictions\":[{}]}"), &o, &tk),
                     SL_EINVAL);
    assert_int_equal(ops->translate_embeddings(&pool, &c, &in, NULL,
                                               H2O_STRLIT("{\"predictions\":[{\"embeddings\":{\"values\":[\"a\"]}}]}"),
                                               &o, &tk),
                     SL_EINVAL);
}

/* ---- errors ------------------------------------------------------------------------ */

static void test_map_error(void **state)
{
    static const char exhausted[] = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource exhausted. "
                                    "Please try again later.\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n";
    check_mapped(ops, 429, exhausted, 429, "rate_limit_error", "rate_limit_exceeded",
                 "Resource exhausted. Please try again later.");

    static const char invalid[] = "{\"error\":{\"code\":400,\"message\":\"Please use a valid role: user, model.\","
                                  "\"status\":\"INVALID_ARGUMENT\"}}";
    check_mapped(ops, 400, invalid, 400, "invalid_request_error", "invalid_argument",
                 "Please use a valid role: user, model.");

    static const char unauth[] = "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication "
                                 "credentials.\",\"status\":\"UNAUTHENTICATED\"}}";
    dp_upstream_error_t e = map_upstream_error(ops, 401, unauth);
    assert_int_equal(e.status, 502);
    assert_string_equal(e.code, "upstream_auth_failed");
    e = map_upstream_error(ops, 403, unauth);
    assert_int_equal(e.status, 502);

    static const char unavailable[] = "{\"error\":{\"code\":503,\"message\":\"The service is currently "
                                      "unavailable.\",\"status\":\"UNAVAILABLE\"}}";
    check_mapped(ops, 503, unavailable, 503, "api_error", "service_unavailable",
                 "The service is currently unavailable.");

    static const char not_found[] = "{\"error\":{\"code\":404,\"message\":\"Publisher Model `x` not found.\","
                                    "\"status\":\"NOT_FOUND\"}}";
    e = map_upstream_error(ops, 404, not_found);
    assert_int_equal(e.status, 404);
    assert_string_equal(e.code, "model_not_found");

    e = map_upstream_error(ops, 502, "<html>bad gateway</html>");
    assert_int_equal(e.status, 502);
    assert_string_equal(e.message, "");

    /* Claude's own error body is Anthropic's */
    static const char overloaded[] = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                                     "\"Overloaded\"}}";
    e = map_upstream_error(ops, 529, overloaded);
    assert_int_equal(e.pass_body, 0);
    assert_true(e.status >= 500);
}

/* ---- malformed inputs --------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
    return xorshift64(&rng);
}

static char *mutate(const char *src, size_t *len)
{
    size_t n = strlen(src);
    char *m = h2o_mem_alloc_pool(&pool, n + 1);
    memcpy(m, src, n + 1);
    static const char alphabet[] = "{}[]\":,\\ 0aZ-";
    int edits = 1 + (int)(next_rand() % 3);
    for (int k = 0; k < edits; k++)
        m[next_rand() % n] = next_rand() % 2 ? alphabet[next_rand() % (sizeof(alphabet) - 1)] : (char)next_rand();
    *len = next_rand() % 5 == 0 ? next_rand() % n : n;
    return m;
}

static void test_mutations(void **state)
{
    static const char *const requests[] = {
        "{\"model\":\"g\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{"
        "\"type\":\"text\",\"text\":\"t\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
        "AAAA\"}}]},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{"
        "\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":"
        "\"r\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"a\":{\"type\":\"integer\"}}}}}],\"tool_choice\":\"auto\",\"max_tokens\":5,\"stop\":[\"x\"],"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"object\"}}}}",
    };
    static const char *const answers[] = {
        text_answer,
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":[1,{\"b\":null}]}}"
        "},"
        "{\"text\":\"x\"}]},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":1,"
        "\"candidatesTokenCount\":2,\"cachedContentTokenCount\":9}}",
    };
    for (int i = 0; i < 2000; i++) {
        size_t len;
        const char *src = requests[0];
        char *m = mutate(src, &len);
        size_t cap = len / 2 + 2;
        sl_json_tok_t *toks = h2o_mem_alloc_pool(&pool, cap * sizeof(*toks));
        dp_chat_req_t in = {.body = m, .len = len, .toks = toks, .max_tokens = -1};
        in.ntoks = sl_json_parse(m, len, toks, cap, NULL);
        if (in.ntoks > 0 && toks[0].type == SL_JSON_OBJECT) {
            h2o_iovec_t out;
            const char *msg, *param;
            int rc = dp_vertex_gemini_body(&pool, &in, &out, &msg, &param);
            assert_true(rc == 0 || rc == SL_EINVAL);
            if (rc == 0)
                assert_true(valid_json(out.base, out.len));
            else
                assert_non_null(msg);
        }
        const char *a = answers[i % 2];
        m = mutate(a, &len);
        dp_xlate_ctx_t c = ctx(1);
        dp_tokens_t tk = {0};
        h2o_iovec_t out;
        int rc = ops->translate_response(&pool, &c, m, len, &out, &tk);
        assert_true(rc == 0 || rc == SL_EINVAL);
        if (rc == 0)
            assert_true(valid_json(out.base, out.len));
        assert_true(tk.cached_input <= tk.input);
        /* and as a stream event */
        h2o_buffer_t *ob;
        h2o_buffer_init(&ob, &h2o_socket_buffer_prototype);
        c = ctx(1);
        ops->translate_event(&pool, &c, "", 0, m, len, &ob, &tk);
        /* every appended event is "data: <json>\n\n" */
        const char *p = ob->bytes, *end = ob->bytes + ob->size;
        while (p < end) {
            assert_true(end - p > 8 && memcmp(p, "data: ", 6) == 0);
            const char *e = memmem(p, (size_t)(end - p), "\n\n", 2);
            assert_non_null(e);
            assert_true(valid_json(p + 6, (size_t)(e - p - 6)));
            p = e + 2;
        }
        h2o_buffer_dispose(&ob);
        dp_upstream_error_t ue = {0};
        ops->map_error(400 + (int)(next_rand() % 200), m, len, &ue);
        assert_true(ue.status >= 400 && ue.status <= 599);
        assert_true(strlen(ue.message) < sizeof(ue.message));
        if (i % 200 == 199) {
            h2o_mem_clear_pool(&pool);
            h2o_mem_init_pool(&pool);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_and_system, setup, teardown),
        cmocka_unit_test_setup_teardown(test_images_and_media, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_calling_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_gemini_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_claude_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_function_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_finish_reasons_and_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_tool_call_and_late_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_claude_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embeddings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
