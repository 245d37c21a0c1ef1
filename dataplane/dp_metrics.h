/*
 * dp_metrics.h - data plane metrics, Prometheus text format.
 *
 * Each worker owns one dp_metrics_worker_t (cache-line aligned) and is its
 * only writer: updates are relaxed load + store (no locked instructions, no
 * sharing between workers). The scraper thread sums the workers with
 * relaxed loads, so a scrape may see a request's counters half-updated but
 * never torn values.
 */
#ifndef DP_METRICS_H
#define DP_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "sl_buf.h"

#define DP_HIST_BUCKETS 16

/* A counter with label values, in a worker's table of them. Label values
 * are copied (cut at DP_LABEL_VALUES_MAX bytes in all). */
#define DP_LABEL_VALUES_MAX 192
typedef struct dp_lcounter {
    _Atomic int used;                   /* published by the owner with release */
    uint64_t hash;                      /* owner only */
    char values[DP_LABEL_VALUES_MAX];   /* NUL-separated label values */
    uint16_t values_len;
    _Atomic uint64_t value;
} dp_lcounter_t;

typedef struct dp_ltable {
    dp_lcounter_t *slots;
    uint32_t cap;                       /* power of two */
    uint32_t count;                     /* owner only */
    uint32_t nlabels;
} dp_ltable_t;

typedef struct dp_hist {
    _Atomic uint64_t bucket[DP_HIST_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t sum_ns;
} dp_hist_t;

typedef struct dp_metrics_worker {
    dp_ltable_t requests;               /* {provider, model, code, outcome} */
    dp_ltable_t failovers;              /* {from, to, reason} */
    dp_hist_t request;                  /* whole request, client view */
    dp_hist_t overhead;                 /* time in the gateway (request minus upstream wait) */
    dp_hist_t upstream;                 /* upstream, connect to last byte */
    _Atomic uint64_t unpriced;          /* served requests whose model has no price */
    _Atomic uint64_t upstream_errors;   /* connect failures, timeouts, broken streams */
    _Atomic uint64_t keepalive_reused;  /* upstream requests on a pooled connection */
    _Atomic int64_t inflight;
    _Atomic int64_t snapshot_version;   /* last seen by this worker */
    _Atomic int64_t snapshot_generated_ms;
} __attribute__((aligned(64))) dp_metrics_worker_t;

/* Once at start. */
int dp_metrics_init(int nworkers);
dp_metrics_worker_t *dp_metrics_worker(int worker);

/* Owner-only updates (relaxed, uncontended). */
static inline void dp_metric_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}
static inline void dp_metric_gauge_add(_Atomic int64_t *g, int64_t n)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n, memory_order_relaxed);
}
void dp_metrics_observe(dp_hist_t *h, int which, uint64_t ns);

/* Owner-only: sluice_requests_total{provider, model, code, outcome}. An
 * unrouted request has provider and model "". Past the table's capacity
 * new label sets are counted under model "_other" (bounded cardinality:
 * models can come from clients). */
void dp_metrics_count_request(dp_metrics_worker_t *m, const char *provider, const char *model, size_t model_len,
                              int code, const char *outcome);
/* Owner-only: sluice_failovers_total{from, to, reason}. */
void dp_metrics_count_failover(dp_metrics_worker_t *m, const char *from, const char *to, const char *reason);

enum { DP_HIST_REQUEST, DP_HIST_OVERHEAD, DP_HIST_UPSTREAM };

/* Any thread: the largest snapshot version any worker has seen. */
int64_t dp_metrics_snapshot_version(void);

/* Scraper thread: appends the exposition text. */
void dp_metrics_render(sl_buf_t *out);

#endif
