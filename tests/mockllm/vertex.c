/*
 * vertex.c - fake Google Vertex AI, authenticated with bearer tokens issued
 * by the token endpoint (google_auth.h):
 *
 *   POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
 *   POST .../publishers/google/models/{m}:streamGenerateContent[?alt=sse]
 *   POST .../publishers/google/models/{m}:predict        text embeddings
 *   POST .../publishers/anthropic/models/{m}:rawPredict  Claude (anthropic.h)
 *   POST .../publishers/anthropic/models/{m}:streamRawPredict
 *
 * Errors use Google's {"error":{"code","message","status"}}.
 *
 * Gemini answers (reply.h defines words, the reply and the tool trigger):
 *   promptTokenCount     = 3 + (4 + words of systemInstruction parts, when
 *                          present) + sum over contents of (4 + words of
 *                          their text parts);
 *   cachedContentTokenCount = promptTokenCount / 2 when the request names a
 *                          "cachedContent" (a part of promptTokenCount);
 *   candidatesTokenCount = mock_reply_length(generationConfig.maxOutputTokens)
 *                          (finishReason "MAX_TOKENS" when a limit below 1024
 *                          cut it, else "STOP"); a stopSequences entry equal to
 *                          a reply word ends it there ("STOP");
 *   tool call            = a functionCall part calling the first function
 *                          declaration with MOCK_TOOL_ARGS, finishReason
 *                          "STOP" (Gemini has no tool-call finish reason).
 * streamGenerateContent sends one GenerateContentResponse per word (a tool
 * call in one), the last with finishReason and usageMetadata: as SSE
 * ("data: {...}\r\n\r\n") with alt=sse, else as one JSON array.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anthropic.h"
#include "buf.h"
#include "call.h"
#include "google_auth.h"
#include "http.h"
#include "provider.h"
#include "reply.h"

#define EMBEDDING_DIMS 768
#define EMBEDDING_MAX_DIMS 3072

/* ---- errors ---------------------------------------------------------------- */

static const char *status_name(int code)
{
    switch (code) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return code < 500 ? "FAILED_PRECONDITION" : "INTERNAL";
    }
}

static void send_fault(mock_call_t *call, int status)
{
    const char *msg;

    switch (status) {
    case 401:
        msg = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
              "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-"
              "project.";
        break;
    case 403:
        msg = "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist).";
        break;
    case 429:
        msg = "Resource exhausted. Please try again later. Please refer to "
              "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.";
        break;
    case 500:
        msg = "Internal error encountered.";
        break;
    case 503:
        msg = "The service is currently unavailable.";
        break;
    case 504:
        msg = "The request timed out. Please try again.";
        break;
    default:
        msg = mock_http_reason(status);
        break;
    }
    mock_google_send_error(call, status, status_name(status), msg);
}

static void stream_error_sse(mock_call_t *call, mock_buf_t *out)
{
    (void)call;
    mock_buf_append_lit(out, "data: ");
    mock_google_format_error(out, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.");
    mock_buf_append_lit(out, "\r\n\r\n");
}

static void stream_error_array(mock_call_t *call, mock_buf_t *out)
{
    (void)call;
    mock_buf_append_lit(out, ",\r\n");
    mock_google_format_error(out, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.");
    mock_buf_append_lit(out, "]");
}

static void send_not_found(h2o_req_t *req)
{
    mock_buf_t buf;
    mock_buf_init(&buf, &req->pool, 256);
    mock_google_format_error(&buf, 404, "NOT_FOUND", "The requested URL was not found on this server.");
    mock_http_send(req, 404, "application/json; charset=UTF-8", buf.base, buf.len);
}

static void send_invalid(mock_call_t *call, const char *message)
{
    mock_google_send_error(call, 400, "INVALID_ARGUMENT", message);
}

/* ---- generateContent ------------------------------------------------------- */

typedef struct st_gen_t {
    h2o_iovec_t model; /* escaped */
    uint64_t prompt_tokens;
    uint64_t cached_tokens;
    uint32_t output_tokens;
    const char *finish_reason;
    h2o_iovec_t tool_name; /* escaped; base NULL for a text reply */
    char create_time[32];
    /* streaming */
    int sse;
    mock_buf_t event;
    uint32_t next_event, num_events;
} gen_t;

static uint64_t parts_words(json_t *parts)
{
    uint64_t words = 0;
    size_t i;
    json_t *p;

    json_array_foreach(parts, i, p)
    {
        json_t *text = json_object_get(p, "text");
        if (json_is_string(text))
            words += mock_count_words(json_string_value(text), json_string_length(text));
    }
    return words;
}

static json_t *first_function(json_t *root)
{
    json_t *tools = json_object_get(root, "tools"), *t;
    size_t i;

    json_array_foreach(tools, i, t)
    {
        json_t *name = json_object_get(json_array_get(json_object_get(t, "functionDeclarations"), 0), "name");
        if (json_is_string(name) && json_string_length(name) != 0)
            return name;
    }
    return NULL;
}

/* Reads a generateContent body into *g. Returns 0, or -1 after answering. */
static int read_generate(mock_call_t *call, json_t *root, gen_t *g)
{
    json_t *contents = json_object_get(root, "contents");

    if (!json_is_array(contents) || json_array_size(contents) == 0) {
        send_invalid(call, "Unable to submit request because it has an empty contents field. Learn more: "
                           "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini");
        return -1;
    }
    g->prompt_tokens = 3;
    json_t *system = json_object_get(root, "systemInstruction");
    if (json_is_object(system))
        g->prompt_tokens += 4 + parts_words(json_object_get(system, "parts"));
    size_t i;
    json_t *c;
    json_array_foreach(contents, i, c)
    {
        json_t *role = json_object_get(c, "role");
        if (role != NULL && (!json_is_string(role) || (strcmp(json_string_value(role), "user") != 0 &&
                                                       strcmp(json_string_value(role), "model") != 0))) {
            send_invalid(call, "Please use a valid role: user, model.");
            return -1;
        }
        if (!json_is_array(json_object_get(c, "parts")) || json_array_size(json_object_get(c, "parts")) == 0) {
            send_invalid(call, "Unable to submit request because it must include at least one parts field, which "
                               "describes the prompt input. Learn more: "
                               "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini");
            return -1;
        }
        g->prompt_tokens += 4 + parts_words(json_object_get(c, "parts"));
    }
    if (json_is_string(json_object_get(root, "cachedContent")))
        g->cached_tokens = g->prompt_tokens / 2;

    json_t *config = json_object_get(root, "generationConfig");
    json_t *max = json_object_get(config, "maxOutputTokens");
    if (max != NULL && (!json_is_integer(max) || json_integer_value(max) < 1)) {
        send_invalid(call, "Invalid value at 'generation_config.max_output_tokens': must be a positive integer");
        return -1;
    }
    int limited;
    mock_reply_length(max != NULL, max != NULL ? json_integer_value(max) : 0, &g->output_tokens, &limited);
    g->finish_reason = limited ? "MAX_TOKENS" : "STOP";
    if (mock_reply_stop(json_object_get(config, "stopSequences"), &g->output_tokens) != NULL)
        g->finish_reason = "STOP";

    json_t *fn = first_function(root);
    json_t *last = json_array_get(contents, json_array_size(contents) - 1);
    json_t *role = json_object_get(last, "role");
    if (fn != NULL && (role == NULL || strcmp(json_string_value(role), "user") == 0) &&
        mock_content_mentions_weather(json_object_get(last, "parts"), NULL)) {
        g->tool_name = mock_escaped_copy(&call->req->pool, json_string_value(fn), json_string_length(fn));
        g->finish_reason = "STOP";
    }
    return 0;
}

static void append_usage(mock_buf_t *buf, const gen_t *g)
{
    mock_buf_append_lit(buf, "\"usageMetadata\":{\"promptTokenCount\":");
    mock_buf_append_u64(buf, g->prompt_tokens);
    mock_buf_append_lit(buf, ",\"candidatesTokenCount\":");
    mock_buf_append_u64(buf, g->output_tokens);
    mock_buf_append_lit(buf, ",\"totalTokenCount\":");
    mock_buf_append_u64(buf, g->prompt_tokens + g->output_tokens);
    if (g->cached_tokens != 0) {
        mock_buf_append_lit(buf, ",\"cachedContentTokenCount\":");
        mock_buf_append_u64(buf, g->cached_tokens);
    }
    mock_buf_append_lit(buf, ",\"trafficType\":\"ON_DEMAND\",\"promptTokensDetails\":[{\"modality\":\"TEXT\","
                             "\"tokenCount\":");
    mock_buf_append_u64(buf, g->prompt_tokens);
    mock_buf_append_lit(buf, "}],\"candidatesTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":");
    mock_buf_append_u64(buf, g->output_tokens);
    mock_buf_append_lit(buf, "}]}");
}

static void append_tail(mock_buf_t *buf, mock_call_t *call, const gen_t *g)
{
    mock_buf_append_lit(buf, ",\"modelVersion\":\"");
    mock_buf_append(buf, g->model.base, g->model.len);
    mock_buf_append_lit(buf, "\",\"createTime\":\"");
    mock_buf_append_str(buf, g->create_time);
    mock_buf_append_lit(buf, "\",\"responseId\":\"mock-");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\"}");
}

/* One GenerateContentResponse with the given parts text (raw, escaped) or the
 * function call; final: with finishReason and full usage. */
static void append_response(mock_buf_t *buf, mock_call_t *call, const gen_t *g, h2o_iovec_t text, int final)
{
    mock_buf_append_lit(buf, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[");
    if (g->tool_name.base != NULL) {
        mock_buf_append_lit(buf, "{\"functionCall\":{\"name\":\"");
        mock_buf_append(buf, g->tool_name.base, g->tool_name.len);
        mock_buf_append_lit(buf, "\",\"args\":" MOCK_TOOL_ARGS "}}");
    } else {
        mock_buf_append_lit(buf, "{\"text\":\"");
        mock_buf_append(buf, text.base, text.len);
        mock_buf_append_lit(buf, "\"}");
    }
    mock_buf_append_lit(buf, "]}");
    if (final) {
        mock_buf_append_lit(buf, ",\"finishReason\":\"");
        mock_buf_append_str(buf, g->finish_reason);
        mock_buf_append_lit(buf, "\",\"avgLogprobs\":-0.0625}],");
        append_usage(buf, g);
    } else {
        mock_buf_append_lit(buf, "}],\"usageMetadata\":{\"trafficType\":\"ON_DEMAND\"}");
    }
    append_tail(buf, call, g);
}

static int next_chunk(mock_call_t *call, h2o_iovec_t *out)
{
    gen_t *g = call->provider_data;
    mock_buf_t *ev = &g->event;
    uint32_t i = g->next_event++;
    int final = i + 1 == g->num_events;
    h2o_iovec_t text = g->output_tokens != 0 ? mock_reply_token(i) : h2o_iovec_init("", 0);

    ev->len = 0;
    if (g->sse)
        mock_buf_append_lit(ev, "data: ");
    else
        mock_buf_append(ev, i == 0 ? "[" : ",\r\n", i == 0 ? 1 : 3);
    append_response(ev, call, g, text, final);
    if (g->sse)
        mock_buf_append_lit(ev, "\r\n\r\n");
    else if (final)
        mock_buf_append_lit(ev, "]");
    *out = h2o_iovec_init(ev->base, ev->len);
    return !final;
}

static void generate(mock_call_t *call, h2o_iovec_t model, int streamed)
{
    h2o_req_t *req = call->req;
    json_t *root = mock_http_json_body(req);

    if (root == NULL) {
        send_invalid(call, "Invalid JSON payload received.");
        return;
    }
    gen_t *g = mock_call_alloc(call, sizeof(*g));
    g->model = mock_escaped_copy(&req->pool, model.base, model.len);
    int rc = read_generate(call, root, g);
    json_decref(root);
    if (rc != 0)
        return;
    struct tm tm;
    time_t now = req->processed_at.at.tv_sec;
    gmtime_r(&now, &tm);
    strftime(g->create_time, sizeof(g->create_time), "%Y-%m-%dT%H:%M:%S.000000Z", &tm);

    call->kind = MOCK_KIND_CHAT;
    call->usage = (mock_usage_t){g->prompt_tokens, g->output_tokens, g->cached_tokens};
    if (!streamed) {
        mock_buf_t buf;
        h2o_iovec_t text = mock_reply_text(g->output_tokens);
        mock_buf_init(&buf, &req->pool, 1024 + text.len + g->model.len + g->tool_name.len);
        append_response(&buf, call, g, text, 1);
        mock_call_respond(call, 200, "application/json; charset=UTF-8", buf.base, buf.len);
        return;
    }
    h2o_iovec_t alt = mock_http_form_param(&req->pool, mock_http_raw_query(req), "alt");
    g->sse = alt.base != NULL && strcmp(alt.base, "sse") == 0;
    g->num_events = g->tool_name.base != NULL || g->output_tokens == 0 ? 1 : g->output_tokens;
    mock_buf_init(&g->event, &req->pool, 1024 + g->model.len + g->tool_name.len);
    call->provider_data = g;
    if (g->sse) {
        mock_call_stream(call, "text/event-stream", next_chunk);
    } else {
        call->stream_error = stream_error_array;
        mock_call_stream(call, "application/json; charset=UTF-8", next_chunk);
    }
}

/* ---- predict (text embeddings) --------------------------------------------- */

static void predict(mock_call_t *call)
{
    h2o_req_t *req = call->req;
    json_t *root = mock_http_json_body(req);
    json_t *instances = json_object_get(root, "instances"), *inst;
    if (!json_is_array(instances) || json_array_size(instances) == 0) {
        json_decref(root);
        send_invalid(call, "Invalid JSON payload received. Missing \"instances\".");
        return;
    }
    size_t dims = EMBEDDING_DIMS, i;
    json_t *d = json_object_get(json_object_get(root, "parameters"), "outputDimensionality");
    if (d != NULL) {
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > EMBEDDING_MAX_DIMS) {
            json_decref(root);
            send_invalid(call, "Invalid value for outputDimensionality.");
            return;
        }
        dims = (size_t)json_integer_value(d);
    }
    float *vec = h2o_mem_alloc_pool(&req->pool, dims * sizeof(float));
    uint64_t tokens = 0, chars = 0;
    mock_buf_t buf;
    mock_buf_init(&buf, &req->pool, 256 + json_array_size(instances) * (128 + dims * 16));
    mock_buf_append_lit(&buf, "{\"predictions\":[");
    json_array_foreach(instances, i, inst)
    {
        json_t *content = json_object_get(inst, "content");
        if (!json_is_string(content)) {
            json_decref(root);
            send_invalid(call, "Invalid instance: \"content\" must be a string.");
            return;
        }
        uint64_t n = mock_count_words(json_string_value(content), json_string_length(content));
        tokens += n;
        chars += json_string_length(content);
        mock_unit_vector(mock_fnv1a(MOCK_FNV_OFFSET, json_string_value(content), json_string_length(content)), vec,
                         dims);
        if (i != 0)
            mock_buf_append_lit(&buf, ",");
        mock_buf_append_lit(&buf, "{\"embeddings\":{\"statistics\":{\"truncated\":false,\"token_count\":");
        mock_buf_append_u64(&buf, n);
        mock_buf_append_lit(&buf, "},\"values\":");
        mock_append_floats(&buf, vec, dims);
        mock_buf_append_lit(&buf, "}}");
    }
    json_decref(root);
    mock_buf_append_lit(&buf, "],\"metadata\":{\"billableCharacterCount\":");
    mock_buf_append_u64(&buf, chars);
    mock_buf_append_lit(&buf, "}}");
    call->kind = MOCK_KIND_EMBEDDING;
    call->usage.prompt_tokens = tokens;
    mock_call_respond(call, 200, "application/json; charset=UTF-8", buf.base, buf.len);
}

/* ---- routing --------------------------------------------------------------- */

/* Consumes "/<literal>/<segment>" from *p; returns the segment or {NULL, 0}. */
static h2o_iovec_t take(const char **p, const char *end, const char *literal)
{
    size_t n = strlen(literal);
    if ((size_t)(end - *p) <= n + 1 || (*p)[0] != '/' || memcmp(*p + 1, literal, n) != 0 || (*p)[n + 1] != '/')
        return h2o_iovec_init(NULL, 0);
    const char *seg = *p + n + 2, *stop = memchr(seg, '/', (size_t)(end - seg));
    if (stop == NULL)
        stop = end;
    *p = stop;
    return seg == stop ? h2o_iovec_init(NULL, 0) : h2o_iovec_init(seg, (size_t)(stop - seg));
}

static void send_model_not_found(mock_call_t *call, h2o_iovec_t path)
{
    mock_buf_t msg;
    mock_buf_init(&msg, &call->req->pool, 64 + path.len);
    mock_buf_append_lit(&msg, "Publisher Model `");
    mock_buf_append(&msg, path.base + 4, path.len - 4); /* without "/v1/" */
    mock_buf_append_lit(&msg, "` not found.");
    mock_buf_append(&msg, "", 1);
    mock_google_send_error(call, 404, "NOT_FOUND", msg.base);
}

static void on_project_call(mock_call_t *call)
{
    h2o_iovec_t path = call->req->path_normalized;
    const char *p = path.base + 3, *end = path.base + path.len; /* after "/v1" */

    if (!mock_google_check_bearer(call))
        return;
    h2o_iovec_t project = take(&p, end, "projects"), location = take(&p, end, "locations");
    h2o_iovec_t publisher = take(&p, end, "publishers"), model = take(&p, end, "models");
    const char *colon = model.base != NULL ? memchr(model.base, ':', model.len) : NULL;
    if (project.base == NULL || location.base == NULL || publisher.base == NULL || colon == NULL || p != end) {
        send_model_not_found(call, path);
        return;
    }
    h2o_iovec_t method = h2o_iovec_init(colon + 1, (size_t)(model.base + model.len - colon - 1));
    model.len = (size_t)(colon - model.base);

    if (h2o_memis(publisher.base, publisher.len, H2O_STRLIT("google"))) {
        if (h2o_memis(method.base, method.len, H2O_STRLIT("generateContent")))
            generate(call, model, 0);
        else if (h2o_memis(method.base, method.len, H2O_STRLIT("streamGenerateContent")))
            generate(call, model, 1);
        else if (h2o_memis(method.base, method.len, H2O_STRLIT("predict")))
            predict(call);
        else
            send_model_not_found(call, path);
    } else if (h2o_memis(publisher.base, publisher.len, H2O_STRLIT("anthropic"))) {
        int raw = h2o_memis(method.base, method.len, H2O_STRLIT("rawPredict"));
        int stream_raw = h2o_memis(method.base, method.len, H2O_STRLIT("streamRawPredict"));
        if (!raw && !stream_raw) {
            send_model_not_found(call, path);
            return;
        }
        mock_anthropic_flavor_t *flavor = mock_call_alloc(call, sizeof(*flavor));
        flavor->version = MOCK_ANTHROPIC_VERTEX;
        flavor->model = mock_escaped_copy(&call->req->pool, model.base, model.len);
        flavor->force_stream = stream_raw;
        mock_anthropic_messages(call, flavor);
    } else {
        send_model_not_found(call, path);
    }
}

static const mock_route_t routes[] = {
    {"POST", "/v1/projects/*", on_project_call},
    {NULL},
};

const mock_provider_t mock_vertex_provider = {
    .name = "vertex",
    .id = MOCK_PROVIDER_VERTEX,
    .prefix = "/v1/projects/",
    .routes = routes,
    .send_fault = send_fault,
    .stream_error = stream_error_sse,
    .send_not_found = send_not_found,
};
