/*
 * dp_route.h - resolving a request's `model` to a provider for a key.
 *
 * A pure function of (snapshot, key, model): no I/O, no allocation, no
 * state, so it is tested directly against snapshots built in tests.
 *
 * Rules, in order:
 *   1. "provider/model" where provider names a configured provider: that
 *      provider, the rest as the model (forwarded as the served name).
 *      A prefix that is not a configured provider is part of a bare model
 *      name (e.g. "meta-llama/Llama-3-8b"), unless the key names it in its
 *      allow-list or fallbacks, where it means "not applied yet": 503.
 *   2. A bare model in the catalog: the key's first fallback provider that
 *      serves it, else the first catalog provider serving it (provider name
 *      order) that the key may use.
 *   3. A bare model not in the catalog: forwarded unchanged to the key's
 *      first usable OpenAI-format provider (fallback providers first, then
 *      the allow-list, then any catalog provider when the key allows all).
 * "Usable" means configured in the snapshot, with a translator for its
 * kind, and allowed for the key; providers not configured yet are skipped.
 * Then the key's allowed_models (when not empty) must list the model, as
 * written by the client or as served ("gpt-4o" or "openai/gpt-4o").
 *
 * Worker threads; the result borrows from the snapshot.
 */
#ifndef DP_ROUTE_H
#define DP_ROUTE_H

#include <stddef.h>

#include "dp_error.h"
#include "dp_provider.h"
#include "dp_snapshot.h"

typedef struct dp_route {
    const dp_provider_t *provider;
    const dp_provider_ops_t *ops;
    const char *model;            /* served model name (not NUL-terminated) */
    size_t model_len;
    const dp_model_t *price;      /* catalog entry, NULL when unpriced */
} dp_route_t;

/* Returns 0 and fills out, or a negative SL_E* code and fills err with the
 * client-facing error (403 provider_not_allowed / model_not_allowed, 503
 * provider_unavailable, 404 model_not_found). */
int dp_route_resolve(const dp_snapshot_t *s, const dp_key_t *key, const char *model, size_t len, dp_route_t *out,
                     dp_error_t *err);

/* Whether key may use provider name (allow-list empty = all). */
int dp_route_provider_allowed(const dp_key_t *key, const char *name, size_t len);

/* Picks a credential of p by weight; r is a uniform random number. NULL
 * when p has none. */
const dp_credential_t *dp_route_pick_credential(const dp_provider_t *p, uint64_t r);

/* The same among the credentials whose bit is clear in exclude (bit i is
 * credentials[i]; only the first 64 credentials are candidates). Weights of
 * 0 or less count as 1 here, so every credential stays reachable. Returns
 * the index, or -1 when none is left. */
int dp_route_pick_credential_excluding(const dp_provider_t *p, uint64_t r, uint64_t exclude);

#define DP_MAX_TARGETS 8

/* A request's targets, in the order they are tried: first (the resolved
 * route), then the key's fallbacks in order, each as its own (provider,
 * model), skipping a fallback that repeats an earlier (provider, model),
 * names a provider the key may not use, or a provider that is not
 * configured or has no translator. Fallbacks are the operator's own
 * choice for the key, so the key's allowed_models does not filter them.
 * Returns how many were stored in out (1..cap). */
size_t dp_route_targets(const dp_snapshot_t *s, const dp_key_t *key, const dp_route_t *first, dp_route_t *out,
                        size_t cap);

#endif
