/*
 * dp_lease.h - quota instances and their leases on the data plane (DESIGN §5).
 *
 * One instance per quota id (Quota.id is stable across applies) lives
 * beside the snapshot, so it survives snapshot swaps. An instance holds up
 * to DP_LEASE_SLOTS leases, one per (quota, window start): the current
 * window's, the next window's (granted ahead of the boundary) and ones
 * being wound down. A lease's allowance `avail` is what the control plane
 * granted minus what requests reserved or consumed; it may go negative
 * after an overrun.
 *
 * Threads:
 *   - workers (hot path): dp_lease_get / dp_lease_find, dp_lease_take,
 *     dp_lease_give, dp_lease_conc_*, dp_lease_view: lock-free (atomic loads,
 *     one fetch_add and one compare-and-swap per quota to reserve, two
 *     fetch_adds to settle). dp_lease_get takes a mutex only to create an
 *     instance, on the first request for a quota on this node;
 *   - the sync thread: dp_lease_tick, dp_lease_fill_report,
 *     dp_lease_apply_ack and the rest of the "sync thread" section. It alone
 *     changes a lease's state, window and grants.
 *
 * Lifetimes. A slot a request reserved from stays valid until the request
 * gives it back: a lease is wound down (DRAINING) first, and becomes FREE
 * only after a grace period (dp_usage flush ticket: every worker has left
 * the code that could have seen it usable) once nothing is reserved on it.
 * Instances are unlinked from the lookup table first and freed after a
 * grace period once no request waits on them; lookup tables replaced by a
 * bigger one are freed the same way.
 *
 * Exactness with the control plane, which releases a lease as soon as a
 * report stops listing it: a lease is listed until a report sealed after
 * every request that reserved on it has settled and handed its usage to the
 * reporter, so the usage and the release reach the control plane in the
 * same or an earlier report.
 */
#ifndef DP_LEASE_H
#define DP_LEASE_H

#include <stdatomic.h>
#include <stdint.h>

#include "sluice/sync/v1/sync.pb-c.h"

#define DP_LEASE_SLOTS 4
#define DP_LEASE_WAIT_MS 2000 /* longest a request waits for a grant */

enum { DP_LEASE_SCOPE_KEY = 1, DP_LEASE_SCOPE_TENANT = 2 };

/* Slot states. FREE -> PENDING (asked) -> ACTIVE (granted, usable while
 * the clock is in its window and before it expires) -> DRAINING -> FREE. */
enum { DP_SLOT_FREE = 0, DP_SLOT_PENDING, DP_SLOT_ACTIVE, DP_SLOT_DRAINING };

/* dp_lease_take results. */
enum {
    DP_LEASE_OK = 0,         /* reserved */
    DP_LEASE_WAIT = 1,       /* no usable allowance, a grant may come: wait (bounded) */
    DP_LEASE_OPEN = 2,       /* admit without a reservation: fails open, or quota removed */
    DP_LEASE_EXHAUSTED = -1, /* the window has no room left */
    DP_LEASE_CLOSED = -2,    /* the control plane cannot be reached and the quota fails closed */
};

typedef struct dp_lease_inst dp_lease_inst_t;

typedef struct dp_lease_slot {
    dp_lease_inst_t *inst;
    _Atomic int state;
    _Atomic int64_t ws, we;       /* window, unix seconds [ws, we) */
    _Atomic int64_t expires_ms;   /* unix ms: admit nothing on it after this */
    _Atomic int64_t avail;        /* granted - reserved - consumed */
    _Atomic int64_t reserved;     /* held by requests in flight */
    _Atomic int64_t room;         /* limit - used - outstanding at the last ack, >= 0 */
    _Atomic int64_t used, outstanding; /* window totals at the last ack */
    _Atomic int64_t last_est;     /* last amount reserved (sizes refills) */
    _Atomic int64_t low;          /* low-water mark: below it, ask for more */
    _Atomic int need;             /* a worker saw it below low or short */
    /* sync thread only */
    int64_t granted;              /* total granted into this lease */
    int64_t want_next, want_sent; /* to ask in the next report; asked in the one in flight */
    int64_t asked_ws;             /* window asked for: 0 = the one containing now */
    int64_t asked_ms;             /* mono ms of the last ask */
    int64_t renew_ms;             /* mono ms after which a report should renew it */
    double rate;                  /* units per second, smoothed */
    int64_t rate_taken, rate_ms, active_ms;
    int drain;                    /* wind-down phase, 0 when not draining */
    uint64_t ticket;
    int64_t omit_after_ms;        /* mono ms: reports sealed from then on omit it */
} dp_lease_slot_t;

struct dp_lease_inst {
    int64_t qid;
    int metric;                   /* SLUICE__CONFIG__V1__QUOTA_METRIC__* */
    int window;
    int scope;                    /* DP_LEASE_SCOPE_* */
    char *scope_id, *provider;    /* owned, immutable */
    _Atomic int64_t limit;        /* from the newest snapshot */
    _Atomic int open;             /* on_unavailable resolved: 1 open */
    _Atomic int dead;             /* quota removed from the configuration */
    _Atomic int retired;          /* unlinked: look the quota up again */
    _Atomic uint32_t gen;         /* bumped whenever a waiting request should look again */
    _Atomic int64_t inflight;     /* CONCURRENT quotas: requests in flight on this node */
    _Atomic int64_t parked;       /* requests waiting on it */
    _Atomic int want;             /* a worker found no usable lease for now */
    _Atomic int64_t want_since_ms; /* unix ms a worker started waiting (0: none) */
    _Atomic int64_t want_hint;    /* largest amount a waiting worker needs */
    dp_lease_slot_t slot[DP_LEASE_SLOTS];
    /* sync thread only (next also under the creation mutex) */
    dp_lease_inst_t *next;
    int64_t idle_since_ms;
    uint64_t ticket;
};

/* The quota as a worker found it in its snapshot. */
typedef struct dp_lease_quota {
    int64_t id;
    int metric, window;
    int64_t limit;
    int open;                     /* on_unavailable resolved */
    int scope;
    const char *scope_id, *provider;
} dp_lease_quota_t;

/* Parses a Quota.id ("123"); 0 when it is not one. */
int64_t dp_lease_parse_id(const char *s);
/* on_unavailable resolved: OPEN/CLOSED as set, else closed for cost, open
 * for requests and tokens (README). */
int dp_lease_is_open(int metric, int on_unavailable);

/* ---- workers ------------------------------------------------------------ */

dp_lease_inst_t *dp_lease_find(int64_t qid);
/* Finds or creates q's instance (NULL only when out of memory). */
dp_lease_inst_t *dp_lease_get(const dp_lease_quota_t *q);

/* Reserves amount (> 0) on the lease of the window containing now_ms (unix
 * ms). On DP_LEASE_OK *slot is where to give it back. On DP_LEASE_WAIT the
 * sync thread has been asked for a grant; retry when dp_lease_gen changes.
 * On DP_LEASE_EXHAUSTED *retry_sec is the time to the window's end. */
int dp_lease_take(dp_lease_inst_t *in, int64_t amount, int64_t now_ms, dp_lease_slot_t **slot, int *retry_sec);
/* Settles a reservation of `reserved` with the actual amount. */
void dp_lease_give(dp_lease_slot_t *s, int64_t reserved, int64_t actual);

/* Concurrency quotas: 1 when admitted (pair with dp_lease_conc_leave). */
int dp_lease_conc_enter(dp_lease_inst_t *in, int64_t limit);
void dp_lease_conc_leave(dp_lease_inst_t *in);

static inline uint32_t dp_lease_gen(dp_lease_inst_t *in)
{
    return atomic_load_explicit(&in->gen, memory_order_acquire);
}

/* What this node knows of the window containing now_ms. */
typedef struct dp_lease_view {
    int known;                    /* a grant for this window was seen */
    int64_t ws, we;
    int64_t used, outstanding;    /* at the last ack */
    int64_t avail, reserved;      /* this node's lease */
    int64_t remaining;            /* best guess of what is left for this key, in [0, limit] */
    int64_t inflight;             /* concurrency quotas */
} dp_lease_view_t;
void dp_lease_view(dp_lease_inst_t *in, int64_t limit, int64_t now_ms, dp_lease_view_t *v);

/* Quota instances on this node (for /metrics). */
int64_t dp_lease_instances(void);

/* ---- sync thread -------------------------------------------------------- */

/* Called by workers when a lease needs the sync thread soon (set once). */
void dp_lease_set_kick(void (*fn)(void));
/* Periodic work: notices configuration changes, winds leases down, sizes
 * refills, asks for next windows, frees unused state. Returns 1 when a
 * report should be sent now (dp_usage_report_soon has been called). */
int dp_lease_tick(int64_t now_ms, int64_t mono_ms);
/* dp_usage_lease_fn: lists leases and requests in a report being frozen. */
void dp_lease_fill_report(Sluice__Sync__V1__UsageReport *m, int64_t sealed_ms, int final, void *ctx);
/* Applies the grants of an acknowledged report of this process. */
void dp_lease_apply_ack(const Sluice__Sync__V1__ReportAck *ack, int64_t now_ms, int64_t mono_ms);
/* Whether any lease is held (a stopping node sends a final report). */
int dp_lease_held(void);
/* Frees everything (workers and the sync thread stopped). */
void dp_lease_shutdown(void);

#endif
