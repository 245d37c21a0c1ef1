/*
 * dp_proxy.c - the API request path (see dp_proxy.h).
 *
 * Lifetime. A call_t is allocated from the request's pool with a dispose
 * callback (on_dispose). Everything the call owns outside the pool (the
 * upstream client, the receive buffers, timers, the snapshot reference) is
 * released there, and the request is accounted there exactly once
 * (metrics, usage, quota settlement, log line). When the client goes away
 * h2o calls the generator's stop (if the response started) and then clears
 * the pool, so the upstream is cancelled in both orders of events.
 *
 * Upstream. One keep-alive socket pool per (provider, host, port, TLS) per
 * worker; h2o's http1client borrows a socket per request and returns it when
 * the response ended cleanly. A pooled socket the upstream closed while idle
 * fails before any response byte: such requests are retried (twice at most)
 * on a fresh connection, which is safe because the upstream saw nothing.
 * Timers: connect, first byte (until the response head) and idle (between
 * body reads) from the provider, plus an optional total.
 *
 * Relay. Non-streaming responses are buffered whole (their usage decides
 * the x-sluice-cost-usd header, which precedes the body), then sent in one
 * write. Streams are relayed as they arrive with at most one h2o_send in
 * flight: bytes received meanwhile collect in `recv` and go out on the next
 * proceed (zero-copy: socket buffers are swapped, not copied, whenever the
 * previous batch is gone). Each event is also fed to an SSE parser to pick
 * up usage and the end marker.
 */
#include "dp_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dp_error.h"
#include "dp_price.h"
#include "dp_provider.h"
#include "dp_quota.h"
#include "dp_route.h"
#include "dp_snapshot.h"
#include "dp_usage.h"
#include "sl_crypto.h"
#include "sl_err.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_money.h"
#include "sl_sse.h"

#define MOD "proxy"
#define MAX_RESPONSE_BYTES ((size_t)64 << 20)
#define SSE_EVENT_CAP 16384
#define POOL_IDLE_MS 20000
#define MAX_SECRET_LEN 512
#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_FIRST_BYTE_MS 300000
#define DEFAULT_IDLE_MS 300000

struct dp_upstream_pool {
    uint64_t hash;
    char *key;
    h2o_socketpool_t sp;
};

typedef struct call {
    h2o_req_t *req;
    dp_worker_t *w;
    h2o_linklist_t link;
    dp_snapshot_t *snap;
    const dp_key_t *key;
    dp_route_t route;
    const dp_credential_t *cred;
    dp_chat_req_t chat;
    h2o_iovec_t asked_model;
    dp_upstream_req_t up;
    dp_quota_hold_t hold;
    h2o_http1client_t *client;
    dp_upstream_pool_t *upool;
    h2o_buffer_t *recv;          /* upstream bytes not yet handed to h2o */
    h2o_doublebuffer_t out;      /* bytes being sent to the client */
    h2o_generator_t gen;
    sl_sse_t sse;
    dp_tokens_t tokens;
    int64_t cost_nano;
    h2o_timeout_entry_t timer;       /* connect, first byte, idle */
    h2o_timeout_entry_t total_timer;
    int status;                  /* status answered; 499 when the client left first */
    int upstream_status;
    int retries;
    const char *error;           /* why the request failed, for the log */
    uint64_t t_start, t_up_start, t_up_end;
    unsigned routed : 1, streaming : 1, started : 1, send_inflight : 1, upstream_done : 1, saw_done : 1,
        stopped : 1, accounted : 1, reused : 1, connecting : 1, broken : 1, final_sent : 1, linked : 1;
    char request_id[33];
} call_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char hexdig[] = "0123456789abcdef";

/* ---- responses ----------------------------------------------------------- */

static void add_header_str(call_t *c, h2o_headers_t *hs, const char *name, const char *v, size_t len)
{
    h2o_add_header_by_str(&c->req->pool, hs, name, strlen(name), 0, NULL, v, len);
}

static void add_gateway_headers(call_t *c)
{
    h2o_headers_t *hs = &c->req->res.headers;
    add_header_str(c, hs, "x-request-id", c->request_id, 32);
    if (c->routed) {
        add_header_str(c, hs, "x-sluice-provider", c->route.provider->name, strlen(c->route.provider->name));
        char *m = h2o_mem_alloc_pool(&c->req->pool, c->route.model_len);
        memcpy(m, c->route.model, c->route.model_len);
        add_header_str(c, hs, "x-sluice-model", m, c->route.model_len);
    }
}

static void respond_body(call_t *c, int status, h2o_iovec_t body)
{
    h2o_req_t *req = c->req;
    req->res.status = status;
    req->res.reason = dp_http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    add_gateway_headers(c);
    req->res.content_length = body.len;
    c->status = status;
    c->final_sent = 1;
    h2o_send_inline(req, body.base, body.len);
}

static void respond_error(call_t *c, const dp_error_t *e)
{
    if (c->error == NULL)
        c->error = e->code != NULL ? e->code : e->message;
    respond_body(c, e->status, dp_error_json(&c->req->pool, e));
}

static void fail(call_t *c, int status, const char *type, const char *code, const char *param, const char *msg)
{
    dp_error_t e = {.status = status, .type = type, .code = code, .param = param, .message = msg};
    respond_error(c, &e);
}

/* ---- accounting ----------------------------------------------------------- */

static size_t esc_trunc(char *out, const char *s, size_t len)
{
    if (s == NULL)
        return (size_t)(memcpy(out, "null", 4), 4);
    return dp_json_escape(out, s, len > 200 ? 200 : len);
}

static void log_request(call_t *c, uint64_t total_ns, uint64_t up_ns)
{
    char line[4096], a[420], b[420], m[420], p[420], sm[420], er[420];
    struct timespec ts;
    struct tm tm;
    const char *prov = c->routed ? c->route.provider->name : NULL;
    a[esc_trunc(a, c->key != NULL ? c->key->id : NULL, c->key != NULL ? strlen(c->key->id) : 0)] = '\0';
    b[esc_trunc(b, c->key != NULL ? c->key->tenant_id : NULL, c->key != NULL ? strlen(c->key->tenant_id) : 0)] = '\0';
    m[esc_trunc(m, c->asked_model.base, c->asked_model.len)] = '\0';
    p[esc_trunc(p, prov, prov != NULL ? strlen(prov) : 0)] = '\0';
    sm[esc_trunc(sm, c->routed ? c->route.model : NULL, c->route.model_len)] = '\0';
    er[esc_trunc(er, c->error, c->error != NULL ? strlen(c->error) : 0)] = '\0';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"info\",\"module\":\"request\","
                     "\"request_id\":\"%s\",\"method\":\"%.*s\",\"path\":\"%.*s\",\"key_id\":%s,\"tenant_id\":%s,"
                     "\"model\":%s,\"provider\":%s,\"served_model\":%s,\"stream\":%s,\"status\":%d,"
                     "\"upstream_status\":%d,\"input_tokens\":%lld,\"cached_input_tokens\":%lld,"
                     "\"output_tokens\":%lld,\"cost_nano\":%lld,\"overhead_us\":%llu,\"upstream_ms\":%llu,"
                     "\"duration_ms\":%llu,\"error\":%s}",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, c->request_id, (int)(c->req->method.len > 16 ? 16 : c->req->method.len),
                     c->req->method.base, (int)(c->req->path_normalized.len > 200 ? 200 : c->req->path_normalized.len),
                     c->req->path_normalized.base, a, b, m, p, sm, c->chat.stream ? "true" : "false", c->status,
                     c->upstream_status, (long long)c->tokens.input, (long long)c->tokens.cached_input,
                     (long long)c->tokens.output, (long long)c->cost_nano,
                     (unsigned long long)((total_ns - up_ns) / 1000), (unsigned long long)(up_ns / 1000000),
                     (unsigned long long)(total_ns / 1000000), er);
    /* path and method come from h2o's parser: no quotes or control bytes survive it unescaped in practice,
     * but never emit a line that is not JSON */
    if (n > 0 && (size_t)n < sizeof(line) && memchr(c->req->path_normalized.base, '"',
                                                      c->req->path_normalized.len) == NULL)
        sl_log_json_line(line, (size_t)n);
}

/* The one place a request is accounted. Runs once, from on_dispose or
 * dp_proxy_abandon_all. */
static void finalize(call_t *c)
{
    if (c->accounted)
        return;
    c->accounted = 1;
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
        if (c->error == NULL)
            c->error = "client disconnected";
    }
    if (c->linked) {
        h2o_linklist_unlink(&c->link);
        c->linked = 0;
    }
    dp_worker_t *w = c->w;
    dp_metrics_worker_t *mt = w->m;
    uint64_t t_end = now_ns();
    if (c->status == 0 || (c->streaming && !c->final_sent) || c->stopped)
        c->status = 499;
    uint64_t total = t_end - c->t_start, up = 0;
    if (c->t_up_start != 0) {
        up = (c->t_up_end != 0 ? c->t_up_end : t_end) - c->t_up_start;
        if (up > total)
            up = total;
        dp_metrics_observe(&mt->upstream, DP_HIST_UPSTREAM, up);
    }
    int error = c->status >= 400 || c->broken;
    if (c->routed) {
        c->cost_nano = dp_price_cost(c->route.price, &c->tokens);
        dp_quota_actual_t act = {.input_tokens = c->tokens.input,
                                 .output_tokens = c->tokens.output,
                                 .cost_nano = c->cost_nano};
        dp_quota_settle(w->id, c->key, &c->hold, &act);
        char model[256];
        size_t ml = c->route.model_len < sizeof(model) - 1 ? c->route.model_len : sizeof(model) - 1;
        memcpy(model, c->route.model, ml);
        model[ml] = '\0';
        dp_usage_rec_t rec = {
            .key_id = c->key->id,
            .tenant_id = c->key->tenant_id,
            .provider = c->route.provider->name,
            .model = model,
            .unix_sec = (int64_t)time(NULL),
            .input_tokens = c->tokens.input,
            .cached_input_tokens = c->tokens.cached_input,
            .output_tokens = c->tokens.output,
            .cost_nano = c->cost_nano,
            .error = error,
        };
        dp_usage_record(w->id, &rec);
        dp_metric_add(&mt->tokens_input, (uint64_t)c->tokens.input);
        dp_metric_add(&mt->tokens_cached_input, (uint64_t)c->tokens.cached_input);
        dp_metric_add(&mt->tokens_output, (uint64_t)c->tokens.output);
        dp_metric_add(&mt->cost_nano, (uint64_t)c->cost_nano);
        if (c->route.price == NULL && c->t_up_start != 0)
            dp_metric_add(&mt->unpriced, 1);
    }
    dp_metric_add(&mt->status[c->status < 600 && c->status >= 100 ? c->status : 599], 1);
    dp_metrics_observe(&mt->request, DP_HIST_REQUEST, total);
    dp_metrics_observe(&mt->overhead, DP_HIST_OVERHEAD, total - up);
    dp_metric_gauge_add(&mt->inflight, -1);
    w->inflight--;
    if (w->cfg->request_log)
        log_request(c, total, up);
    h2o_buffer_dispose(&c->recv);
    h2o_doublebuffer_dispose(&c->out);
    if (c->snap != NULL) {
        dp_snapshot_release(c->snap);
        c->snap = NULL;
    }
}

static void on_dispose(void *p)
{
    finalize(p);
}

/* ---- upstream pools and timers -------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static dp_upstream_pool_t *get_pool(dp_worker_t *w, const dp_provider_t *p)
{
    char key[512];
    int n = snprintf(key, sizeof(key), "%s|%s|%u|%d", p->name, p->host, (unsigned)p->port, p->is_ssl);
    if (n < 0 || (size_t)n >= sizeof(key))
        return NULL;
    uint64_t h = fnv(0xcbf29ce484222325ull, key, (size_t)n);
    for (size_t i = 0; i < w->npools; i++)
        if (w->pools[i]->hash == h && strcmp(w->pools[i]->key, key) == 0)
            return w->pools[i];
    /* first request to this upstream on this worker: allocate once */
    if (w->npools == w->cappools) {
        size_t cap = w->cappools == 0 ? 8 : w->cappools * 2;
        dp_upstream_pool_t **np = realloc(w->pools, cap * sizeof(*np));
        if (np == NULL)
            return NULL;
        w->pools = np;
        w->cappools = cap;
    }
    dp_upstream_pool_t *up = calloc(1, sizeof(*up));
    if (up == NULL || (up->key = strdup(key)) == NULL) {
        free(up);
        return NULL;
    }
    up->hash = h;
    h2o_socketpool_init_by_hostport(&up->sp, h2o_iovec_init(p->host, strlen(p->host)), p->port, p->is_ssl, SIZE_MAX);
    /* also installs the expiry timer; without it the pool would read a NULL loop */
    h2o_socketpool_set_timeout(&up->sp, w->ctx.loop, POOL_IDLE_MS);
    w->pools[w->npools++] = up;
    return up;
}

void dp_proxy_dispose_pools(dp_worker_t *w)
{
    for (size_t i = 0; i < w->npools; i++) {
        h2o_socketpool_dispose(&w->pools[i]->sp);
        free(w->pools[i]->key);
        free(w->pools[i]);
    }
    free(w->pools);
    w->pools = NULL;
    w->npools = w->cappools = 0;
}

static void arm(call_t *c, int ms, int dflt)
{
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, (uint64_t)(ms > 0 ? ms : dflt)), &c->timer);
}

/* ---- streaming relay ------------------------------------------------------ */

static void append(h2o_buffer_t **buf, const char *s, size_t n)
{
    h2o_iovec_t dst = h2o_buffer_reserve(buf, n);
    if (dst.base == NULL)
        return;
    memcpy(dst.base, s, n);
    (*buf)->size += n;
}

static void try_send(call_t *c)
{
    if (c->stopped || c->send_inflight || c->final_sent)
        return;
    h2o_iovec_t iov = h2o_doublebuffer_prepare(&c->out, &c->recv, SIZE_MAX);
    int final = c->upstream_done && c->recv->size == 0 && c->out.buf->size == c->out.bytes_inflight;
    if (iov.len == 0 && !final && c->started)
        return;
    c->send_inflight = 1;
    c->started = 1;
    if (final)
        c->final_sent = 1;
    h2o_send(c->req, &iov, iov.len != 0 ? 1 : 0, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, gen, gen);
    c->send_inflight = 0;
    if (c->out.bytes_inflight != 0)
        h2o_doublebuffer_consume(&c->out);
    try_send(c);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, gen, gen);
    c->stopped = 1;
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
        c->t_up_end = now_ns();
        if (c->error == NULL)
            c->error = "client disconnected";
    }
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
}

/* Ends a started stream with an explicit error event (never a clean [DONE]). */
static void end_stream_with_error(call_t *c, const char *code, const char *msg)
{
    dp_error_t e = {.status = 502, .type = "api_error", .code = code, .message = msg};
    h2o_iovec_t j = dp_error_json(&c->req->pool, &e);
    append(&c->recv, H2O_STRLIT("data: "));
    append(&c->recv, j.base, j.len - 1); /* without its newline */
    append(&c->recv, H2O_STRLIT("\n\n"));
    c->broken = 1;
    c->upstream_done = 1;
    if (c->error == NULL)
        c->error = code;
    try_send(c);
}

static int on_sse_event(void *ud, const sl_sse_event_t *ev)
{
    call_t *c = ud;
    if (ev->truncated)
        return 0;
    int f = c->route.ops->parse_event(&c->req->pool, ev->data, ev->len, &c->tokens);
    if (f & DP_EV_DONE)
        c->saw_done = 1;
    return 0;
}

/* ---- upstream failures ---------------------------------------------------- */

static void upstream_failed(call_t *c, int status, const char *code, const char *msg)
{
    c->t_up_end = now_ns();
    c->error = msg;
    dp_metric_add(&c->w->m->upstream_errors, 1);
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
    if (c->stopped || c->final_sent)
        return;
    if (c->streaming) {
        end_stream_with_error(c, code, msg);
        return;
    }
    c->req->res.headers = (h2o_headers_t){NULL}; /* drop what was copied from the upstream */
    fail(c, status, "api_error", code, NULL, msg);
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, timer, entry);
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
    }
    upstream_failed(c, 504, "upstream_timeout", "the upstream did not answer in time");
}

static void on_total_timeout(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, total_timer, entry);
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
    }
    upstream_failed(c, 504, "upstream_timeout", "the upstream exceeded the total time allowed");
}

/* ---- upstream callbacks --------------------------------------------------- */

static void start_upstream(call_t *c);

/* Moves what the socket received into c->recv; returns the byte count. */
static size_t take_input(call_t *c, h2o_socket_t *sock)
{
    h2o_buffer_t *in = sock->input;
    size_t n = in->size;
    if (n == 0)
        return 0;
    if (c->recv->size == 0) {
        sock->input = c->recv;
        c->recv = in;
    } else {
        append(&c->recv, in->bytes, n);
        h2o_buffer_consume(&sock->input, n);
    }
    return n;
}

/* A complete buffered (non-streaming or error) response. */
static void finish_buffered(call_t *c)
{
    h2o_req_t *req = c->req;
    const dp_provider_ops_t *ops = c->route.ops;
    h2o_iovec_t body = h2o_iovec_init(c->recv->bytes, c->recv->size);
    int status = c->upstream_status;
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
    if (c->stopped || c->final_sent)
        return;
    if (status < 200 || status >= 300) {
        dp_upstream_error_t ue;
        ops->map_error(status, body.base, body.len, &ue);
        c->error = "upstream error status";
        if (!ue.pass_body) {
            char msg[64];
            snprintf(msg, sizeof(msg), "the upstream provider answered HTTP %d", status);
            char *m = h2o_strdup(&req->pool, msg, strlen(msg)).base;
            req->res.headers = (h2o_headers_t){NULL};
            fail(c, ue.status, ue.type, ue.code, NULL, m);
            return;
        }
        status = ue.status;
    } else {
        if (ops->parse_usage(&req->pool, body.base, body.len, &c->tokens) == 0 && c->tokens.seen) {
            char usd[40];
            c->cost_nano = dp_price_cost(c->route.price, &c->tokens);
            size_t n = sl_usd_format(c->cost_nano, 9, usd, sizeof(usd));
            add_header_str(c, &req->res.headers, "x-sluice-cost-usd", h2o_strdup(&req->pool, usd, n).base, n);
        }
    }
    req->res.status = status;
    req->res.reason = dp_http_reason(status);
    req->res.content_length = body.len;
    add_gateway_headers(c);
    c->status = status;
    c->final_sent = 1;
    c->gen.proceed = on_proceed;
    c->gen.stop = on_stop;
    h2o_start_response(req, &c->gen);
    /* hand the whole body to the doublebuffer so it lives until the write is done */
    h2o_iovec_t iov = h2o_doublebuffer_prepare(&c->out, &c->recv, SIZE_MAX);
    h2o_send(req, &iov, iov.len != 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        /* on a framing error h2o leaves the undecoded bytes in the buffer:
         * relay nothing from a failed read */
        h2o_buffer_consume(&client->sock->input, client->sock->input->size);
    }
    size_t n = take_input(c, client->sock);
    if (errstr != NULL)
        c->client = NULL; /* freed by h2o when we return */
    if (c->streaming) {
        if (n != 0)
            sl_sse_feed(&c->sse, c->recv->bytes + c->recv->size - n, n, on_sse_event, c);
        if (errstr == NULL) {
            arm(c, c->route.provider->idle_timeout_ms, DEFAULT_IDLE_MS);
            try_send(c);
            return 0;
        }
        c->t_up_end = now_ns();
        if (h2o_timeout_is_linked(&c->timer))
            h2o_timeout_unlink(&c->timer);
        if (h2o_timeout_is_linked(&c->total_timer))
            h2o_timeout_unlink(&c->total_timer);
        if (errstr == h2o_http1client_error_is_eos && (c->saw_done || c->tokens.seen)) {
            c->upstream_done = 1;
            try_send(c);
        } else {
            dp_metric_add(&c->w->m->upstream_errors, 1);
            end_stream_with_error(c, "upstream_stream_broken", "the upstream stream ended unexpectedly");
        }
        return 0;
    }
    if (errstr == NULL) {
        if (c->recv->size > MAX_RESPONSE_BYTES) {
            c->client = NULL; /* returning non-zero closes it */
            upstream_failed(c, 502, "upstream_response_too_large", "the upstream response is too large");
            return -1;
        }
        arm(c, c->route.provider->idle_timeout_ms, DEFAULT_IDLE_MS);
        return 0;
    }
    c->t_up_end = now_ns();
    if (errstr == h2o_http1client_error_is_eos)
        finish_buffered(c);
    else
        upstream_failed(c, 502, "upstream_unavailable", "the upstream connection failed while reading the response");
    return 0;
}

static int drop_response_header(const h2o_header_t *h)
{
    static const char *const names[] = {"content-length", "server", "date", "set-cookie", "x-request-id",
                                        "openai-organization", "openai-project", "alt-svc"};
    const h2o_iovec_t *n = h->name;
    if (h2o_iovec_is_token(n) && ((const h2o_token_t *)n)->proxy_should_drop_for_res)
        return 1;
    if (n->len > 12 && memcmp(n->base, "x-ratelimit-", 12) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h2o_memis(n->base, n->len, names[i], strlen(names[i])))
            return 1;
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        c->client = NULL;
        if (c->reused && c->retries < 2 && !c->stopped) {
            /* a pooled connection the upstream had closed: nothing was processed */
            c->retries++;
            start_upstream(c);
            return NULL;
        }
        upstream_failed(c, 502, "upstream_unavailable", "the upstream closed the connection before answering");
        return NULL;
    }
    c->upstream_status = status;
    h2o_req_t *req = c->req;
    for (size_t i = 0; i < num_headers; i++) {
        const h2o_header_t *h = &headers[i];
        if (drop_response_header(h))
            continue;
        h2o_iovec_t v = h2o_strdup(&req->pool, h->value.base, h->value.len);
        if (h2o_iovec_is_token(h->name)) {
            h2o_add_header(&req->pool, &req->res.headers, (const h2o_token_t *)h->name, NULL, v.base, v.len);
        } else {
            h2o_iovec_t n = h2o_strdup(&req->pool, h->name->base, h->name->len);
            h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
        }
    }
    if (errstr == h2o_http1client_error_is_eos) {
        c->client = NULL;
        c->t_up_end = now_ns();
        c->streaming = 0;
        finish_buffered(c);
        return NULL;
    }
    if (c->chat.stream && status >= 200 && status < 300) {
        c->streaming = 1;
        char *ssebuf = h2o_mem_alloc_pool(&req->pool, SSE_EVENT_CAP + 1);
        sl_sse_init(&c->sse, ssebuf, SSE_EVENT_CAP);
        req->res.status = status;
        req->res.reason = dp_http_reason(status);
        add_gateway_headers(c);
        c->status = status;
        c->gen.proceed = on_proceed;
        c->gen.stop = on_stop;
        h2o_start_response(req, &c->gen);
        try_send(c); /* flushes the head at once */
    }
    arm(c, c->route.provider->idle_timeout_ms, DEFAULT_IDLE_MS);
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head)
{
    call_t *c = client->data;
    if (errstr != NULL) {
        c->client = NULL;
        upstream_failed(c, 502, "upstream_unavailable", "could not connect to the upstream provider");
        return NULL;
    }
    c->reused = c->connecting; /* a pooled socket is handed over synchronously */
    if (c->reused)
        dp_metric_add(&c->w->m->keepalive_reused, 1);
    *reqbufs = c->up.bufs;
    *reqbufcnt = c->up.nbufs;
    *method_is_head = 0;
    arm(c, c->route.provider->first_byte_timeout_ms, DEFAULT_FIRST_BYTE_MS);
    return on_head;
}

static void start_upstream(call_t *c)
{
    c->reused = 0;
    arm(c, c->route.provider->connect_timeout_ms, DEFAULT_CONNECT_MS);
    c->connecting = 1;
    h2o_http1client_connect_with_pool(&c->client, c, &c->w->ctx.proxy.client_ctx, &c->upool->sp, on_connect);
    c->connecting = 0;
}

/* ---- request handling ----------------------------------------------------- */

static int authenticate(call_t *c)
{
    h2o_req_t *req = c->req;
    h2o_iovec_t secret = {NULL, 0};
    ssize_t i;
    if ((i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1)) != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 7 && strncasecmp(v.base, "bearer ", 7) == 0) {
            secret = h2o_iovec_init(v.base + 7, v.len - 7);
            while (secret.len > 0 && secret.base[0] == ' ') {
                secret.base++;
                secret.len--;
            }
        }
    } else if ((i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1)) != -1) {
        secret = req->headers.entries[i].value;
    }
    while (secret.len > 0 && (secret.base[secret.len - 1] == ' ' || secret.base[secret.len - 1] == '\t'))
        secret.len--;
    if (c->snap == NULL) {
        fail(c, 503, "api_error", "not_ready", NULL, "the gateway has no configuration yet");
        return -1;
    }
    const uint8_t *pepper = dp_snapshot_pepper(c->snap);
    if (pepper == NULL) {
        fail(c, 503, "api_error", "not_ready", NULL, "the gateway cannot verify keys yet");
        return -1;
    }
    if (secret.len == 0) {
        fail(c, 401, "invalid_request_error", "invalid_api_key", NULL,
             "you didn't provide an api key; use an authorization header with bearer auth");
        return -1;
    }
    const dp_key_t *key = NULL;
    if (secret.len <= MAX_SECRET_LEN) {
        uint8_t hash[SL_HASH_LEN];
        sl_vkey_hash(pepper, secret.base, secret.len, hash);
        key = dp_snapshot_find_key(c->snap, hash);
    }
    if (key == NULL) {
        fail(c, 401, "invalid_request_error", "invalid_api_key", NULL, "incorrect api key provided");
        return -1;
    }
    c->key = key;
    if (key->revoked) {
        fail(c, 401, "invalid_request_error", "invalid_api_key", NULL, "this api key has been revoked");
        return -1;
    }
    if (key->expires_unix != 0 && (int64_t)time(NULL) >= key->expires_unix) {
        fail(c, 401, "invalid_request_error", "invalid_api_key", NULL, "this api key has expired");
        return -1;
    }
    return 0;
}

/* Validates and tokenizes the body once. */
static int parse_chat(call_t *c)
{
    h2o_req_t *req = c->req;
    dp_chat_req_t *ch = &c->chat;
    if (req->entity.len > c->w->cfg->max_request_bytes) {
        fail(c, 400, "invalid_request_error", "request_too_large", NULL, "the request body is too large");
        return -1;
    }
    ch->body = req->entity.base != NULL ? req->entity.base : "";
    ch->len = req->entity.len;
    /* chat bodies average well over 8 bytes per token; retry once when not */
    size_t cap = ch->len / 8 + 64;
    sl_json_tok_t *t = h2o_mem_alloc_pool(&req->pool, cap * sizeof(*t));
    int n = sl_json_parse(ch->body, ch->len, t, cap, NULL);
    if (n == SL_ETOOBIG) {
        cap = ch->len / 2 + 2;
        t = h2o_mem_alloc_pool(&req->pool, cap * sizeof(*t));
        n = sl_json_parse(ch->body, ch->len, t, cap, NULL);
    }
    if (n < 1) {
        fail(c, 400, "invalid_request_error", NULL, NULL,
             "we could not parse the JSON body of your request; it must be valid JSON");
        return -1;
    }
    if (t[0].type != SL_JSON_OBJECT) {
        fail(c, 400, "invalid_request_error", NULL, NULL, "the request body must be a JSON object");
        return -1;
    }
    ch->toks = t;
    ch->ntoks = n;
    int m = sl_json_find(ch->body, t, 0, "model", 5);
    if (m < 0 || t[m].type != SL_JSON_STRING || t[m].end == t[m].start) {
        fail(c, 400, "invalid_request_error", NULL, "model", "you must provide a model parameter");
        return -1;
    }
    ch->model_tok = m;
    if (!t[m].escaped) {
        c->asked_model = h2o_iovec_init(ch->body + t[m].start, t[m].end - t[m].start);
    } else {
        size_t len = sl_json_str_len(ch->body, &t[m]);
        char *s = h2o_mem_alloc_pool(&req->pool, len + 1);
        sl_json_str_copy(ch->body, &t[m], s, len + 1);
        c->asked_model = h2o_iovec_init(s, len);
    }
    int s = sl_json_find(ch->body, t, 0, "stream", 6);
    if (s > 0 && t[s].type != SL_JSON_NULL) {
        int b;
        if (sl_json_bool(&t[s], &b) != 0) {
            fail(c, 400, "invalid_request_error", NULL, "stream", "stream must be a boolean");
            return -1;
        }
        ch->stream = b;
    }
    int msgs = sl_json_find(ch->body, t, 0, "messages", 8);
    if (msgs < 0 || t[msgs].type != SL_JSON_ARRAY) {
        fail(c, 400, "invalid_request_error", NULL, "messages", "you must provide a messages array");
        return -1;
    }
    ch->max_tokens = -1;
    int mt = sl_json_find(ch->body, t, 0, "max_completion_tokens", 21);
    if (mt < 0)
        mt = sl_json_find(ch->body, t, 0, "max_tokens", 10);
    int64_t v;
    if (mt > 0 && sl_json_int64(ch->body, &t[mt], &v) == 0 && v >= 0)
        ch->max_tokens = v;
    return 0;
}

static void handle_chat(call_t *c)
{
    h2o_req_t *req = c->req;
    if (authenticate(c) != 0 || parse_chat(c) != 0)
        return;
    dp_error_t err;
    if (dp_route_resolve(c->snap, c->key, c->asked_model.base, c->asked_model.len, &c->route, &err) != 0) {
        respond_error(c, &err);
        return;
    }
    c->routed = 1;
    /* DESIGN §7 step 3: reserve an upper bound before going upstream */
    const dp_model_t *price = c->route.price;
    dp_quota_estimate_t est = {.input_tokens = (int64_t)c->chat.len};
    est.output_tokens = c->chat.max_tokens >= 0 ? c->chat.max_tokens
                                               : (price != NULL ? price->max_output_tokens : 0);
    est.cost_nano = dp_price_estimate(price, est.input_tokens, est.output_tokens);
    const char *qcode = NULL;
    int retry_after = 0;
    if (dp_quota_reserve(c->w->id, c->key, c->route.provider->name, &est, &c->hold, &qcode, &retry_after) != 0) {
        int budget = qcode != NULL && strcmp(qcode, "budget_exceeded") == 0;
        if (retry_after > 0) {
            char ra[16];
            int n = snprintf(ra, sizeof(ra), "%d", retry_after);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                           h2o_strdup(&req->pool, ra, (size_t)n).base, (size_t)n);
        }
        fail(c, 429, budget ? "insufficient_quota" : "rate_limit_error", qcode, NULL,
             budget ? "this key's budget is exhausted" : "rate limit reached for this key");
        return;
    }
    if ((c->cred = dp_route_pick_credential(c->route.provider, dp_worker_rand(c->w))) == NULL) {
        fail(c, 503, "api_error", "provider_unavailable", NULL, "the provider has no credentials configured");
        return;
    }
    if (c->route.ops->build_chat(&req->pool, c->route.provider, c->cred, h2o_iovec_init(c->route.model,
                                 c->route.model_len), &c->chat, &req->headers,
                                 h2o_iovec_init(c->request_id, 32), &c->up) != 0) {
        fail(c, 503, "api_error", "provider_unavailable", NULL, "the provider's configuration is unusable");
        return;
    }
    if ((c->upool = get_pool(c->w, c->route.provider)) == NULL) {
        fail(c, 503, "api_error", "provider_unavailable", NULL, "the provider's address is unusable");
        return;
    }
    if (c->route.provider->total_timeout_ms > 0)
        h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, (uint64_t)c->route.provider->total_timeout_ms),
                         &c->total_timer);
    c->t_up_start = now_ns();
    start_upstream(c);
}

static void handle_models(call_t *c)
{
    if (authenticate(c) != 0)
        return;
    const dp_model_t *m;
    size_t cap = 64;
    for (size_t i = 0; (m = dp_snapshot_model_at(c->snap, i)) != NULL; i++)
        cap += 64 + dp_json_escaped_len(m->model, strlen(m->model)) +
               dp_json_escaped_len(m->provider, strlen(m->provider));
    char *buf = h2o_mem_alloc_pool(&c->req->pool, cap), *p = buf;
    p += sprintf(p, "{\"object\":\"list\",\"data\":[");
    int first = 1;
    for (size_t i = 0; (m = dp_snapshot_model_at(c->snap, i)) != NULL; i++) {
        size_t plen = strlen(m->provider), mlen = strlen(m->model);
        if (!dp_route_provider_allowed(c->key, m->provider, plen))
            continue;
        const dp_provider_t *pv = dp_snapshot_find_provider(c->snap, m->provider, plen);
        if (pv == NULL || dp_provider_ops_for(pv->kind) == NULL)
            continue;
        if (c->key->n_allowed_models > 0) {
            int ok = 0;
            for (size_t k = 0; k < c->key->n_allowed_models && !ok; k++) {
                const char *a = c->key->allowed_models[k];
                ok = strcmp(a, m->model) == 0 ||
                     (strncmp(a, m->provider, plen) == 0 && a[plen] == '/' && strcmp(a + plen + 1, m->model) == 0);
            }
            if (!ok)
                continue;
        }
        if (!first)
            *p++ = ',';
        first = 0;
        p += sprintf(p, "{\"id\":");
        p += dp_json_escape(p, m->model, mlen);
        p += sprintf(p, ",\"object\":\"model\",\"created\":0,\"owned_by\":");
        p += dp_json_escape(p, m->provider, plen);
        *p++ = '}';
    }
    p += sprintf(p, "]}\n");
    respond_body(c, 200, h2o_iovec_init(buf, (size_t)(p - buf)));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dp_worker_t *w = dp_worker_of(req->conn->ctx);
    call_t *c = h2o_mem_alloc_shared(&req->pool, sizeof(*c), on_dispose);
    memset(c, 0, sizeof(*c));
    c->t_start = now_ns();
    c->req = req;
    c->w = w;
    c->timer.cb = on_timeout;
    c->total_timer.cb = on_total_timeout;
    h2o_buffer_init(&c->recv, &h2o_socket_buffer_prototype);
    h2o_doublebuffer_init(&c->out, &h2o_socket_buffer_prototype);
    uint64_t r1 = dp_worker_rand(w), r2 = dp_worker_rand(w);
    for (int i = 0; i < 16; i++) {
        c->request_id[i] = hexdig[(r1 >> (i * 4)) & 15];
        c->request_id[16 + i] = hexdig[(r2 >> (i * 4)) & 15];
    }
    c->request_id[32] = '\0';
    h2o_linklist_insert(&w->calls, &c->link);
    c->linked = 1;
    w->inflight++;
    w->seq++;
    dp_metric_gauge_add(&w->m->inflight, 1);
    if (w->draining)
        req->http1_is_persistent = 0;
    c->snap = dp_snapshot_acquire();

    h2o_iovec_t path = req->path_normalized;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/chat/completions"))) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
            fail(c, 405, "invalid_request_error", "method_not_allowed", NULL, "use POST for this endpoint");
            return 0;
        }
        handle_chat(c);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/models"))) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
            fail(c, 405, "invalid_request_error", "method_not_allowed", NULL, "use GET for this endpoint");
            return 0;
        }
        handle_models(c);
        return 0;
    }
    fail(c, 404, "invalid_request_error", "unknown_url", NULL, "unknown request url");
    return 0;
}

void dp_proxy_register(h2o_hostconf_t *host)
{
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = on_req;
}

void dp_proxy_abandon_all(dp_worker_t *w)
{
    while (!h2o_linklist_is_empty(&w->calls)) {
        call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, link, w->calls.next);
        if (c->error == NULL)
            c->error = "drain timeout";
        c->broken = 1;
        finalize(c);
    }
}
