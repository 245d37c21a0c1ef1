/*
 * dp_usage.c - per-worker usage tables and the report queue.
 *
 * Workers (dp_usage_record/tick/flush_worker, each on its own worker index)
 * add requests to a private hash table keyed by (key_id, provider, model,
 * minute). A new entry is one allocation holding its strings; a repeated
 * request only adds to counters. No lock is taken to record. When 1000
 * requests were recorded or 1 s passed since the last hand-off, dp_usage_tick
 * moves the whole table into the worker's mailbox (one mutex acquisition per
 * hand-off) and the worker starts a new table.
 *
 * The reporter (everything in the "sync thread only" section of dp_usage.h,
 * one thread) empties the mailboxes into an open table and seals it into a
 * report with the next sequence number (1, 2, ... per boot). Reports are
 * sent oldest first and popped only when acknowledged; a failed send is
 * retried with backoff and the same (node_id, boot_id, seq), so the control
 * plane applies each exactly once.
 *
 * Invariants:
 *   - entries are unique per (key_id, provider, model, minute) within a
 *     table and within a report;
 *   - a report is "frozen" (packed into its final message, written to the
 *     spool) right before it is first sent and never changes after that;
 *     only the newest not-yet-frozen report may absorb new usage, which
 *     happens when the queue holds MAX_REPORTS (memory stays bounded by
 *     distinct entries; usage is never dropped);
 *   - a spooled report's file exists from its first send until its ack.
 *     Files left by an earlier process are sent first, unchanged.
 *
 * Journal (with a spool directory; dp_journal.c has the format and the
 * recovery rules): dp_usage_record also appends the request to the
 * worker's journal, after adding it to the table, and a hand-off carries
 * the number of the worker's last journaled record (agg_t.jlast). The
 * reporter keeps the highest number collected per worker (R.cov); a report
 * sealed now covers everything up to R.cov, because merges are all or
 * nothing. freeze() notes that coverage in the journal index before the
 * spool file is written, frees the journal space it covers afterwards, and
 * an acknowledgement is noted before the spool file is removed. At start,
 * journals of dead processes become spooled reports of their own boot
 * before the spool directory is loaded.
 */
#include "dp_usage.h"
#include "dp_breaker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dp_journal.h"
#include "dp_snapshot.h"
#include "sl_crypto.h"
#include "sl_err.h"
#include "sl_log.h"

#define MOD "usage"

#define HANDOFF_REQUESTS 1000
#define HANDOFF_MS 1000
#define SEAL_MS 500
#define MAX_REPORTS 10000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define SPOOL_MAX_FILE (64 * 1024 * 1024)

/* ---- clock -------------------------------------------------------------- */

static int64_t real_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t (*mono_ms)(void) = real_mono_ms;

void dp_usage_set_clock(int64_t (*fn)(void))
{
    mono_ms = fn != NULL ? fn : real_mono_ms;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- aggregation tables ------------------------------------------------- */

typedef struct uent {
    uint64_t h;
    int64_t minute;
    const char *key_id, *tenant_id, *provider, *model; /* into str[] */
    int64_t requests, errors, input, cached, output, cost;
    dp_jtuple_t *jt; /* worker tables: the journal's tuple for the strings */
    char str[];
} uent_t;

typedef struct agg {
    struct agg *next; /* mailbox chain */
    uent_t **slots;   /* open addressing, NULL = empty; cap a power of two */
    size_t cap, n;
    int jworker;      /* handed off by this worker, whose journal it covers */
    uint64_t jlast;   /* up to this record (0: none) */
} agg_t;

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= 0xff; /* field separator */
    return h * 0x100000001b3ULL;
}

static uint64_t entry_hash(const char *key_id, const char *provider, const char *model, int64_t minute)
{
    uint64_t h = fnv(fnv(fnv(0xcbf29ce484222325ULL, key_id), provider), model);
    h ^= (uint64_t)minute;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 32);
}

static agg_t *agg_new(void)
{
    return calloc(1, sizeof(agg_t));
}

static void agg_free(agg_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->cap; i++)
        free(a->slots[i]);
    free(a->slots);
    free(a);
}

static uent_t **agg_slot(agg_t *a, uint64_t h, const char *key_id, const char *provider, const char *model,
                         int64_t minute)
{
    size_t mask = a->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uent_t *e = a->slots[i];
        if (e == NULL)
            return &a->slots[i];
        if (e->h == h && e->minute == minute && strcmp(e->key_id, key_id) == 0 && strcmp(e->provider, provider) == 0 &&
            strcmp(e->model, model) == 0)
            return &a->slots[i];
    }
}

/* Makes room for extra more entries. */
static int agg_reserve(agg_t *a, size_t extra)
{
    if ((a->n + extra) * 2 <= a->cap)
        return 0;
    size_t cap = a->cap ? a->cap * 2 : 16;
    while ((a->n + extra) * 2 > cap)
        cap *= 2;
    uent_t **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < a->cap; i++) {
        uent_t *e = a->slots[i];
        if (e == NULL)
            continue;
        size_t j = (size_t)e->h & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(a->slots);
    a->slots = slots;
    a->cap = cap;
    return 0;
}

/* Makes room for one more entry. */
static int agg_grow(agg_t *a)
{
    return agg_reserve(a, 1);
}

static uent_t *uent_new(uint64_t h, const char *key_id, const char *tenant_id, const char *provider, const char *model,
                        int64_t minute)
{
    size_t lk = strlen(key_id) + 1, lt = strlen(tenant_id) + 1, lp = strlen(provider) + 1, lm = strlen(model) + 1;
    uent_t *e = calloc(1, sizeof(*e) + lk + lt + lp + lm);
    if (e == NULL)
        return NULL;
    char *p = e->str;
    e->key_id = memcpy(p, key_id, lk);
    e->tenant_id = memcpy(p += lk, tenant_id, lt);
    e->provider = memcpy(p += lt, provider, lp);
    e->model = memcpy(p += lp, model, lm);
    e->h = h;
    e->minute = minute;
    return e;
}

static void uent_add(uent_t *dst, const uent_t *src)
{
    dst->requests += src->requests;
    dst->errors += src->errors;
    dst->input += src->input;
    dst->cached += src->cached;
    dst->output += src->output;
    dst->cost += src->cost;
}

/* Moves every entry of src into dst (summing duplicates) and frees src.
 * All or nothing: on allocation failure nothing moved and src is returned
 * (journal coverage depends on it); NULL when everything moved. */
static agg_t *agg_merge(agg_t *dst, agg_t *src)
{
    if (agg_reserve(dst, src->n) != 0)
        return src;
    for (size_t i = 0; i < src->cap; i++) {
        uent_t *e = src->slots[i];
        if (e == NULL)
            continue;
        if (agg_grow(dst) != 0)
            return src;
        uent_t **slot = agg_slot(dst, e->h, e->key_id, e->provider, e->model, e->minute);
        if (*slot != NULL) {
            uent_add(*slot, e);
            free(e);
        } else {
            *slot = e;
            dst->n++;
        }
        src->slots[i] = NULL;
        src->n--;
    }
    agg_free(src);
    return NULL;
}

/* ---- workers ------------------------------------------------------------ */

typedef struct wstate {
    _Alignas(64) agg_t *cur; /* owned by the worker */
    int64_t since_handoff;   /* requests recorded since the last hand-off */
    int64_t last_handoff_ms;
    uint64_t jlast;          /* the last record written to this worker's journal */
    pthread_mutex_t mu; /* guards mailbox */
    agg_t *mailbox;
    _Atomic uint64_t flush_seen; /* last flush ticket handed off for; UINT64_MAX: offline */
} wstate_t;

static wstate_t *g_workers;
static int g_nworkers;
static _Atomic uint64_t g_flush_req; /* flush tickets issued (sync thread) */
static atomic_llong g_pending;
static atomic_llong g_dropped; /* requests lost to allocation failure */
/* This process's usage journal (with a spool directory); set by
 * dp_usage_reporter_start before workers run, cleared after they stop. */
static dp_journal_t *g_journal;

int dp_usage_init(int nworkers)
{
    if (nworkers < 0)
        return SL_EINVAL;
    size_t n = nworkers > 0 ? (size_t)nworkers : 1;
    size_t sz = (n * sizeof(wstate_t) + 63) & ~(size_t)63;
    g_workers = aligned_alloc(64, sz);
    if (g_workers == NULL)
        return SL_ENOMEM;
    memset(g_workers, 0, sz);
    int64_t now = mono_ms();
    for (int i = 0; i < nworkers; i++) {
        pthread_mutex_init(&g_workers[i].mu, NULL);
        g_workers[i].last_handoff_ms = now;
    }
    g_nworkers = nworkers;
    atomic_store(&g_pending, 0);
    atomic_store(&g_dropped, 0);
    return 0;
}

void dp_usage_record(int worker, const dp_usage_rec_t *r)
{
    if (worker < 0 || worker >= g_nworkers)
        return;
    wstate_t *w = &g_workers[worker];
    const char *key_id = r->key_id ? r->key_id : "", *tenant_id = r->tenant_id ? r->tenant_id : "";
    const char *provider = r->provider ? r->provider : "", *model = r->model ? r->model : "";
    int64_t minute = r->unix_sec - r->unix_sec % 60;
    uint64_t h = entry_hash(key_id, provider, model, minute);
    if (w->cur == NULL && (w->cur = agg_new()) == NULL)
        goto nomem;
    if (agg_grow(w->cur) != 0)
        goto nomem;
    uent_t **slot = agg_slot(w->cur, h, key_id, provider, model, minute);
    if (*slot == NULL) {
        if ((*slot = uent_new(h, key_id, tenant_id, provider, model, minute)) == NULL)
            goto nomem;
        w->cur->n++;
    }
    uent_t *e = *slot;
    e->requests++;
    e->errors += r->error ? 1 : 0;
    e->input += r->input_tokens;
    e->cached += r->cached_input_tokens;
    e->output += r->output_tokens;
    e->cost += r->cost_nano;
    w->since_handoff++;
    if (g_journal != NULL) {
        /* in the table first: a record the journal holds is always in the
         * next hand-off, which claims it by w->jlast */
        if (e->jt == NULL)
            e->jt = dp_journal_tuple(g_journal, worker, key_id, tenant_id, provider, model);
        uint64_t seq = e->jt != NULL ? dp_journal_append(g_journal, worker, e->jt, minute, r) : 0;
        if (seq != 0)
            w->jlast = seq;
    }
    return;
nomem:
    if (atomic_fetch_add(&g_dropped, 1) == 0)
        sl_error(MOD, "out of memory recording usage; requests are not accounted");
}

static void handoff(wstate_t *w, int64_t now)
{
    agg_t *a = w->cur;
    a->jworker = (int)(w - g_workers);
    a->jlast = w->jlast;
    w->cur = NULL;
    w->since_handoff = 0;
    w->last_handoff_ms = now;
    pthread_mutex_lock(&w->mu);
    a->next = w->mailbox;
    w->mailbox = a;
    pthread_mutex_unlock(&w->mu);
}

void dp_usage_tick(int worker)
{
    if (worker < 0 || worker >= g_nworkers)
        return;
    wstate_t *w = &g_workers[worker];
    /* acquire: pairs with the release of dp_usage_flush_request, so whatever
     * the requester published before it is visible to this worker from now */
    uint64_t req = atomic_load_explicit(&g_flush_req, memory_order_acquire);
    if (req != atomic_load_explicit(&w->flush_seen, memory_order_relaxed)) {
        if (w->cur != NULL && w->cur->n > 0)
            handoff(w, mono_ms());
        atomic_store_explicit(&w->flush_seen, req, memory_order_release);
        return;
    }
    if (w->cur == NULL || w->cur->n == 0)
        return;
    int64_t now = mono_ms();
    if (w->since_handoff >= HANDOFF_REQUESTS || now - w->last_handoff_ms >= HANDOFF_MS ||
        (g_journal != NULL && dp_journal_pressure(g_journal, worker)))
        handoff(w, now);
}

void dp_usage_flush_worker(int worker)
{
    if (worker < 0 || worker >= g_nworkers)
        return;
    wstate_t *w = &g_workers[worker];
    if (w->cur != NULL && w->cur->n > 0)
        handoff(w, mono_ms());
    /* the worker records nothing more: it never holds a flush back */
    atomic_store_explicit(&w->flush_seen, UINT64_MAX, memory_order_release);
}

uint64_t dp_usage_flush_request(void)
{
    return atomic_fetch_add_explicit(&g_flush_req, 1, memory_order_seq_cst) + 1;
}

int dp_usage_flush_passed(uint64_t ticket)
{
    for (int i = 0; i < g_nworkers; i++)
        if (atomic_load_explicit(&g_workers[i].flush_seen, memory_order_acquire) < ticket)
            return 0;
    return 1;
}

int64_t dp_usage_pending_reports(void)
{
    return atomic_load_explicit(&g_pending, memory_order_relaxed);
}

/* ---- reporter (sync thread) --------------------------------------------- */

typedef struct report {
    struct report *next;
    int64_t seq;
    int64_t sealed_ms;                  /* everything collected before this time is in it or an earlier one */
    agg_t *agg;                         /* until frozen */
    Sluice__Sync__V1__UsageReport *msg; /* once frozen: exactly what is sent */
    char *spool_path;                   /* file holding msg, NULL: none */
    uint64_t *cov;                      /* journal coverage per worker (this process's reports) */
} report_t;

static struct {
    char *node_id, *boot_id, *spool_dir;
    dp_usage_send_fn send;
    void *send_ctx;
    dp_usage_lease_fn lease_fill; /* adds lease requests and states at freeze */
    void *lease_ctx;
    int report_soon;              /* seal a report even without usage */
    int draining;
    agg_t *open; /* collected, not sealed yet */
    uint64_t *cov; /* journal records collected so far, per worker */
    report_t *head, *tail;
    size_t qlen;
    int64_t next_seq;
    int64_t last_seal_ms;
    int64_t next_attempt_ms;
    int backoff_ms;
    uint64_t rng;
} R;

static void set_pending(void)
{
    atomic_store_explicit(&g_pending, (long long)R.qlen, memory_order_relaxed);
}

static void report_free(report_t *r)
{
    agg_free(r->agg);
    if (r->msg != NULL)
        sluice__sync__v1__usage_report__free_unpacked(r->msg, NULL);
    free(r->spool_path);
    free(r->cov);
    free(r);
}

static void enqueue(report_t *r)
{
    r->next = NULL;
    if (R.tail != NULL)
        R.tail->next = r;
    else
        R.head = r;
    R.tail = r;
    R.qlen++;
    set_pending();
}

static char *path_join(const char *dir, const char *boot, int64_t seq, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s-%lld.pb%s", dir, boot, (long long)seq, suffix) < 0)
        return NULL;
    return p;
}

static int write_file_atomic(const char *path, const uint8_t *data, size_t len)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return SL_ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = SL_EIO;
    if (fd < 0)
        goto out;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

/* Packs r into its final message (and spool file). Returns 0 or SL_ENOMEM;
 * a spool write failure is logged and the report is sent anyway. */
/* Fills ev/ep (room for a->n) with a's entries, borrowing its strings.
 * Returns how many. */
static size_t agg_entries(const agg_t *a, Sluice__Sync__V1__UsageEntry *ev, Sluice__Sync__V1__UsageEntry **ep)
{
    size_t j = 0;
    for (size_t i = 0; a != NULL && i < a->cap; i++) {
        const uent_t *e = a->slots[i];
        if (e == NULL)
            continue;
        sluice__sync__v1__usage_entry__init(&ev[j]);
        ev[j].key_id = (char *)e->key_id;
        ev[j].tenant_id = (char *)e->tenant_id;
        ev[j].provider = (char *)e->provider;
        ev[j].model = (char *)e->model;
        ev[j].minute_unix = e->minute;
        ev[j].requests = e->requests;
        ev[j].errors = e->errors;
        ev[j].input_tokens = e->input;
        ev[j].cached_input_tokens = e->cached;
        ev[j].output_tokens = e->output;
        ev[j].cost_nano = e->cost;
        ep[j] = &ev[j];
        j++;
    }
    return j;
}

/* Circuit states for the report: every breaker that has opened since the
 * process started (so a closing is reported too). Sync thread. */
typedef struct circuits {
    Sluice__Sync__V1__CircuitState *v;
    Sluice__Sync__V1__CircuitState **p;
    size_t n, cap;
} circuits_t;

static void add_circuit(void *ud, const dp_breaker_t *b, int state)
{
    circuits_t *c = ud;
    if (atomic_load_explicit(&b->opened_total, memory_order_relaxed) == 0 || c->n == c->cap)
        return;
    Sluice__Sync__V1__CircuitState *s = &c->v[c->n];
    sluice__sync__v1__circuit_state__init(s);
    s->provider = (char *)b->provider;
    s->credential = (char *)b->credential;
    s->state = state == DP_BREAKER_OPEN ? "open" : state == DP_BREAKER_HALF_OPEN ? "half_open" : "closed";
    c->p[c->n++] = s;
}

static int freeze(report_t *r)
{
    if (r->msg != NULL)
        return 0;
    size_t n = r->agg != NULL ? r->agg->n : 0;
    Sluice__Sync__V1__UsageEntry *ev = calloc(n + 1, sizeof(*ev));
    Sluice__Sync__V1__UsageEntry **ep = calloc(n + 1, sizeof(*ep));
    uint8_t *buf = NULL;
    circuits_t circ = {.cap = 256};
    int rc = SL_ENOMEM;
    if (ev == NULL || ep == NULL)
        goto out;
    size_t j = agg_entries(r->agg, ev, ep);
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    m.node_id = R.node_id;
    m.boot_id = R.boot_id;
    m.seq = r->seq;
    m.entries = ep;
    m.n_entries = j;
    m.snapshot_version = dp_snapshot_current_version();
    m.sent_unix_ms = unix_ms();
    if (R.lease_fill != NULL)
        R.lease_fill(&m, r->sealed_ms, R.draining && r->next == NULL, R.lease_ctx);
    circ.v = calloc(circ.cap, sizeof(*circ.v));
    circ.p = calloc(circ.cap, sizeof(*circ.p));
    if (circ.v != NULL && circ.p != NULL) {
        dp_breaker_each(add_circuit, &circ);
        m.circuits = circ.p;
        m.n_circuits = circ.n;
    }
    size_t len = sluice__sync__v1__usage_report__get_packed_size(&m);
    if ((buf = malloc(len + 1)) == NULL)
        goto out;
    sluice__sync__v1__usage_report__pack(&m, buf);
    if ((r->msg = sluice__sync__v1__usage_report__unpack(NULL, len, buf)) == NULL)
        goto out;
    agg_free(r->agg);
    r->agg = NULL;
    rc = 0;
    /* journal: the coverage is noted before the spool file exists, so a
     * crash in between is seen by recovery as "never frozen" (dp_journal.c) */
    if (g_journal != NULL && r->cov != NULL)
        dp_journal_intent(g_journal, r->seq, r->cov);
    if (R.spool_dir != NULL) {
        char *path = path_join(R.spool_dir, R.boot_id, r->seq, "");
        if (path != NULL && write_file_atomic(path, buf, len) == 0) {
            r->spool_path = path;
        } else {
            sl_warn(MOD, "could not spool usage report %lld to \"%s\": %s", (long long)r->seq, R.spool_dir,
                    strerror(errno));
            free(path);
            if (g_journal != NULL && r->cov != NULL)
                dp_journal_unspooled(g_journal, r->seq);
        }
    }
    if (g_journal != NULL && r->cov != NULL)
        dp_journal_reclaim(g_journal, r->cov);
out:
    free(buf);
    free(ev);
    free(ep);
    free(circ.v);
    free(circ.p);
    return rc;
}

static void seal(int64_t now)
{
    if (R.open == NULL || R.open->n == 0) {
        /* lease work wants a report: an empty one, unless a report not yet
         * frozen (which picks up lease state when it is sent) is queued */
        if (!R.report_soon || (R.tail != NULL && R.tail->msg == NULL))
            return;
        if (R.open == NULL && (R.open = agg_new()) == NULL)
            return;
    }
    R.report_soon = 0;
    if (R.qlen >= MAX_REPORTS && R.tail != NULL && R.tail->msg == NULL && R.tail->agg != NULL) {
        agg_t *left = agg_merge(R.tail->agg, R.open);
        R.open = left; /* NULL, or (out of memory) all of it, kept for later */
        if (left == NULL && R.cov != NULL && R.tail->cov != NULL)
            memcpy(R.tail->cov, R.cov, (size_t)g_nworkers * sizeof(uint64_t));
        R.last_seal_ms = now;
        return;
    }
    report_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return; /* keep collecting into open; retried next time */
    if (R.cov != NULL) {
        /* everything collected so far is in this report or an earlier one */
        if ((r->cov = malloc((size_t)g_nworkers * sizeof(uint64_t))) == NULL) {
            free(r);
            return;
        }
        memcpy(r->cov, R.cov, (size_t)g_nworkers * sizeof(uint64_t));
    }
    r->seq = R.next_seq++;
    r->sealed_ms = now;
    r->agg = R.open;
    R.open = NULL;
    R.last_seal_ms = now;
    enqueue(r);
}

void dp_usage_collect(int force)
{
    for (int i = 0; i < g_nworkers; i++) {
        wstate_t *w = &g_workers[i];
        pthread_mutex_lock(&w->mu);
        agg_t *list = w->mailbox;
        w->mailbox = NULL;
        pthread_mutex_unlock(&w->mu);
        if (list == NULL)
            continue;
        /* all of the worker's hand-offs or none: the journal coverage
         * (the newest hand-off's jlast) claims every older one too */
        size_t total = 0;
        agg_t *last = list;
        for (agg_t *a = list; a != NULL; a = a->next) {
            total += a->n;
            last = a;
        }
        if ((R.open == NULL && (R.open = agg_new()) == NULL) || agg_reserve(R.open, total) != 0) {
            pthread_mutex_lock(&w->mu); /* out of memory: give it back for later */
            last->next = w->mailbox;
            w->mailbox = list;
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        while (list != NULL) {
            agg_t *next = list->next;
            list->next = NULL;
            int jw = list->jworker;
            uint64_t jl = list->jlast;
            agg_merge(R.open, list); /* cannot fail: room reserved */
            if (R.cov != NULL && jw >= 0 && jw < g_nworkers && jl > R.cov[jw])
                R.cov[jw] = jl;
            list = next;
        }
    }
    int64_t now = mono_ms();
    int pressure = 0;
    for (int i = 0; g_journal != NULL && i < g_nworkers; i++)
        pressure |= dp_journal_pressure(g_journal, i);
    if ((R.open != NULL && R.open->n > 0 && (force || pressure || now - R.last_seal_ms >= SEAL_MS)) || R.report_soon)
        seal(now);
    if (pressure) {
        /* a journal is filling up with records no frozen report covers:
         * freeze (spool) every queued report now so its space frees up */
        for (report_t *r = R.head; r != NULL; r = r->next)
            if (freeze(r) != 0)
                break;
    }
}

void dp_usage_report_soon(void)
{
    R.report_soon = 1;
}

void dp_usage_set_lease_fill(dp_usage_lease_fn fn, void *ctx)
{
    R.lease_fill = fn;
    R.lease_ctx = ctx;
}

void dp_usage_set_sender(dp_usage_send_fn fn, void *ctx)
{
    R.send = fn;
    R.send_ctx = ctx;
}

static int jitter(int ms)
{
    /* xorshift64; spreads retries of many nodes by +-20% */
    R.rng ^= R.rng << 13;
    R.rng ^= R.rng >> 7;
    R.rng ^= R.rng << 17;
    int span = ms / 5;
    return span > 0 ? ms - span + (int)(R.rng % (uint64_t)(2 * span + 1)) : ms;
}

int dp_usage_send_due(int max_sends)
{
    if (R.send == NULL || R.head == NULL)
        return 0;
    int64_t now = mono_ms();
    if (now < R.next_attempt_ms)
        return 0;
    int acked = 0;
    while (R.head != NULL && acked < max_sends) {
        report_t *r = R.head;
        if (freeze(r) != 0)
            break;
        int rc = R.send(r->msg, R.send_ctx);
        if (rc != 0) {
            R.backoff_ms = R.backoff_ms == 0 ? BACKOFF_MIN_MS
                                             : (R.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : R.backoff_ms * 2);
            R.next_attempt_ms = now + jitter(R.backoff_ms);
            if (R.backoff_ms == BACKOFF_MIN_MS)
                sl_warn(MOD, "usage report %lld not acknowledged (%s); retrying, %zu pending", (long long)r->seq,
                        sl_strerror(rc), R.qlen);
            break;
        }
        if (R.backoff_ms != 0)
            sl_info(MOD, "usage report %lld acknowledged after retries", (long long)r->seq);
        R.backoff_ms = 0;
        R.next_attempt_ms = 0;
        if (g_journal != NULL && r->cov != NULL)
            dp_journal_acked(g_journal, r->seq); /* before the spool file goes */
        if (r->spool_path != NULL && unlink(r->spool_path) != 0 && errno != ENOENT)
            sl_warn(MOD, "could not remove spooled report \"%s\": %s", r->spool_path, strerror(errno));
        R.head = r->next;
        if (R.head == NULL)
            R.tail = NULL;
        R.qlen--;
        set_pending();
        report_free(r);
        acked++;
    }
    return acked;
}

int64_t dp_usage_drain(int timeout_ms)
{
    R.draining = 1;
    dp_usage_collect(1);
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        int64_t now = mono_ms();
        if (R.head == NULL || now >= deadline || R.send == NULL)
            break;
        if (now < R.next_attempt_ms) {
            int64_t wait = (R.next_attempt_ms < deadline ? R.next_attempt_ms : deadline) - now;
            struct timespec ts = {wait / 1000, (wait % 1000) * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (dp_usage_send_due(1000) == 0 && R.next_attempt_ms <= now)
            break; /* could not even build the report (out of memory) */
    }
    int64_t lost = 0, spooled = 0;
    for (report_t *r = R.head; r != NULL; r = r->next) {
        if (R.spool_dir != NULL && freeze(r) == 0 && r->spool_path != NULL)
            spooled++;
        else
            lost++;
    }
    if (spooled > 0)
        sl_info(MOD, "%lld unacknowledged usage reports left in the spool directory", (long long)spooled);
    if (lost > 0)
        sl_error(MOD, "%lld usage reports were not acknowledged and are lost", (long long)lost);
    if (g_journal != NULL && lost == 0 && (R.open == NULL || R.open->n == 0)) {
        /* workers have stopped and every journaled request is in a report
         * that is acknowledged or spooled: the journal has done its job */
        int idle = 1;
        for (int i = 0; i < g_nworkers; i++) {
            pthread_mutex_lock(&g_workers[i].mu);
            idle &= g_workers[i].mailbox == NULL && (g_workers[i].cur == NULL || g_workers[i].cur->n == 0);
            pthread_mutex_unlock(&g_workers[i].mu);
        }
        if (idle) {
            dp_journal_close(g_journal, 1);
            g_journal = NULL;
        }
    }
    return lost;
}

/* ---- journal recovery --------------------------------------------------- */

#define REPLAY_ENTRIES 2000 /* entries per recovered report (message size) */

static int write_replayed(const dp_journal_lost_t *lost, int64_t seq, const agg_t *a)
{
    Sluice__Sync__V1__UsageEntry *ev = calloc(a->n + 1, sizeof(*ev));
    Sluice__Sync__V1__UsageEntry **ep = calloc(a->n + 1, sizeof(*ep));
    uint8_t *buf = NULL;
    char *path = NULL;
    int rc = SL_ENOMEM;
    if (ev == NULL || ep == NULL)
        goto out;
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    m.node_id = (char *)lost->node_id;
    m.boot_id = (char *)lost->boot_id;
    m.seq = seq;
    m.n_entries = agg_entries(a, ev, ep);
    m.entries = ep;
    m.sent_unix_ms = unix_ms();
    size_t len = sluice__sync__v1__usage_report__get_packed_size(&m);
    if ((buf = malloc(len + 1)) == NULL || (path = path_join(R.spool_dir, lost->boot_id, seq, "")) == NULL)
        goto out;
    sluice__sync__v1__usage_report__pack(&m, buf);
    rc = write_file_atomic(path, buf, len);
    if (rc != 0)
        sl_error(MOD, "could not write recovered usage report \"%s\": %s", path, strerror(errno));
out:
    free(path);
    free(buf);
    free(ev);
    free(ep);
    return rc;
}

/* Turns the journaled requests of a dead process that no frozen report
 * covers into spooled reports of that process (dp_journal.h): aggregated in
 * journal order, a new report every REPLAY_ENTRIES distinct entries, so the
 * same input always gives the same reports. */
static int replay_lost(const dp_journal_lost_t *lost, void *ctx)
{
    agg_t *a = NULL;
    int64_t seq = lost->next_seq;
    int rc = 0;
    for (size_t i = 0; i < lost->n && rc == 0; i++) {
        const dp_usage_rec_t *r = &lost->recs[i];
        int64_t minute = r->unix_sec - r->unix_sec % 60;
        uint64_t h = entry_hash(r->key_id, r->provider, r->model, minute);
        if (a == NULL && (a = agg_new()) == NULL)
            return SL_ENOMEM;
        if (agg_grow(a) != 0) {
            rc = SL_ENOMEM;
            break;
        }
        uent_t **slot = agg_slot(a, h, r->key_id, r->provider, r->model, minute);
        if (*slot == NULL && a->n >= REPLAY_ENTRIES) {
            if ((rc = write_replayed(lost, seq++, a)) != 0)
                break;
            agg_free(a);
            if ((a = agg_new()) == NULL || agg_grow(a) != 0) {
                rc = SL_ENOMEM;
                break;
            }
            slot = agg_slot(a, h, r->key_id, r->provider, r->model, minute);
        }
        if (*slot == NULL) {
            if ((*slot = uent_new(h, r->key_id, r->tenant_id, r->provider, r->model, minute)) == NULL) {
                rc = SL_ENOMEM;
                break;
            }
            a->n++;
        }
        uent_t *e = *slot;
        e->requests++;
        e->errors += r->error ? 1 : 0;
        e->input += r->input_tokens;
        e->cached += r->cached_input_tokens;
        e->output += r->output_tokens;
        e->cost += r->cost_nano;
    }
    if (rc == 0 && a != NULL && a->n > 0)
        rc = write_replayed(lost, seq++, a);
    agg_free(a);
    return rc;
}

/* Spooled files from earlier processes: "<boot>-<seq>.pb". */
typedef struct loaded {
    report_t *r;
    const char *boot;
} loaded_t;

static int cmp_loaded(const void *a, const void *b)
{
    const loaded_t *x = a, *y = b;
    int c = strcmp(x->boot, y->boot);
    if (c != 0)
        return c;
    return x->r->seq < y->r->seq ? -1 : x->r->seq > y->r->seq;
}

static report_t *load_spooled(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    report_t *r = NULL;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > SPOOL_MAX_FILE)
        goto out;
    if ((buf = malloc((size_t)st.st_size)) == NULL)
        goto out;
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        off += (size_t)n;
    }
    Sluice__Sync__V1__UsageReport *m = sluice__sync__v1__usage_report__unpack(NULL, off, buf);
    if (m == NULL || m->seq <= 0 || m->boot_id[0] == '\0')
        goto bad;
    if ((r = calloc(1, sizeof(*r))) == NULL || (r->spool_path = strdup(path)) == NULL) {
        free(r);
        r = NULL;
        sluice__sync__v1__usage_report__free_unpacked(m, NULL);
        goto out;
    }
    r->seq = m->seq;
    r->msg = m;
    goto out;
bad:
    if (m != NULL)
        sluice__sync__v1__usage_report__free_unpacked(m, NULL);
    sl_warn(MOD, "ignoring unreadable spooled usage report \"%s\"", path);
out:
    free(buf);
    close(fd);
    return r;
}

static void load_spool_dir(void)
{
    DIR *d = opendir(R.spool_dir);
    if (d == NULL) {
        if (errno == ENOENT && mkdir(R.spool_dir, 0700) == 0)
            return;
        sl_warn(MOD, "cannot open spool directory \"%s\": %s", R.spool_dir, strerror(errno));
        return;
    }
    loaded_t *items = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        char *path = NULL;
        if (asprintf(&path, "%s/%s", R.spool_dir, name) < 0)
            break;
        if (len > 7 && strcmp(name + len - 7, ".pb.tmp") == 0) {
            unlink(path); /* a write interrupted by a crash: never sent */
        } else if (len > 3 && strcmp(name + len - 3, ".pb") == 0) {
            report_t *r = load_spooled(path);
            if (r != NULL) {
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    loaded_t *ni = realloc(items, ncap * sizeof(*ni));
                    if (ni == NULL) {
                        report_free(r);
                        free(path);
                        break;
                    }
                    items = ni;
                    cap = ncap;
                }
                items[n].r = r;
                items[n].boot = r->msg->boot_id;
                n++;
            }
        }
        free(path);
    }
    closedir(d);
    if (n > 0) {
        qsort(items, n, sizeof(*items), cmp_loaded);
        for (size_t i = 0; i < n; i++)
            enqueue(items[i].r);
        sl_info(MOD, "loaded %zu spooled usage reports from \"%s\"", n, R.spool_dir);
    }
    free(items);
}

int dp_usage_reporter_start(const char *node_id, const char *boot_id, const char *spool_dir)
{
    R.node_id = strdup(node_id);
    R.boot_id = strdup(boot_id);
    R.spool_dir = spool_dir != NULL && spool_dir[0] != '\0' ? strdup(spool_dir) : NULL;
    if (R.node_id == NULL || R.boot_id == NULL || (spool_dir != NULL && spool_dir[0] != '\0' && R.spool_dir == NULL))
        return SL_ENOMEM;
    R.next_seq = 1;
    R.last_seal_ms = mono_ms();
    if (sl_random(&R.rng, sizeof(R.rng)) != 0 || R.rng == 0)
        R.rng = 0x9e3779b97f4a7c15ULL;
    if (R.spool_dir != NULL) {
        struct stat st;
        if (stat(R.spool_dir, &st) != 0 && errno == ENOENT)
            mkdir(R.spool_dir, 0700);
        /* journals of processes that died: their unreported usage becomes
         * spooled reports of their own boot, loaded with the others below */
        dp_journal_recover(R.spool_dir, R.boot_id, replay_lost, NULL);
        load_spool_dir();
        if (g_nworkers > 0) {
            int rc = dp_journal_open(R.spool_dir, R.node_id, R.boot_id, g_nworkers, &g_journal);
            if (rc == 0)
                rc = (R.cov = calloc((size_t)g_nworkers, sizeof(uint64_t))) != NULL ? 0 : SL_ENOMEM;
            if (rc != 0) {
                dp_journal_close(g_journal, 1);
                g_journal = NULL;
                sl_error(MOD, "could not create the usage journal in \"%s\": %s; a crash loses the usage recorded "
                              "since the last report",
                         R.spool_dir, sl_strerror(rc));
            }
        }
    }
    return 0;
}

void dp_usage_shutdown(void)
{
    /* kept on disk: what no report covers is recovered by the next start */
    dp_journal_close(g_journal, 0);
    g_journal = NULL;
    free(R.cov);
    while (R.head != NULL) {
        report_t *r = R.head;
        R.head = r->next;
        report_free(r);
    }
    agg_free(R.open);
    free(R.node_id);
    free(R.boot_id);
    free(R.spool_dir);
    memset(&R, 0, sizeof(R));
    for (int i = 0; i < g_nworkers; i++) {
        wstate_t *w = &g_workers[i];
        agg_free(w->cur);
        while (w->mailbox != NULL) {
            agg_t *a = w->mailbox;
            w->mailbox = a->next;
            agg_free(a);
        }
        pthread_mutex_destroy(&w->mu);
    }
    free(g_workers);
    g_workers = NULL;
    g_nworkers = 0;
    atomic_store(&g_pending, 0);
}
