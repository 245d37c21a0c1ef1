/*
 * dp_server.h - the data plane's HTTP server: N worker threads, each with
 * its own h2o context, event loop and SO_REUSEPORT listener, plus the
 * operational endpoints on the admin port.
 *
 * A worker shares nothing mutable with the others: its metrics, PRNG,
 * upstream connection pools and timers are its own. It reaches shared
 * configuration only through dp_snapshot (atomics) and hands usage off
 * through dp_usage.
 */
#ifndef DP_SERVER_H
#define DP_SERVER_H

#include <pthread.h>
#include <stdint.h>

#include <h2o.h>

#include "dp_metrics.h"
#include "sl_err.h"

typedef struct dp_server_config {
    const char *listen;            /* host:port of the API */
    const char *admin_listen;      /* host:port of /healthz, /readyz, /metrics */
    int threads;
    int drain_timeout_sec;
    size_t max_request_bytes;      /* larger bodies get 400 request_too_large */
    int request_log;               /* one JSON line per request */
    const char *node_id;
} dp_server_config_t;

#define DP_MAX_TIMEOUT_LISTS 16

typedef struct dp_upstream_pool dp_upstream_pool_t;

typedef struct dp_worker {
    int id;
    const dp_server_config_t *cfg;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    pthread_t thread;
    dp_metrics_worker_t *m;
    uint64_t rng;                  /* xorshift64* state */
    uint64_t seq;                  /* requests started */
    int64_t inflight;
    h2o_linklist_t calls;          /* in-flight proxied calls */
    dp_upstream_pool_t **pools;    /* upstream keep-alive pools, by (provider, host, port, tls) */
    size_t npools, cappools;
    struct {
        uint64_t ms;
        h2o_timeout_t t;
    } timeouts[DP_MAX_TIMEOUT_LISTS];
    size_t ntimeouts;
    int draining;
} dp_worker_t;

/* The worker whose event loop runs ctx. */
static inline dp_worker_t *dp_worker_of(h2o_context_t *ctx)
{
    return H2O_STRUCT_FROM_MEMBER(dp_worker_t, ctx, ctx);
}

/* Worker thread: a uniformly random 64-bit number (not for secrets). */
static inline uint64_t dp_worker_rand(dp_worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Worker thread: the timeout list of the given duration (created on first
 * use; at most DP_MAX_TIMEOUT_LISTS distinct durations, after which the
 * closest longer one is returned). */
h2o_timeout_t *dp_worker_timeout(dp_worker_t *w, uint64_t ms);

/* Starts the listeners and workers. Returns 0, or fills err. */
int dp_server_start(const dp_server_config_t *cfg, sl_err_t *err);
int dp_server_api_port(void);
int dp_server_admin_port(void);
/* Main thread: stops accepting, waits for in-flight requests up to the
 * drain timeout (then abandons and accounts the rest), and returns once
 * every worker has flushed its usage and parked. Workers stay parked until
 * the process exits. */
void dp_server_drain_and_stop(void);

#endif
