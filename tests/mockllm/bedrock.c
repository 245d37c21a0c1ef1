/*
 * bedrock.c - fake Amazon Bedrock Runtime, authenticated with AWS Signature
 * Version 4 (service "bedrock", any region; sl_sigv4 verifies as AWS does):
 *
 *   POST /model/{modelId}/converse          Converse (JSON)
 *   POST /model/{modelId}/converse-stream   ConverseStream
 *                                           (application/vnd.amazon.eventstream)
 *   POST /model/{modelId}/invoke            InvokeModel: Titan and Cohere
 *                                           embeddings; Claude (Messages body
 *                                           with "anthropic_version":
 *                                           "bedrock-2023-05-31")
 *
 * Errors carry AWS's `x-amzn-ErrorType` header and a {"message": ...} body;
 * a refused signature is 403 InvalidSignatureException (or the other
 * SigV4 exceptions sl_sigv4 names). Every answer has x-amzn-RequestId.
 *
 * Converse answers (reply.h defines words, the reply and the tool trigger):
 *   inputTokens  = 3 + (4 + words of system text blocks, when any) + sum over
 *                  messages of (4 + words of text blocks and of toolResult
 *                  text), minus the cached part: a cachePoint block anywhere
 *                  (system, messages, tools) reports cacheReadInputTokens =
 *                  half the prompt and cacheWriteInputTokens = 0;
 *   outputTokens = mock_reply_length(inferenceConfig.maxTokens) (stopReason
 *                  "max_tokens" when a limit below 1024 cut it, else
 *                  "end_turn"); a stopSequences entry equal to a reply word
 *                  ends it there ("stop_sequence"); a tool call is a toolUse
 *                  block with stopReason "tool_use";
 *   totalTokens  = every prompt token (cached too) plus outputTokens.
 * ConverseStream sends messageStart, [contentBlockStart for a tool call],
 * one contentBlockDelta per word or argument piece, contentBlockStop,
 * messageStop and metadata (usage, metrics), each event payload padded with
 * a "p" field as Bedrock does.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anthropic.h"
#include "buf.h"
#include "call.h"
#include "http.h"
#include "provider.h"
#include "reply.h"
#include "sl_evstream.h"
#include "sl_sigv4.h"

#define ERROR_NS_BEDROCK ":http://internal.amazon.com/coral/com.amazon.bedrock/"
#define ERROR_NS_CORAL ":http://internal.amazon.com/coral/com.amazon.coral.service/"
#define PADDING "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#define MAX_HEADERS 64
#define TITAN_V1_DIMS 1536
#define TITAN_V2_DIMS 1024
#define COHERE_DIMS 1024

/* ---- errors ---------------------------------------------------------------- */

static void add_request_id(mock_call_t *call)
{
    char id[40];
    mock_http_add_header(call->req, "x-amzn-requestid", id, mock_call_uuid(call, id));
}

/* Answers status with x-amzn-ErrorType type (its namespace appended) and
 * {"message": message}. */
static void send_error(mock_call_t *call, int status, const char *type, const char *ns, const char *message)
{
    mock_buf_t buf, t;

    mock_buf_init(&t, &call->req->pool, 128);
    mock_buf_append_str(&t, type);
    mock_buf_append_str(&t, ns);
    mock_http_add_header(call->req, "x-amzn-errortype", t.base, t.len);
    mock_buf_init(&buf, &call->req->pool, 64 + strlen(message));
    mock_buf_append_lit(&buf, "{\"message\":");
    mock_buf_append_json_str(&buf, message, strlen(message));
    mock_buf_append_lit(&buf, "}");
    add_request_id(call);
    mock_call_respond(call, status, MOCK_CT_JSON, buf.base, buf.len);
}

static void send_validation(mock_call_t *call, const char *message)
{
    send_error(call, 400, "ValidationException", ERROR_NS_BEDROCK, message);
}

/* The body as a JSON object, or NULL after answering that it is not one. */
static json_t *read_body(mock_call_t *call)
{
    json_t *root = mock_http_json_body(call->req);

    if (root == NULL)
        send_validation(call, "Malformed input request, please reformat your input and try again.");
    return root;
}

static void send_fault(mock_call_t *call, int status)
{
    switch (status) {
    case 400:
        send_validation(call, "Malformed input request (injected by sluice-mockllm).");
        break;
    case 403:
        send_error(call, 403, "AccessDeniedException", ERROR_NS_BEDROCK,
                   "You don't have access to the model with the specified model ID.");
        break;
    case 404:
        send_error(call, 404, "ResourceNotFoundException", ERROR_NS_BEDROCK,
                   "Could not resolve the foundation model "
                   "from the provided model identifier.");
        break;
    case 408:
        send_error(call, 408, "ModelTimeoutException", ERROR_NS_BEDROCK,
                   "Model has timed out in processing the request.");
        break;
    case 424:
        send_error(call, 424, "ModelErrorException", ERROR_NS_BEDROCK, "The model returned an error.");
        break;
    case 429:
        send_error(call, 429, "ThrottlingException", ERROR_NS_BEDROCK,
                   "Too many requests, please wait before trying again.");
        break;
    case 500:
        send_error(call, 500, "InternalServerException", ERROR_NS_BEDROCK,
                   "The server encountered an internal error while processing the request.");
        break;
    case 503:
        send_error(call, 503, "ServiceUnavailableException", ERROR_NS_BEDROCK,
                   "Bedrock is unable to process your request.");
        break;
    default:
        send_error(call, status, status < 500 ? "ValidationException" : "InternalServerException", ERROR_NS_BEDROCK,
                   mock_http_reason(status));
        break;
    }
}

static void encode_message(mock_buf_t *out, const sl_evs_header_t *h, size_t nh, const char *payload, size_t len)
{
    size_t size = sl_evs_encoded_size(h, nh, len), used = 0;
    uint8_t *dst = (uint8_t *)mock_buf_reserve(out, size);

    if (size != 0 && sl_evs_encode(h, nh, payload, len, dst, size, &used) == 0)
        out->len += used;
}

static void stream_error(mock_call_t *call, mock_buf_t *out)
{
    static const char payload[] = "{\"message\":\"The server encountered an internal error while processing the "
                                  "request.\"}";
    sl_evs_header_t h[3] = {
        sl_evs_hdr_string(SL_EVS_H_EXCEPTION_TYPE, SL_EVS_EX_INTERNAL_SERVER),
        sl_evs_hdr_string(SL_EVS_H_CONTENT_TYPE, "application/json"),
        sl_evs_hdr_string(SL_EVS_H_MESSAGE_TYPE, SL_EVS_MSG_EXCEPTION),
    };
    (void)call;
    encode_message(out, h, 3, payload, sizeof(payload) - 1);
}

static void send_not_found(h2o_req_t *req)
{
    static const char body[] = "{\"message\":\"Unknown operation\"}";
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-amzn-errortype"), 1, NULL,
                          H2O_STRLIT("UnknownOperationException" ERROR_NS_CORAL));
    mock_http_send(req, 404, MOCK_CT_JSON, body, sizeof(body) - 1);
}

/* ---- SigV4 ----------------------------------------------------------------- */

static const char *lookup_secret(void *ctx, const char *akid, size_t len)
{
    const mock_settings_t *s = ctx;
    if (strlen(s->aws_access_key_id) == len && memcmp(s->aws_access_key_id, akid, len) == 0)
        return s->aws_secret_access_key;
    return NULL;
}

/* Returns 1 when the request is signed with the configured credentials;
 * else answers as AWS does and returns 0. */
static int check_signature(mock_call_t *call)
{
    h2o_req_t *req = call->req;
    sl_sigv4_kv_t headers[MAX_HEADERS + 1];
    size_t n = 0;
    int has_host = 0;

    for (size_t i = 0; i != req->headers.size && n != MAX_HEADERS; ++i) {
        const h2o_header_t *h = &req->headers.entries[i];
        headers[n++] = (sl_sigv4_kv_t){h->name->base, h->name->len, h->value.base, h->value.len};
        has_host |= h2o_memis(h->name->base, h->name->len, H2O_STRLIT("host"));
    }
    if (!has_host && req->authority.len != 0)
        headers[n++] = (sl_sigv4_kv_t){"host", 4, req->authority.base, req->authority.len};

    h2o_iovec_t path = mock_http_raw_path(req), query = mock_http_raw_query(req);
    sl_sigv4_verify_input_t in = {
        .method = "POST",
        .path = path.base,
        .path_len = path.len,
        .query = query.base,
        .query_len = query.len,
        .headers = headers,
        .nheaders = n,
        .body = req->entity.base != NULL ? req->entity.base : "",
        .body_len = req->entity.len,
        .region = NULL,
        .service = "bedrock",
        .now = time(NULL),
        .lookup = lookup_secret,
        .lookup_ctx = (void *)call->settings,
    };
    sl_sigv4_verdict_t *v = h2o_mem_alloc_pool(&req->pool, sizeof(*v));
    if (sl_sigv4_verify(&in, v, NULL, 0) == 0)
        return 1;
    call->auth_failed = 1;
    send_error(call, sl_sigv4_http_status(v->reason), sl_sigv4_error_type(v->reason), ERROR_NS_CORAL, v->message);
    return 0;
}

/* ---- Converse -------------------------------------------------------------- */

typedef struct st_conv_t {
    uint64_t prompt_tokens;
    uint64_t cached_tokens;
    uint32_t output_tokens;
    const char *stop_reason;
    h2o_iovec_t tool_name; /* escaped; base NULL for a text reply */
    /* streaming */
    mock_buf_t payload, event;
    uint32_t next_event, num_deltas;
    struct timespec started;
} conv_t;

/* Words of a block list's text (and toolResult text); notes cachePoint. */
static uint64_t blocks_words(json_t *blocks, int *cached)
{
    uint64_t words = 0;
    size_t i;
    json_t *b;

    json_array_foreach(blocks, i, b)
    {
        json_t *text = json_object_get(b, "text");
        if (json_is_string(text))
            words += mock_count_words(json_string_value(text), json_string_length(text));
        if (json_object_get(b, "cachePoint") != NULL)
            *cached = 1;
        json_t *result = json_object_get(b, "toolResult");
        if (result != NULL)
            words += blocks_words(json_object_get(result, "content"), cached);
    }
    return words;
}

/* The first toolSpec name offered, or NULL; notes a cachePoint among tools. */
static json_t *first_tool(json_t *root, int *cached)
{
    json_t *tools = json_object_get(json_object_get(root, "toolConfig"), "tools"), *t, *name = NULL;
    size_t i;

    json_array_foreach(tools, i, t)
    {
        if (json_object_get(t, "cachePoint") != NULL)
            *cached = 1;
        json_t *n = json_object_get(json_object_get(t, "toolSpec"), "name");
        if (name == NULL && json_is_string(n) && json_string_length(n) != 0)
            name = n;
    }
    return name;
}

/* Reads a Converse body into *c. Returns 0, or -1 after answering. */
static int read_converse(mock_call_t *call, json_t *root, conv_t *c)
{
    char err[200];
    int cached = 0;

    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_validation(call, messages == NULL ? "1 validation error detected: Value null at 'messages' failed to "
                                                 "satisfy constraint: Member must not be null"
                                               : "A conversation must start with a user message. Try again with a "
                                                 "conversation that starts with a user message.");
        return -1;
    }
    c->prompt_tokens = 3;
    json_t *system = json_object_get(root, "system");
    if (json_is_array(system) && json_array_size(system) != 0)
        c->prompt_tokens += 4 + blocks_words(system, &cached);
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role) ||
            (strcmp(json_string_value(role), "user") != 0 && strcmp(json_string_value(role), "assistant") != 0)) {
            snprintf(err, sizeof(err),
                     "1 validation error detected: Value at 'messages.%zu.member.role' failed to satisfy constraint: "
                     "Member must satisfy enum value set: [user, assistant]",
                     i + 1);
            send_validation(call, err);
            return -1;
        }
        if (!json_is_array(content)) {
            snprintf(err, sizeof(err),
                     "1 validation error detected: Value null at 'messages.%zu.member.content' failed to satisfy "
                     "constraint: Member must not be null",
                     i + 1);
            send_validation(call, err);
            return -1;
        }
        c->prompt_tokens += 4 + blocks_words(content, &cached);
    }

    json_t *config = json_object_get(root, "inferenceConfig");
    json_t *max = json_object_get(config, "maxTokens");
    if (max != NULL && (!json_is_integer(max) || json_integer_value(max) < 1)) {
        send_validation(call, "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy "
                              "constraint: Member must have value greater than or equal to 1");
        return -1;
    }
    int limited;
    mock_reply_length(max != NULL, max != NULL ? json_integer_value(max) : 0, &c->output_tokens, &limited);
    c->stop_reason = limited ? "max_tokens" : "end_turn";
    if (mock_reply_stop(json_object_get(config, "stopSequences"), &c->output_tokens) != NULL)
        c->stop_reason = "stop_sequence";

    json_t *tool = first_tool(root, &cached);
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    if (tool != NULL && strcmp(json_string_value(json_object_get(last, "role")), "user") == 0 &&
        mock_content_mentions_weather(json_object_get(last, "content"), NULL)) {
        c->tool_name = mock_escaped_copy(&call->req->pool, json_string_value(tool), json_string_length(tool));
        c->stop_reason = "tool_use";
    }
    if (cached)
        c->cached_tokens = c->prompt_tokens / 2;
    return 0;
}

static uint64_t elapsed_ms(const struct timespec *from)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(now.tv_sec - from->tv_sec) * 1000 + (now.tv_nsec - from->tv_nsec) / 1000000;
    return ms > 0 ? (uint64_t)ms : 0;
}

static void append_usage_metrics(mock_buf_t *buf, const conv_t *c)
{
    mock_buf_append_lit(buf, "\"usage\":{\"inputTokens\":");
    mock_buf_append_u64(buf, c->prompt_tokens - c->cached_tokens);
    mock_buf_append_lit(buf, ",\"outputTokens\":");
    mock_buf_append_u64(buf, c->output_tokens);
    mock_buf_append_lit(buf, ",\"totalTokens\":");
    mock_buf_append_u64(buf, c->prompt_tokens + c->output_tokens);
    if (c->cached_tokens != 0) {
        mock_buf_append_lit(buf, ",\"cacheReadInputTokens\":");
        mock_buf_append_u64(buf, c->cached_tokens);
        mock_buf_append_lit(buf, ",\"cacheWriteInputTokens\":0");
    }
    mock_buf_append_lit(buf, "},\"metrics\":{\"latencyMs\":");
    mock_buf_append_u64(buf, elapsed_ms(&c->started));
    mock_buf_append_lit(buf, "}");
}

static void append_tool_use_id(mock_buf_t *buf, mock_call_t *call)
{
    mock_buf_append_lit(buf, "\"tooluse_mock_");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\"");
}

static void respond_converse(mock_call_t *call, conv_t *c)
{
    h2o_iovec_t text = mock_reply_text(c->output_tokens);
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 512 + text.len + c->tool_name.len);
    mock_buf_append_lit(&buf, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[");
    if (c->tool_name.base != NULL) {
        mock_buf_append_lit(&buf, "{\"toolUse\":{\"toolUseId\":");
        append_tool_use_id(&buf, call);
        mock_buf_append_lit(&buf, ",\"name\":\"");
        mock_buf_append(&buf, c->tool_name.base, c->tool_name.len);
        mock_buf_append_lit(&buf, "\",\"input\":" MOCK_TOOL_ARGS "}}");
    } else {
        mock_buf_append_lit(&buf, "{\"text\":\"");
        mock_buf_append(&buf, text.base, text.len);
        mock_buf_append_lit(&buf, "\"}");
    }
    mock_buf_append_lit(&buf, "]}},\"stopReason\":\"");
    mock_buf_append_str(&buf, c->stop_reason);
    mock_buf_append_lit(&buf, "\",");
    append_usage_metrics(&buf, c);
    mock_buf_append_lit(&buf, "}");
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

/*
 * Events: 0 messageStart, [1 contentBlockStart for a tool call], D deltas,
 * contentBlockStop, messageStop, metadata (the last).
 */
static int next_event(mock_call_t *call, h2o_iovec_t *out)
{
    conv_t *c = call->provider_data;
    mock_buf_t *p = &c->payload;
    uint32_t i = c->next_event++, tool = c->tool_name.base != NULL, d = c->num_deltas;
    const char *type;
    int more = 1;

    p->len = 0;
    if (i == 0) {
        type = SL_EVS_EV_MESSAGE_START;
        mock_buf_append_lit(p, "{\"role\":\"assistant\"");
    } else if (tool && i == 1) {
        type = SL_EVS_EV_CONTENT_BLOCK_START;
        mock_buf_append_lit(p, "{\"contentBlockIndex\":0,\"start\":{\"toolUse\":{\"toolUseId\":");
        append_tool_use_id(p, call);
        mock_buf_append_lit(p, ",\"name\":\"");
        mock_buf_append(p, c->tool_name.base, c->tool_name.len);
        mock_buf_append_lit(p, "\"}}");
    } else if (i < 1 + tool + d) {
        uint32_t k = i - 1 - tool;
        type = SL_EVS_EV_CONTENT_BLOCK_DELTA;
        mock_buf_append_lit(p, "{\"contentBlockIndex\":0,\"delta\":");
        if (tool) {
            mock_buf_append_lit(p, "{\"toolUse\":{\"input\":");
            mock_buf_append_json_str(p, mock_tool_args_pieces[k], strlen(mock_tool_args_pieces[k]));
            mock_buf_append_lit(p, "}}");
        } else {
            h2o_iovec_t token = mock_reply_token(k);
            mock_buf_append_lit(p, "{\"text\":\"");
            mock_buf_append(p, token.base, token.len);
            mock_buf_append_lit(p, "\"}");
        }
    } else if (i == 1 + tool + d) {
        type = SL_EVS_EV_CONTENT_BLOCK_STOP;
        mock_buf_append_lit(p, "{\"contentBlockIndex\":0");
    } else if (i == 2 + tool + d) {
        type = SL_EVS_EV_MESSAGE_STOP;
        mock_buf_append_lit(p, "{\"stopReason\":\"");
        mock_buf_append_str(p, c->stop_reason);
        mock_buf_append_lit(p, "\"");
    } else {
        type = SL_EVS_EV_METADATA;
        mock_buf_append_lit(p, "{");
        append_usage_metrics(p, c);
        more = 0;
    }
    mock_buf_append_lit(p, ",\"p\":\"");
    mock_buf_append(p, PADDING, 1 + (i * 7) % (sizeof(PADDING) - 1));
    mock_buf_append_lit(p, "\"}");

    sl_evs_header_t h[3] = {
        sl_evs_hdr_string(SL_EVS_H_EVENT_TYPE, type),
        sl_evs_hdr_string(SL_EVS_H_CONTENT_TYPE, "application/json"),
        sl_evs_hdr_string(SL_EVS_H_MESSAGE_TYPE, SL_EVS_MSG_EVENT),
    };
    c->event.len = 0;
    encode_message(&c->event, h, 3, p->base, p->len);
    *out = h2o_iovec_init(c->event.base, c->event.len);
    return more;
}

static void converse(mock_call_t *call, int streamed)
{
    h2o_req_t *req = call->req;
    json_t *root = read_body(call);

    if (root == NULL)
        return;
    conv_t *c = mock_call_alloc(call, sizeof(*c));
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    int rc = read_converse(call, root, c);
    json_decref(root);
    if (rc != 0)
        return;

    call->kind = MOCK_KIND_CHAT;
    call->usage = (mock_usage_t){c->prompt_tokens, c->output_tokens, c->cached_tokens};
    add_request_id(call);
    if (!streamed) {
        respond_converse(call, c);
        return;
    }
    c->num_deltas = c->tool_name.base != NULL ? MOCK_TOOL_ARGS_PIECES : c->output_tokens;
    mock_buf_init(&c->payload, &req->pool, 512 + c->tool_name.len);
    mock_buf_init(&c->event, &req->pool, 640 + c->tool_name.len);
    call->provider_data = c;
    mock_call_stream(call, MOCK_CT_EVENTSTREAM, next_event);
}

/* ---- InvokeModel ----------------------------------------------------------- */

static void add_invoke_headers(mock_call_t *call, uint64_t input_tokens, uint64_t output_tokens)
{
    char v[24];
    mock_http_add_header(call->req, "x-amzn-bedrock-input-token-count", v, mock_u64toa(v, input_tokens));
    mock_http_add_header(call->req, "x-amzn-bedrock-output-token-count", v, mock_u64toa(v, output_tokens));
    mock_http_add_header(call->req, "x-amzn-bedrock-invocation-latency", H2O_STRLIT("1"));
}

static void invoke_titan(mock_call_t *call, json_t *root, int v2)
{
    json_t *text = json_object_get(root, "inputText"), *dims_v = json_object_get(root, "dimensions");
    size_t dims = v2 ? TITAN_V2_DIMS : TITAN_V1_DIMS;

    if (!json_is_string(text) || json_string_length(text) == 0) {
        send_validation(call, "Malformed input request: #: required key [inputText] not found, please reformat your "
                              "input and try again.");
        return;
    }
    if (dims_v != NULL) {
        json_int_t d = json_integer_value(dims_v);
        if (!v2 || !json_is_integer(dims_v) || (d != 256 && d != 512 && d != 1024)) {
            send_validation(call, "Malformed input request: #/dimensions: 256, 512 or 1024 expected, please reformat "
                                  "your input and try again.");
            return;
        }
        dims = (size_t)d;
    }
    uint64_t tokens = mock_count_words(json_string_value(text), json_string_length(text));
    float *vec = h2o_mem_alloc_pool(&call->req->pool, dims * sizeof(float));
    mock_unit_vector(mock_fnv1a(MOCK_FNV_OFFSET, json_string_value(text), json_string_length(text)), vec, dims);

    mock_buf_t buf;
    mock_buf_init(&buf, &call->req->pool, 128 + dims * 32);
    mock_buf_append_lit(&buf, "{\"embedding\":");
    mock_append_floats(&buf, vec, dims);
    if (v2) {
        mock_buf_append_lit(&buf, ",\"embeddingsByType\":{\"float\":");
        mock_append_floats(&buf, vec, dims);
        mock_buf_append_lit(&buf, "}");
    }
    mock_buf_append_lit(&buf, ",\"inputTextTokenCount\":");
    mock_buf_append_u64(&buf, tokens);
    mock_buf_append_lit(&buf, "}");
    call->kind = MOCK_KIND_EMBEDDING;
    call->usage.prompt_tokens = tokens;
    add_invoke_headers(call, tokens, 0);
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

static void invoke_cohere(mock_call_t *call, json_t *root)
{
    json_t *texts = json_object_get(root, "texts"), *t;
    size_t i, n = json_array_size(texts);

    if (!json_is_array(texts) || n == 0 || n > 96 || !json_is_string(json_object_get(root, "input_type"))) {
        send_validation(call, "Malformed input request: #: required key [texts] or [input_type] not found, or "
                              "texts is empty or longer than 96, please reformat your input and try again.");
        return;
    }
    float *vec = h2o_mem_alloc_pool(&call->req->pool, COHERE_DIMS * sizeof(float));
    uint64_t tokens = 0;
    mock_buf_t buf;
    mock_buf_init(&buf, &call->req->pool, 256 + n * COHERE_DIMS * 16);
    mock_buf_append_lit(&buf, "{\"embeddings\":[");
    json_array_foreach(texts, i, t)
    {
        if (!json_is_string(t)) {
            send_validation(call, "Malformed input request: #/texts: expected type: String, please reformat your "
                                  "input and try again.");
            return;
        }
        tokens += mock_count_words(json_string_value(t), json_string_length(t));
        mock_unit_vector(mock_fnv1a(MOCK_FNV_OFFSET, json_string_value(t), json_string_length(t)), vec, COHERE_DIMS);
        if (i != 0)
            mock_buf_append_lit(&buf, ",");
        mock_append_floats(&buf, vec, COHERE_DIMS);
    }
    mock_buf_append_lit(&buf, "],\"id\":\"mock-");
    mock_buf_append_u64(&buf, call->seq);
    mock_buf_append_lit(&buf, "\",\"response_type\":\"embeddings_floats\",\"texts\":[");
    json_array_foreach(texts, i, t)
    {
        if (i != 0)
            mock_buf_append_lit(&buf, ",");
        mock_buf_append_json_str(&buf, json_string_value(t), json_string_length(t));
    }
    mock_buf_append_lit(&buf, "]}");
    call->kind = MOCK_KIND_EMBEDDING;
    call->usage.prompt_tokens = tokens;
    add_invoke_headers(call, tokens, 0);
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

static int starts_with(h2o_iovec_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.base, prefix, n) == 0;
}

/* Strips a cross-region inference profile prefix ("us.", "eu.", "apac.", "global."). */
static h2o_iovec_t base_model(h2o_iovec_t id)
{
    static const char *const regions[] = {"us.", "eu.", "apac.", "us-gov.", "global."};
    for (size_t i = 0; i != sizeof(regions) / sizeof(regions[0]); ++i)
        if (starts_with(id, regions[i]))
            return h2o_iovec_init(id.base + strlen(regions[i]), id.len - strlen(regions[i]));
    return id;
}

static void invoke(mock_call_t *call, h2o_iovec_t model_id)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t model = base_model(model_id);

    if (starts_with(model, "anthropic.")) {
        mock_anthropic_flavor_t *flavor = mock_call_alloc(call, sizeof(*flavor));
        flavor->version = MOCK_ANTHROPIC_BEDROCK;
        flavor->model = mock_escaped_copy(&req->pool, model_id.base, model_id.len);
        add_request_id(call);
        mock_anthropic_messages(call, flavor);
        return;
    }
    json_t *root = read_body(call);
    if (root == NULL)
        return;
    add_request_id(call);
    if (starts_with(model, "amazon.titan-embed-text-v2") || starts_with(model, "amazon.titan-embed-text-v1") ||
        starts_with(model, "amazon.titan-embed-g1-text"))
        invoke_titan(call, root, starts_with(model, "amazon.titan-embed-text-v2"));
    else if (starts_with(model, "cohere.embed-"))
        invoke_cohere(call, root);
    else
        send_validation(call, "The provided model identifier is invalid.");
    json_decref(root);
}

/* ---- routing --------------------------------------------------------------- */

static void on_model_call(mock_call_t *call)
{
    static const char prefix[] = "/model/";
    h2o_req_t *req = call->req;

    if (!check_signature(call))
        return;
    /* the model id is percent-encoded in the raw path ("...-v1%3A0") */
    h2o_iovec_t path = mock_http_raw_path(req);
    const char *id = path.base + sizeof(prefix) - 1, *end = path.base + path.len;
    const char *slash = id < end ? memrchr(id, '/', (size_t)(end - id)) : NULL;
    if (slash == NULL || slash == id) {
        send_error(call, 404, "UnknownOperationException", ERROR_NS_CORAL, "Unknown operation");
        return;
    }
    h2o_iovec_t model = mock_http_percent_decode(&req->pool, id, (size_t)(slash - id));
    h2o_iovec_t op = h2o_iovec_init(slash + 1, (size_t)(end - slash - 1));
    if (h2o_memis(op.base, op.len, H2O_STRLIT("converse")))
        converse(call, 0);
    else if (h2o_memis(op.base, op.len, H2O_STRLIT("converse-stream")))
        converse(call, 1);
    else if (h2o_memis(op.base, op.len, H2O_STRLIT("invoke")))
        invoke(call, model);
    else
        send_error(call, 404, "UnknownOperationException", ERROR_NS_CORAL, "Unknown operation");
}

static const mock_route_t routes[] = {
    {"POST", "/model/*", on_model_call},
    {NULL},
};

const mock_provider_t mock_bedrock_provider = {
    .name = "bedrock",
    .id = MOCK_PROVIDER_BEDROCK,
    .prefix = "/model/",
    .routes = routes,
    .send_fault = send_fault,
    .stream_error = stream_error,
    .send_not_found = send_not_found,
};
