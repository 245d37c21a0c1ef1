/*
 * azure.c - fake Azure OpenAI: deployment-scoped chat completions and
 * embeddings, authenticated with the `api-key` header.
 *
 *   POST /openai/deployments/{deployment}/chat/completions?api-version=V
 *   POST /openai/deployments/{deployment}/embeddings?api-version=V
 *
 * Bodies and answers are OpenAI's (openai.h), with Azure's differences: the
 * model reported is the deployment name, chat answers carry content-filter
 * results, and a stream starts with Azure's empty-choices prompt-filter
 * chunk. Authentication and routing errors use Azure's own shape
 * {"error":{"code":"401","message":...}}; request validation errors are
 * OpenAI's, as the service passes them through. A missing or malformed
 * api-version is a 404, as on Azure.
 */
#include <string.h>

#include "buf.h"
#include "call.h"
#include "http.h"
#include "openai.h"
#include "provider.h"

#define PREFIX "/openai/deployments/"
#define ACCESS_DENIED                                                                                                  \
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "    \
    "active subscription and use a correct regional API endpoint for your resource."

static void format_error(mock_buf_t *buf, const char *code, const char *message)
{
    mock_buf_append_lit(buf, "{\"error\":{\"code\":");
    mock_buf_append_json_str(buf, code, strlen(code));
    mock_buf_append_lit(buf, ",\"message\":");
    mock_buf_append_json_str(buf, message, strlen(message));
    mock_buf_append_lit(buf, "}}");
}

static void add_apim_request_id(mock_call_t *call)
{
    char id[40];
    mock_http_add_header(call->req, "apim-request-id", id, mock_call_uuid(call, id));
}

static void send_error(mock_call_t *call, int status, const char *code, const char *message)
{
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 128 + strlen(message));
    format_error(&buf, code, message);
    add_apim_request_id(call);
    mock_call_respond(call, status, MOCK_CT_JSON, buf.base, buf.len);
}

static void send_fault(mock_call_t *call, int status)
{
    char code[16];

    switch (status) {
    case 401:
        send_error(call, 401, "401", ACCESS_DENIED);
        break;
    case 429:
        send_error(call, 429, "429",
                   "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
                   "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second. "
                   "Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
                   "default rate limit.");
        break;
    case 500: {
        static const char msg[] = "The server had an error while processing your request. Sorry about that!";
        mock_buf_t buf;
        mock_buf_init(&buf, &call->req->pool, 256);
        mock_openai_format_error(&buf, msg, sizeof(msg) - 1, "server_error", NULL, NULL);
        add_apim_request_id(call);
        mock_call_respond(call, 500, MOCK_CT_JSON, buf.base, buf.len);
        break;
    }
    case 503:
        send_error(call, 503, "ServiceUnavailable",
                   "The service is temporarily unable to process your request. Please try again later.");
        break;
    default:
        snprintf(code, sizeof(code), "%d", status);
        send_error(call, status, code, mock_http_reason(status));
        break;
    }
}

static void send_not_found(h2o_req_t *req)
{
    static const char body[] = "{\"error\":{\"code\":\"404\",\"message\":\"Resource not found\"}}";
    mock_http_send(req, 404, MOCK_CT_JSON, body, sizeof(body) - 1);
}

/* Returns 1 when the call carries the Azure key; else answers 401. */
static int check_auth(mock_call_t *call)
{
    const mock_settings_t *s = call->settings;
    h2o_iovec_t key = mock_http_header_str(call->req, "api-key");

    if (key.base != NULL && key.len == s->azure_key_len && memcmp(key.base, s->azure_key, key.len) == 0)
        return 1;
    send_error(call, 401, "401", ACCESS_DENIED);
    return 0;
}

/* api-version must look like YYYY-MM-DD with an optional -suffix. */
static int valid_api_version(h2o_iovec_t v)
{
    static const char shape[] = "dddd-dd-dd";

    if (v.base == NULL || v.len < sizeof(shape) - 1)
        return 0;
    for (size_t i = 0; i != sizeof(shape) - 1; ++i) {
        if (shape[i] == 'd' ? !(v.base[i] >= '0' && v.base[i] <= '9') : v.base[i] != shape[i])
            return 0;
    }
    return v.len == sizeof(shape) - 1 || v.base[sizeof(shape) - 1] == '-';
}

static void on_deployment_call(mock_call_t *call)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t path = req->path_normalized;
    const char *name = path.base + sizeof(PREFIX) - 1;
    const char *end = path.base + path.len;
    const char *slash = memchr(name, '/', (size_t)(end - name));

    if (!check_auth(call))
        return;
    if (slash == NULL || slash == name) {
        send_error(call, 404, "404", "Resource not found");
        return;
    }
    h2o_iovec_t op = h2o_iovec_init(slash, (size_t)(end - slash));
    int chat = h2o_memis(op.base, op.len, H2O_STRLIT("/chat/completions"));
    if (!chat && !h2o_memis(op.base, op.len, H2O_STRLIT("/embeddings"))) {
        send_error(call, 404, "404", "Resource not found");
        return;
    }
    h2o_iovec_t version = mock_http_form_param(&req->pool, mock_http_raw_query(req), "api-version");
    if (!valid_api_version(version)) {
        send_error(call, 404, "404", "Resource not found");
        return;
    }

    mock_openai_flavor_t *flavor = mock_call_alloc(call, sizeof(*flavor));
    mock_buf_t model;
    mock_buf_init(&model, &req->pool, (size_t)(slash - name) * 6 + 1);
    mock_buf_append_json_chars(&model, name, (size_t)(slash - name));
    flavor->azure = 1;
    flavor->model = h2o_iovec_init(model.base, model.len);
    add_apim_request_id(call);
    if (chat)
        mock_openai_chat(call, flavor);
    else
        mock_openai_embeddings(call, flavor);
}

static const mock_route_t routes[] = {
    {"POST", PREFIX "*", on_deployment_call},
    {NULL},
};

const mock_provider_t mock_azure_provider = {
    .name = "azure",
    .id = MOCK_PROVIDER_AZURE,
    .prefix = "/openai/",
    .routes = routes,
    .send_fault = send_fault,
    .stream_error = mock_openai_stream_error,
    .send_not_found = send_not_found,
};
