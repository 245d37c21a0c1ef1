/* dp_error.c - OpenAI-shaped error bodies (see dp_error.h). */
#include "dp_error.h"

#include <string.h>

#include "sl_json.h"

size_t dp_json_escaped_len(const char *s, size_t len)
{
    return 2 + sl_json_escaped_len(s, len);
}

size_t dp_json_escape(char *out, const char *s, size_t len)
{
    char *p = out;
    *p++ = '"';
    p = sl_json_escape(p, s, len);
    *p++ = '"';
    return (size_t)(p - out);
}

static size_t opt_len(const char *s)
{
    return s == NULL ? 4 : dp_json_escaped_len(s, strlen(s));
}

static char *put_opt(char *p, const char *s)
{
    if (s == NULL) {
        memcpy(p, "null", 4);
        return p + 4;
    }
    return p + dp_json_escape(p, s, strlen(s));
}

#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

h2o_iovec_t dp_error_json(h2o_mem_pool_t *pool, const dp_error_t *e)
{
    const char *msg = e->message != NULL ? e->message : "error";
    const char *type = e->type != NULL ? e->type : "api_error";
    size_t cap = sizeof("{\"error\":{\"message\":,\"type\":,\"param\":,\"code\":}}\n") + opt_len(msg) + opt_len(type) +
                 opt_len(e->param) + opt_len(e->code);
    char *buf = h2o_mem_alloc_pool(pool, cap), *p = buf;
    PUT_LIT(p, "{\"error\":{\"message\":");
    p = put_opt(p, msg);
    PUT_LIT(p, ",\"type\":");
    p = put_opt(p, type);
    PUT_LIT(p, ",\"param\":");
    p = put_opt(p, e->param);
    PUT_LIT(p, ",\"code\":");
    p = put_opt(p, e->code);
    PUT_LIT(p, "}}\n");
    return h2o_iovec_init(buf, (size_t)(p - buf));
}

int dp_error_is_openai_shaped(const char *body, size_t len)
{
    sl_json_tok_t toks[128];
    /* the error object is small; a body needing more tokens than this is
     * not an error document we pass through verbatim */
    int n = sl_json_parse(body, len, toks, sizeof(toks) / sizeof(toks[0]), NULL);
    if (n < 1 || toks[0].type != SL_JSON_OBJECT)
        return 0;
    int e = sl_json_find(body, toks, 0, "error", 5);
    return e > 0 && toks[e].type == SL_JSON_OBJECT;
}

const char *dp_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}
