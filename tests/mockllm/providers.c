/*
 * providers.c - the table of fake providers and request routing over it.
 *
 * The first provider is the default one: it answers 404 for paths that fall
 * under no provider's prefix.
 */
#include "provider.h"

#include <string.h>

#include "reply.h"

static const mock_provider_t *const providers[] = {
    &mock_openai_provider,  &mock_azure_provider,  &mock_anthropic_provider,
    &mock_bedrock_provider, &mock_vertex_provider, &mock_google_oauth_provider,
};

static const char *const names[MOCK_PROVIDER_COUNT] = {
    [MOCK_PROVIDER_OPENAI] = "openai",       [MOCK_PROVIDER_AZURE] = "azure",
    [MOCK_PROVIDER_ANTHROPIC] = "anthropic", [MOCK_PROVIDER_BEDROCK] = "bedrock",
    [MOCK_PROVIDER_VERTEX] = "vertex",       [MOCK_PROVIDER_GOOGLE_OAUTH] = "google_oauth",
};

#define NUM_PROVIDERS (sizeof(providers) / sizeof(providers[0]))

const char *mock_provider_name(mock_provider_id_t id)
{
    return (unsigned)id < MOCK_PROVIDER_COUNT ? names[id] : "unknown";
}

int mock_provider_parse(const char *name, size_t len)
{
    for (int i = 0; i != MOCK_PROVIDER_COUNT; ++i)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return i;
    return -1;
}

int mock_providers_init(const mock_settings_t *settings)
{
    if (mock_reply_init() != 0)
        return -1;
    for (size_t i = 0; i != NUM_PROVIDERS; ++i) {
        if (providers[i]->init != NULL && providers[i]->init(settings) != 0)
            return -1;
    }
    return 0;
}

static int path_matches(const char *pattern, h2o_iovec_t path)
{
    size_t n = strlen(pattern);

    if (n != 0 && pattern[n - 1] == '*')
        return path.len >= n && memcmp(path.base, pattern, n - 1) == 0;
    return path.len == n && memcmp(path.base, pattern, n) == 0;
}

const mock_route_t *mock_providers_route(const h2o_req_t *req, const mock_provider_t **provider)
{
    h2o_iovec_t path = req->path_normalized;
    const mock_provider_t *fallback = providers[0];
    size_t fallback_len = 0;

    for (size_t i = 0; i != NUM_PROVIDERS; ++i) {
        const mock_provider_t *p = providers[i];
        for (const mock_route_t *r = p->routes; r->method != NULL; ++r) {
            if (path_matches(r->path, path) && req->method.len == strlen(r->method) &&
                memcmp(req->method.base, r->method, req->method.len) == 0) {
                *provider = p;
                return r;
            }
        }
        size_t plen = strlen(p->prefix);
        if (plen > fallback_len && path.len >= plen && memcmp(path.base, p->prefix, plen) == 0) {
            fallback = p;
            fallback_len = plen;
        }
    }
    *provider = fallback;
    return NULL;
}
