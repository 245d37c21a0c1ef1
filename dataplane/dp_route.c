/* dp_route.c - model resolution and credential choice (see dp_route.h). */
#include "dp_route.h"

#include <string.h>

#include "sl_err.h"

#define MAX_CANDIDATES 32

static int str_eq(const char *a, const char *b, size_t blen)
{
    return strncmp(a, b, blen) == 0 && a[blen] == '\0';
}

int dp_route_provider_allowed(const dp_key_t *key, const char *name, size_t len)
{
    if (key->n_allowed_providers == 0)
        return 1;
    for (size_t i = 0; i < key->n_allowed_providers; i++)
        if (str_eq(key->allowed_providers[i], name, len))
            return 1;
    return 0;
}

static int model_allowed(const dp_key_t *key, const char *asked, size_t alen, const char *prov, const char *model,
                         size_t mlen)
{
    if (key->n_allowed_models == 0)
        return 1;
    size_t plen = strlen(prov);
    for (size_t i = 0; i < key->n_allowed_models; i++) {
        const char *m = key->allowed_models[i];
        if (str_eq(m, asked, alen) || str_eq(m, model, mlen))
            return 1;
        if (strncmp(m, prov, plen) == 0 && m[plen] == '/' && str_eq(m + plen + 1, model, mlen))
            return 1;
    }
    return 0;
}

/* A configured provider with a translator, or NULL. */
static const dp_provider_t *usable(const dp_snapshot_t *s, const char *name, size_t len,
                                   const dp_provider_ops_t **ops)
{
    const dp_provider_t *p = dp_snapshot_find_provider(s, name, len);
    if (p == NULL || (*ops = dp_provider_ops_for(p->kind)) == NULL)
        return NULL;
    return p;
}

static int key_names_provider(const dp_key_t *key, const char *name, size_t len)
{
    for (size_t i = 0; i < key->n_allowed_providers; i++)
        if (str_eq(key->allowed_providers[i], name, len))
            return 1;
    for (size_t i = 0; i < key->n_fallbacks; i++)
        if (str_eq(key->fallbacks[i].provider, name, len))
            return 1;
    return 0;
}

static int fail(dp_error_t *err, int status, const char *type, const char *code, const char *msg)
{
    *err = (dp_error_t){.status = status, .type = type, .code = code, .param = "model", .message = msg};
    return status == 403 ? SL_EPERM : status == 503 ? SL_EUNAVAIL : SL_ENOTFOUND;
}

/* Rule 3: the key's first usable OpenAI-format provider. */
static const dp_provider_t *default_provider(const dp_snapshot_t *s, const dp_key_t *key,
                                             const dp_provider_ops_t **ops)
{
    const dp_provider_t *p;
    for (size_t i = 0; i < key->n_fallbacks; i++) {
        const char *n = key->fallbacks[i].provider;
        if ((p = usable(s, n, strlen(n), ops)) != NULL && (*ops)->openai_format &&
            dp_route_provider_allowed(key, n, strlen(n)))
            return p;
    }
    for (size_t i = 0; i < key->n_allowed_providers; i++) {
        const char *n = key->allowed_providers[i];
        if ((p = usable(s, n, strlen(n), ops)) != NULL && (*ops)->openai_format)
            return p;
    }
    if (key->n_allowed_providers == 0) {
        const dp_model_t *m;
        for (size_t i = 0; (m = dp_snapshot_model_at(s, i)) != NULL; i++)
            if ((p = usable(s, m->provider, strlen(m->provider), ops)) != NULL && (*ops)->openai_format)
                return p;
    }
    return NULL;
}

int dp_route_resolve(const dp_snapshot_t *s, const dp_key_t *key, const char *model, size_t len, dp_route_t *out,
                     dp_error_t *err)
{
    const dp_provider_t *p = NULL;
    const dp_provider_ops_t *ops = NULL;
    const char *m = model;
    size_t mlen = len;
    const dp_model_t *price = NULL;

    const char *slash = memchr(model, '/', len);
    if (slash != NULL && slash > model && slash + 1 < model + len) {
        size_t plen = (size_t)(slash - model);
        const dp_provider_t *named = dp_snapshot_find_provider(s, model, plen);
        if (named != NULL) {
            if (!dp_route_provider_allowed(key, model, plen))
                return fail(err, 403, "invalid_request_error", "provider_not_allowed",
                            "this key may not use the requested provider");
            if ((ops = dp_provider_ops_for(named->kind)) == NULL)
                return fail(err, 503, "api_error", "provider_unavailable",
                            "the requested provider's kind is not supported by this gateway yet");
            p = named;
            m = slash + 1;
            mlen = len - plen - 1;
            price = dp_snapshot_find_model(s, p->name, strlen(p->name), m, mlen);
        } else if (key_names_provider(key, model, plen)) {
            return fail(err, 503, "api_error", "provider_unavailable",
                        "the requested provider is not configured on this gateway yet");
        }
    }

    if (p == NULL) {
        const dp_model_t *cands[MAX_CANDIDATES];
        size_t n = dp_snapshot_models_named(s, model, len, cands, MAX_CANDIDATES);
        int denied = 0;
        /* the key's fallback order first */
        for (size_t f = 0; f < key->n_fallbacks && p == NULL; f++) {
            for (size_t i = 0; i < n; i++) {
                if (strcmp(cands[i]->provider, key->fallbacks[f].provider) != 0)
                    continue;
                const char *pn = cands[i]->provider;
                if (dp_route_provider_allowed(key, pn, strlen(pn)) && (p = usable(s, pn, strlen(pn), &ops)) != NULL)
                    price = cands[i];
                break;
            }
        }
        for (size_t i = 0; i < n && p == NULL; i++) {
            const char *pn = cands[i]->provider;
            if (!dp_route_provider_allowed(key, pn, strlen(pn))) {
                denied = 1;
                continue;
            }
            if ((p = usable(s, pn, strlen(pn), &ops)) != NULL)
                price = cands[i];
        }
        if (p == NULL && n > 0) {
            if (denied)
                return fail(err, 403, "invalid_request_error", "provider_not_allowed",
                            "no provider this key may use serves the requested model");
            return fail(err, 503, "api_error", "provider_unavailable",
                        "no configured provider can serve the requested model");
        }
        if (p == NULL) {
            if ((p = default_provider(s, key, &ops)) == NULL)
                return fail(err, 503, "api_error", "provider_unavailable",
                            "no configured provider this key may use can serve the requested model");
        }
    }

    if (!model_allowed(key, model, len, p->name, m, mlen))
        return fail(err, 403, "invalid_request_error", "model_not_allowed", "this key may not use the requested model");

    out->provider = p;
    out->ops = ops;
    out->model = m;
    out->model_len = mlen;
    out->price = price;
    return 0;
}

const dp_credential_t *dp_route_pick_credential(const dp_provider_t *p, uint64_t r)
{
    if (p->n_credentials == 0)
        return NULL;
    if (p->n_credentials == 1 || p->total_weight <= 0)
        return &p->credentials[r % p->n_credentials];
    int64_t x = (int64_t)(r % (uint64_t)p->total_weight);
    for (size_t i = 0; i < p->n_credentials; i++) {
        x -= p->credentials[i].weight;
        if (x < 0)
            return &p->credentials[i];
    }
    return &p->credentials[p->n_credentials - 1];
}

int dp_route_pick_credential_excluding(const dp_provider_t *p, uint64_t r, uint64_t exclude)
{
    size_t n = p->n_credentials < 64 ? p->n_credentials : 64;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!(exclude & (1ull << i)))
            total += p->credentials[i].weight > 0 ? p->credentials[i].weight : 1;
    if (total == 0)
        return -1;
    int64_t x = (int64_t)(r % (uint64_t)total);
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        if (exclude & (1ull << i))
            continue;
        last = (int)i;
        x -= p->credentials[i].weight > 0 ? p->credentials[i].weight : 1;
        if (x < 0)
            return (int)i;
    }
    return last;
}

size_t dp_route_targets(const dp_snapshot_t *s, const dp_key_t *key, const dp_route_t *first, dp_route_t *out,
                        size_t cap)
{
    if (cap == 0)
        return 0;
    size_t n = 0;
    out[n++] = *first;
    for (size_t f = 0; f < key->n_fallbacks && n < cap; f++) {
        const char *pn = key->fallbacks[f].provider, *m = key->fallbacks[f].model;
        if (pn == NULL || m == NULL || m[0] == '\0')
            continue;
        size_t plen = strlen(pn), mlen = strlen(m);
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = str_eq(out[i].provider->name, pn, plen) && out[i].model_len == mlen &&
                  memcmp(out[i].model, m, mlen) == 0;
        if (dup || !dp_route_provider_allowed(key, pn, plen))
            continue;
        const dp_provider_ops_t *ops = NULL;
        const dp_provider_t *p = usable(s, pn, plen, &ops);
        if (p == NULL)
            continue;
        out[n++] = (dp_route_t){.provider = p,
                                .ops = ops,
                                .model = m,
                                .model_len = mlen,
                                .price = dp_snapshot_find_model(s, p->name, strlen(p->name), m, mlen)};
    }
    return n;
}
