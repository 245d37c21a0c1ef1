/*
 * anthropic.c - fake Anthropic Messages API: POST /v1/messages (JSON and SSE
 * with named events) and POST /v1/messages/count_tokens, authenticated with
 * `x-api-key` and requiring `anthropic-version`, with Anthropic's error
 * bodies {"type":"error","error":{"type","message"},"request_id"}.
 *
 * Deterministic answers (reply.h defines words, the reply and the tool
 * trigger):
 *   prompt tokens  = 3 + (4 + words of the system prompt, when there is one)
 *                    + sum over messages of (4 + words of its text blocks and
 *                    of the text of its tool_result blocks);
 *   cache          = when any system block, message block or tool carries
 *                    "cache_control", cache_read_input_tokens = prompt / 2
 *                    and input_tokens = the rest (Anthropic's input_tokens
 *                    excludes cached tokens); cache_creation_input_tokens 0;
 *   output tokens  = mock_reply_length(max_tokens): max_tokens below 1024 is
 *                    used in full (stop_reason "max_tokens"), else 16 words
 *                    ("end_turn");
 *   stop sequences = a stop sequence equal to a reply word ("mock",
 *                    "word5") ends the reply before it: stop_reason
 *                    "stop_sequence", stop_sequence set, fewer words;
 *   tool call      = a tool_use block calling the first tool with
 *                    MOCK_TOOL_ARGS, stop_reason "tool_use".
 * Streams send message_start, content_block_start, ping, one
 * content_block_delta per word (text_delta) or argument piece
 * (input_json_delta), content_block_stop, message_delta (stop_reason and
 * usage.output_tokens) and message_stop.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anthropic.h"
#include "buf.h"
#include "call.h"
#include "http.h"
#include "provider.h"
#include "reply.h"

/* ---- errors ---------------------------------------------------------------- */

static void append_request_id(mock_buf_t *buf, mock_call_t *call)
{
    mock_buf_append_lit(buf, "req_mock_");
    mock_buf_append_u64(buf, call->seq);
}

static void format_error(mock_buf_t *buf, mock_call_t *call, const char *type, const char *message)
{
    mock_buf_append_lit(buf, "{\"type\":\"error\",\"error\":{\"type\":");
    mock_buf_append_json_str(buf, type, strlen(type));
    mock_buf_append_lit(buf, ",\"message\":");
    mock_buf_append_json_str(buf, message, strlen(message));
    mock_buf_append_lit(buf, "},\"request_id\":\"");
    append_request_id(buf, call);
    mock_buf_append_lit(buf, "\"}");
}

static void add_request_id(mock_call_t *call)
{
    mock_buf_t id;
    mock_buf_init(&id, &call->req->pool, 32);
    append_request_id(&id, call);
    mock_http_add_header(call->req, "request-id", id.base, id.len);
}

static void send_error(mock_call_t *call, int status, const char *type, const char *message)
{
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 160 + strlen(message));
    format_error(&buf, call, type, message);
    add_request_id(call);
    mock_call_respond(call, status, MOCK_CT_JSON, buf.base, buf.len);
}

static void send_invalid(mock_call_t *call, const char *message)
{
    send_error(call, 400, "invalid_request_error", message);
}

static void send_fault(mock_call_t *call, int status)
{
    switch (status) {
    case 400:
        send_invalid(call, "Bad request (injected by sluice-mockllm)");
        break;
    case 401:
        send_error(call, 401, "authentication_error", "invalid x-api-key");
        break;
    case 403:
        send_error(call, 403, "permission_error",
                   "Your API key does not have permission to use the specified resource.");
        break;
    case 404:
        send_error(call, 404, "not_found_error", "The requested resource could not be found.");
        break;
    case 413:
        send_error(call, 413, "request_too_large", "Request exceeds the maximum allowed number of bytes.");
        break;
    case 429:
        send_error(call, 429, "rate_limit_error",
                   "Number of request tokens has exceeded your per-minute rate limit "
                   "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. "
                   "Please reduce the prompt length or the maximum tokens requested, or try again later.");
        break;
    case 529:
        send_error(call, 529, "overloaded_error", "Overloaded");
        break;
    default:
        if (status < 500)
            send_error(call, status, "invalid_request_error", mock_http_reason(status));
        else
            send_error(call, status, "api_error", "Internal server error");
        break;
    }
}

void mock_anthropic_stream_error(mock_call_t *call, mock_buf_t *out)
{
    mock_buf_append_lit(out, "event: error\ndata: ");
    format_error(out, call, "overloaded_error", "Overloaded");
    mock_buf_append_lit(out, "\n\n");
}

static void send_not_found(h2o_req_t *req)
{
    static const char body[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"Not found\"}}";
    mock_http_send(req, 404, MOCK_CT_JSON, body, sizeof(body) - 1);
}

/* Returns 1 when x-api-key and anthropic-version are right; else answers. */
static int check_headers(mock_call_t *call)
{
    const mock_settings_t *s = call->settings;
    h2o_iovec_t key = mock_http_header_str(call->req, "x-api-key");

    if (key.base == NULL) {
        send_error(call, 401, "authentication_error", "x-api-key header is required");
        return 0;
    }
    if (key.len != s->anthropic_key_len || memcmp(key.base, s->anthropic_key, key.len) != 0) {
        send_error(call, 401, "authentication_error", "invalid x-api-key");
        return 0;
    }
    if (mock_http_header_str(call->req, "anthropic-version").base == NULL) {
        send_invalid(call, "anthropic-version: header is required");
        return 0;
    }
    return 1;
}

/* ---- request --------------------------------------------------------------- */

typedef struct st_msg_t {
    h2o_iovec_t model; /* escaped */
    uint64_t prompt_tokens;
    uint64_t cached_tokens;
    uint32_t output_tokens;
    const char *stop_reason;
    h2o_iovec_t stop_sequence; /* escaped; base NULL for none */
    h2o_iovec_t tool_name;     /* escaped; base NULL for a text reply */
    /* streaming */
    mock_buf_t event;
    uint32_t next_event;
    uint32_t num_deltas;
} msg_t;

static uint64_t blocks_words(json_t *content, int *cached);

/* Words of a text block or of a tool_result's content; notes cache_control. */
static uint64_t block_words(json_t *block, int *cached)
{
    json_t *type = json_object_get(block, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";

    if (json_object_get(block, "cache_control") != NULL)
        *cached = 1;
    if (strcmp(t, "text") == 0) {
        json_t *text = json_object_get(block, "text");
        return json_is_string(text) ? mock_count_words(json_string_value(text), json_string_length(text)) : 0;
    }
    if (strcmp(t, "tool_result") == 0)
        return blocks_words(json_object_get(block, "content"), cached);
    return 0;
}

/* Words of a content that is a string or an array of blocks. */
static uint64_t blocks_words(json_t *content, int *cached)
{
    uint64_t words = 0;
    size_t i;
    json_t *block;

    if (json_is_string(content))
        return mock_count_words(json_string_value(content), json_string_length(content));
    json_array_foreach(content, i, block)
    {
        words += block_words(block, cached);
    }
    return words;
}

/* Validates and reads the body into *m. Returns 0, or -1 after answering
 * (root released). */
static int read_request(mock_call_t *call, const mock_anthropic_flavor_t *flavor, json_t *root, msg_t *m, int *stream)
{
    h2o_mem_pool_t *pool = &call->req->pool;
    char err[160];
    int cached = 0;
    json_t *v;

    if (flavor->version != NULL) {
        v = json_object_get(root, "anthropic_version");
        if (!json_is_string(v)) {
            json_decref(root);
            send_invalid(call, "anthropic_version: Field required");
            return -1;
        }
        if (strcmp(json_string_value(v), flavor->version) != 0) {
            snprintf(err, sizeof(err), "anthropic_version: Input should be '%s'", flavor->version);
            json_decref(root);
            send_invalid(call, err);
            return -1;
        }
        m->model = flavor->model;
    } else {
        v = json_object_get(root, "model");
        if (!json_is_string(v) || json_string_length(v) == 0) {
            json_decref(root);
            send_invalid(call, "model: Field required");
            return -1;
        }
        m->model = mock_escaped_copy(pool, json_string_value(v), json_string_length(v));
    }

    v = json_object_get(root, "max_tokens");
    if (v == NULL) {
        json_decref(root);
        send_invalid(call, "max_tokens: Field required");
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        json_decref(root);
        send_invalid(call, "max_tokens: Input should be a valid integer greater than or equal to 1");
        return -1;
    }
    json_int_t max_tokens = json_integer_value(v);

    json_t *messages = json_object_get(root, "messages");
    if (messages == NULL) {
        json_decref(root);
        send_invalid(call, "messages: Field required");
        return -1;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        json_decref(root);
        send_invalid(call, "messages: at least one message is required");
        return -1;
    }

    m->prompt_tokens = 3;
    json_t *system = json_object_get(root, "system");
    if (system != NULL && !json_is_null(system)) {
        if (!json_is_string(system) && !json_is_array(system)) {
            json_decref(root);
            send_invalid(call, "system: Input should be a valid string or a list of text blocks");
            return -1;
        }
        m->prompt_tokens += 4 + blocks_words(system, &cached);
    }
    size_t i;
    json_t *message;
    json_array_foreach(messages, i, message)
    {
        json_t *role = json_object_get(message, "role");
        json_t *content = json_object_get(message, "content");
        if (!json_is_string(role) ||
            (strcmp(json_string_value(role), "user") != 0 && strcmp(json_string_value(role), "assistant") != 0)) {
            snprintf(err, sizeof(err), "messages.%zu.role: Input should be 'user' or 'assistant'", i);
            json_decref(root);
            send_invalid(call, err);
            return -1;
        }
        if (!json_is_string(content) && !json_is_array(content)) {
            snprintf(err, sizeof(err), "messages.%zu.content: Field required", i);
            json_decref(root);
            send_invalid(call, err);
            return -1;
        }
        m->prompt_tokens += 4 + blocks_words(content, &cached);
    }

    json_t *tools = json_object_get(root, "tools");
    json_t *tool;
    json_array_foreach(tools, i, tool)
    {
        if (json_object_get(tool, "cache_control") != NULL)
            cached = 1;
    }
    if (cached)
        m->cached_tokens = m->prompt_tokens / 2;

    int limited;
    mock_reply_length(1, max_tokens, &m->output_tokens, &limited);
    m->stop_reason = limited ? "max_tokens" : "end_turn";

    json_t *stop = mock_reply_stop(json_object_get(root, "stop_sequences"), &m->output_tokens);
    if (stop != NULL) {
        m->stop_reason = "stop_sequence";
        m->stop_sequence = mock_escaped_copy(pool, json_string_value(stop), json_string_length(stop));
    }

    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    json_t *name = json_object_get(json_array_get(tools, 0), "name");
    if (json_is_array(tools) && json_is_string(name) && json_string_length(name) != 0 &&
        strcmp(json_string_value(json_object_get(last, "role")), "user") == 0 &&
        mock_content_mentions_weather(json_object_get(last, "content"), "text")) {
        m->tool_name = mock_escaped_copy(pool, json_string_value(name), json_string_length(name));
        m->stop_reason = "tool_use";
        m->stop_sequence = h2o_iovec_init(NULL, 0);
    }

    v = json_object_get(root, "stream");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
        json_decref(root);
        send_invalid(call, "stream: Input should be a valid boolean");
        return -1;
    }
    *stream = flavor->force_stream || json_is_true(v);
    return 0;
}

/* ---- response -------------------------------------------------------------- */

static void append_usage(mock_buf_t *buf, const msg_t *m, uint32_t output_tokens)
{
    mock_buf_append_lit(buf, "\"usage\":{\"input_tokens\":");
    mock_buf_append_u64(buf, m->prompt_tokens - m->cached_tokens);
    mock_buf_append_lit(buf, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    mock_buf_append_u64(buf, m->cached_tokens);
    mock_buf_append_lit(buf, ",\"output_tokens\":");
    mock_buf_append_u64(buf, output_tokens);
    mock_buf_append_lit(buf, ",\"service_tier\":\"standard\"}");
}

/* {"id":...,"type":"message","role":"assistant","model":... (object left open) */
static void append_message_head(mock_buf_t *buf, mock_call_t *call, const msg_t *m)
{
    mock_buf_append_lit(buf, "{\"id\":\"msg_mock_");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    mock_buf_append(buf, m->model.base, m->model.len);
    mock_buf_append_lit(buf, "\"");
}

static void append_stop(mock_buf_t *buf, const msg_t *m)
{
    mock_buf_append_lit(buf, "\"stop_reason\":\"");
    mock_buf_append_str(buf, m->stop_reason);
    mock_buf_append_lit(buf, "\",\"stop_sequence\":");
    if (m->stop_sequence.base != NULL) {
        mock_buf_append_lit(buf, "\"");
        mock_buf_append(buf, m->stop_sequence.base, m->stop_sequence.len);
        mock_buf_append_lit(buf, "\"");
    } else {
        mock_buf_append_lit(buf, "null");
    }
}

static void append_tool_use_head(mock_buf_t *buf, mock_call_t *call, const msg_t *m)
{
    mock_buf_append_lit(buf, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\",\"name\":\"");
    mock_buf_append(buf, m->tool_name.base, m->tool_name.len);
    mock_buf_append_lit(buf, "\",\"input\":");
}

static void respond(mock_call_t *call, msg_t *m)
{
    h2o_iovec_t text = mock_reply_text(m->output_tokens);
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 768 + m->model.len + text.len + m->tool_name.len);
    append_message_head(&buf, call, m);
    mock_buf_append_lit(&buf, ",\"content\":[");
    if (m->tool_name.base != NULL) {
        append_tool_use_head(&buf, call, m);
        mock_buf_append_lit(&buf, MOCK_TOOL_ARGS "}");
    } else {
        mock_buf_append_lit(&buf, "{\"type\":\"text\",\"text\":\"");
        mock_buf_append(&buf, text.base, text.len);
        mock_buf_append_lit(&buf, "\"}");
    }
    mock_buf_append_lit(&buf, "],");
    append_stop(&buf, m);
    mock_buf_append_lit(&buf, ",");
    append_usage(&buf, m, m->output_tokens);
    mock_buf_append_lit(&buf, "}");
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

static void begin_event(mock_buf_t *ev, const char *name)
{
    mock_buf_append_lit(ev, "event: ");
    mock_buf_append_str(ev, name);
    mock_buf_append_lit(ev, "\ndata: ");
}

/*
 * Events: 0 message_start, 1 content_block_start, 2 ping, 3 .. 3+D-1 deltas,
 * 3+D content_block_stop, 4+D message_delta, 5+D message_stop (the last).
 */
static int next_event(mock_call_t *call, h2o_iovec_t *out)
{
    msg_t *m = call->provider_data;
    mock_buf_t *ev = &m->event;
    uint32_t i = m->next_event++, d = m->num_deltas;
    int more = 1;

    ev->len = 0;
    if (i == 0) {
        begin_event(ev, "message_start");
        mock_buf_append_lit(ev, "{\"type\":\"message_start\",\"message\":");
        append_message_head(ev, call, m);
        mock_buf_append_lit(ev, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
        append_usage(ev, m, 1);
        mock_buf_append_lit(ev, "}}");
    } else if (i == 1) {
        begin_event(ev, "content_block_start");
        mock_buf_append_lit(ev, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":");
        if (m->tool_name.base != NULL) {
            append_tool_use_head(ev, call, m);
            mock_buf_append_lit(ev, "{}}}");
        } else {
            mock_buf_append_lit(ev, "{\"type\":\"text\",\"text\":\"\"}}");
        }
    } else if (i == 2) {
        begin_event(ev, "ping");
        mock_buf_append_lit(ev, "{\"type\": \"ping\"}");
    } else if (i < 3 + d) {
        begin_event(ev, "content_block_delta");
        mock_buf_append_lit(ev, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":");
        if (m->tool_name.base != NULL) {
            const char *piece = mock_tool_args_pieces[i - 3];
            mock_buf_append_lit(ev, "{\"type\":\"input_json_delta\",\"partial_json\":");
            mock_buf_append_json_str(ev, piece, strlen(piece));
            mock_buf_append_lit(ev, "}}");
        } else {
            h2o_iovec_t token = mock_reply_token(i - 3);
            mock_buf_append_lit(ev, "{\"type\":\"text_delta\",\"text\":\"");
            mock_buf_append(ev, token.base, token.len);
            mock_buf_append_lit(ev, "\"}}");
        }
    } else if (i == 3 + d) {
        begin_event(ev, "content_block_stop");
        mock_buf_append_lit(ev, "{\"type\":\"content_block_stop\",\"index\":0}");
    } else if (i == 4 + d) {
        begin_event(ev, "message_delta");
        mock_buf_append_lit(ev, "{\"type\":\"message_delta\",\"delta\":{");
        append_stop(ev, m);
        mock_buf_append_lit(ev, "},\"usage\":{\"output_tokens\":");
        mock_buf_append_u64(ev, m->output_tokens);
        mock_buf_append_lit(ev, "}}");
    } else {
        begin_event(ev, "message_stop");
        mock_buf_append_lit(ev, "{\"type\":\"message_stop\"}");
        more = 0;
    }
    mock_buf_append_lit(ev, "\n\n");
    *out = h2o_iovec_init(ev->base, ev->len);
    return more;
}

static void stream(mock_call_t *call, msg_t *m)
{
    m->num_deltas = m->tool_name.base != NULL ? MOCK_TOOL_ARGS_PIECES : m->output_tokens;
    mock_buf_init(&m->event, &call->req->pool, 512 + m->model.len + m->tool_name.len);
    call->provider_data = m;
    mock_http_add_header(call->req, "cache-control", H2O_STRLIT("no-cache"));
    mock_call_stream(call, "text/event-stream; charset=utf-8", next_event);
}

/* Parses the body as a JSON object; on failure answers 400 and returns NULL. */
static json_t *parse_body(mock_call_t *call)
{
    json_t *root = mock_http_json_body(call->req);

    if (root == NULL)
        send_invalid(call, "There was an error parsing the body of your request. The body must be a JSON object.");
    return root;
}

void mock_anthropic_messages(mock_call_t *call, const mock_anthropic_flavor_t *flavor)
{
    json_t *root;
    int streamed;

    if ((root = parse_body(call)) == NULL)
        return;
    msg_t *m = mock_call_alloc(call, sizeof(*m));
    if (read_request(call, flavor, root, m, &streamed) != 0)
        return;
    json_decref(root);

    call->kind = MOCK_KIND_CHAT;
    call->usage = (mock_usage_t){m->prompt_tokens, m->output_tokens, m->cached_tokens};
    if (flavor->version != NULL)
        call->stream_error = mock_anthropic_stream_error;
    add_request_id(call);
    if (streamed)
        stream(call, m);
    else
        respond(call, m);
}

static void on_messages(mock_call_t *call)
{
    static const mock_anthropic_flavor_t direct = {0};

    if (check_headers(call))
        mock_anthropic_messages(call, &direct);
}

static void on_count_tokens(mock_call_t *call)
{
    static const mock_anthropic_flavor_t direct = {0};
    json_t *root;
    int streamed;

    if (!check_headers(call) || (root = parse_body(call)) == NULL)
        return;
    /* count_tokens takes no max_tokens; lend one for the shared checks */
    if (json_object_get(root, "max_tokens") == NULL)
        json_object_set_new(root, "max_tokens", json_integer(1));
    msg_t *m = mock_call_alloc(call, sizeof(*m));
    if (read_request(call, &direct, root, m, &streamed) != 0)
        return;
    json_decref(root);

    mock_buf_t buf;
    mock_buf_init(&buf, &call->req->pool, 64);
    mock_buf_append_lit(&buf, "{\"input_tokens\":");
    mock_buf_append_u64(&buf, m->prompt_tokens);
    mock_buf_append_lit(&buf, "}");
    add_request_id(call);
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

static const mock_route_t routes[] = {
    {"POST", "/v1/messages", on_messages},
    {"POST", "/v1/messages/count_tokens", on_count_tokens},
    {NULL},
};

const mock_provider_t mock_anthropic_provider = {
    .name = "anthropic",
    .id = MOCK_PROVIDER_ANTHROPIC,
    .prefix = "/v1/messages",
    .routes = routes,
    .send_fault = send_fault,
    .stream_error = mock_anthropic_stream_error,
    .send_not_found = send_not_found,
};
