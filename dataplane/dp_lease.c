/*
 * dp_lease.c - quota instances and leases (see dp_lease.h).
 *
 * Lookup table: open addressing over instance pointers, published through
 * one atomic pointer. Workers probe it without locks; writers (instance
 * creation on workers, removal on the sync thread) hold g_mu. Removal
 * leaves a tombstone; a table that needs room is rebuilt into a new array
 * and the old array is retired and freed after a grace period. Entries
 * never move inside a published array, so a probe never misses a live
 * entry.
 *
 * Hot path ordering: dp_lease_take adds to `reserved` before it takes from
 * `avail`, and loads the slot state before both; the sync thread marks a
 * slot DRAINING, then issues a flush ticket (release). Once the ticket has
 * passed, every worker that could have seen the slot ACTIVE has finished
 * its reservation and it shows in `reserved`; when `reserved` is 0 and a
 * second ticket has passed, every settlement's usage has been handed to the
 * reporter, and reports sealed from then on may omit the lease.
 */
#include "dp_lease.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_snapshot.h"
#include "dp_usage.h"
#include "sl_log.h"

#define MOD "quota"

#define IDLE_DROP_MS 30000       /* an unused lease is given back after this */
#define IDLE_FREE_MS 60000       /* an instance with no lease is freed after this */
#define REFILL_SECONDS 8         /* a refill is sized for this much of the recent rate */
#define LOW_SECONDS 2            /* ... and asked for below this much */
#define RATE_HALF_MS 2000
#define ASK_AGAIN_MS 1000        /* an unanswered or refused ask is repeated at most this often */
#define NEXT_LEAD_S 5            /* ask for the next window this long before the boundary */
#define DEFAULT_EXPIRY_MS 30000  /* an answer without a lease (nothing granted) stays valid this long */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct tab {
    size_t cap;                   /* power of two */
    struct tab *retired_next;
    uint64_t ticket;
    _Atomic(dp_lease_inst_t *) s[];
} tab_t;

static _Atomic(tab_t *) g_tab;
static size_t g_used, g_tombs;        /* under g_mu */
static _Atomic(dp_lease_inst_t *) g_all; /* every linked instance; pushed under g_mu */
static dp_lease_inst_t g_tomb;
static tab_t *g_retired_tabs;         /* sync thread (and g_mu) */
static dp_lease_inst_t *g_zombies;    /* unlinked, waiting to be freed; sync thread */
static void (*g_kick)(void);
static _Atomic int64_t g_ninst;

/* sync thread */
static int64_t g_seen_version = -1;
static struct {
    Sluice__Sync__V1__LeaseRequest *req;
    Sluice__Sync__V1__LeaseRequest **reqp;
    Sluice__Sync__V1__LeaseState *st;
    Sluice__Sync__V1__LeaseState **stp;
    char (*ids)[24];
    size_t cap;
} F;

/* ---- helpers ------------------------------------------------------------ */

int64_t dp_lease_parse_id(const char *s)
{
    if (s == NULL || *s < '1' || *s > '9')
        return 0;
    int64_t v = 0;
    for (int i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 18)
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int dp_lease_is_open(int metric, int on_unavailable)
{
    if (on_unavailable == SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN)
        return 1;
    if (on_unavailable == SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED)
        return 0;
    return metric != SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
}

static uint64_t hash_id(int64_t qid)
{
    uint64_t h = (uint64_t)qid * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static void kick(void)
{
    if (g_kick != NULL)
        g_kick();
}

void dp_lease_set_kick(void (*fn)(void))
{
    g_kick = fn;
}

static void bump(dp_lease_inst_t *in)
{
    atomic_fetch_add_explicit(&in->gen, 1, memory_order_release);
}

/* ---- lookup table ------------------------------------------------------- */

dp_lease_inst_t *dp_lease_find(int64_t qid)
{
    tab_t *t = atomic_load_explicit(&g_tab, memory_order_acquire);
    if (t == NULL)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = hash_id(qid) & mask;; i = (i + 1) & mask) {
        dp_lease_inst_t *p = atomic_load_explicit(&t->s[i], memory_order_acquire);
        if (p == NULL)
            return NULL;
        if (p != &g_tomb && p->qid == qid)
            return p;
    }
}

/* Under g_mu: an array with room for one more entry. */
static tab_t *room_for_one(void)
{
    tab_t *t = atomic_load_explicit(&g_tab, memory_order_relaxed);
    if (t != NULL && (g_used + g_tombs + 1) * 2 <= t->cap)
        return t;
    size_t cap = 64;
    while (cap < (g_used + 1) * 4)
        cap *= 2;
    tab_t *n = calloc(1, sizeof(*n) + cap * sizeof(n->s[0]));
    if (n == NULL)
        return NULL;
    n->cap = cap;
    for (size_t i = 0; t != NULL && i < t->cap; i++) {
        dp_lease_inst_t *p = atomic_load_explicit(&t->s[i], memory_order_relaxed);
        if (p == NULL || p == &g_tomb)
            continue;
        size_t j = hash_id(p->qid) & (cap - 1);
        while (atomic_load_explicit(&n->s[j], memory_order_relaxed) != NULL)
            j = (j + 1) & (cap - 1);
        atomic_store_explicit(&n->s[j], p, memory_order_relaxed);
    }
    g_tombs = 0;
    atomic_store_explicit(&g_tab, n, memory_order_release);
    if (t != NULL) {
        /* workers may still probe it until a grace period passes */
        t->ticket = dp_usage_flush_request();
        t->retired_next = g_retired_tabs;
        g_retired_tabs = t;
    }
    return n;
}

static dp_lease_inst_t *inst_new(const dp_lease_quota_t *q)
{
    size_t ls = strlen(q->scope_id) + 1, lp = strlen(q->provider) + 1;
    dp_lease_inst_t *in = calloc(1, sizeof(*in) + ls + lp);
    if (in == NULL)
        return NULL;
    char *p = (char *)(in + 1);
    in->scope_id = memcpy(p, q->scope_id, ls);
    in->provider = memcpy(p + ls, q->provider, lp);
    in->qid = q->id;
    in->metric = q->metric;
    in->window = q->window;
    in->scope = q->scope;
    atomic_init(&in->limit, q->limit);
    atomic_init(&in->open, q->open);
    for (int i = 0; i < DP_LEASE_SLOTS; i++)
        in->slot[i].inst = in;
    return in;
}

dp_lease_inst_t *dp_lease_get(const dp_lease_quota_t *q)
{
    dp_lease_inst_t *in = dp_lease_find(q->id);
    if (in != NULL)
        return in;
    /* first request for this quota on this node */
    pthread_mutex_lock(&g_mu);
    if ((in = dp_lease_find(q->id)) != NULL)
        goto out;
    tab_t *t = room_for_one();
    if (t == NULL || (in = inst_new(q)) == NULL)
        goto out;
    size_t mask = t->cap - 1;
    size_t i = hash_id(q->id) & mask;
    for (;; i = (i + 1) & mask) {
        dp_lease_inst_t *p = atomic_load_explicit(&t->s[i], memory_order_relaxed);
        if (p == NULL || p == &g_tomb) {
            if (p == &g_tomb)
                g_tombs--;
            break;
        }
    }
    in->next = atomic_load_explicit(&g_all, memory_order_relaxed);
    atomic_store_explicit(&g_all, in, memory_order_release);
    atomic_store_explicit(&t->s[i], in, memory_order_release);
    g_used++;
    atomic_fetch_add(&g_ninst, 1);
out:
    pthread_mutex_unlock(&g_mu);
    return in;
}

/* Sync thread: unlinks in from the table and the list (it is freed later). */
static void unlink_inst(dp_lease_inst_t *in, dp_lease_inst_t **prevp)
{
    pthread_mutex_lock(&g_mu);
    tab_t *t = atomic_load_explicit(&g_tab, memory_order_relaxed);
    size_t mask = t->cap - 1;
    for (size_t i = hash_id(in->qid) & mask;; i = (i + 1) & mask) {
        dp_lease_inst_t *p = atomic_load_explicit(&t->s[i], memory_order_relaxed);
        if (p == NULL)
            break;
        if (p == in) {
            atomic_store_explicit(&t->s[i], &g_tomb, memory_order_release);
            g_used--;
            g_tombs++;
            break;
        }
    }
    if (prevp == NULL) {
        dp_lease_inst_t *head = atomic_load_explicit(&g_all, memory_order_relaxed);
        if (head == in) {
            atomic_store_explicit(&g_all, in->next, memory_order_release);
        } else {
            for (dp_lease_inst_t *p = head; p != NULL; p = p->next)
                if (p->next == in) {
                    p->next = in->next;
                    break;
                }
        }
    } else {
        *prevp = in->next;
    }
    pthread_mutex_unlock(&g_mu);
    atomic_store_explicit(&in->retired, 1, memory_order_release);
    bump(in);
    in->ticket = dp_usage_flush_request();
    in->next = g_zombies;
    g_zombies = in;
    atomic_fetch_sub(&g_ninst, 1);
}

static void free_retired(void)
{
    tab_t **tp = &g_retired_tabs;
    while (*tp != NULL) {
        tab_t *t = *tp;
        if (dp_usage_flush_passed(t->ticket)) {
            *tp = t->retired_next;
            free(t);
        } else {
            tp = &t->retired_next;
        }
    }
    dp_lease_inst_t **ip = &g_zombies;
    while (*ip != NULL) {
        dp_lease_inst_t *in = *ip;
        if (dp_usage_flush_passed(in->ticket) && atomic_load(&in->parked) == 0 && atomic_load(&in->inflight) == 0) {
            int busy = 0;
            for (int i = 0; i < DP_LEASE_SLOTS; i++)
                busy |= atomic_load(&in->slot[i].reserved) != 0;
            if (!busy) {
                *ip = in->next;
                free(in);
                continue;
            }
        }
        ip = &in->next;
    }
}

/* ---- hot path ----------------------------------------------------------- */

/* The ACTIVE lease whose window contains now_s, or NULL. */
static dp_lease_slot_t *current_slot(dp_lease_inst_t *in, int64_t now_s)
{
    for (int i = 0; i < DP_LEASE_SLOTS; i++) {
        dp_lease_slot_t *s = &in->slot[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != DP_SLOT_ACTIVE)
            continue;
        if (atomic_load_explicit(&s->ws, memory_order_relaxed) <= now_s &&
            now_s < atomic_load_explicit(&s->we, memory_order_relaxed))
            return s;
    }
    return NULL;
}

/* A worker needs a grant: tells the sync thread (once) and reports how long
 * workers have been waiting. */
static int64_t note_want(dp_lease_inst_t *in, int64_t amount, int64_t now_ms)
{
    int64_t h = atomic_load_explicit(&in->want_hint, memory_order_relaxed);
    if (amount > h)
        atomic_store_explicit(&in->want_hint, amount, memory_order_relaxed);
    int64_t since = atomic_load_explicit(&in->want_since_ms, memory_order_relaxed);
    if (since == 0) {
        int64_t zero = 0;
        if (atomic_compare_exchange_strong(&in->want_since_ms, &zero, now_ms))
            since = now_ms;
        else
            since = zero;
    }
    if (!atomic_load_explicit(&in->want, memory_order_relaxed)) {
        atomic_store_explicit(&in->want, 1, memory_order_release);
        kick();
    }
    return since != 0 ? now_ms - since : 0;
}

static int unavailable(dp_lease_inst_t *in)
{
    return atomic_load_explicit(&in->open, memory_order_relaxed) ? DP_LEASE_OPEN : DP_LEASE_CLOSED;
}

int dp_lease_take(dp_lease_inst_t *in, int64_t amount, int64_t now_ms, dp_lease_slot_t **slot, int *retry_sec)
{
    *slot = NULL;
    if (atomic_load_explicit(&in->dead, memory_order_acquire))
        return DP_LEASE_OPEN; /* the quota is gone from the configuration */
    if (atomic_load_explicit(&in->retired, memory_order_acquire))
        return DP_LEASE_WAIT; /* look it up again */
    int64_t now_s = now_ms / 1000;
    dp_lease_slot_t *s = current_slot(in, now_s);
    if (s == NULL) {
        /* first request here, or a new window without a lease yet */
        if (note_want(in, amount, now_ms) > DP_LEASE_WAIT_MS)
            return unavailable(in);
        return DP_LEASE_WAIT;
    }
    if (now_ms > atomic_load_explicit(&s->expires_ms, memory_order_relaxed)) {
        /* not renewed: the control plane has not answered for a while */
        note_want(in, amount, now_ms);
        return unavailable(in);
    }
    atomic_fetch_add_explicit(&s->reserved, amount, memory_order_seq_cst);
    int64_t a = atomic_load_explicit(&s->avail, memory_order_relaxed);
    while (a >= amount) {
        if (atomic_compare_exchange_weak_explicit(&s->avail, &a, a - amount, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (atomic_load_explicit(&s->last_est, memory_order_relaxed) != amount)
                atomic_store_explicit(&s->last_est, amount, memory_order_relaxed);
            if (a - amount < atomic_load_explicit(&s->low, memory_order_relaxed) &&
                !atomic_load_explicit(&s->need, memory_order_relaxed)) {
                atomic_store_explicit(&s->need, 1, memory_order_relaxed);
                kick();
            }
            *slot = s;
            return DP_LEASE_OK;
        }
    }
    atomic_fetch_sub_explicit(&s->reserved, amount, memory_order_release);
    atomic_store_explicit(&s->last_est, amount, memory_order_relaxed);
    if (!atomic_load_explicit(&s->need, memory_order_relaxed)) {
        atomic_store_explicit(&s->need, 1, memory_order_relaxed);
        kick();
    }
    int64_t we = atomic_load_explicit(&s->we, memory_order_relaxed);
    *retry_sec = (int)(we - now_s > 0 ? (we - now_s > 86400 * 31 ? 86400 * 31 : we - now_s) : 1);
    int64_t room = atomic_load_explicit(&s->room, memory_order_relaxed);
    if (room > 0 && room + (a > 0 ? a : 0) >= amount) {
        /* the control plane had room at its last answer: a refill is coming */
        if (note_want(in, amount, now_ms) > DP_LEASE_WAIT_MS)
            return unavailable(in);
        return DP_LEASE_WAIT;
    }
    return DP_LEASE_EXHAUSTED;
}

void dp_lease_give(dp_lease_slot_t *s, int64_t reserved, int64_t actual)
{
    atomic_fetch_add_explicit(&s->avail, reserved - actual, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->reserved, reserved, memory_order_release);
}

int dp_lease_conc_enter(dp_lease_inst_t *in, int64_t limit)
{
    if (atomic_fetch_add_explicit(&in->inflight, 1, memory_order_acq_rel) + 1 > limit) {
        atomic_fetch_sub_explicit(&in->inflight, 1, memory_order_release);
        return 0;
    }
    return 1;
}

void dp_lease_conc_leave(dp_lease_inst_t *in)
{
    atomic_fetch_sub_explicit(&in->inflight, 1, memory_order_release);
}

void dp_lease_view(dp_lease_inst_t *in, int64_t limit, int64_t now_ms, dp_lease_view_t *v)
{
    memset(v, 0, sizeof(*v));
    v->inflight = atomic_load_explicit(&in->inflight, memory_order_relaxed);
    v->remaining = limit;
    dp_lease_slot_t *s = current_slot(in, now_ms / 1000);
    if (s == NULL)
        return;
    v->known = 1;
    v->ws = atomic_load_explicit(&s->ws, memory_order_relaxed);
    v->we = atomic_load_explicit(&s->we, memory_order_relaxed);
    v->used = atomic_load_explicit(&s->used, memory_order_relaxed);
    v->outstanding = atomic_load_explicit(&s->outstanding, memory_order_relaxed);
    v->avail = atomic_load_explicit(&s->avail, memory_order_relaxed);
    v->reserved = atomic_load_explicit(&s->reserved, memory_order_relaxed);
    /* room nobody holds plus what this node holds and has not reserved */
    int64_t r = atomic_load_explicit(&s->room, memory_order_relaxed) + (v->avail > 0 ? v->avail : 0);
    v->remaining = r < 0 ? 0 : r > limit ? (limit > 0 ? limit : 0) : r;
}

int64_t dp_lease_instances(void)
{
    return atomic_load_explicit(&g_ninst, memory_order_relaxed);
}

/* ---- sync thread: leases ------------------------------------------------ */

static void slot_reset(dp_lease_slot_t *s)
{
    atomic_store_explicit(&s->state, DP_SLOT_FREE, memory_order_release);
    atomic_store_explicit(&s->avail, 0, memory_order_relaxed);
    atomic_store_explicit(&s->room, 0, memory_order_relaxed);
    atomic_store_explicit(&s->need, 0, memory_order_relaxed);
    atomic_store_explicit(&s->low, 0, memory_order_relaxed);
    atomic_store_explicit(&s->used, 0, memory_order_relaxed);
    atomic_store_explicit(&s->outstanding, 0, memory_order_relaxed);
    s->granted = s->want_next = s->want_sent = s->asked_ws = s->asked_ms = s->renew_ms = 0;
    s->rate = 0;
    s->rate_taken = s->rate_ms = s->active_ms = 0;
    s->drain = 0;
    s->ticket = 0;
    s->omit_after_ms = 0;
}

static void start_drain(dp_lease_slot_t *s)
{
    int st = atomic_load_explicit(&s->state, memory_order_relaxed);
    if (st == DP_SLOT_PENDING) {
        slot_reset(s);
        return;
    }
    if (st != DP_SLOT_ACTIVE)
        return;
    atomic_store_explicit(&s->state, DP_SLOT_DRAINING, memory_order_seq_cst);
    atomic_exchange_explicit(&s->avail, 0, memory_order_acq_rel);
    s->want_next = 0;
    s->drain = 1;
    s->ticket = dp_usage_flush_request();
    bump(s->inst);
}

/* Advances a draining lease; returns 1 when it waits for a report. */
static int drain_step(dp_lease_slot_t *s, int64_t mono_ms)
{
    switch (s->drain) {
    case 1: /* every reservation that saw it ACTIVE is in `reserved` */
        if (!dp_usage_flush_passed(s->ticket))
            return 0;
        s->drain = 2;
        /* fall through */
    case 2: /* requests in flight settle */
        if (atomic_load_explicit(&s->reserved, memory_order_acquire) != 0)
            return 0;
        s->ticket = dp_usage_flush_request();
        s->drain = 3;
        return 0;
    case 3: /* their usage reaches the reporter */
        if (!dp_usage_flush_passed(s->ticket))
            return 0;
        s->omit_after_ms = mono_ms; /* collected right after this tick */
        s->drain = 4;
        return 1;
    case 4:
        return 1;
    default:
        return 0;
    }
}

static int64_t clamp_want(dp_lease_inst_t *in, int64_t want, int64_t est)
{
    int64_t limit = atomic_load_explicit(&in->limit, memory_order_relaxed);
    int64_t cap = limit / 8;
    if (cap < 2 * est)
        cap = 2 * est;
    if (want > cap)
        want = cap;
    if (want < est)
        want = est;
    return want < 1 ? 1 : want;
}

static dp_lease_slot_t *free_slot(dp_lease_inst_t *in)
{
    for (int i = 0; i < DP_LEASE_SLOTS; i++)
        if (atomic_load_explicit(&in->slot[i].state, memory_order_relaxed) == DP_SLOT_FREE)
            return &in->slot[i];
    return NULL;
}

static dp_lease_slot_t *slot_for_ws(dp_lease_inst_t *in, int64_t ws, int pending_too)
{
    for (int i = 0; i < DP_LEASE_SLOTS; i++) {
        dp_lease_slot_t *s = &in->slot[i];
        int st = atomic_load_explicit(&s->state, memory_order_relaxed);
        if (st == DP_SLOT_ACTIVE && atomic_load_explicit(&s->ws, memory_order_relaxed) == ws)
            return s;
        if (pending_too && st == DP_SLOT_PENDING && s->asked_ws == ws && ws != 0)
            return s;
    }
    return NULL;
}

static int has_pending_current(dp_lease_inst_t *in)
{
    for (int i = 0; i < DP_LEASE_SLOTS; i++)
        if (atomic_load_explicit(&in->slot[i].state, memory_order_relaxed) == DP_SLOT_PENDING &&
            in->slot[i].asked_ws == 0)
            return 1;
    return 0;
}

/* Looks the quota up in the newest snapshot: 0 when gone. */
static int lookup_quota(const dp_snapshot_t *snap, dp_lease_inst_t *in, int64_t *limit, int *open)
{
    Sluice__Config__V1__Quota **qs = NULL;
    size_t n = 0;
    if (in->scope == DP_LEASE_SCOPE_KEY) {
        const dp_key_t *k = dp_snapshot_find_key_id(snap, in->scope_id, strlen(in->scope_id));
        if (k != NULL && k->pb != NULL) {
            qs = k->pb->quotas;
            n = k->pb->n_quotas;
        }
    } else {
        const Sluice__Config__V1__Tenant *t = dp_snapshot_find_tenant(snap, in->scope_id, strlen(in->scope_id));
        if (t != NULL) {
            qs = t->quotas;
            n = t->n_quotas;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (dp_lease_parse_id(qs[i]->id) != in->qid)
            continue;
        if ((int)qs[i]->metric != in->metric || (int)qs[i]->window != in->window)
            return 0; /* never happens with stable ids; treat as a new quota */
        *limit = qs[i]->limit;
        *open = dp_lease_is_open(qs[i]->metric, qs[i]->on_unavailable);
        return 1;
    }
    return 0;
}

static void check_config(void)
{
    int64_t v = dp_snapshot_current_version();
    if (v == g_seen_version)
        return;
    dp_snapshot_t *snap = dp_snapshot_acquire();
    if (snap == NULL)
        return;
    g_seen_version = v;
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire); in != NULL; in = in->next) {
        if (atomic_load_explicit(&in->dead, memory_order_relaxed))
            continue;
        int64_t limit = 0;
        int open = 0;
        if (!lookup_quota(snap, in, &limit, &open)) {
            sl_debug(MOD, "quota %lld was removed: its leases are given back", (long long)in->qid);
            atomic_store_explicit(&in->dead, 1, memory_order_release);
            for (int i = 0; i < DP_LEASE_SLOTS; i++)
                start_drain(&in->slot[i]);
            bump(in);
            continue;
        }
        int64_t old = atomic_load_explicit(&in->limit, memory_order_relaxed);
        atomic_store_explicit(&in->open, open, memory_order_relaxed);
        if (limit == old)
            continue;
        atomic_store_explicit(&in->limit, limit, memory_order_relaxed);
        if (in->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT)
            continue;
        sl_debug(MOD, "quota %lld limit %lld -> %lld", (long long)in->qid, (long long)old, (long long)limit);
        for (int i = 0; i < DP_LEASE_SLOTS; i++) {
            dp_lease_slot_t *s = &in->slot[i];
            if (limit < old) {
                /* what this node holds may be more than the new limit
                 * allows: give it back and ask again */
                start_drain(s);
            } else if (atomic_load_explicit(&s->state, memory_order_relaxed) == DP_SLOT_ACTIVE) {
                atomic_store_explicit(&s->room, limit - old, memory_order_relaxed);
                atomic_store_explicit(&s->need, 1, memory_order_relaxed);
            }
        }
    }
    dp_snapshot_release(snap);
}

/* Sizes the refill of an active lease; returns 1 when it wants a report. */
static int refill_step(dp_lease_slot_t *s, int64_t now_s, int64_t mono_ms)
{
    dp_lease_inst_t *in = s->inst;
    int64_t avail = atomic_load_explicit(&s->avail, memory_order_relaxed);
    int64_t taken = s->granted - avail;
    if (s->rate_ms == 0) {
        s->rate_ms = mono_ms;
        s->rate_taken = taken;
        s->active_ms = mono_ms;
    } else if (mono_ms - s->rate_ms >= 100) {
        int64_t dt = mono_ms - s->rate_ms;
        double r = (double)(taken - s->rate_taken) * 1000.0 / (double)dt;
        double a = (double)dt / RATE_HALF_MS;
        s->rate += (r - s->rate) * (a > 1 ? 1 : a);
        if (taken != s->rate_taken || atomic_load_explicit(&s->reserved, memory_order_relaxed) != 0)
            s->active_ms = mono_ms;
        s->rate_ms = mono_ms;
        s->rate_taken = taken;
    }
    int64_t est = atomic_load_explicit(&s->last_est, memory_order_relaxed);
    if (est < 1)
        est = 1;
    int64_t low = (int64_t)(s->rate * LOW_SECONDS);
    if (low < 2 * est)
        low = 2 * est;
    atomic_store_explicit(&s->low, low, memory_order_relaxed);
    int need = atomic_load_explicit(&s->need, memory_order_relaxed);
    int want_report = 0;
    if ((need || avail < low) && s->want_sent == 0 && s->want_next == 0) {
        int64_t room = atomic_load_explicit(&s->room, memory_order_relaxed);
        if (room > 0 || mono_ms - s->asked_ms >= ASK_AGAIN_MS) {
            int64_t target = (int64_t)(s->rate * REFILL_SECONDS);
            if (target < 4 * est)
                target = 4 * est;
            int64_t want = target - (avail > 0 ? avail : 0);
            if (want > 0) {
                s->want_next = clamp_want(in, want, est);
                want_report = 1;
            }
        }
        atomic_store_explicit(&s->need, 0, memory_order_relaxed);
    }
    /* the next window, ahead of the boundary, for leases in use */
    int64_t ws = atomic_load_explicit(&s->ws, memory_order_relaxed), we = atomic_load_explicit(&s->we, memory_order_relaxed);
    int64_t lead = (we - ws) / 10 < NEXT_LEAD_S ? (we - ws) / 10 : NEXT_LEAD_S;
    if (now_s >= we - lead && mono_ms - s->active_ms < 5000 && slot_for_ws(in, we, 1) == NULL) {
        dp_lease_slot_t *n = free_slot(in);
        if (n != NULL) {
            n->asked_ws = we;
            int64_t target = (int64_t)(s->rate * REFILL_SECONDS);
            if (target < 4 * est)
                target = 4 * est;
            n->want_next = clamp_want(in, target, est);
            atomic_store_explicit(&n->last_est, est, memory_order_relaxed);
            atomic_store_explicit(&n->state, DP_SLOT_PENDING, memory_order_release);
            want_report = 1;
        }
    }
    return want_report;
}

int dp_lease_tick(int64_t now_ms, int64_t mono_ms)
{
    int64_t now_s = now_ms / 1000;
    int report = 0;
    check_config();
    dp_lease_inst_t *prev = NULL;
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire), *next; in != NULL; in = next) {
        next = in->next;
        int live = 0;
        for (int i = 0; i < DP_LEASE_SLOTS; i++) {
            dp_lease_slot_t *s = &in->slot[i];
            switch (atomic_load_explicit(&s->state, memory_order_relaxed)) {
            case DP_SLOT_PENDING:
                live = 1;
                if (s->want_sent == 0 && s->want_next == 0 && mono_ms - s->asked_ms >= ASK_AGAIN_MS) {
                    /* unanswered (the control plane did not know the window) */
                    slot_reset(s);
                }
                break;
            case DP_SLOT_ACTIVE: {
                live = 1;
                int64_t we = atomic_load_explicit(&s->we, memory_order_relaxed);
                if (now_s >= we) {
                    start_drain(s); /* the window is over */
                } else if (s->rate_ms != 0 && mono_ms - s->active_ms >= IDLE_DROP_MS &&
                           atomic_load_explicit(&s->reserved, memory_order_relaxed) == 0) {
                    start_drain(s); /* unused: let other nodes have it */
                } else {
                    report |= refill_step(s, now_s, mono_ms);
                    if (s->renew_ms != 0 && mono_ms >= s->renew_ms)
                        report = 1;
                }
                break;
            }
            case DP_SLOT_DRAINING:
                live = 1;
                report |= drain_step(s, mono_ms);
                break;
            default:
                break;
            }
        }
        /* a worker waits for a lease of the current window */
        if (atomic_load_explicit(&in->want, memory_order_acquire) && !atomic_load(&in->dead)) {
            if (current_slot(in, now_s) != NULL) {
                atomic_store_explicit(&in->want, 0, memory_order_relaxed);
            } else if (!has_pending_current(in)) {
                dp_lease_slot_t *s = free_slot(in);
                if (s != NULL) {
                    int64_t hint = atomic_load_explicit(&in->want_hint, memory_order_relaxed);
                    s->asked_ws = 0;
                    s->want_next = clamp_want(in, 4 * (hint > 0 ? hint : 1), hint > 0 ? hint : 1);
                    atomic_store_explicit(&s->last_est, hint, memory_order_relaxed);
                    atomic_store_explicit(&s->state, DP_SLOT_PENDING, memory_order_release);
                    live = 1;
                    report = 1;
                }
            }
        }
        /* free what nobody uses */
        int dead = atomic_load_explicit(&in->dead, memory_order_relaxed);
        if (!live && !atomic_load(&in->want) && atomic_load(&in->parked) == 0 && atomic_load(&in->inflight) == 0) {
            if (in->idle_since_ms == 0)
                in->idle_since_ms = mono_ms;
            if (dead || mono_ms - in->idle_since_ms >= IDLE_FREE_MS) {
                unlink_inst(in, prev != NULL ? &prev->next : NULL);
                continue; /* prev stays */
            }
        } else {
            in->idle_since_ms = 0;
        }
        prev = in;
    }
    free_retired();
    if (report)
        dp_usage_report_soon();
    return report;
}

/* ---- sync thread: reports ----------------------------------------------- */

static int fill_grow(size_t need)
{
    if (need <= F.cap)
        return 0;
    size_t cap = F.cap ? F.cap : 16;
    while (cap < need)
        cap *= 2;
    void *a = realloc(F.req, cap * sizeof(*F.req)), *b = NULL, *c = NULL, *d = NULL, *e = NULL;
    if (a != NULL)
        F.req = a;
    b = realloc(F.reqp, cap * sizeof(*F.reqp));
    if (b != NULL)
        F.reqp = b;
    c = realloc(F.st, cap * sizeof(*F.st));
    if (c != NULL)
        F.st = c;
    d = realloc(F.stp, cap * sizeof(*F.stp));
    if (d != NULL)
        F.stp = d;
    e = realloc(F.ids, cap * 2 * sizeof(*F.ids));
    if (e != NULL)
        F.ids = e;
    if (a == NULL || b == NULL || c == NULL || d == NULL || e == NULL)
        return -1;
    F.cap = cap;
    return 0;
}

void dp_lease_fill_report(Sluice__Sync__V1__UsageReport *m, int64_t sealed_ms, int final, void *ctx)
{
    m->n_leases = m->n_lease_requests = 0;
    if (final)
        return; /* a stopping node: the control plane releases every lease */
    size_t nslots = 0;
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire); in != NULL; in = in->next)
        nslots += DP_LEASE_SLOTS;
    if (fill_grow(nslots) != 0) {
        sl_error(MOD, "out of memory listing quota leases");
        return; /* listing none releases them: safe, only slower */
    }
    int64_t mono = sealed_ms;
    size_t nl = 0, nr = 0, id = 0;
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire); in != NULL; in = in->next) {
        for (int i = 0; i < DP_LEASE_SLOTS; i++) {
            dp_lease_slot_t *s = &in->slot[i];
            int st = atomic_load_explicit(&s->state, memory_order_relaxed);
            if (st == DP_SLOT_FREE)
                continue;
            if (st == DP_SLOT_DRAINING && s->drain == 4 && sealed_ms >= s->omit_after_ms) {
                slot_reset(s); /* this report releases it */
                bump(in);
                continue;
            }
            char *qid = F.ids[id++];
            snprintf(qid, sizeof(F.ids[0]), "%lld", (long long)in->qid);
            if (st == DP_SLOT_ACTIVE || st == DP_SLOT_DRAINING) {
                Sluice__Sync__V1__LeaseState *ls = &F.st[nl];
                sluice__sync__v1__lease_state__init(ls);
                ls->quota_id = qid;
                ls->window_start_unix = atomic_load_explicit(&s->ws, memory_order_relaxed);
                int64_t r = atomic_load_explicit(&s->reserved, memory_order_relaxed);
                int64_t a = atomic_load_explicit(&s->avail, memory_order_relaxed);
                ls->reserved = r > 0 ? r : 0;
                ls->unreserved = st == DP_SLOT_ACTIVE && a > 0 ? a : 0;
                F.stp[nl] = ls;
                nl++;
            }
            if (s->want_next > 0 && (st == DP_SLOT_ACTIVE || st == DP_SLOT_PENDING)) {
                Sluice__Sync__V1__LeaseRequest *lr = &F.req[nr];
                sluice__sync__v1__lease_request__init(lr);
                lr->quota_id = qid;
                lr->window_start_unix = st == DP_SLOT_ACTIVE ? atomic_load_explicit(&s->ws, memory_order_relaxed)
                                                             : s->asked_ws;
                lr->want = s->want_next;
                F.reqp[nr] = lr;
                nr++;
                s->want_sent = s->want_next;
                s->want_next = 0;
                s->asked_ms = mono;
            }
        }
    }
    m->leases = F.stp;
    m->n_leases = nl;
    m->lease_requests = F.reqp;
    m->n_lease_requests = nr;
}

static dp_lease_slot_t *match_grant(dp_lease_inst_t *in, int64_t ws)
{
    for (int i = 0; i < DP_LEASE_SLOTS; i++) {
        dp_lease_slot_t *s = &in->slot[i];
        int st = atomic_load_explicit(&s->state, memory_order_relaxed);
        if ((st == DP_SLOT_ACTIVE || st == DP_SLOT_DRAINING) && atomic_load_explicit(&s->ws, memory_order_relaxed) == ws)
            return s;
    }
    for (int i = 0; i < DP_LEASE_SLOTS; i++) {
        dp_lease_slot_t *s = &in->slot[i];
        if (atomic_load_explicit(&s->state, memory_order_relaxed) == DP_SLOT_PENDING && s->want_sent > 0 &&
            (s->asked_ws == ws || s->asked_ws == 0))
            return s;
    }
    return NULL;
}

void dp_lease_apply_ack(const Sluice__Sync__V1__ReportAck *ack, int64_t now_ms, int64_t mono_ms)
{
    for (size_t i = 0; i < ack->n_grants; i++) {
        const Sluice__Sync__V1__LeaseGrant *g = ack->grants[i];
        dp_lease_inst_t *in = dp_lease_find(dp_lease_parse_id(g->quota_id));
        if (in == NULL || g->window_end_unix <= g->window_start_unix)
            continue;
        dp_lease_slot_t *s = match_grant(in, g->window_start_unix);
        if (s == NULL)
            continue; /* not held any more: the next report releases it */
        int st = atomic_load_explicit(&s->state, memory_order_relaxed);
        int64_t room = g->limit - g->used - g->outstanding;
        atomic_store_explicit(&s->room, room > 0 ? room : 0, memory_order_relaxed);
        atomic_store_explicit(&s->used, g->used, memory_order_relaxed);
        atomic_store_explicit(&s->outstanding, g->outstanding, memory_order_relaxed);
        int64_t exp = g->expires_unix_ms > 0 ? g->expires_unix_ms : now_ms + DEFAULT_EXPIRY_MS;
        atomic_store_explicit(&s->expires_ms, exp, memory_order_relaxed);
        s->renew_ms = mono_ms + (exp - now_ms) / 2;
        if (st == DP_SLOT_DRAINING)
            continue;
        if (g->granted > 0) {
            atomic_fetch_add_explicit(&s->avail, g->granted, memory_order_acq_rel);
            s->granted += g->granted;
        }
        if (st == DP_SLOT_PENDING) {
            atomic_store_explicit(&s->ws, g->window_start_unix, memory_order_relaxed);
            atomic_store_explicit(&s->we, g->window_end_unix, memory_order_relaxed);
            s->asked_ws = g->window_start_unix;
            atomic_store_explicit(&s->state, DP_SLOT_ACTIVE, memory_order_release);
        }
        s->want_sent = 0;
        atomic_store_explicit(&in->want_since_ms, 0, memory_order_relaxed);
        bump(in);
    }
    /* asks this report carried that got no answer */
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire); in != NULL; in = in->next) {
        for (int i = 0; i < DP_LEASE_SLOTS; i++) {
            dp_lease_slot_t *s = &in->slot[i];
            if (s->want_sent == 0)
                continue;
            s->want_sent = 0;
            if (atomic_load_explicit(&s->state, memory_order_relaxed) == DP_SLOT_PENDING)
                slot_reset(s);
            bump(in);
        }
    }
}

int dp_lease_held(void)
{
    for (dp_lease_inst_t *in = atomic_load_explicit(&g_all, memory_order_acquire); in != NULL; in = in->next)
        for (int i = 0; i < DP_LEASE_SLOTS; i++) {
            int st = atomic_load_explicit(&in->slot[i].state, memory_order_relaxed);
            if (st == DP_SLOT_ACTIVE || st == DP_SLOT_DRAINING)
                return 1;
        }
    return 0;
}

void dp_lease_shutdown(void)
{
    dp_lease_inst_t *in = atomic_exchange(&g_all, NULL);
    while (in != NULL) {
        dp_lease_inst_t *n = in->next;
        free(in);
        in = n;
    }
    while (g_zombies != NULL) {
        dp_lease_inst_t *n = g_zombies->next;
        free(g_zombies);
        g_zombies = n;
    }
    while (g_retired_tabs != NULL) {
        tab_t *n = g_retired_tabs->retired_next;
        free(g_retired_tabs);
        g_retired_tabs = n;
    }
    free(atomic_exchange(&g_tab, NULL));
    g_used = g_tombs = 0;
    atomic_store(&g_ninst, 0);
    g_seen_version = -1;
    free(F.req);
    free(F.reqp);
    free(F.st);
    free(F.stp);
    free(F.ids);
    memset(&F, 0, sizeof(F));
}
