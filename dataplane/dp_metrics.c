/* dp_metrics.c - per-worker counters summed at scrape (see dp_metrics.h). */
#include "dp_metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dp_usage.h"
#include "sl_err.h"

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

int dp_metrics_init(int n)
{
    workers = aligned_alloc(64, sizeof(*workers) * (size_t)n);
    if (workers == NULL)
        return SL_ENOMEM;
    memset(workers, 0, sizeof(*workers) * (size_t)n);
    nworkers = n;
    return 0;
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

void dp_metrics_render(sl_buf_t *out)
{
    sl_buf_puts(out, "# HELP sluice_requests_total API requests answered, by HTTP status.\n"
                     "# TYPE sluice_requests_total counter\n");
    int any = 0;
    for (int code = 100; code < 600; code++) {
        uint64_t v = 0;
        for (int w = 0; w < nworkers; w++)
            v += ld(&workers[w].status[code]);
        if (v == 0)
            continue;
        any = 1;
        sl_buf_printf(out, "sluice_requests_total{code=\"%d\"} %llu\n", code, (unsigned long long)v);
    }
    if (!any)
        sl_buf_puts(out, "sluice_requests_total{code=\"200\"} 0\n");

    render_hist(out, "sluice_request_duration_seconds", "Time from request to the last response byte.",
                offsetof(dp_metrics_worker_t, request), request_bounds);
    render_hist(out, "sluice_gateway_overhead_seconds", "Time spent in the gateway, excluding the upstream wait.",
                offsetof(dp_metrics_worker_t, overhead), overhead_bounds);
    render_hist(out, "sluice_upstream_duration_seconds", "Time from upstream connect to its last byte.",
                offsetof(dp_metrics_worker_t, upstream), request_bounds);

    sl_buf_printf(out,
                  "# HELP sluice_tokens_total Tokens accounted, by direction.\n# TYPE sluice_tokens_total counter\n"
                  "sluice_tokens_total{direction=\"input\"} %llu\n"
                  "sluice_tokens_total{direction=\"cached_input\"} %llu\n"
                  "sluice_tokens_total{direction=\"output\"} %llu\n",
                  (unsigned long long)SUM_FIELD(tokens_input), (unsigned long long)SUM_FIELD(tokens_cached_input),
                  (unsigned long long)SUM_FIELD(tokens_output));
    counter(out, "sluice_cost_nano_usd_total", "Cost of served requests in nano-USD.", SUM_FIELD(cost_nano));
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
}
