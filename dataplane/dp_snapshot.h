/*
 * dp_snapshot.h - the data plane's immutable view of configuration.
 *
 * A snapshot is built on the sync thread from a full Snapshot message or
 * from the previous snapshot plus a delta (records of unchanged entities are
 * shared, not copied). It is published with one atomic pointer store. Worker
 * threads never lock to read it:
 *
 *   - a request takes a reference with dp_snapshot_acquire() when it starts
 *     and drops it with dp_snapshot_release() when it ends (one atomic each);
 *   - every worker calls dp_snapshot_quiescent(worker) once per event-loop
 *     iteration; the sync thread drops the published reference of a replaced
 *     snapshot only after every worker has passed a quiescent point, so an
 *     acquire that raced the swap is always safe (quiescent-state-based
 *     reclamation);
 *   - snapshots are freed on the sync thread only, once no request holds
 *     them, so workers never pay for freeing.
 *
 * Every pointer reachable from a snapshot is borrowed for as long as the
 * caller holds its reference. Strings are NUL-terminated.
 */
#ifndef DP_SNAPSHOT_H
#define DP_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/sync/v1/sync.pb-c.h"

typedef struct dp_target {
    const char *provider;
    const char *model;
} dp_target_t;

typedef struct dp_key {
    const char *id;
    const char *tenant_id;
    uint8_t hash[32];
    int revoked;
    int64_t expires_unix;                  /* 0: never */
    const char *const *allowed_providers;  /* n == 0: all */
    size_t n_allowed_providers;
    const char *const *allowed_models;     /* n == 0: all */
    size_t n_allowed_models;
    const dp_target_t *fallbacks;
    size_t n_fallbacks;
    const Sluice__Config__V1__VirtualKey *pb; /* everything else (quotas, metadata) */
} dp_key_t;

typedef struct dp_credential {
    const char *id;
    const char *secret;                    /* plaintext, NUL-terminated */
    size_t secret_len;
    int weight;
    const Sluice__Config__V1__Credential *pb;
} dp_credential_t;

typedef struct dp_provider {
    const char *name;
    const char *kind;                      /* "openai", ... */
    const char *base_url;
    /* base_url split once at build time */
    int is_ssl;
    const char *host;
    uint16_t port;
    const char *path_prefix;               /* "/v1" for https://api.openai.com/v1; "" when none */
    const char *authority;                 /* the Host header value: host, [v6 host], ":port" unless default */
    size_t authority_len;
    const dp_credential_t *credentials;
    size_t n_credentials;
    int total_weight;
    int connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms; /* 0: default */
    const Sluice__Config__V1__Provider *pb;
} dp_provider_t;

typedef struct dp_model {
    const char *provider;
    const char *model;
    int64_t input_micro_per_mtok;
    int64_t output_micro_per_mtok;
    int64_t cached_input_micro_per_mtok;
    int64_t max_output_tokens;
} dp_model_t;

typedef struct dp_snapshot dp_snapshot_t;

/* Sets up the reclamation state for nworkers worker threads; call once at
 * start, before any other function. */
int dp_snapshot_init(int nworkers);

/* Worker thread: references the current snapshot (NULL before the first
 * one arrives). Pair with dp_snapshot_release(). */
dp_snapshot_t *dp_snapshot_acquire(void);
void dp_snapshot_release(dp_snapshot_t *s);
/* Worker thread: a quiescent point (holds no unreferenced snapshot pointer). */
void dp_snapshot_quiescent(int worker);
/* A worker that leaves its loop for good marks itself offline. */
void dp_snapshot_offline(int worker);

int64_t dp_snapshot_version(const dp_snapshot_t *s);
int64_t dp_snapshot_generated_ms(const dp_snapshot_t *s);
/* The HMAC pepper for virtual key hashes (32 bytes), NULL when the control
 * plane sent none. Hash a presented secret with sl_vkey_hash(). */
const uint8_t *dp_snapshot_pepper(const dp_snapshot_t *s);

/* Lookups; NULL when absent. */
const dp_key_t *dp_snapshot_find_key(const dp_snapshot_t *s, const uint8_t hash[32]);
const dp_provider_t *dp_snapshot_find_provider(const dp_snapshot_t *s, const char *name, size_t len);
const dp_model_t *dp_snapshot_find_model(const dp_snapshot_t *s, const char *provider, size_t plen, const char *model,
                                         size_t mlen);
/* A key by its id, and a tenant (its quotas, time zone) by its id. */
const dp_key_t *dp_snapshot_find_key_id(const dp_snapshot_t *s, const char *id, size_t len);
const Sluice__Config__V1__Tenant *dp_snapshot_find_tenant(const dp_snapshot_t *s, const char *id, size_t len);
/* Every catalog entry whose model name is model (any provider), in provider
 * name order; returns how many were stored in out (at most cap). */
size_t dp_snapshot_models_named(const dp_snapshot_t *s, const char *model, size_t mlen, const dp_model_t **out,
                                size_t cap);
/* Iterates the whole catalog (for GET /v1/models): i from 0 until NULL. */
const dp_model_t *dp_snapshot_model_at(const dp_snapshot_t *s, size_t i);
/* Calls fn(ud, provider) for every provider, in no particular order. */
void dp_snapshot_each_provider(const dp_snapshot_t *s, void (*fn)(void *ud, const dp_provider_t *p), void *ud);

/* --- sync thread only ------------------------------------------------ */

/* Builds the next snapshot from msg (full or delta on the current one) and
 * publishes it. Takes ownership of msg (freed when no snapshot uses its
 * records). Returns 0 when published, 1 when msg was not newer than what is
 * held (ignored and freed: a data plane never goes back in versions),
 * SL_EINVAL when msg is a delta whose base is not the current version (msg
 * is freed; ask again with have_version = dp_snapshot_current_version()),
 * SL_ENOMEM. */
int dp_snapshot_apply(Sluice__Sync__V1__Snapshot *msg);
int64_t dp_snapshot_current_version(void);
/* Frees retired snapshots that no worker can still see; call periodically. */
void dp_snapshot_reclaim(void);
/* Serializes the current configuration as one full Snapshot message (for
 * the cache file). Caller frees with free(). */
int dp_snapshot_pack_full(uint8_t **out, size_t *outlen);
/* Replaced snapshots not freed yet (for /metrics and tests). */
size_t dp_snapshot_retired_count(void);
/* At exit, after workers have stopped. */
void dp_snapshot_shutdown(void);

#endif
