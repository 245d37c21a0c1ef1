/* dp_provider.c - the table of provider kinds and helpers shared by
 * translators (see dp_provider.h). */
#include "dp_provider.h"

#include <string.h>

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
