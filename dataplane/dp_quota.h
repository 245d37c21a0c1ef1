/*
 * dp_quota.h - the quota seam of the request path.
 *
 * A request reserves an upper-bound estimate on every quota it touches
 * before it goes upstream (dp_quota_reserve) and settles with what it
 * actually used when it ends (dp_quota_settle), exactly once per successful
 * reservation. Enforcement (leases from the control plane, DESIGN §5) plugs
 * in here; for now every request is admitted.
 *
 * Worker threads only; no locks, no allocation.
 */
#ifndef DP_QUOTA_H
#define DP_QUOTA_H

#include <stdint.h>

#include "dp_snapshot.h"

typedef struct dp_quota_estimate {
    int64_t input_tokens;     /* upper bound: request body bytes */
    int64_t output_tokens;    /* upper bound: max_tokens or the model's output cap */
    int64_t cost_nano;        /* both priced at the model's prices */
} dp_quota_estimate_t;

/* What a reservation holds until it is settled. Lives in the request. */
typedef struct dp_quota_hold {
    int held;
    dp_quota_estimate_t est;
} dp_quota_hold_t;

typedef struct dp_quota_actual {
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cost_nano;
} dp_quota_actual_t;

/* Reserves est on every quota of key (and its tenant) for provider. Returns
 * 0 and fills hold, or SL_EPERM when a quota is exhausted (code and
 * retry_after_sec describe which: "budget_exceeded" or
 * "rate_limit_exceeded"). */
int dp_quota_reserve(int worker, const dp_key_t *key, const char *provider, const dp_quota_estimate_t *est,
                     dp_quota_hold_t *hold, const char **code, int *retry_after_sec);

/* Replaces the reservation with actual usage. Safe to call on a hold that
 * was never reserved (no-op). */
void dp_quota_settle(int worker, const dp_key_t *key, dp_quota_hold_t *hold, const dp_quota_actual_t *actual);

#endif
