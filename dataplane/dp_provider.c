/* dp_provider.c - the table of provider kinds and helpers shared by
 * translators (see dp_provider.h). */
#include "dp_provider.h"

#include <stdio.h>
#include <string.h>

#include "sl_err.h"

/* A translator's header appears with its implementation; until then its
 * kind stays in the table with no ops, so routing skips it. */
#if __has_include("anthropic.h")
#include "anthropic.h"
#define ANTHROPIC_OPS (&dp_provider_anthropic)
#else
#define ANTHROPIC_OPS NULL
#endif
#if __has_include("bedrock.h")
#include "bedrock.h"
#define BEDROCK_OPS (&dp_provider_bedrock)
#else
#define BEDROCK_OPS NULL
#endif
#if __has_include("vertex.h")
#include "vertex.h"
#define VERTEX_OPS (&dp_provider_vertex)
#else
#define VERTEX_OPS NULL
#endif

extern const dp_provider_ops_t dp_openai_ops;
extern const dp_provider_ops_t dp_azure_openai_ops;

static const struct {
    const char *kind;
    const dp_provider_ops_t *ops;
} table[] = {
    {"openai", &dp_openai_ops},
    {"openai_compatible", &dp_openai_ops},
    {"azure_openai", &dp_azure_openai_ops},
    {"anthropic", ANTHROPIC_OPS},
    {"bedrock", BEDROCK_OPS},
    {"vertex", VERTEX_OPS},
};

const dp_provider_ops_t *dp_provider_ops_for(const char *kind)
{
    if (kind == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].kind, kind) == 0)
            return table[i].ops;
    return NULL;
}

int dp_provider_drop_request_header(const h2o_header_t *h)
{
    static const char *const names[] = {
        "host", "content-length", "content-type", "authorization", "x-api-key", "api-key", "accept",
        "accept-encoding", "cookie", "expect", "forwarded", "x-forwarded-for", "x-forwarded-host",
        "x-forwarded-proto", "x-real-ip", "openai-organization", "openai-project", "x-request-id",
        "http2-settings", "proxy-authorization",
    };
    const h2o_iovec_t *n = h->name;
    const h2o_token_t *tok = h2o_iovec_is_token(n) ? (const h2o_token_t *)n : NULL;
    if (tok != NULL && tok->proxy_should_drop_for_req)
        return 1;
    if (n->len >= 9 && memcmp(n->base, "x-sluice-", 9) == 0)
        return 1;
    if (n->len >= 6 && memcmp(n->base, "proxy-", 6) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h2o_memis(n->base, n->len, names[i], strlen(names[i])))
            return 1;
    return 0;
}

const char *dp_provider_param(const dp_provider_t *prov, const char *name)
{
    if (prov->pb == NULL)
        return NULL;
    for (size_t i = 0; i < prov->pb->n_params; i++)
        if (prov->pb->params[i]->key != NULL && strcmp(prov->pb->params[i]->key, name) == 0)
            return prov->pb->params[i]->value;
    return NULL;
}

int dp_provider_parse_pool(h2o_mem_pool_t *pool, const char *js, size_t len, sl_json_tok_t *stack, size_t scap,
                           sl_json_tok_t **toks)
{
    int n = scap > 0 ? sl_json_parse(js, len, stack, scap, NULL) : SL_ETOOBIG;
    *toks = stack;
    if (n == SL_ETOOBIG) {
        size_t cap = len / 2 + 2;
        *toks = h2o_mem_alloc_pool(pool, cap * sizeof(**toks));
        n = sl_json_parse(js, len, *toks, cap, NULL);
    }
    return n;
}

h2o_iovec_t dp_json_unescape(h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t)
{
    if (!t->escaped)
        return h2o_iovec_init(js + t->start, (size_t)(t->end - t->start));
    size_t n = sl_json_str_len(js, t);
    char *p = h2o_mem_alloc_pool(pool, n + 1);
    sl_json_str_copy(js, t, p, n + 1);
    return h2o_iovec_init(p, n);
}

void dp_upstream_json_headers(dp_jw_t *head, const char *accept, h2o_iovec_t request_id)
{
    dp_jw_lit(head, "content-type: application/json\r\naccept: ");
    dp_jw_raw(head, accept, strlen(accept));
    dp_jw_lit(head, "\r\nx-request-id: ");
    dp_jw_raw(head, request_id.base, request_id.len);
    dp_jw_lit(head, "\r\n");
}

void dp_upstream_finish(dp_jw_t *head, h2o_iovec_t body, dp_upstream_req_t *out)
{
    char cl[48];
    int n = snprintf(cl, sizeof(cl), "content-length: %zu\r\n\r\n", body.len);
    dp_jw_raw(head, cl, (size_t)n);
    out->bufs[0] = dp_jw_iov(head);
    out->bufs[1] = body;
    out->nbufs = 2;
    out->body_len = body.len;
}

int dp_upstream_error_begin(int status, dp_upstream_error_t *out)
{
    out->pass_body = 0;
    out->message[0] = '\0';
    out->status = 502;
    out->type = "api_error";
    out->code = "upstream_error";
    if (status != 401 && status != 403)
        return 0;
    out->code = "upstream_auth_failed";
    return 1;
}

void dp_xlate_open(dp_jw_t *w, const dp_xlate_ctx_t *ctx, int chunk)
{
    if (chunk)
        dp_jw_lit(w, "data: {\"id\":");
    else
        dp_jw_lit(w, "{\"id\":");
    dp_jw_str(w, ctx->id.base, ctx->id.len);
    if (chunk)
        dp_jw_lit(w, ",\"object\":\"chat.completion.chunk\",\"created\":");
    else
        dp_jw_lit(w, ",\"object\":\"chat.completion\",\"created\":");
    dp_jw_int(w, ctx->created);
    dp_jw_lit(w, ",\"model\":");
    dp_jw_str(w, ctx->model.base, ctx->model.len);
}

void dp_xlate_usage(dp_jw_t *w, const dp_tokens_t *tk, int64_t reasoning)
{
    dp_jw_lit(w, "{\"prompt_tokens\":");
    dp_jw_int(w, tk->input);
    dp_jw_lit(w, ",\"completion_tokens\":");
    dp_jw_int(w, tk->output);
    dp_jw_lit(w, ",\"total_tokens\":");
    dp_jw_int(w, tk->input + tk->output);
    dp_jw_lit(w, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    dp_jw_int(w, tk->cached_input);
    dp_jw_lit(w, "}");
    if (reasoning > 0) {
        dp_jw_lit(w, ",\"completion_tokens_details\":{\"reasoning_tokens\":");
        dp_jw_int(w, reasoning);
        dp_jw_lit(w, "}");
    }
    dp_jw_lit(w, "}");
}
