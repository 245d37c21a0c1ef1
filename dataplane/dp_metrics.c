/* dp_metrics.c - per-worker counters summed at scrape (see dp_metrics.h). */
#include "dp_metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dp_quota.h"
#include "dp_breaker.h"
#include "dp_metrics_labels.h"
#include "dp_usage.h"
#include "sl_err.h"

#define REQUEST_SERIES_MAX 1024  /* label sets per worker */
#define FAILOVER_SERIES_MAX 256

static dp_metrics_worker_t *workers;
static int nworkers;

/* Bucket upper bounds in nanoseconds. */
static const uint64_t request_bounds[DP_HIST_BUCKETS] = {
    1000000ull,     5000000ull,     10000000ull,    25000000ull,    50000000ull,     100000000ull,
    250000000ull,   500000000ull,   1000000000ull,  2500000000ull,  5000000000ull,   10000000000ull,
    30000000000ull, 60000000000ull, 120000000000ull, 300000000000ull,
};
static const uint64_t overhead_bounds[DP_HIST_BUCKETS] = {
    10000ull,   25000ull,   50000ull,    100000ull,   250000ull,   500000ull,    1000000ull,   2500000ull,
    5000000ull, 10000000ull, 25000000ull, 50000000ull, 100000000ull, 250000000ull, 500000000ull, 1000000000ull,
};

static int ltable_init(dp_ltable_t *t, uint32_t cap, uint32_t nlabels)
{
    t->slots = calloc(cap, sizeof(*t->slots));
    t->cap = cap;
    t->count = 0;
    t->nlabels = nlabels;
    return t->slots != NULL ? 0 : SL_ENOMEM;
}

int dp_metrics_init(int n)
{
    workers = aligned_alloc(64, sizeof(*workers) * (size_t)n);
    if (workers == NULL)
        return SL_ENOMEM;
    memset(workers, 0, sizeof(*workers) * (size_t)n);
    nworkers = n;
    for (int i = 0; i < n; i++)
        if (ltable_init(&workers[i].requests, REQUEST_SERIES_MAX * 2, 4) != 0 ||
            ltable_init(&workers[i].failovers, FAILOVER_SERIES_MAX * 2, 3) != 0)
            return SL_ENOMEM;
    return 0;
}

/* Packs label values NUL-separated; returns the length (values cut so the
 * whole fits). */
static size_t pack_values(char *out, const char *const *v, const size_t *len, uint32_t n)
{
    size_t pos = 0, per = DP_LABEL_VALUES_MAX / n - 1;
    for (uint32_t i = 0; i < n; i++) {
        size_t l = len[i] < per ? len[i] : per;
        memcpy(out + pos, v[i], l);
        pos += l;
        out[pos++] = '\0';
    }
    return pos;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* Owner thread: the counter of these label values, created when new; NULL
 * when the table is full. */
static dp_lcounter_t *ltable_find(dp_ltable_t *t, const char *packed, size_t len, uint32_t limit)
{
    uint64_t h = hash_bytes(packed, len);
    for (uint32_t i = 0; i < t->cap; i++) {
        dp_lcounter_t *c = &t->slots[(h + i) & (t->cap - 1)];
        if (!atomic_load_explicit(&c->used, memory_order_relaxed)) {
            if (t->count >= limit)
                return NULL;
            c->hash = h;
            memcpy(c->values, packed, len);
            c->values_len = (uint16_t)len;
            t->count++;
            atomic_store_explicit(&c->used, 1, memory_order_release);
            return c;
        }
        if (c->hash == h && c->values_len == len && memcmp(c->values, packed, len) == 0)
            return c;
    }
    return NULL;
}

void dp_metrics_count_request(dp_metrics_worker_t *m, const char *provider, const char *model, size_t model_len,
                              int code, const char *outcome)
{
    char codes[4], packed[DP_LABEL_VALUES_MAX];
    if (code < 100 || code > 599)
        code = 599;
    codes[0] = (char)('0' + code / 100);
    codes[1] = (char)('0' + code / 10 % 10);
    codes[2] = (char)('0' + code % 10);
    int cl = 3;
    const char *v[4] = {provider != NULL ? provider : "", model != NULL ? model : "", codes, outcome};
    size_t l[4] = {strlen(v[0]), model != NULL ? model_len : 0, (size_t)cl, strlen(outcome)};
    size_t n = pack_values(packed, v, l, 4);
    dp_lcounter_t *c = ltable_find(&m->requests, packed, n, REQUEST_SERIES_MAX - 64);
    if (c == NULL) {
        /* bounded cardinality: the model label folds into "_other" */
        v[1] = "_other";
        l[1] = 6;
        n = pack_values(packed, v, l, 4);
        if ((c = ltable_find(&m->requests, packed, n, REQUEST_SERIES_MAX)) == NULL)
            return;
    }
    dp_metric_add(&c->value, 1);
}

void dp_metrics_count_failover(dp_metrics_worker_t *m, const char *from, const char *to, const char *reason)
{
    char packed[DP_LABEL_VALUES_MAX];
    const char *v[3] = {from, to, reason};
    size_t l[3] = {strlen(from), strlen(to), strlen(reason)};
    size_t n = pack_values(packed, v, l, 3);
    dp_lcounter_t *c = ltable_find(&m->failovers, packed, n, FAILOVER_SERIES_MAX);
    if (c != NULL)
        dp_metric_add(&c->value, 1);
}

dp_metrics_worker_t *dp_metrics_worker(int worker)
{
    return &workers[worker];
}

void dp_metrics_observe(dp_hist_t *h, int which, uint64_t ns)
{
    const uint64_t *b = which == DP_HIST_OVERHEAD ? overhead_bounds : request_bounds;
    int i = 0;
    while (i < DP_HIST_BUCKETS && ns > b[i])
        i++;
    dp_metric_add(&h->bucket[i], 1);
    dp_metric_add(&h->sum_ns, ns);
}

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

int64_t dp_metrics_snapshot_version(void)
{
    int64_t v = 0;
    for (int w = 0; w < nworkers; w++) {
        int64_t x = atomic_load_explicit(&workers[w].snapshot_version, memory_order_relaxed);
        if (x > v)
            v = x;
    }
    return v;
}

static void seconds(sl_buf_t *out, uint64_t ns)
{
    sl_buf_printf(out, "%llu.%09llu", (unsigned long long)(ns / 1000000000ull),
                  (unsigned long long)(ns % 1000000000ull));
}

static void render_hist(sl_buf_t *out, const char *name, const char *help, size_t off, const uint64_t *bounds)
{
    uint64_t buckets[DP_HIST_BUCKETS + 1] = {0}, sum = 0;
    for (int w = 0; w < nworkers; w++) {
        dp_hist_t *h = (dp_hist_t *)((char *)&workers[w] + off);
        for (int i = 0; i <= DP_HIST_BUCKETS; i++)
            buckets[i] += ld(&h->bucket[i]);
        sum += ld(&h->sum_ns);
    }
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < DP_HIST_BUCKETS; i++) {
        cum += buckets[i];
        sl_buf_printf(out, "%s_bucket{le=\"", name);
        /* bounds are whole microseconds: print seconds without trailing zeros */
        char num[32];
        uint64_t us = bounds[i] / 1000;
        int n = snprintf(num, sizeof(num), "%llu.%06llu", (unsigned long long)(us / 1000000),
                         (unsigned long long)(us % 1000000));
        while (n > 0 && num[n - 1] == '0')
            num[--n] = '\0';
        if (n > 0 && num[n - 1] == '.')
            num[--n] = '\0';
        sl_buf_printf(out, "%s\"} %llu\n", num, (unsigned long long)cum);
    }
    cum += buckets[DP_HIST_BUCKETS];
    sl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name, (unsigned long long)cum, name);
    seconds(out, sum);
    sl_buf_printf(out, "\n%s_count %llu\n", name, (unsigned long long)cum);
}

#define SUM_FIELD(field)                                                                                               \
    ({                                                                                                                 \
        uint64_t s_ = 0;                                                                                               \
        for (int w_ = 0; w_ < nworkers; w_++)                                                                          \
            s_ += ld(&workers[w_].field);                                                                              \
        s_;                                                                                                            \
    })

static void counter(sl_buf_t *out, const char *name, const char *help, uint64_t v)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

/* A label value escaped for the exposition format. */
static void put_label(sl_buf_t *out, const char *name, const char *v)
{
    sl_buf_printf(out, "%s=\"", name);
    for (; *v != '\0'; v++) {
        if (*v == '"' || *v == '\\')
            sl_buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            sl_buf_puts(out, "\\n");
        else
            sl_buf_printf(out, "%c", *v);
    }
    sl_buf_puts(out, "\"");
}

typedef struct agg {
    const char *values;
    size_t len;
    uint64_t value;
} agg_t;

static int agg_cmp(const void *a, const void *b)
{
    const agg_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->values, y->values, n);
    return c != 0 ? c : (x->len < y->len ? -1 : x->len > y->len);
}

/* Sums a labeled counter over workers (same label values, any worker) and
 * renders it in label order. */
static void render_labeled(sl_buf_t *out, const char *name, const char *help, size_t off,
                           const char *const *labels, uint32_t nlabels, const char *empty)
{
    size_t cap = 0;
    for (int w = 0; w < nworkers; w++)
        cap += ((dp_ltable_t *)((char *)&workers[w] + off))->cap;
    agg_t *a = calloc(cap + 1, sizeof(*a));
    size_t n = 0;
    if (a == NULL)
        return;
    for (int w = 0; w < nworkers; w++) {
        dp_ltable_t *t = (dp_ltable_t *)((char *)&workers[w] + off);
        for (uint32_t i = 0; i < t->cap; i++) {
            dp_lcounter_t *c = &t->slots[i];
            if (!atomic_load_explicit(&c->used, memory_order_acquire))
                continue;
            a[n++] = (agg_t){c->values, c->values_len, ld(&c->value)};
        }
    }
    qsort(a, n, sizeof(*a), agg_cmp);
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    if (n == 0 && empty != NULL)
        sl_buf_printf(out, "%s%s 0\n", name, empty);
    for (size_t i = 0; i < n;) {
        uint64_t sum = 0;
        size_t j = i;
        for (; j < n && agg_cmp(&a[i], &a[j]) == 0; j++)
            sum += a[j].value;
        sl_buf_printf(out, "%s{", name);
        const char *v = a[i].values;
        for (uint32_t k = 0; k < nlabels; k++) {
            if (k > 0)
                sl_buf_puts(out, ",");
            put_label(out, labels[k], v);
            v += strlen(v) + 1;
        }
        sl_buf_printf(out, "} %llu\n", (unsigned long long)sum);
        i = j;
    }
    free(a);
}

static void render_breaker(void *ud, const dp_breaker_t *b, int state)
{
    sl_buf_t *out = ud;
    sl_buf_puts(out, "sluice_circuit_open{");
    put_label(out, "provider", b->provider);
    sl_buf_puts(out, ",");
    put_label(out, "credential", b->credential);
    sl_buf_printf(out, "} %d\n", state == DP_BREAKER_CLOSED ? 0 : 1);
}

void dp_metrics_render(sl_buf_t *out)
{
    static const char *const req_labels[] = {"provider", "model", "code", "outcome"};
    static const char *const fo_labels[] = {"from", "to", "reason"};
    render_labeled(out, "sluice_requests_total",
                   "API requests answered, by serving provider and model, HTTP status and outcome.",
                   offsetof(dp_metrics_worker_t, requests), req_labels, 4, NULL);
    render_labeled(out, "sluice_failovers_total",
                   "Moves from a failed upstream attempt to the next target or credential, by reason.",
                   offsetof(dp_metrics_worker_t, failovers), fo_labels, 3, NULL);
    sl_buf_puts(out, "# HELP sluice_circuit_open Whether a credential's circuit breaker is open (1) or closed (0).\n"
                     "# TYPE sluice_circuit_open gauge\n");
    dp_breaker_each(render_breaker, out);

    render_hist(out, "sluice_request_duration_seconds", "Time from request to the last response byte.",
                offsetof(dp_metrics_worker_t, request), request_bounds);
    render_hist(out, "sluice_gateway_overhead_seconds", "Time spent in the gateway, excluding the upstream wait.",
                offsetof(dp_metrics_worker_t, overhead), overhead_bounds);
    render_hist(out, "sluice_upstream_duration_seconds", "Time from upstream connect to its last byte.",
                offsetof(dp_metrics_worker_t, upstream), request_bounds);

    dp_mlabels_render(out); /* sluice_tokens_total, sluice_cost_usd_total, sluice_time_to_first_token_seconds */
    counter(out, "sluice_unpriced_requests_total", "Served requests whose model has no catalog price.",
            SUM_FIELD(unpriced));
    counter(out, "sluice_upstream_errors_total", "Upstream connect failures, timeouts and broken streams.",
            SUM_FIELD(upstream_errors));
    counter(out, "sluice_upstream_keepalive_reused_total", "Upstream requests sent on a pooled connection.",
            SUM_FIELD(keepalive_reused));

    int64_t inflight = 0, version = 0, gen_ms = 0;
    for (int w = 0; w < nworkers; w++) {
        inflight += atomic_load_explicit(&workers[w].inflight, memory_order_relaxed);
        int64_t v = atomic_load_explicit(&workers[w].snapshot_version, memory_order_relaxed);
        if (v > version) {
            version = v;
            gen_ms = atomic_load_explicit(&workers[w].snapshot_generated_ms, memory_order_relaxed);
        }
    }
    sl_buf_printf(out,
                  "# HELP sluice_inflight_requests API requests being served.\n# TYPE sluice_inflight_requests gauge\n"
                  "sluice_inflight_requests %lld\n"
                  "# HELP sluice_snapshot_version Configuration version being served.\n"
                  "# TYPE sluice_snapshot_version gauge\nsluice_snapshot_version %lld\n",
                  (long long)inflight, (long long)version);
    if (gen_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t age_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - gen_ms;
        if (age_ms < 0)
            age_ms = 0;
        sl_buf_printf(out,
                      "# HELP sluice_snapshot_age_seconds Time since the served snapshot was generated.\n"
                      "# TYPE sluice_snapshot_age_seconds gauge\nsluice_snapshot_age_seconds %lld.%03lld\n",
                      (long long)(age_ms / 1000), (long long)(age_ms % 1000));
    }
    sl_buf_printf(out,
                  "# HELP sluice_usage_reports_pending Usage reports not yet acknowledged by the control plane.\n"
                  "# TYPE sluice_usage_reports_pending gauge\nsluice_usage_reports_pending %lld\n",
                  (long long)dp_usage_pending_reports());
    dp_quota_metrics_render(out);
}
