/*
 * dp_breaker.h - a circuit breaker per upstream credential.
 *
 * One breaker per (provider name, credential id), kept in a fixed table of
 * atomics shared by every worker and independent of snapshots: a breaker
 * keeps its state across snapshot swaps for as long as the provider and the
 * credential keep their names. A credential whose secret changed (a rotated
 * key) starts over closed: the table remembers a fingerprint of the secret.
 *
 * States:
 *   closed     requests flow; outcomes are counted.
 *   open       the credential is skipped until its cooldown ends.
 *   half-open  one request (the probe) is let through; its outcome closes
 *              the breaker or opens it again with a doubled cooldown. A
 *              probe that never reports (the client left) frees the
 *              half-open slot after probe_timeout_ms.
 * A closed breaker opens after `failures` consecutive failures, or when the
 * current window of `window_ms` holds at least `min_requests` outcomes of
 * which `ratio_pct` percent or more failed. An authentication refusal
 * (401/403) opens it at once for `auth_cooldown_ms`: the credential is bad
 * until someone fixes it, and its probe after that time tells.
 *
 * Apart from its state, a credential can be throttled: the provider
 * answered 429 (or 503) with Retry-After, so every worker leaves it alone
 * until then. A 429 that says when it ends is not counted as a failure:
 * the limit is the provider's, not a broken credential (a 503 with
 * Retry-After throttles and counts).
 *
 * Lock-free: transitions are compare-and-swap on the state word, so
 * concurrent workers agree on a single probe; counters are atomic adds.
 * No allocation after dp_breaker_init_table(). Any thread.
 */
#ifndef DP_BREAKER_H
#define DP_BREAKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "dp_snapshot.h"

#define DP_BREAKER_NAME_MAX 64

typedef struct dp_breaker_cfg {
    uint32_t failures;         /* consecutive failures that open (5) */
    uint32_t min_requests;     /* outcomes in a window before the ratio applies (20) */
    uint32_t ratio_pct;        /* failure percentage that opens (50) */
    uint32_t window_ms;        /* ratio window (30 s) */
    uint32_t cooldown_ms;      /* first open period (30 s) */
    uint32_t max_cooldown_ms;  /* cap of the doubling (5 min) */
    uint32_t auth_cooldown_ms; /* open period after a 401/403 (10 min) */
    uint32_t probe_timeout_ms; /* a silent probe frees half-open after this (60 s) */
} dp_breaker_cfg_t;

typedef struct dp_breaker {
    _Atomic uint64_t key;       /* hash of (provider, credential); 0: free slot */
    _Atomic uint64_t secret_fp; /* fingerprint of the secret the state is about */
    _Atomic int ready;          /* names below are written */
    char provider[DP_BREAKER_NAME_MAX];
    char credential[DP_BREAKER_NAME_MAX];
    _Atomic uint32_t state;       /* DP_BREAKER_CLOSED... */
    _Atomic int64_t until_ms;     /* open: end of the cooldown; half-open: probe deadline */
    _Atomic uint32_t cooldown_ms; /* the current open period (doubles on failed probes) */
    _Atomic uint32_t probe_ms;    /* probe deadline of the current opening */
    _Atomic uint32_t consecutive; /* failures in a row */
    _Atomic int64_t window_start_ms;
    _Atomic uint32_t window_ok, window_fail;
    _Atomic uint64_t opened_total; /* times it opened (for tests and metrics) */
    _Atomic int64_t throttled_until_ms; /* the provider's Retry-After ends then (0: not throttled) */
} dp_breaker_t;

enum { DP_BREAKER_CLOSED = 0, DP_BREAKER_OPEN = 1, DP_BREAKER_HALF_OPEN = 2 };
/* dp_breaker_allow() answers */
enum { DP_BREAKER_DENY = 0, DP_BREAKER_ALLOW = 1, DP_BREAKER_PROBE = 2 };
/* outcomes */
enum { DP_OUTCOME_SUCCESS = 0, DP_OUTCOME_FAILURE = 1, DP_OUTCOME_AUTH = 2 };

/* The defaults above. */
void dp_breaker_cfg_default(dp_breaker_cfg_t *cfg);

/* The defaults, overridden by provider params breaker_failures,
 * breaker_min_requests, breaker_ratio_pct, breaker_window_ms,
 * breaker_cooldown_ms, breaker_max_cooldown_ms, breaker_auth_cooldown_ms,
 * breaker_probe_timeout_ms (decimal; invalid values are ignored). */
void dp_breaker_cfg_for(const dp_provider_t *p, dp_breaker_cfg_t *cfg);

/* The breaker of (p, cred), created closed on first use. NULL when the
 * table is full (the credential then has no breaker: always allowed).
 * Valid for the life of the process. */
dp_breaker_t *dp_breaker_get(const dp_provider_t *p, const dp_credential_t *cred);

/* Monotonic milliseconds, the clock breakers run on. */
int64_t dp_breaker_now_ms(void);

/* --- the state machine (pure but for the breaker's own atomics) --------- */

/* A fresh closed breaker (tests; dp_breaker_get() does this itself). */
void dp_breaker_reset(dp_breaker_t *b);

/* Whether a request may use the credential now: ALLOW (closed), PROBE (this
 * caller won the half-open probe and must report its outcome with probe
 * set) or DENY (open, or another probe is in flight). */
int dp_breaker_allow(dp_breaker_t *b, int64_t now_ms);

/* Whether allow() would let a request through, without claiming a probe. */
int dp_breaker_available(dp_breaker_t *b, int64_t now_ms);

/* Reports an attempt's outcome (DP_OUTCOME_*); probe: the attempt was let
 * through as the probe; cred: the credential it used (when the breaker
 * opens it remembers that secret's fingerprint, so the state applies to
 * that secret only; NULL keeps the one it has). */
void dp_breaker_record(dp_breaker_t *b, const dp_breaker_cfg_t *cfg, int outcome, int probe, int64_t now_ms,
                       const dp_credential_t *cred);

/* The provider asked that the credential be left alone until until_ms
 * (monotonic, dp_breaker_now_ms()); a later end than the one set wins. */
void dp_breaker_throttle(dp_breaker_t *b, int64_t until_ms);

/* The end of the credential's throttling if it is throttled at now_ms,
 * else 0. */
int64_t dp_breaker_throttled_until(dp_breaker_t *b, int64_t now_ms);

/* The state as seen now (an open breaker whose cooldown ended reads as
 * half-open: the next request probes). */
int dp_breaker_state(dp_breaker_t *b, int64_t now_ms);

/* Scraper: calls fn for every breaker in use. */
void dp_breaker_each(void (*fn)(void *ud, const dp_breaker_t *b, int state), void *ud);

#endif
