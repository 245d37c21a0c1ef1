/*
 * openai.c - the OpenAI chat-completions translator, shared by the
 * `openai`, `openai_compatible` and `azure_openai` kinds (which differ only
 * in URL and auth header).
 *
 * The client's body is forwarded byte for byte except for two splices:
 * the `model` value when the served name differs from what the client
 * wrote (a "provider/model" prefix, escapes), and, for streams,
 * `stream_options.include_usage: true` so the upstream reports usage in a
 * final chunk.
 */
#include "dp_provider.h"

#include <string.h>

#include "dp_error.h"
#include "sl_err.h"

#define DEFAULT_AZURE_API_VERSION "2024-10-21"

typedef struct edit {
    size_t from, to;              /* body range replaced */
    h2o_iovec_t ins;              /* inserted in its place */
} edit_t;

/* Byte range of a value token, quotes included for strings. */
static void tok_range(const sl_json_tok_t *t, size_t *from, size_t *to)
{
    if (t->type == SL_JSON_STRING) {
        *from = t->start - 1;
        *to = t->end + 1;
    } else {
        *from = t->start;
        *to = t->end;
    }
}

/* Adds the edit forcing include_usage on; returns the new edit count. */
static size_t edit_stream_options(const dp_chat_req_t *in, edit_t *e, size_t n)
{
    static const char member[] = ",\"stream_options\":{\"include_usage\":true}";
    static const char object[] = "{\"include_usage\":true}";
    static const char field[] = "\"include_usage\":true,";
    const sl_json_tok_t *t = in->toks;
    int so = sl_json_find(in->body, t, 0, "stream_options", 14);
    if (so < 0) {
        e[n].from = e[n].to = t[0].end - 1; /* before the root's closing brace */
        e[n].ins = t[0].size == 0 ? h2o_iovec_init(member + 1, sizeof(member) - 2)
                                  : h2o_iovec_init(member, sizeof(member) - 1);
        return n + 1;
    }
    if (t[so].type != SL_JSON_OBJECT || t[so].size == 0) {
        tok_range(&t[so], &e[n].from, &e[n].to);
        e[n].ins = h2o_iovec_init(object, sizeof(object) - 1);
        return n + 1;
    }
    int iu = sl_json_find(in->body, t, so, "include_usage", 13);
    if (iu < 0) {
        e[n].from = e[n].to = t[so].start + 1;
        e[n].ins = h2o_iovec_init(field, sizeof(field) - 1);
        return n + 1;
    }
    if (t[iu].type == SL_JSON_TRUE)
        return n;
    tok_range(&t[iu], &e[n].from, &e[n].to);
    e[n].ins = h2o_iovec_init(H2O_STRLIT("true"));
    return n + 1;
}

/* Splices the body into out->bufs[out->nbufs...]. */
static int splice_body(h2o_mem_pool_t *pool, const dp_chat_req_t *in, h2o_iovec_t served_model, int rewrite_model,
                       dp_upstream_req_t *out)
{
    edit_t e[2];
    size_t n = 0;
    const sl_json_tok_t *mt = &in->toks[in->model_tok];
    if (rewrite_model && !(!mt->escaped && mt->end - mt->start == served_model.len &&
                           memcmp(in->body + mt->start, served_model.base, served_model.len) == 0)) {
        char *q = h2o_mem_alloc_pool(pool, dp_json_escaped_len(served_model.base, served_model.len));
        e[n].from = mt->start - 1;
        e[n].to = mt->end + 1;
        e[n].ins = h2o_iovec_init(q, dp_json_escape(q, served_model.base, served_model.len));
        n++;
    }
    if (in->stream)
        n = edit_stream_options(in, e, n);
    if (n == 2 && e[1].from < e[0].from) {
        edit_t t = e[0];
        e[0] = e[1];
        e[1] = t;
    }
    size_t pos = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].from > pos)
            out->bufs[out->nbufs++] = h2o_iovec_init(in->body + pos, e[i].from - pos);
        if (e[i].ins.len > 0)
            out->bufs[out->nbufs++] = e[i].ins;
        total += (e[i].from - pos) + e[i].ins.len;
        pos = e[i].to;
    }
    if (pos < in->len)
        out->bufs[out->nbufs++] = h2o_iovec_init(in->body + pos, in->len - pos);
    total += in->len - pos;
    out->body_len = total;
    return 0;
}

/* A small writer over a pool buffer sized in advance. */
typedef struct wbuf {
    char *p, *end;
} wbuf_t;

static void put(wbuf_t *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n)
        n = (size_t)(w->end - w->p); /* cannot happen: sized in advance */
    memcpy(w->p, s, n);
    w->p += n;
}
#define PUTS(w, lit) put((w), (lit), sizeof(lit) - 1)

static int build(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred, h2o_iovec_t served_model,
                 const dp_chat_req_t *in, const h2o_headers_t *client_headers, h2o_iovec_t request_id,
                 dp_upstream_req_t *out, int azure, const char *op)
{
    const char *api_version = NULL;
    if (prov->host == NULL || prov->host[0] == '\0' || prov->port == 0)
        return SL_EINVAL;
    size_t prefixlen = strlen(prov->path_prefix);
    if (azure && (api_version = dp_provider_param(prov, "api_version")) == NULL)
        api_version = DEFAULT_AZURE_API_VERSION;

    size_t cap = 512 + prefixlen + prov->authority_len + cred->secret_len + request_id.len;
    if (azure)
        cap += served_model.len * 3 + strlen(api_version);
    for (size_t i = 0; i < client_headers->size; i++) {
        const h2o_header_t *h = &client_headers->entries[i];
        if (!dp_provider_drop_request_header(h))
            cap += h->name->len + h->value.len + 4;
    }
    wbuf_t w;
    w.p = h2o_mem_alloc_pool(pool, cap);
    w.end = w.p + cap;
    char *head = w.p;

    PUTS(&w, "POST ");
    put(&w, prov->path_prefix, prefixlen);
    if (azure) {
        /* deployment names are [A-Za-z0-9._-]; anything else is refused */
        for (size_t i = 0; i < served_model.len; i++) {
            char c = served_model.base[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_' || c == '.'))
                return SL_EINVAL;
        }
        PUTS(&w, "/openai/deployments/");
        put(&w, served_model.base, served_model.len);
        put(&w, op, strlen(op));
        PUTS(&w, "?api-version=");
        put(&w, api_version, strlen(api_version));
    } else {
        put(&w, op, strlen(op));
    }
    PUTS(&w, " HTTP/1.1\r\nhost: ");
    put(&w, prov->authority, prov->authority_len);
    if (azure) {
        PUTS(&w, "\r\napi-key: ");
    } else {
        PUTS(&w, "\r\nauthorization: Bearer ");
    }
    put(&w, cred->secret, cred->secret_len);
    PUTS(&w, "\r\ncontent-type: application/json\r\naccept: ");
    if (in->stream)
        PUTS(&w, "text/event-stream");
    else
        PUTS(&w, "application/json");
    PUTS(&w, "\r\nx-request-id: ");
    put(&w, request_id.base, request_id.len);
    PUTS(&w, "\r\n");
    for (size_t i = 0; i < client_headers->size; i++) {
        const h2o_header_t *h = &client_headers->entries[i];
        if (dp_provider_drop_request_header(h))
            continue;
        put(&w, h->name->base, h->name->len);
        PUTS(&w, ": ");
        put(&w, h->value.base, h->value.len);
        PUTS(&w, "\r\n");
    }
    out->nbufs = 1;
    /* the body goes first so content-length is known, then finish the head */
    if (splice_body(pool, in, served_model, !azure, out) != 0)
        return SL_EINVAL;
    char cl[48];
    int cll = snprintf(cl, sizeof(cl), "content-length: %zu\r\n\r\n", out->body_len);
    put(&w, cl, (size_t)cll);
    out->bufs[0] = h2o_iovec_init(head, (size_t)(w.p - head));
    return 0;
}

static int build_openai(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                        h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                        h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    return build(pool, prov, cred, served_model, in, client_headers, request_id, out, 0, "/chat/completions");
}

static int build_azure(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                       h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                       h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    return build(pool, prov, cred, served_model, in, client_headers, request_id, out, 1, "/chat/completions");
}

static int build_openai_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                                   h2o_iovec_t served_model, const dp_chat_req_t *in,
                                   const h2o_headers_t *client_headers, h2o_iovec_t request_id,
                                   dp_upstream_req_t *out)
{
    return build(pool, prov, cred, served_model, in, client_headers, request_id, out, 0, "/embeddings");
}

static int build_azure_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                                  h2o_iovec_t served_model, const dp_chat_req_t *in,
                                  const h2o_headers_t *client_headers, h2o_iovec_t request_id,
                                  dp_upstream_req_t *out)
{
    return build(pool, prov, cred, served_model, in, client_headers, request_id, out, 1, "/embeddings");
}

/* Reads {"prompt_tokens","completion_tokens","prompt_tokens_details":
 * {"cached_tokens"}} from the usage object at toks[u]. */
static void read_usage(const char *js, const sl_json_tok_t *t, int u, dp_tokens_t *out)
{
    int64_t v;
    int i;
    if ((i = sl_json_find(js, t, u, "prompt_tokens", 13)) > 0 && sl_json_int64(js, &t[i], &v) == 0 && v >= 0)
        out->input = v;
    if ((i = sl_json_find(js, t, u, "completion_tokens", 17)) > 0 && sl_json_int64(js, &t[i], &v) == 0 && v >= 0)
        out->output = v;
    int d = sl_json_find(js, t, u, "prompt_tokens_details", 21);
    if (d > 0 && (i = sl_json_find(js, t, d, "cached_tokens", 13)) > 0 && sl_json_int64(js, &t[i], &v) == 0 &&
        v >= 0)
        out->cached_input = v < out->input ? v : out->input;
    out->seen = 1;
}

static int parse_usage(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int u = sl_json_find(body, t, 0, "usage", 5);
    if (u > 0 && t[u].type == SL_JSON_OBJECT)
        read_usage(body, t, u, out);
    return 0;
}

static int parse_event(h2o_mem_pool_t *pool, const char *data, size_t len, dp_tokens_t *out)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return DP_EV_DONE;
    sl_json_tok_t stack[128], *t;
    int n = sl_json_parse(data, len, stack, 128, NULL);
    t = stack;
    if (n == SL_ETOOBIG) {
        /* a big content chunk: only worth tokenizing when it may carry usage or an error */
        if (memmem(data, len, "\"usage\"", 7) == NULL && memmem(data, len, "\"error\"", 7) == NULL)
            return DP_EV_CONTENT;
        n = dp_provider_parse_pool(pool, data, len, stack, 0, &t);
    }
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return 0;
    int flags = 0, i;
    if ((i = sl_json_find(data, t, 0, "error", 5)) > 0 && t[i].type == SL_JSON_OBJECT)
        flags |= DP_EV_ERROR;
    if ((i = sl_json_find(data, t, 0, "usage", 5)) > 0 && t[i].type == SL_JSON_OBJECT) {
        read_usage(data, t, i, out);
        flags |= DP_EV_USAGE;
    }
    int ch = sl_json_find(data, t, 0, "choices", 7);
    if (ch > 0 && t[ch].type == SL_JSON_ARRAY && t[ch].size > 0) {
        int c0 = sl_json_array_at(t, ch, 0);
        int d = sl_json_find(data, t, c0, "delta", 5);
        int c = sl_json_find(data, t, d, "content", 7);
        if ((c > 0 && t[c].type == SL_JSON_STRING && t[c].end > t[c].start) ||
            sl_json_find(data, t, d, "tool_calls", 10) > 0)
            flags |= DP_EV_CONTENT;
    }
    return flags;
}

static void map_error(int status, const char *body, size_t len, dp_upstream_error_t *out)
{
    if (dp_upstream_error_begin(status, out))
        return;
    out->status = status >= 400 && status <= 599 ? status : 502;
    if (status == 429) {
        out->type = "rate_limit_error";
        out->code = "rate_limit_exceeded";
    } else if (status < 500) {
        out->type = "invalid_request_error";
    }
    out->pass_body = dp_error_is_openai_shaped(body, len);
}

const dp_provider_ops_t dp_openai_ops = {
    .name = "openai",
    .openai_format = 1,
    .build_chat = build_openai,
    .parse_usage = parse_usage,
    .parse_event = parse_event,
    .map_error = map_error,
    .build_embeddings = build_openai_embeddings,
};

const dp_provider_ops_t dp_azure_openai_ops = {
    .name = "azure_openai",
    .openai_format = 1,
    .build_chat = build_azure,
    .parse_usage = parse_usage,
    .parse_event = parse_event,
    .map_error = map_error,
    .build_embeddings = build_azure_embeddings,
};
