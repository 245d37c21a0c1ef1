/*
 * openai.c - fake OpenAI API: chat completions (plain and SSE), models and
 * embeddings, with OpenAI's error bodies. The chat and embeddings code is
 * shared with the Azure OpenAI fake (openai.h).
 *
 * Everything the fake returns is a pure function of the request, except ids
 * (a process-wide counter) and `created` (the request's clock):
 *   prompt_tokens     = 3 + sum over messages of (4 + words in its content),
 *                       where content is a string or an array of parts whose
 *                       "text" parts count (reply.h defines words);
 *   cached_tokens     = prompt_tokens / 2 when the request carries a
 *                       "prompt_cache_key", else 0 (a part of prompt_tokens);
 *   completion_tokens = max_completion_tokens, else max_tokens (capped at
 *                       MOCK_MAX_COMPLETION), else MOCK_DEFAULT_COMPLETION;
 *   reply             = that many words "mock word1 word2 ...", streamed as
 *                       one event per word so that the deltas concatenate to
 *                       the plain reply; or, when the tool trigger of reply.h
 *                       fires, a call of the first tool with MOCK_TOOL_ARGS
 *                       (streamed as MOCK_TOOL_ARGS_PIECES argument deltas);
 *   finish_reason     = "tool_calls" for a tool call, else "length" when a
 *                       token limit was given, else "stop".
 * Embeddings are 8 floats (or `dimensions`) of unit length, seeded by a hash
 * of each input.
 *
 * Responses are formatted directly into request-pool buffers; jansson is used
 * only to parse request bodies, and each parsed document is released before
 * the call answers.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "call.h"
#include "http.h"
#include "openai.h"
#include "provider.h"
#include "reply.h"

#define MAX_COMPLETION MOCK_MAX_COMPLETION
#define DEFAULT_COMPLETION MOCK_DEFAULT_COMPLETION
#define EMBEDDING_DIMS 8
#define EMBEDDING_MAX_DIMS 4096
#define FINGERPRINT "fp_mock"
#define KEYS_URL "https://platform.openai.com/account/api-keys"

/* ---- errors ---------------------------------------------------------------- */

void mock_openai_format_error(mock_buf_t *buf, const char *message, size_t message_len, const char *type,
                              const char *param, const char *code)
{
    mock_buf_append_lit(buf, "{\"error\":{\"message\":");
    mock_buf_append_json_str(buf, message, message_len);
    mock_buf_append_lit(buf, ",\"type\":");
    mock_buf_append_json_str(buf, type, strlen(type));
    mock_buf_append_lit(buf, ",\"param\":");
    if (param != NULL)
        mock_buf_append_json_str(buf, param, strlen(param));
    else
        mock_buf_append_lit(buf, "null");
    mock_buf_append_lit(buf, ",\"code\":");
    if (code != NULL)
        mock_buf_append_json_str(buf, code, strlen(code));
    else
        mock_buf_append_lit(buf, "null");
    mock_buf_append_lit(buf, "}}");
}

static void add_request_id(mock_call_t *call)
{
    char id[32] = "req_mock_";
    size_t n = 9 + mock_u64toa(id + 9, call->seq);
    mock_http_add_header(call->req, "x-request-id", id, n);
}

static void send_error(mock_call_t *call, int status, const char *message, const char *type, const char *param,
                       const char *code)
{
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 256 + strlen(message));
    mock_openai_format_error(&buf, message, strlen(message), type, param, code);
    add_request_id(call);
    mock_call_respond(call, status, MOCK_CT_JSON, buf.base, buf.len);
}

static void send_invalid_request(mock_call_t *call, const char *message, const char *param, const char *code)
{
    send_error(call, 400, message, "invalid_request_error", param, code);
}

static void send_fault(mock_call_t *call, int status)
{
    switch (status) {
    case 400:
        send_invalid_request(call, "Bad request (injected by sluice-mockllm).", NULL, NULL);
        break;
    case 401:
        send_error(call, 401, "Incorrect API key provided. You can find your API key at " KEYS_URL ".",
                   "invalid_request_error", NULL, "invalid_api_key");
        break;
    case 403:
        send_error(call, 403, "You are not allowed to access this resource.", "invalid_request_error", NULL,
                   "permission_denied");
        break;
    case 404:
        send_error(call, 404, "The model does not exist or you do not have access to it.", "invalid_request_error",
                   "model", "model_not_found");
        break;
    case 429:
        send_error(call, 429,
                   "Rate limit reached for requests. Limit: 3, Used: 3, Requested: 1. Please try again in 1s.",
                   "requests", NULL, "rate_limit_exceeded");
        break;
    case 500:
        send_error(call, 500, "The server had an error while processing your request. Sorry about that!",
                   "server_error", NULL, NULL);
        break;
    case 502:
        send_error(call, 502, "Bad gateway.", "server_error", NULL, NULL);
        break;
    case 503:
        send_error(call, 503, "The engine is currently overloaded, please try again later.", "server_error", NULL,
                   NULL);
        break;
    case 504:
        send_error(call, 504, "Gateway timeout.", "server_error", NULL, NULL);
        break;
    default:
        if (status < 500)
            send_error(call, status, mock_http_reason(status), "invalid_request_error", NULL, NULL);
        else
            send_error(call, status, mock_http_reason(status), "server_error", NULL, NULL);
        break;
    }
}

static void send_not_found(h2o_req_t *req)
{
    mock_buf_t msg, buf;

    mock_buf_init(&msg, &req->pool, 64 + req->method.len + req->path.len);
    mock_buf_append_lit(&msg, "Invalid URL (");
    mock_buf_append(&msg, req->method.base, req->method.len);
    mock_buf_append_lit(&msg, " ");
    mock_buf_append(&msg, req->path_normalized.base, req->path_normalized.len);
    mock_buf_append_lit(&msg, ")");
    mock_buf_init(&buf, &req->pool, 128 + msg.len * 6);
    mock_openai_format_error(&buf, msg.base, msg.len, "invalid_request_error", NULL, NULL);
    mock_http_send(req, 404, MOCK_CT_JSON, buf.base, buf.len);
}

/* ---- auth and request parsing --------------------------------------------- */

/* Writes an OpenAI-style masked form of key: "sk-...abcd". */
static void mask_key(mock_buf_t *buf, const char *key, size_t len)
{
    char shown[8];
    size_t n = 0;

    if (len < 12) {
        mock_buf_append_lit(buf, "***");
        return;
    }
    for (size_t i = 0; i != 3; ++i)
        shown[n++] = key[i];
    shown[n++] = '.';
    shown[n++] = '.';
    shown[n++] = '.';
    mock_buf_append(buf, shown, n);
    for (size_t i = len - 4; i != len; ++i) {
        char c = key[i];
        mock_buf_append(buf, c > 0x20 && c < 0x7f ? &c : "?", 1);
    }
}

/* Returns 1 when the call carries the configured key; else answers 401 and
 * returns 0. */
static int check_auth(mock_call_t *call)
{
    static const char scheme[] = "bearer ";
    h2o_iovec_t auth = mock_http_header(call->req, H2O_TOKEN_AUTHORIZATION);
    const mock_settings_t *settings = call->settings;

    if (auth.base == NULL || auth.len < sizeof(scheme) - 1 ||
        !h2o_lcstris(auth.base, sizeof(scheme) - 1, H2O_STRLIT(scheme))) {
        send_error(call, 401,
                   "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                   "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
                   "if you're accessing the API from your browser and are prompted for a username and password. You "
                   "can obtain an API key from " KEYS_URL ".",
                   "invalid_request_error", NULL, "invalid_api_key");
        return 0;
    }
    const char *key = auth.base + sizeof(scheme) - 1;
    size_t key_len = auth.len - (sizeof(scheme) - 1);
    while (key_len != 0 && *key == ' ')
        ++key, --key_len;
    while (key_len != 0 && key[key_len - 1] == ' ')
        --key_len;
    if (key_len == settings->api_key_len && memcmp(key, settings->api_key, key_len) == 0)
        return 1;

    mock_buf_t msg;
    mock_buf_init(&msg, &call->req->pool, 160);
    mock_buf_append_lit(&msg, "Incorrect API key provided: ");
    mask_key(&msg, key, key_len);
    mock_buf_append_lit(&msg, ". You can find your API key at " KEYS_URL ".");
    mock_buf_append(&msg, "", 1); /* NUL-terminate */
    send_error(call, 401, msg.base, "invalid_request_error", NULL, "invalid_api_key");
    return 0;
}

/* Parses the body as a JSON object; on failure answers 400 and returns NULL. */
static json_t *parse_body(mock_call_t *call)
{
    json_t *root = mock_http_json_body(call->req);

    if (root == NULL)
        send_invalid_request(call,
                             "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                             "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                             "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
                             "contact us through our help center at help.openai.com.)",
                             NULL, NULL);
    return root;
}

static const char *json_type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Answers 400 for a parameter of the wrong type and releases root. */
static void send_invalid_type(mock_call_t *call, json_t *root, const char *param, const char *expected, json_t *got)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
             json_type_name(got));
    json_decref(root);
    send_invalid_request(call, msg, param, "invalid_type");
}

/* ---- chat completions ------------------------------------------------------ */

#define AZURE_FILTER_OK                                                                                                \
    "{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},"   \
    "\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"
#define AZURE_PROMPT_FILTER                                                                                            \
    "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":" AZURE_FILTER_OK "}]"

typedef struct st_chat_t {
    const mock_openai_flavor_t *flavor;
    h2o_iovec_t model; /* escaped for output */
    uint32_t completion_tokens;
    uint64_t prompt_tokens;
    uint64_t cached_tokens;
    int limited;
    int include_usage;
    int azure_preamble;    /* the Azure preamble chunk is still to be sent */
    h2o_iovec_t tool_name; /* escaped; base NULL when the reply is text */
    /* streaming */
    mock_buf_t event;
    mock_buf_t head; /* `data: {...,"choices":[` shared by every chunk */
    uint32_t next_event;
    uint32_t num_deltas; /* words, or argument pieces of a tool call */
} chat_t;

static uint64_t content_words(json_t *content)
{
    if (json_is_string(content))
        return mock_count_words(json_string_value(content), json_string_length(content));
    if (!json_is_array(content))
        return 0;

    uint64_t words = 0;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (json_is_string(type) && strcmp(json_string_value(type), "text") == 0 && json_is_string(text))
            words += mock_count_words(json_string_value(text), json_string_length(text));
    }
    return words;
}

/* The name of the tool to call (the first function offered) when the tool
 * trigger fires, else NULL. */
static json_t *tool_to_call(json_t *root, json_t *messages)
{
    json_t *tools = json_object_get(root, "tools");
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    json_t *role = json_object_get(last, "role");

    if (!json_is_array(tools) || json_array_size(tools) == 0 || !json_is_string(role) ||
        strcmp(json_string_value(role), "user") != 0 ||
        !mock_content_mentions_weather(json_object_get(last, "content"), NULL))
        return NULL;
    json_t *name = json_object_get(json_object_get(json_array_get(tools, 0), "function"), "name");
    return json_is_string(name) && json_string_length(name) != 0 ? name : NULL;
}

/* Reads max_completion_tokens / max_tokens. Returns 0, or -1 after answering. */
static int read_token_limit(mock_call_t *call, json_t *root, chat_t *chat)
{
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};

    chat->completion_tokens = DEFAULT_COMPLETION;
    chat->limited = 0;
    for (size_t i = 0; i != 2; ++i) {
        json_t *v = json_object_get(root, names[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v)) {
            send_invalid_type(call, root, names[i], "an integer", v);
            return -1;
        }
        json_int_t n = json_integer_value(v);
        if (n < 1) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %lld instead.",
                     names[i], (long long)n);
            json_decref(root);
            send_invalid_request(call, msg, names[i], "integer_below_min_value");
            return -1;
        }
        chat->completion_tokens = n > MAX_COMPLETION ? MAX_COMPLETION : (uint32_t)n;
        chat->limited = 1;
        return 0;
    }
    return 0;
}

static const char *finish_reason(const chat_t *chat)
{
    if (chat->tool_name.base != NULL)
        return "tool_calls";
    return chat->limited ? "length" : "stop";
}

static void append_usage(mock_buf_t *buf, const chat_t *chat, int details)
{
    mock_buf_append_lit(buf, "\"usage\":{\"prompt_tokens\":");
    mock_buf_append_u64(buf, chat->prompt_tokens);
    mock_buf_append_lit(buf, ",\"completion_tokens\":");
    mock_buf_append_u64(buf, chat->completion_tokens);
    mock_buf_append_lit(buf, ",\"total_tokens\":");
    mock_buf_append_u64(buf, chat->prompt_tokens + chat->completion_tokens);
    if (details) {
        mock_buf_append_lit(buf, ",\"prompt_tokens_details\":{\"cached_tokens\":");
        mock_buf_append_u64(buf, chat->cached_tokens);
        mock_buf_append_lit(buf, ",\"audio_tokens\":0},"
                                 "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
                                 "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}");
    }
    mock_buf_append_lit(buf, "}");
}

static void append_id_head(mock_buf_t *buf, mock_call_t *call, const chat_t *chat, const char *object)
{
    mock_buf_append_lit(buf, "{\"id\":\"chatcmpl-mock-");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\",\"object\":\"");
    mock_buf_append_str(buf, object);
    mock_buf_append_lit(buf, "\",\"created\":");
    mock_buf_append_i64(buf, (int64_t)call->req->processed_at.at.tv_sec);
    mock_buf_append_lit(buf, ",\"model\":\"");
    mock_buf_append(buf, chat->model.base, chat->model.len);
    mock_buf_append_lit(buf, "\"");
}

static void append_tool_call_id(mock_buf_t *buf, mock_call_t *call)
{
    mock_buf_append_lit(buf, "\"call_mock_");
    mock_buf_append_u64(buf, call->seq);
    mock_buf_append_lit(buf, "\"");
}

static void respond_chat(mock_call_t *call, chat_t *chat)
{
    h2o_iovec_t text = mock_reply_text(chat->completion_tokens);
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 1024 + chat->model.len + text.len + chat->tool_name.len);
    append_id_head(&buf, call, chat, "chat.completion");
    mock_buf_append_lit(&buf, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (chat->tool_name.base != NULL) {
        mock_buf_append_lit(&buf, "null,\"tool_calls\":[{\"id\":");
        append_tool_call_id(&buf, call);
        mock_buf_append_lit(&buf, ",\"type\":\"function\",\"function\":{\"name\":\"");
        mock_buf_append(&buf, chat->tool_name.base, chat->tool_name.len);
        mock_buf_append_lit(&buf, "\",\"arguments\":");
        mock_buf_append_json_str(&buf, H2O_STRLIT(MOCK_TOOL_ARGS));
        mock_buf_append_lit(&buf, "}}]");
    } else {
        mock_buf_append_lit(&buf, "\"");
        mock_buf_append(&buf, text.base, text.len);
        mock_buf_append_lit(&buf, "\"");
    }
    mock_buf_append_lit(&buf, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
    mock_buf_append_str(&buf, finish_reason(chat));
    mock_buf_append_lit(&buf, "\"");
    if (chat->flavor->azure)
        mock_buf_append_lit(&buf, ",\"content_filter_results\":" AZURE_FILTER_OK);
    mock_buf_append_lit(&buf, "}],");
    if (chat->flavor->azure)
        mock_buf_append_lit(&buf, AZURE_PROMPT_FILTER ",");
    append_usage(&buf, chat, 1);
    mock_buf_append_lit(&buf, ",\"service_tier\":\"default\",\"system_fingerprint\":\"" FINGERPRINT "\"}");
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

/* The delta of the first chunk: the role, and for a tool call its id and name. */
static void append_first_delta(mock_buf_t *ev, mock_call_t *call, const chat_t *chat)
{
    if (chat->tool_name.base == NULL) {
        mock_buf_append_lit(ev, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
                                "\"logprobs\":null,\"finish_reason\":null}]");
        return;
    }
    mock_buf_append_lit(ev,
                        "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,"
                        "\"id\":");
    append_tool_call_id(ev, call);
    mock_buf_append_lit(ev, ",\"type\":\"function\",\"function\":{\"name\":\"");
    mock_buf_append(ev, chat->tool_name.base, chat->tool_name.len);
    mock_buf_append_lit(ev, "\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
}

/*
 * Stream events: [Azure: the empty-choices prompt-filter chunk], 0 role, 1..N
 * one word (or argument piece) each, N+1 finish_reason, N+2 usage (only with
 * include_usage), then [DONE].
 */
static int next_chat_event(mock_call_t *call, h2o_iovec_t *out)
{
    chat_t *chat = call->provider_data;
    mock_buf_t *ev = &chat->event;
    uint32_t n = chat->num_deltas;

    ev->len = 0;
    if (chat->azure_preamble) {
        chat->azure_preamble = 0;
        mock_buf_append_lit(
            ev, "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"," AZURE_PROMPT_FILTER
                "}\n\n");
        *out = h2o_iovec_init(ev->base, ev->len);
        return 1;
    }
    uint32_t i = chat->next_event++;
    if (i > n + 1 + (chat->include_usage ? 1 : 0)) {
        mock_buf_append_lit(ev, "data: [DONE]\n\n");
        *out = h2o_iovec_init(ev->base, ev->len);
        return 0;
    }
    mock_buf_append(ev, chat->head.base, chat->head.len);
    if (i == 0) {
        append_first_delta(ev, call, chat);
    } else if (i <= n && chat->tool_name.base != NULL) {
        const char *piece = mock_tool_args_pieces[i - 1];
        mock_buf_append_lit(ev, "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
        mock_buf_append_json_str(ev, piece, strlen(piece));
        mock_buf_append_lit(ev, "}}]},\"logprobs\":null,\"finish_reason\":null}]");
    } else if (i <= n) {
        h2o_iovec_t token = mock_reply_token(i - 1);
        mock_buf_append_lit(ev, "{\"index\":0,\"delta\":{\"content\":\"");
        mock_buf_append(ev, token.base, token.len);
        mock_buf_append_lit(ev, "\"},\"logprobs\":null,\"finish_reason\":null}]");
    } else if (i == n + 1) {
        mock_buf_append_lit(ev, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
        mock_buf_append_str(ev, finish_reason(chat));
        mock_buf_append_lit(ev, "\"}]");
    } else {
        mock_buf_append_lit(ev, "],");
        append_usage(ev, chat, 1);
        mock_buf_append_lit(ev, "}\n\n");
        *out = h2o_iovec_init(ev->base, ev->len);
        return 1;
    }
    if (chat->include_usage)
        mock_buf_append_lit(ev, ",\"usage\":null");
    mock_buf_append_lit(ev, "}\n\n");
    *out = h2o_iovec_init(ev->base, ev->len);
    return 1;
}

static void stream_chat(mock_call_t *call, chat_t *chat)
{
    h2o_mem_pool_t *pool = &call->req->pool;

    chat->num_deltas = chat->tool_name.base != NULL ? MOCK_TOOL_ARGS_PIECES : chat->completion_tokens;
    chat->azure_preamble = chat->flavor->azure;
    mock_buf_init(&chat->head, pool, 256 + chat->model.len);
    mock_buf_append_lit(&chat->head, "data: ");
    append_id_head(&chat->head, call, chat, "chat.completion.chunk");
    mock_buf_append_lit(&chat->head, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":[");
    mock_buf_init(&chat->event, pool, chat->head.len + 512 + chat->tool_name.len);
    call->provider_data = chat;
    mock_call_stream(call, MOCK_CT_SSE, next_chat_event);
}

void mock_openai_stream_error(mock_call_t *call, mock_buf_t *out)
{
    static const char msg[] = "The server had an error while processing your request. Sorry about that!";
    (void)call;

    mock_buf_append_lit(out, "data: ");
    mock_openai_format_error(out, msg, sizeof(msg) - 1, "server_error", NULL, NULL);
    mock_buf_append_lit(out, "\n\n");
}

void mock_openai_chat(mock_call_t *call, const mock_openai_flavor_t *flavor)
{
    h2o_mem_pool_t *pool = &call->req->pool;
    chat_t *chat;
    json_t *root, *v;
    int stream = 0;

    if ((root = parse_body(call)) == NULL)
        return;
    chat = mock_call_alloc(call, sizeof(*chat));
    chat->flavor = flavor;

    if (flavor->model.base != NULL) {
        chat->model = flavor->model;
    } else {
        v = json_object_get(root, "model");
        if (!json_is_string(v) || json_string_length(v) == 0) {
            json_decref(root);
            send_invalid_request(call, "you must provide a model parameter", NULL, NULL);
            return;
        }
        chat->model = mock_escaped_copy(pool, json_string_value(v), json_string_length(v));
    }

    json_t *messages = json_object_get(root, "messages");
    if (messages == NULL) {
        json_decref(root);
        send_invalid_request(call, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
        return;
    }
    if (!json_is_array(messages)) {
        send_invalid_type(call, root, "messages", "an array", messages);
        return;
    }
    if (json_array_size(messages) == 0) {
        json_decref(root);
        send_invalid_request(call,
                             "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                             "empty array instead.",
                             "messages", "empty_array");
        return;
    }
    size_t i;
    json_t *message;
    chat->prompt_tokens = 3;
    json_array_foreach(messages, i, message)
    {
        chat->prompt_tokens += 4 + content_words(json_object_get(message, "content"));
    }
    if (json_is_string(json_object_get(root, "prompt_cache_key")))
        chat->cached_tokens = chat->prompt_tokens / 2;
    json_t *tool = tool_to_call(root, messages);
    if (tool != NULL)
        chat->tool_name = mock_escaped_copy(pool, json_string_value(tool), json_string_length(tool));

    if (read_token_limit(call, root, chat) != 0)
        return;

    v = json_object_get(root, "stream");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            send_invalid_type(call, root, "stream", "a boolean", v);
            return;
        }
        stream = json_is_true(v);
    }
    v = json_object_get(root, "stream_options");
    if (v != NULL && !json_is_null(v)) {
        if (!stream) {
            json_decref(root);
            send_invalid_request(call, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                                 "stream_options", "invalid_value");
            return;
        }
        if (!json_is_object(v)) {
            send_invalid_type(call, root, "stream_options", "an object", v);
            return;
        }
        chat->include_usage = json_is_true(json_object_get(v, "include_usage"));
    }
    json_decref(root);

    call->kind = MOCK_KIND_CHAT;
    call->usage = (mock_usage_t){chat->prompt_tokens, chat->completion_tokens, chat->cached_tokens};
    add_request_id(call);
    if (stream)
        stream_chat(call, chat);
    else
        respond_chat(call, chat);
}

static void on_chat_completions(mock_call_t *call)
{
    static const mock_openai_flavor_t openai = {0};

    if (check_auth(call))
        mock_openai_chat(call, &openai);
}

/* ---- models ---------------------------------------------------------------- */

#define MODEL_GPT4O "{\"id\":\"gpt-4o\",\"object\":\"model\",\"created\":1715367049,\"owned_by\":\"system\"}"
#define MODEL_GPT4O_MINI "{\"id\":\"gpt-4o-mini\",\"object\":\"model\",\"created\":1721172741,\"owned_by\":\"system\"}"
#define MODEL_EMBED_SMALL                                                                                              \
    "{\"id\":\"text-embedding-3-small\",\"object\":\"model\",\"created\":1705948997,\"owned_by\":\"system\"}"

static const struct {
    const char *id;
    const char *json;
} models[] = {
    {"gpt-4o", MODEL_GPT4O},
    {"gpt-4o-mini", MODEL_GPT4O_MINI},
    {"text-embedding-3-small", MODEL_EMBED_SMALL},
};

static void on_list_models(mock_call_t *call)
{
    static const char body[] =
        "{\"object\":\"list\",\"data\":[" MODEL_GPT4O "," MODEL_GPT4O_MINI "," MODEL_EMBED_SMALL "]}";

    if (!check_auth(call))
        return;
    add_request_id(call);
    mock_call_respond(call, 200, MOCK_CT_JSON, body, sizeof(body) - 1);
}

static void on_get_model(mock_call_t *call)
{
    static const char prefix[] = "/v1/models/";
    h2o_iovec_t path = call->req->path_normalized;
    const char *id = path.base + sizeof(prefix) - 1;
    size_t id_len = path.len - (sizeof(prefix) - 1);

    if (!check_auth(call))
        return;
    for (size_t i = 0; i != sizeof(models) / sizeof(models[0]); ++i) {
        if (strlen(models[i].id) == id_len && memcmp(models[i].id, id, id_len) == 0) {
            add_request_id(call);
            mock_call_respond(call, 200, MOCK_CT_JSON, models[i].json, strlen(models[i].json));
            return;
        }
    }
    mock_buf_t msg;
    mock_buf_init(&msg, &call->req->pool, 64 + id_len);
    mock_buf_append_lit(&msg, "The model '");
    mock_buf_append(&msg, id, id_len);
    mock_buf_append_lit(&msg, "' does not exist");
    mock_buf_append(&msg, "", 1);
    send_error(call, 404, msg.base, "invalid_request_error", "model", "model_not_found");
}

/* ---- embeddings ------------------------------------------------------------ */

static void append_base64(mock_buf_t *buf, const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *dst = mock_buf_reserve(buf, (n + 2) / 3 * 4);
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        dst[o++] = tbl[v >> 18];
        dst[o++] = tbl[(v >> 12) & 63];
        dst[o++] = tbl[(v >> 6) & 63];
        dst[o++] = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        dst[o++] = tbl[v >> 18];
        dst[o++] = tbl[(v >> 12) & 63];
        dst[o++] = (char)(i + 1 < n ? tbl[(v >> 6) & 63] : '=');
        dst[o++] = '=';
    }
    buf->len += o;
}

/* Appends one {"object":"embedding",...} item for an input with hash seed. */
static void append_embedding(mock_buf_t *buf, size_t index, uint64_t seed, size_t dims, int base64, float *scratch)
{
    mock_unit_vector(seed, scratch, dims);

    if (index != 0)
        mock_buf_append_lit(buf, ",");
    mock_buf_append_lit(buf, "{\"object\":\"embedding\",\"index\":");
    mock_buf_append_u64(buf, index);
    mock_buf_append_lit(buf, ",\"embedding\":");
    if (base64) {
        mock_buf_append_lit(buf, "\"");
        append_base64(buf, (const unsigned char *)scratch, dims * sizeof(float));
        mock_buf_append_lit(buf, "\"}");
        return;
    }
    mock_append_floats(buf, scratch, dims);
    mock_buf_append_lit(buf, "}");
}

/* Hash and token count of one input (a string or an array of token ids);
 * returns -1 when it is neither. */
static int input_item(json_t *item, uint64_t *seed, uint64_t *tokens)
{
    if (json_is_string(item)) {
        *seed = mock_fnv1a(MOCK_FNV_OFFSET, json_string_value(item), json_string_length(item));
        *tokens = mock_count_words(json_string_value(item), json_string_length(item));
        return json_string_length(item) == 0 ? -1 : 0;
    }
    if (json_is_array(item) && json_array_size(item) != 0) {
        size_t i;
        json_t *t;
        *seed = MOCK_FNV_OFFSET;
        json_array_foreach(item, i, t)
        {
            if (!json_is_integer(t))
                return -1;
            json_int_t id = json_integer_value(t);
            *seed = mock_fnv1a(*seed, &id, sizeof(id));
        }
        *tokens = json_array_size(item);
        return 0;
    }
    return -1;
}

void mock_openai_embeddings(mock_call_t *call, const mock_openai_flavor_t *flavor)
{
    h2o_mem_pool_t *pool = &call->req->pool;
    json_t *root, *v;
    size_t dims = EMBEDDING_DIMS;
    int base64 = 0;

    if ((root = parse_body(call)) == NULL)
        return;

    h2o_iovec_t model = flavor->model;
    if (model.base == NULL) {
        v = json_object_get(root, "model");
        if (!json_is_string(v) || json_string_length(v) == 0) {
            json_decref(root);
            send_invalid_request(call, "you must provide a model parameter", NULL, NULL);
            return;
        }
        model = mock_escaped_copy(pool, json_string_value(v), json_string_length(v));
    }

    v = json_object_get(root, "dimensions");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > EMBEDDING_MAX_DIMS) {
            json_decref(root);
            send_invalid_request(call, "Invalid 'dimensions': expected an integer between 1 and 4096.", "dimensions",
                                 "invalid_value");
            return;
        }
        dims = (size_t)json_integer_value(v);
    }
    v = json_object_get(root, "encoding_format");
    if (v != NULL && !json_is_null(v)) {
        if (json_is_string(v) && strcmp(json_string_value(v), "base64") == 0) {
            base64 = 1;
        } else if (!json_is_string(v) || strcmp(json_string_value(v), "float") != 0) {
            json_decref(root);
            send_invalid_request(call, "Invalid 'encoding_format': expected one of 'float' or 'base64'.",
                                 "encoding_format", "invalid_value");
            return;
        }
    }

    json_t *input = json_object_get(root, "input");
    if (input == NULL) {
        json_decref(root);
        send_invalid_request(call, "Missing required parameter: 'input'.", "input", "missing_required_parameter");
        return;
    }
    /* One input (a string or one token array) or an array of them. */
    size_t count = 1;
    int many = json_is_array(input) && json_array_size(input) != 0 && !json_is_integer(json_array_get(input, 0));
    if (many)
        count = json_array_size(input);

    float *scratch = h2o_mem_alloc_pool(pool, dims * sizeof(float));
    mock_buf_t buf;
    uint64_t total_tokens = 0;
    mock_buf_init(&buf, pool, 256 + model.len + count * (64 + dims * (base64 ? 6 : 16)));
    mock_buf_append_lit(&buf, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i != count; ++i) {
        uint64_t seed, tokens;
        if (input_item(many ? json_array_get(input, i) : input, &seed, &tokens) != 0) {
            json_decref(root);
            send_invalid_request(call,
                                 "'$.input' is invalid. Please check the API reference: "
                                 "https://platform.openai.com/docs/api-reference.",
                                 "input", NULL);
            return;
        }
        total_tokens += tokens;
        append_embedding(&buf, i, seed, dims, base64, scratch);
    }
    json_decref(root);
    mock_buf_append_lit(&buf, "],\"model\":\"");
    mock_buf_append(&buf, model.base, model.len);
    mock_buf_append_lit(&buf, "\",\"usage\":{\"prompt_tokens\":");
    mock_buf_append_u64(&buf, total_tokens);
    mock_buf_append_lit(&buf, ",\"total_tokens\":");
    mock_buf_append_u64(&buf, total_tokens);
    mock_buf_append_lit(&buf, "}}");

    call->kind = MOCK_KIND_EMBEDDING;
    call->usage.prompt_tokens = total_tokens;
    add_request_id(call);
    mock_call_respond(call, 200, MOCK_CT_JSON, buf.base, buf.len);
}

static void on_embeddings(mock_call_t *call)
{
    static const mock_openai_flavor_t openai = {0};

    if (check_auth(call))
        mock_openai_embeddings(call, &openai);
}

/* ---- registration ---------------------------------------------------------- */

static const mock_route_t routes[] = {
    {"POST", "/v1/chat/completions", on_chat_completions},
    {"POST", "/v1/embeddings", on_embeddings},
    {"GET", "/v1/models", on_list_models},
    {"GET", "/v1/models/*", on_get_model},
    {NULL},
};

const mock_provider_t mock_openai_provider = {
    .name = "openai",
    .id = MOCK_PROVIDER_OPENAI,
    .prefix = "/",
    .routes = routes,
    .send_fault = send_fault,
    .stream_error = mock_openai_stream_error,
    .send_not_found = send_not_found,
};
