/*
 * dp_server.c - worker threads, listeners, admin endpoints and draining
 * (see dp_server.h).
 *
 * Each worker runs its own event loop with a bounded wait so that, once per
 * iteration, it can pass a snapshot quiescent point, hand its usage table
 * off when due, publish the snapshot version it sees (for /readyz and
 * /metrics) and notice a drain request.
 */
#include "dp_server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "dp_proxy.h"
#include "dp_snapshot.h"
#include "dp_usage.h"
#include "sl_crypto.h"
#include "sl_httpd.h"
#include "sl_log.h"
#include "sl_net.h"

#define MOD "server"
#define LOOP_WAIT_MS 50
#define UPSTREAM_IO_BACKSTOP_MS 3600000 /* per-provider timers do the real work */

static h2o_globalconf_t config;
static dp_worker_t *workers;
static int nworkers;
static int listen_fds_port;
static sl_httpd_t *admin;
static _Atomic int draining;
static _Atomic int64_t drain_deadline_ms;
/* workers that finished draining park here until the process exits: h2o
 * 2.2.5 cannot tear down a context with live connections, and a parked
 * thread keeps its thread-local buffer caches reachable */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int workers_done;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

h2o_timeout_t *dp_worker_timeout(dp_worker_t *w, uint64_t ms)
{
    size_t best = 0;
    for (size_t i = 0; i < w->ntimeouts; i++) {
        if (w->timeouts[i].ms == ms)
            return &w->timeouts[i].t;
        uint64_t d = w->timeouts[i].ms > ms ? w->timeouts[i].ms - ms : ms - w->timeouts[i].ms;
        uint64_t bd = w->timeouts[best].ms > ms ? w->timeouts[best].ms - ms : ms - w->timeouts[best].ms;
        if (d < bd)
            best = i;
    }
    if (w->ntimeouts == DP_MAX_TIMEOUT_LISTS)
        return &w->timeouts[best].t;
    size_t n = w->ntimeouts++;
    w->timeouts[n].ms = ms;
    h2o_timeout_init(w->ctx.loop, &w->timeouts[n].t, ms);
    return &w->timeouts[n].t;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    dp_worker_t *w = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    h2o_accept(&w->accept_ctx, sock);
}

static void publish_snapshot_seen(dp_worker_t *w)
{
    dp_snapshot_t *s = dp_snapshot_acquire();
    if (s == NULL)
        return;
    int64_t v = dp_snapshot_version(s);
    if (v != atomic_load_explicit(&w->m->snapshot_version, memory_order_relaxed)) {
        atomic_store_explicit(&w->m->snapshot_generated_ms, dp_snapshot_generated_ms(s), memory_order_relaxed);
        atomic_store_explicit(&w->m->snapshot_version, v, memory_order_relaxed);
    }
    dp_snapshot_release(s);
}

/* Socket buffers freed beyond this many are returned to malloc; h2o keeps
 * 16, fewer than one per connection at the concurrency a gateway sees. */
#define SOCKET_BUFFERS_KEPT 1024

static void *worker_main(void *arg)
{
    dp_worker_t *w = arg;
    h2o_socket_buffer_prototype.allocator.max = SOCKET_BUFFERS_KEPT; /* thread-local */
    for (;;) {
        h2o_evloop_run(w->ctx.loop, LOOP_WAIT_MS);
        publish_snapshot_seen(w);
        dp_snapshot_quiescent(w->id);
        dp_usage_tick(w->id);
        if (atomic_load_explicit(&draining, memory_order_acquire)) {
            if (w->listener != NULL) {
                /* stop accepting; other workers' listeners close too, so the
                 * kernel refuses new connections once all are gone */
                h2o_socket_read_stop(w->listener);
                h2o_socket_close(w->listener);
                w->listener = NULL;
                w->draining = 1;
            }
            if (w->inflight == 0)
                break;
            if (mono_ms() >= atomic_load(&drain_deadline_ms)) {
                sl_warn(MOD, "worker %d: drain timeout with %lld requests in flight", w->id, (long long)w->inflight);
                dp_proxy_abandon_all(w);
                break;
            }
        }
    }
    dp_usage_flush_worker(w->id);
    dp_snapshot_offline(w->id);
    pthread_mutex_lock(&park_mu);
    workers_done++;
    pthread_cond_signal(&done_cv);
    for (;;)
        pthread_cond_wait(&park_cv, &park_mu);
    return NULL;
}

static int admin_fn(void *ud, const char *path, size_t len, sl_buf_t *out, const char **ctype)
{
    if (h2o_memis(path, len, H2O_STRLIT("/healthz"))) {
        sl_buf_puts(out, "ok\n");
        return 200;
    }
    if (h2o_memis(path, len, H2O_STRLIT("/readyz"))) {
        if (atomic_load(&draining)) {
            sl_buf_puts(out, "draining\n");
            return 503;
        }
        if (dp_metrics_snapshot_version() <= 0) {
            sl_buf_puts(out, "no configuration snapshot yet\n");
            return 503;
        }
        sl_buf_puts(out, "ready\n");
        return 200;
    }
    if (h2o_memis(path, len, H2O_STRLIT("/metrics"))) {
        dp_metrics_render(out);
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        return 200;
    }
    sl_buf_puts(out, "not found\n");
    return 404;
}

static SSL_CTX *client_ssl_ctx(sl_err_t *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        sl_err_set(err, SL_ECRYPTO, "could not create the upstream TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        sl_warn(MOD, "could not load the system CA certificates; TLS upstreams will fail verification");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

int dp_server_start(const dp_server_config_t *cfg, sl_err_t *err)
{
    h2o_config_init(&config);
    /* h2o's own cap only guards memory; the API answers 400 above
     * cfg->max_request_bytes itself, in OpenAI's error shape */
    config.max_request_entity_size = cfg->max_request_bytes * 2 + 65536;
    config.proxy.io_timeout = UPSTREAM_IO_BACKSTOP_MS;
    if ((config.proxy.ssl_ctx = client_ssl_ctx(err)) == NULL)
        return SL_ECRYPTO;
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    dp_proxy_register(host);

    nworkers = cfg->threads;
    if (dp_metrics_init(nworkers) != 0)
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (workers == NULL)
        return sl_err_set(err, SL_ENOMEM, "out of memory");

    /* all workers listen on the same port with SO_REUSEPORT: the first
     * bind picks it when the configured port is 0 */
    char host_s[256], bound[300];
    int port;
    if (sl_split_hostport(cfg->listen, host_s, sizeof(host_s), &port, err) != 0)
        return SL_EINVAL;
    for (int i = 0; i < nworkers; i++) {
        dp_worker_t *w = &workers[i];
        const char *addr = cfg->listen;
        if (i > 0) {
            snprintf(bound, sizeof(bound), strchr(host_s, ':') != NULL ? "[%s]:%d" : "%s:%d", host_s,
                     listen_fds_port);
            addr = bound;
        }
        int fd = sl_listen_tcp(addr, 1, err);
        if (fd < 0)
            return fd;
        if (i == 0)
            listen_fds_port = sl_socket_port(fd);
        w->id = i;
        w->cfg = cfg;
        w->m = dp_metrics_worker(i);
        uint64_t seed = 0;
        sl_random(&seed, sizeof(seed));
        w->rng = seed | 1;
        h2o_linklist_init_anchor(&w->calls);
        h2o_context_init(&w->ctx, h2o_evloop_create(), &config);
        w->accept_ctx.ctx = &w->ctx;
        w->accept_ctx.hosts = config.hosts;
        w->listener = h2o_evloop_socket_create(w->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        w->listener->data = w;
        h2o_socket_read_start(w->listener, on_accept);
    }
    if ((admin = sl_httpd_start(cfg->admin_listen, admin_fn, NULL, err)) == NULL)
        return SL_EIO;
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            return sl_err_set(err, SL_EINTERNAL, "could not start worker %d", i);
    }
    return 0;
}

int dp_server_api_port(void)
{
    return listen_fds_port;
}

int dp_server_admin_port(void)
{
    return admin != NULL ? sl_httpd_port(admin) : -1;
}

void dp_server_drain_and_stop(void)
{
    if (workers == NULL)
        return;
    int sec = workers[0].cfg->drain_timeout_sec;
    atomic_store(&drain_deadline_ms, mono_ms() + (int64_t)sec * 1000);
    atomic_store_explicit(&draining, 1, memory_order_release);
    pthread_mutex_lock(&park_mu);
    while (workers_done < nworkers)
        pthread_cond_wait(&done_cv, &park_mu);
    pthread_mutex_unlock(&park_mu);
    /* the admin server keeps answering (/readyz says draining) until exit */
}
