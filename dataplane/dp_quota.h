/*
 * dp_quota.h - the quota seam of the request path (DESIGN §5, §7).
 *
 * A request reserves a true upper-bound estimate on every quota it touches
 * (the key's quotas for any provider it may be sent to, and its tenant's),
 * all or nothing, before it goes upstream (dp_quota_reserve), and settles
 * with what it actually used when it ends (dp_quota_settle), exactly once.
 * Reservations come out of leases granted by the control plane
 * (dp_lease.h), so the hot path is local; concurrency quotas are counted on
 * this node alone.
 *
 * When a quota has no usable lease yet (the key's first request on this
 * node, a new window, a refill on its way) the request waits without
 * blocking the worker: dp_quota_reserve returns DP_QUOTA_PARKED and calls
 * back on the same worker once a grant arrives or DP_LEASE_WAIT_MS passed.
 *
 * Worker threads only, except dp_quota_metrics_render. No locks and no
 * allocation on the way through; creating a quota's state on its first use
 * on this node takes one mutex.
 */
#ifndef DP_QUOTA_H
#define DP_QUOTA_H

#include <stdint.h>

#include <h2o.h>

#include "dp_lease.h"
#include "dp_provider.h"
#include "dp_server.h"
#include "dp_snapshot.h"
#include "sl_buf.h"

#define DP_QUOTA_MAX 16                /* quotas one request can touch (key + tenant) */
#define DP_QUOTA_DEFAULT_OUTPUT 4096   /* output cap when neither request nor catalog gives one */
#define DP_QUOTA_URL_PART_TOKENS 2000  /* input cap of an image/audio/file part sent by reference */
#define DP_QUOTA_PARKED 1

typedef struct dp_quota_estimate {
    int64_t input_tokens;     /* upper bound: body bytes + a cap per part sent by reference */
    int64_t output_tokens;    /* upper bound: n x (max_tokens, else the catalog's cap, else 4096) */
    int64_t cost_nano;        /* priced at the dearest of the request's targets */
} dp_quota_estimate_t;

typedef struct dp_quota_actual {
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cost_nano;
    const char *provider;     /* the provider that served it (key x provider quotas) */
} dp_quota_actual_t;

/* Called back on the worker when a parked request was admitted (rc 0) or
 * rejected (rc < 0, see dp_quota_hold_t's rejection). */
typedef void (*dp_quota_cb)(void *ctx, int rc);

typedef struct dp_quota_ent {
    void *p;                  /* dp_lease_slot_t * (lease) or dp_lease_inst_t * (concurrency) */
    int64_t amount;
    const char *provider;     /* the quota's provider ("" any), borrowed from the snapshot */
    uint8_t metric;
    uint8_t conc;
} dp_quota_ent_t;

/* What a reservation holds until it is settled. Lives in the request (its
 * pool) and borrows from the snapshot the request holds. */
typedef struct dp_quota_hold {
    int held;                 /* reserved, not settled */
    int64_t admit_unix;       /* when admitted (usage is attributed to its minute); 0: not admitted */
    dp_quota_estimate_t est;
    uint8_t n;
    dp_quota_ent_t ent[DP_QUOTA_MAX];
    /* a rejection (dp_quota_reserve returned < 0 or called back with < 0) */
    int status;               /* 429, or 503 when the control plane is unreachable and the quota fails closed */
    const char *type, *code, *message;
    int retry_after;          /* seconds, 0: none */
    /* waiting for a grant */
    int parked;
    h2o_linklist_t link;
    int64_t deadline_ms;
    dp_lease_inst_t *wait_on;
    uint32_t wait_gen;
    dp_quota_cb cb;
    void *ctx;
    dp_worker_t *w;
    dp_snapshot_t *snap;
    const dp_key_t *key;
    const char *provider;
} dp_quota_hold_t;

/* Fills est for chat on its first target (route price, may be NULL) and the
 * key's fallbacks: input and output bounds, cost at the dearest target. */
void dp_quota_estimate(const dp_snapshot_t *snap, const dp_key_t *key, const dp_model_t *price,
                       const dp_chat_req_t *chat, dp_quota_estimate_t *est);

/* Reserves est on every quota of key and its tenant that applies to
 * provider or one of the key's fallback providers. Returns 0 (admitted),
 * DP_QUOTA_PARKED (cb(ctx, rc) follows on this worker, unless the hold is
 * settled first), or SL_EPERM with the rejection in hold. snap and key
 * must stay referenced until the hold is settled. */
int dp_quota_reserve(dp_worker_t *w, dp_snapshot_t *snap, const dp_key_t *key, const char *provider,
                     const dp_quota_estimate_t *est, dp_quota_hold_t *hold, dp_quota_cb cb, void *ctx);

/* Replaces the reservation with actual usage (overruns are counted), or
 * stops waiting. Safe on a hold that holds nothing; idempotent. */
void dp_quota_settle(int worker, const dp_key_t *key, dp_quota_hold_t *hold, const dp_quota_actual_t *actual);

/* Adds Retry-After for a rejection (when it has one). */
void dp_quota_reject_headers(h2o_req_t *req, const dp_quota_hold_t *hold);

/* Adds x-ratelimit-{limit,remaining,reset}-{requests,tokens} for the key's
 * tightest requests and tokens quotas (when it has any) that apply to
 * provider (NULL: provider-wide quotas only). */
void dp_quota_add_headers(h2o_req_t *req, const dp_snapshot_t *snap, const dp_key_t *key, const char *provider);

/* GET /v1/sluice/usage: the key's and its tenant's quotas as JSON (pool
 * memory, ends with a newline). */
h2o_iovec_t dp_quota_usage_json(h2o_mem_pool_t *pool, const dp_snapshot_t *snap, const dp_key_t *key);

/* OpenAI's duration format: "6s", "1m2s", "1h0m5s", "250ms". */
size_t dp_quota_format_reset(int64_t ms, char *out, size_t cap);

/* Any thread: appends the quota metrics. */
void dp_quota_metrics_render(sl_buf_t *out);

#endif
