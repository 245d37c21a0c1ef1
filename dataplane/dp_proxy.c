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
 * Attempts. A request's targets are its resolved (provider, model), then
 * the key's fallbacks (dp_route_targets). Each attempt sends the request to
 * one target with one credential picked by weight among those whose circuit
 * breaker lets it through (dp_breaker.h). An attempt fails over to the next
 * one on a connect error, a timeout, 408, 429, 5xx, or a stream that fails
 * before its first content; 401/403 also open that credential's breaker for
 * a long cooldown and move to the provider's next credential first. Other
 * 4xx are the client's: answered at once. Going back to a provider that
 * already failed waits a jittered backoff (dp_retry.h); the request stops
 * trying once DP_RETRY_MAX_ATTEMPTS attempts were made or
 * DP_RETRY_BUDGET_MS passed, and answers the last failure in OpenAI's error
 * shape. Nothing of a failed attempt reaches the client: its response
 * headers are dropped and the client's response starts only once an
 * attempt is kept.
 *
 * Streams. The upstream's preamble (role chunk, message_start, ping,
 * metadata...) is held until the first event carrying content
 * (DP_EV_CONTENT), the end of the stream, or HOLD_MAX bytes; until then a
 * failure is invisible to the client and fails over. After that the stream
 * is relayed as it arrives, and a break ends it with an SSE error event and
 * no [DONE]; the tokens delivered are accounted (see finalize: usage the
 * upstream reported, else one output token per content chunk delivered and
 * the request's size estimate for input, recorded as an error row).
 *
 * Upstream. One keep-alive socket pool per (provider, host, port, TLS) per
 * worker; h2o's http1client borrows a socket per request and returns it when
 * the response ended cleanly. A pooled socket the upstream closed while idle
 * fails before any response byte: such requests are resent (twice at most,
 * not counted as attempts) on a fresh connection, which is safe because the
 * upstream saw nothing. Timers per attempt: connect, first byte (until the
 * response head), idle (between body reads), total.
 *
 * Relay. OpenAI-format upstreams are relayed byte for byte: non-streaming
 * bodies are buffered whole (their usage decides the x-sluice-cost-usd
 * header, which precedes the body) and sent in one write; streams go out
 * as they arrive with at most one h2o_send in flight (socket buffers are
 * swapped, not copied, whenever the previous batch is gone), each event
 * also fed to an SSE parser for usage, content and the end marker.
 * Translating providers (dp_provider.h) have their bodies translated and
 * their stream events decoded by framing (SSE, or AWS event stream messages
 * parsed in place in the socket buffer) and translated into OpenAI chunks;
 * the request path writes "data: [DONE]" itself. Anthropic-format clients
 * (POST /v1/messages) have their request translated to OpenAI's form on the
 * way in and every answer translated back on the way out.
 */
#include "dp_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "anthropic.h"
#include "dp_breaker.h"
#include "dp_error.h"
#include "dp_metrics_labels.h"
#include "dp_price.h"
#include "dp_provider.h"
#include "dp_quota.h"
#include "dp_reqlog.h"
#include "dp_retry.h"
#include "dp_route.h"
#include "dp_snapshot.h"
#include "dp_usage.h"
#include "sl_crypto.h"
#include "sl_err.h"
#include "sl_evstream.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_money.h"
#include "sl_sse.h"

#define MOD "proxy"
#define MAX_RESPONSE_BYTES ((size_t)64 << 20)
#define MAX_ERROR_BODY ((size_t)64 << 10) /* an upstream error body kept for the answer */
#define SSE_EVENT_CAP 16384
#define XLATE_EVENT_CAP 262144 /* translated streams must see whole events */
#define MAX_EVS_MESSAGE ((size_t)4 << 20)
#define HOLD_MAX ((size_t)1 << 20) /* a preamble longer than this starts the response anyway */
#define POOL_IDLE_MS 20000
#define MAX_SECRET_LEN 512
#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_FIRST_BYTE_MS 300000 /* non-streamed answers come after the whole generation */
#define DEFAULT_IDLE_MS 300000       /* reasoning models may think for minutes between chunks */
#define DEFAULT_TOTAL_MS 900000
#define BACKOFF_TICK_MS 50
#define BYTES_PER_TOKEN 4 /* input estimate of a broken stream without usage */

enum { CALL_CHAT, CALL_EMBEDDINGS };
enum { INGRESS_OPENAI, INGRESS_ANTHROPIC };

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
    int kind;                    /* CALL_* */
    int ingress;                 /* INGRESS_* */
    dp_route_t route;            /* the target of the current (at the end: the last) attempt */
    dp_route_t targets[DP_MAX_TARGETS];
    uint64_t tried[DP_MAX_TARGETS]; /* credentials already tried, per target */
    uint8_t fails[DP_MAX_TARGETS];  /* failures (other than auth) per target */
    uint32_t unusable;              /* targets the request cannot be built for (bit per target) */
    size_t ntargets, ti;
    int round;                   /* 0: first pass over the targets, 1: retries */
    int attempts;                /* upstream requests sent (pooled-socket resends excluded) */
    int64_t deadline_ms;         /* no attempt starts after this */
    int64_t backoff_until_ms;
    int64_t throttled_min_ms;    /* earliest end of a provider's Retry-After among credentials passed over (0: none) */
    const dp_credential_t *cred;
    int cred_index;
    dp_breaker_t *breaker;
    dp_breaker_cfg_t bcfg;
    dp_chat_req_t chat;
    h2o_iovec_t asked_model;
    dp_upstream_req_t up;
    dp_quota_hold_t hold;
    h2o_http1client_t *client;
    dp_upstream_pool_t *upool;
    h2o_buffer_t *recv;          /* upstream bytes (or translated output) not yet handed to h2o */
    h2o_buffer_t *xbuf;          /* translated chunks on their way to the Anthropic egress */
    h2o_doublebuffer_t out;      /* bytes being sent to the client */
    h2o_generator_t gen;
    sl_sse_t sse;
    char *ssebuf;
    size_t ssecap;
    dp_xlate_ctx_t xc;           /* translating providers only */
    dp_anthropic_egress_t *egress; /* streams to Anthropic-format clients */
    h2o_headers_t up_headers;    /* upstream answer headers (embeddings translators) */
    dp_tokens_t tokens;
    int64_t content_events;      /* content chunks seen in the kept stream */
    int64_t cost_nano;
    h2o_timeout_entry_t timer;       /* connect, first byte, idle */
    h2o_timeout_entry_t total_timer;
    h2o_timeout_entry_t backoff_timer;
    int status;                  /* status answered; 499 when the client left first */
    int upstream_status;
    int resends;                 /* pooled-socket resends of this attempt */
    const char *error;           /* why the request failed, for the log */
    const char *outcome;         /* requests metric label; NULL: derived at the end */
    /* the failure answered when no attempt is left */
    dp_error_t last_err;
    h2o_iovec_t last_body;       /* an OpenAI-shaped upstream error body relayed as is */
    h2o_iovec_t retry_after;
    const char *pending_from;    /* failover metric: the failed attempt's provider and reason */
    const char *pending_reason;
    uint64_t t_start, t_up_start, t_up_end;
    uint64_t t_first_token;      /* first content of the kept stream (0: none) */
    dp_reqlog_capture_t *capture; /* the answer as sent, for keys that log content */
    int log_content;             /* the key opted in to content in its request log lines */
    unsigned routed : 1, streaming : 1, started : 1, send_inflight : 1, upstream_done : 1, saw_done : 1,
        stopped : 1, accounted : 1, settled : 1, reused : 1, connecting : 1, broken : 1, final_sent : 1, linked : 1,
        xlate : 1, include_usage : 1, committed : 1, saw_content : 1, error_relayed : 1, probe : 1,
        head_seen : 1, answered_upstream : 1, stay : 1, chose : 1, client_connected : 1,
        throttled : 1,       /* this attempt's answer throttled its credential (Retry-After) */
        rechoose : 1,        /* the backoff timer chooses again (it waited for a throttled credential) */
        waited_throttle : 1; /* that wait happened once already */
    char request_id[33];
} call_t;

static void next_attempt(call_t *c);
static void start_upstream(call_t *c);
static void settle(call_t *c);

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
        char *m = h2o_mem_alloc_pool(&c->req->pool, c->route.model_len + 16);
        memcpy(m, c->route.model, c->route.model_len);
        add_header_str(c, hs, "x-sluice-model", m, c->route.model_len);
        char *a = m + c->route.model_len;
        int n = snprintf(a, 16, "%d", c->attempts);
        add_header_str(c, hs, "x-sluice-attempts", a, (size_t)n);
    }
    if (c->key != NULL)
        dp_quota_add_headers(c->req, c->snap, c->key, c->routed ? c->route.provider->name : NULL);
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
    settle(c);
    h2o_send_inline(req, body.base, body.len);
}

/* An error answer; body is OpenAI-shaped (Anthropic-format clients get it
 * in their shape). */
static void respond_error_body(call_t *c, int status, h2o_iovec_t body)
{
    if (c->ingress == INGRESS_ANTHROPIC)
        body = dp_anthropic_egress_error(&c->req->pool, status, body.base, body.len);
    respond_body(c, status, body);
}

static void respond_error(call_t *c, const dp_error_t *e)
{
    if (c->error == NULL)
        c->error = e->code != NULL ? e->code : e->message;
    respond_error_body(c, e->status, dp_error_json(&c->req->pool, e));
}

static void fail(call_t *c, int status, const char *type, const char *code, const char *param, const char *msg)
{
    dp_error_t e = {.status = status, .type = type, .code = code, .param = param, .message = msg};
    respond_error(c, &e);
}

/* ---- accounting ----------------------------------------------------------- */

/* The requests metric's outcome label. */
static const char *outcome_of(call_t *c)
{
    if (c->status == 499)
        return "cancelled";
    if (c->broken)
        return "stream_broken";
    if (c->outcome != NULL)
        return c->outcome;
    if (c->status >= 200 && c->status < 300)
        return c->attempts > 1 || c->ti > 0 ? "failover" : "success";
    if (c->answered_upstream)
        return "upstream_error";
    return c->status >= 500 ? "gateway_error" : "rejected";
}

static void log_request(call_t *c, uint64_t total_ns, uint64_t up_ns)
{
    const char *asked = c->ntargets > 0 ? c->targets[0].provider->name : c->routed ? c->route.provider->name : NULL;
    dp_reqlog_rec_t r = {
        .request_id = c->request_id,
        .method = c->req->method,
        .path = c->req->path_normalized,
        .key_id = c->key != NULL ? c->key->id : NULL,
        .tenant_id = c->key != NULL ? c->key->tenant_id : NULL,
        .requested_model = c->asked_model,
        .requested_provider = asked,
        .provider = c->routed ? c->route.provider->name : NULL,
        .served_model = c->routed ? h2o_iovec_init(c->route.model, c->route.model_len) : h2o_iovec_init(NULL, 0),
        .stream = c->chat.stream,
        .status = c->status,
        .upstream_status = c->upstream_status,
        .attempts = c->attempts,
        .outcome = outcome_of(c),
        .error = c->error,
        .input_tokens = c->tokens.input,
        .cached_input_tokens = c->tokens.cached_input,
        .output_tokens = c->tokens.output,
        .cost_nano = c->cost_nano,
        .total_ns = total_ns,
        .upstream_ns = up_ns,
        .ttft_ns = c->t_first_token != 0 ? c->t_first_token - c->t_start : 0,
        .chat = c->log_content ? &c->chat : NULL,
        .capture = c->log_content ? c->capture : NULL,
    };
    dp_reqlog_write(&r);
}

/* A stream cut after content went out, without usage from the upstream:
 * one output token per content chunk delivered (OpenAI streams carry about
 * one token per chunk; for upstreams that batch several tokens per delta
 * this is a lower bound), and the request's size over BYTES_PER_TOKEN for
 * input. Usage the upstream did report wins where it is larger. */
static void estimate_broken_stream(call_t *c)
{
    if (c->tokens.output < c->content_events)
        c->tokens.output = c->content_events;
    if (c->tokens.input == 0)
        c->tokens.input = (int64_t)(c->chat.len / BYTES_PER_TOKEN);
}

static void unlink_timers(call_t *c)
{
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
    if (h2o_timeout_is_linked(&c->backoff_timer))
        h2o_timeout_unlink(&c->backoff_timer);
}

/* Prices the request, settles its quota hold and records its usage (the
 * report, and the journal when there is a spool). Once per request: just
 * before the bytes that complete the answer go to the client (so a client
 * that got a whole answer is in the usage even if the process dies the
 * next instant), or at the end for an answer that never completed (a
 * client that left, a stream cut short). */
static void settle(call_t *c)
{
    if (c->settled)
        return;
    c->settled = 1;
    int error = c->status >= 400 || c->broken;
    if (c->streaming && c->committed && (c->broken || c->status == 499) && !c->saw_done)
        estimate_broken_stream(c);
    dp_worker_t *w = c->w;
    dp_metrics_worker_t *mt = w->m;
    if (c->routed) {
        c->cost_nano = dp_price_cost(c->route.price, &c->tokens);
        dp_quota_actual_t act = {.input_tokens = c->tokens.input,
                                 .output_tokens = c->tokens.output,
                                 .cost_nano = c->cost_nano,
                                 .provider = c->route.provider->name};
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
            .unix_sec = c->hold.admit_unix, /* the window it was admitted in */
            .input_tokens = c->tokens.input,
            .cached_input_tokens = c->tokens.cached_input,
            .output_tokens = c->tokens.output,
            .cost_nano = c->cost_nano,
            .error = error,
        };
        if (c->hold.admit_unix != 0) /* a quota rejection used nothing */
            dp_usage_record(w->id, &rec);
        if (c->attempts > 0) {
            dp_mlabels_rec_t lr = {c->route.provider->name, c->route.price != NULL ? c->route.price->model : NULL,
                                   c->key->tenant_id, c->tokens.input, c->tokens.cached_input, c->tokens.output,
                                   c->cost_nano, c->t_first_token != 0 ? c->t_first_token - c->t_start : 0};
            dp_mlabels_record(w->id, &lr);
        }
        if (c->route.price == NULL && c->t_up_start != 0)
            dp_metric_add(&mt->unpriced, 1);
    }
}

/* The one place a request is accounted. Runs once, from on_dispose or
 * dp_proxy_abandon_all. */
static void finalize(call_t *c)
{
    if (c->accounted)
        return;
    c->accounted = 1;
    unlink_timers(c);
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
    if (c->status == 0 || (c->streaming && c->committed && !c->final_sent) || c->stopped)
        c->status = 499;
    uint64_t total = t_end - c->t_start, up = 0;
    if (c->t_up_start != 0) {
        up = (c->t_up_end != 0 ? c->t_up_end : t_end) - c->t_up_start;
        if (up > total)
            up = total;
        dp_metrics_observe(&mt->upstream, DP_HIST_UPSTREAM, up);
    }
    int error = c->status >= 400 || c->broken;
    settle(c);
    /* label values come from the snapshot: a served model outside the
     * catalog (clients may name any) counts as "_other" */
    int served = c->routed && c->attempts > 0, cataloged = served && c->route.price != NULL;
    dp_metrics_count_request(mt, served ? c->route.provider->name : "",
                             cataloged ? c->route.model : served ? "_other" : "",
                             cataloged ? c->route.model_len : served ? 6 : 0, c->status, outcome_of(c));
    dp_metrics_observe(&mt->request, DP_HIST_REQUEST, total);
    dp_metrics_observe(&mt->overhead, DP_HIST_OVERHEAD, total - up);
    dp_metric_gauge_add(&mt->inflight, -1);
    w->inflight--;
    if (w->cfg->request_log && dp_reqlog_sampled(dp_worker_rand(w), error))
        log_request(c, total, up);
    h2o_buffer_dispose(&c->recv);
    if (c->xbuf != NULL)
        h2o_buffer_dispose(&c->xbuf);
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

/* ---- relay to the client -------------------------------------------------- */

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
    if (c->stopped || c->send_inflight || c->final_sent || !c->committed)
        return;
    h2o_iovec_t iov = h2o_doublebuffer_prepare(&c->out, &c->recv, SIZE_MAX);
    int final = c->upstream_done && c->recv->size == 0 && c->out.buf->size == c->out.bytes_inflight;
    if (iov.len == 0 && !final && c->started)
        return;
    c->send_inflight = 1;
    c->started = 1;
    if (final)
        c->final_sent = 1;
    if (final || c->saw_done)
        settle(c); /* these bytes complete the answer */
    if (c->log_content && iov.len != 0)
        dp_reqlog_capture(&c->capture, &c->req->pool, iov.base, iov.len);
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
    unlink_timers(c);
}

static int sse_to_client(call_t *c)
{
    return c->xlate || c->ingress == INGRESS_ANTHROPIC;
}

/* Starts the client's streamed response: the kept attempt's status and
 * headers, then whatever is pending. */
static void commit(call_t *c)
{
    h2o_req_t *req = c->req;
    c->committed = 1;
    req->res.status = c->upstream_status;
    req->res.reason = dp_http_reason(c->upstream_status);
    if (sse_to_client(c)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/event-stream; charset=utf-8"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    }
    add_gateway_headers(c);
    c->status = c->upstream_status;
    c->gen.proceed = on_proceed;
    c->gen.stop = on_stop;
    h2o_start_response(req, &c->gen);
    try_send(c); /* flushes the head and the held preamble at once */
}

/* Ends a started stream with an explicit error event (never a clean
 * [DONE]). */
static void end_stream_with_error(call_t *c, const char *code, const char *msg)
{
    if (c->egress != NULL) {
        dp_anthropic_egress_fail(c->egress, msg, &c->recv);
    } else if (!c->error_relayed) {
        dp_error_t e = {.status = 502, .type = "api_error", .code = code, .message = msg};
        h2o_iovec_t j = dp_error_json(&c->req->pool, &e);
        append(&c->recv, H2O_STRLIT("data: "));
        append(&c->recv, j.base, j.len - 1); /* without its newline */
        append(&c->recv, H2O_STRLIT("\n\n"));
    }
    c->broken = 1;
    c->upstream_done = 1;
    if (c->error == NULL)
        c->error = code;
    try_send(c);
}

/* ---- stream decoding ------------------------------------------------------ */

/* What an event told the request path. */
static void note_event(call_t *c, int f)
{
    if (f & DP_EV_CONTENT) {
        if (!c->saw_content)
            c->t_first_token = now_ns();
        c->saw_content = 1;
        c->content_events++;
    }
    if (f & DP_EV_DONE)
        c->saw_done = 1;
}

/* Callbacks return 0, 1 for an in-stream error, 2 for an event that cannot
 * be read. */

/* Byte-for-byte relay: the event is already in c->recv; only inspected. */
static int on_sse_event(void *ud, const sl_sse_event_t *ev)
{
    call_t *c = ud;
    if (ev->truncated) {
        note_event(c, DP_EV_CONTENT); /* too big to inspect: a large content chunk */
        return 0;
    }
    if (c->route.ops->parse_event == NULL)
        return 0;
    int f = c->route.ops->parse_event(&c->req->pool, ev->data, ev->len, &c->tokens);
    note_event(c, f & ~DP_EV_ERROR);
    return (f & DP_EV_ERROR) ? 1 : 0;
}

/* Feeds one OpenAI event's data to the Anthropic egress. */
static void to_egress(call_t *c, const char *data, size_t len)
{
    dp_anthropic_egress_event(c->egress, data, len, &c->recv);
}

/* OpenAI-format upstream, Anthropic-format client. */
static int on_egress_sse_event(void *ud, const sl_sse_event_t *ev)
{
    call_t *c = ud;
    if (ev->truncated)
        return 2;
    int f = c->route.ops->parse_event != NULL
                ? c->route.ops->parse_event(&c->req->pool, ev->data, ev->len, &c->tokens)
                : 0;
    if (f & DP_EV_ERROR)
        return 1;
    note_event(c, f);
    to_egress(c, ev->data, ev->len);
    return 0;
}

/* Passes complete translated chunks ("data: {...}\n\n") from c->xbuf to the
 * Anthropic egress. */
static void pump_egress(call_t *c)
{
    h2o_buffer_t *b = c->xbuf;
    size_t off = 0;
    if (b->size == 0)
        return;
    for (;;) {
        const char *s = b->bytes + off, *end = b->bytes + b->size;
        const char *sep = (const char *)memmem(s, (size_t)(end - s), "\n\n", 2);
        if (sep == NULL)
            break;
        for (const char *line = s; line < sep;) {
            const char *nl = memchr(line, '\n', (size_t)(sep - line));
            const char *le = nl != NULL ? nl : sep;
            if (le - line >= 5 && memcmp(line, "data:", 5) == 0) {
                const char *d = line + 5;
                if (d < le && *d == ' ')
                    d++;
                to_egress(c, d, (size_t)(le - d));
            }
            line = le + 1;
        }
        off = (size_t)(sep + 2 - b->bytes);
    }
    h2o_buffer_consume(&c->xbuf, off);
}

/* Translating providers: one upstream event in, OpenAI chunks out. */
static int xlate_event(call_t *c, const char *event, size_t elen, const char *data, size_t len)
{
    h2o_buffer_t **out = c->egress != NULL ? &c->xbuf : &c->recv;
    size_t before = (*out)->size;
    int f = c->route.ops->translate_event(&c->req->pool, &c->xc, event, elen, data, len, out, &c->tokens);
    if (f & DP_EV_ERROR) {
        (*out)->size = before; /* the request path words the error event itself */
        return 1;
    }
    int done_before = c->saw_done;
    note_event(c, f);
    if ((f & DP_EV_DONE) && !done_before)
        append(out, H2O_STRLIT("data: [DONE]\n\n"));
    if (c->egress != NULL)
        pump_egress(c);
    return 0;
}

static int on_xlate_sse_event(void *ud, const sl_sse_event_t *ev)
{
    call_t *c = ud;
    if (ev->truncated)
        return 2;
    return xlate_event(c, ev->event, strlen(ev->event), ev->data, ev->len);
}

/* Decodes complete event-stream messages in place in the socket buffer; a
 * message split across reads stays there until the rest arrives, so
 * nothing is copied or allocated. */
static int feed_evstream(call_t *c, h2o_buffer_t **in)
{
    sl_evs_message_t m;
    size_t used, off = 0;
    sl_err_t err;
    int rc = 0;
    while (rc == 0 && off < (*in)->size) {
        int r = sl_evs_parse((const uint8_t *)(*in)->bytes + off, (*in)->size - off, MAX_EVS_MESSAGE, &m, &used,
                             &err);
        if (r == 0)
            break;
        if (r < 0) {
            rc = 2;
            break;
        }
        off += used;
        if (m.message_type.p != NULL && !sl_evs_str_eq(m.message_type, SL_EVS_MSG_EVENT)) {
            rc = 1; /* "exception" or "error" */
            break;
        }
        rc = xlate_event(c, m.event_type.p != NULL ? m.event_type.p : "", m.event_type.len,
                         (const char *)m.payload, m.payload_len);
    }
    h2o_buffer_consume(in, off);
    return rc;
}

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

/* Feeds what the socket received to the stream's decoder. Returns 0, 1 when
 * the upstream reported an error in the stream, 2 when the stream cannot be
 * decoded. */
static int feed_stream(call_t *c, h2o_socket_t *sock)
{
    h2o_buffer_t **in = &sock->input;
    if ((*in)->size == 0)
        return 0;
    if (!c->xlate && c->egress == NULL) {
        size_t n = take_input(c, sock);
        return sl_sse_feed(&c->sse, c->recv->bytes + c->recv->size - n, n, on_sse_event, c);
    }
    if (c->xlate && c->route.ops->framing == DP_FRAMING_AWS_EVENTSTREAM)
        return feed_evstream(c, in);
    int rc = sl_sse_feed(&c->sse, (*in)->bytes, (*in)->size, c->xlate ? on_xlate_sse_event : on_egress_sse_event, c);
    h2o_buffer_consume(in, (*in)->size);
    return rc;
}

/* ---- attempts ------------------------------------------------------------- */

static void cancel_upstream(call_t *c)
{
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
    }
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
}

static void record_outcome(call_t *c, int outcome)
{
    if (c->breaker == NULL)
        return;
    if (c->bcfg.failures == 0) /* read from the provider's params once per attempt */
        dp_breaker_cfg_for(c->route.provider, &c->bcfg);
    dp_breaker_record(c->breaker, &c->bcfg, outcome, c->probe, dp_breaker_now_ms(), c->cred);
    c->probe = 0;
}

/* Forgets everything a failed attempt left, so the next one starts clean. */
static void reset_attempt(call_t *c)
{
    h2o_buffer_consume(&c->recv, c->recv->size);
    if (c->xbuf != NULL)
        h2o_buffer_consume(&c->xbuf, c->xbuf->size);
    c->req->res.headers = (h2o_headers_t){NULL};
    c->up_headers = (h2o_headers_t){NULL};
    c->streaming = c->saw_done = c->saw_content = c->upstream_done = c->error_relayed = c->head_seen = 0;
    c->tokens = (dp_tokens_t){0};
    c->content_events = 0;
    c->egress = NULL;
    c->xc.state = NULL;
    c->retry_after = h2o_iovec_init(NULL, 0);
    c->throttled = 0;
}

static void set_last_error(call_t *c, int status, const char *type, const char *code, const char *msg)
{
    c->last_err = (dp_error_t){.status = status, .type = type, .code = code, .message = msg};
    c->last_body = h2o_iovec_init(NULL, 0);
}

/* Answers the last failure: no attempt is left. */
static void give_up(call_t *c)
{
    if (c->stopped || c->final_sent)
        return;
    h2o_req_t *req = c->req;
    if (c->last_err.status == 0)
        set_last_error(c, 503, "api_error", "provider_unavailable", "no provider could take the request");
    if (c->last_err.status == 429 && c->retry_after.len == 0 && c->throttled_min_ms != 0) {
        /* passed over rate-limited credentials: when the first comes back */
        int64_t left = c->throttled_min_ms - dp_breaker_now_ms();
        char *v = h2o_mem_alloc_pool(&req->pool, 24);
        c->retry_after = h2o_iovec_init(v, (size_t)snprintf(v, 24, "%lld", (long long)(left > 0 ? (left + 999) / 1000 : 1)));
    }
    if (c->last_err.status == 429 && c->retry_after.len != 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, c->retry_after.base,
                       c->retry_after.len);
    if (c->error == NULL)
        c->error = c->last_err.message;
    if (c->last_body.len != 0)
        respond_error_body(c, c->last_err.status, c->last_body);
    else
        respond_error(c, &c->last_err);
}

/* An attempt failed before anything reached the client. outcome: what the
 * credential's breaker hears (-1: nothing); reason: the failover metric's
 * label; status, code, msg: the answer if no attempt is left (status 0:
 * the caller set it with set_last_error). */
static void attempt_failed(call_t *c, int outcome, const char *reason, int status, const char *code, const char *msg)
{
    c->t_up_end = now_ns();
    cancel_upstream(c);
    if (outcome >= 0)
        record_outcome(c, outcome);
    if (status != 0)
        set_last_error(c, status, "api_error", code, msg);
    if (outcome != DP_OUTCOME_AUTH && c->fails[c->ti] < 255)
        c->fails[c->ti]++;
    c->error = msg != NULL ? msg : c->last_err.message;
    if (c->stopped || c->final_sent)
        return;
    reset_attempt(c);
    c->pending_from = c->route.provider->name;
    c->pending_reason = reason;
    next_attempt(c);
}

/* Something broke in a stream: invisible to the client before its first
 * content (fail over), an error event after it. in_stream: the upstream
 * sent the error as an event (a relayed stream already carries it). */
static void stream_failed(call_t *c, int in_stream, const char *code, const char *msg)
{
    dp_metric_add(&c->w->m->upstream_errors, 1);
    if (!c->committed && !c->saw_content) {
        attempt_failed(c, DP_OUTCOME_FAILURE, "stream_error", 502, code, msg);
        return;
    }
    c->t_up_end = now_ns();
    cancel_upstream(c);
    record_outcome(c, DP_OUTCOME_FAILURE);
    if (c->stopped || c->final_sent)
        return;
    if (in_stream && !c->xlate && c->egress == NULL)
        c->error_relayed = 1; /* the upstream's own error event is in the relayed bytes */
    if (!c->committed)
        commit(c);
    end_stream_with_error(c, code, msg);
}

/* Picks a credential of target t whose breaker lets a request through:
 * untried ones first, already tried ones again when allow_retry. */
static int pick_on(call_t *c, size_t t, int allow_retry, int64_t now)
{
    const dp_provider_t *p = c->targets[t].provider;
    if (c->unusable & (1u << t))
        return -1;
    if (p->n_credentials == 0) {
        if (c->last_err.status == 0)
            set_last_error(c, 503, "api_error", "provider_unavailable", "the provider has no credentials configured");
        return -1;
    }
    uint64_t excl = c->tried[t], deny = 0, throttle = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (!allow_retry || c->tried[t] == 0)
                break;
            excl = 0;
        }
        for (;;) {
            int i = dp_route_pick_credential_excluding(p, dp_worker_rand(c->w), excl | deny);
            if (i < 0)
                break;
            dp_breaker_t *b = dp_breaker_get(p, &p->credentials[i]);
            int64_t throttled = b != NULL ? dp_breaker_throttled_until(b, now) : 0;
            if (throttled != 0) {
                deny |= 1ull << i;
                throttle |= 1ull << i;
                if (c->throttled_min_ms == 0 || throttled < c->throttled_min_ms)
                    c->throttled_min_ms = throttled;
                continue;
            }
            int a = b != NULL ? dp_breaker_allow(b, now) : DP_BREAKER_ALLOW;
            if (a == DP_BREAKER_DENY) {
                deny |= 1ull << i;
                continue;
            }
            c->cred = &p->credentials[i];
            c->cred_index = i;
            c->breaker = b;
            c->probe = a == DP_BREAKER_PROBE;
            c->bcfg.failures = 0; /* read from the provider when needed */
            return 0;
        }
    }
    if (deny != 0) {
        int limited = deny == throttle; /* every credential passed over is rate limited, none broken */
        if (c->pending_from == NULL) {
            c->pending_from = p->name;
            c->pending_reason = limited ? "rate_limited" : "circuit_open";
        }
        if (c->attempts == 0 && c->last_err.status == 0) {
            if (limited)
                set_last_error(c, 429, "rate_limit_error", "rate_limit_exceeded",
                               "the provider's rate limit for this request is exhausted; retry after the time given");
            else
                set_last_error(c, 503, "api_error", "provider_unavailable",
                               "the providers for this request are unavailable (circuit open)");
        }
    }
    return -1;
}

/* Chooses the next attempt's target and credential. After an
 * authentication refusal or a 429 the same target's other credentials come
 * first; then the targets after the current one; then every target again
 * (retries), round after round within the attempt budget. Returns 0, or -1
 * when nothing is left. */
static int choose(call_t *c, int64_t now)
{
    c->throttled_min_ms = 0;
    if (c->stay) {
        c->stay = 0;
        if (pick_on(c, c->ti, 0, now) == 0)
            return 0;
    }
    size_t t = c->chose ? c->ti + 1 : 0;
    c->chose = 1;
    /* the rest of this round, then at most one whole new round */
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        for (; t < c->ntargets; t++) {
            if (pick_on(c, t, c->round > 0, now) == 0) {
                c->ti = t;
                return 0;
            }
        }
        c->round++;
        t = 0;
    }
    return -1;
}

/* Sends the request to c->targets[c->ti] with c->cred. Returns 0, or -1
 * when the request could not be built for that target (the next one may
 * take it; the answer if none does is in last_err). */
static int launch(call_t *c)
{
    h2o_req_t *req = c->req;
    c->route = c->targets[c->ti];
    c->tried[c->ti] |= 1ull << c->cred_index;
    if (c->pending_from != NULL) {
        dp_metrics_count_failover(c->w->m, c->pending_from, c->route.provider->name, c->pending_reason);
        c->pending_from = NULL;
    }
    const dp_provider_ops_t *ops = c->route.ops;
    h2o_iovec_t model = h2o_iovec_init(c->route.model, c->route.model_len);
    c->up = (dp_upstream_req_t){.nbufs = 0};
    int rc;
    if (c->kind == CALL_CHAT) {
        rc = ops->build_chat(&req->pool, c->route.provider, c->cred, model, &c->chat, &req->headers,
                             h2o_iovec_init(c->request_id, 32), &c->up);
    } else if (ops->build_embeddings != NULL) {
        rc = ops->build_embeddings(&req->pool, c->route.provider, c->cred, model, &c->chat, &req->headers,
                                   h2o_iovec_init(c->request_id, 32), &c->up);
    } else {
        rc = SL_EINVAL;
        c->up.error_status = 400;
        c->up.error = "the provider does not serve embeddings";
    }
    if (rc != 0) {
        if (c->up.error_status == 400)
            set_last_error(c, 400, "invalid_request_error", NULL,
                           c->up.error != NULL ? c->up.error : "the request cannot be sent to the provider");
        else
            set_last_error(c, 503, "api_error", "provider_unavailable",
                           c->up.error != NULL ? c->up.error : "the provider's configuration is unusable");
        goto unusable;
    }
    if ((c->upool = get_pool(c->w, c->route.provider)) == NULL) {
        set_last_error(c, 503, "api_error", "provider_unavailable", "the provider's address is unusable");
        goto unusable;
    }
    c->xlate = c->kind == CALL_CHAT && ops->translate_event != NULL && ops->translate_response != NULL;
    if (c->xlate || (c->kind == CALL_EMBEDDINGS && ops->translate_embeddings != NULL)) {
        c->xc = (dp_xlate_ctx_t){.id = c->xc.id,
                                 .model = model,
                                 .created = (int64_t)time(NULL),
                                 .include_usage = c->include_usage};
        if (c->xc.id.base == NULL) {
            char *id = h2o_mem_alloc_pool(&req->pool, 9 + 32);
            memcpy(id, "chatcmpl-", 9);
            memcpy(id + 9, c->request_id, 32);
            c->xc.id = h2o_iovec_init(id, 41);
        }
    }
    c->attempts++;
    c->resends = 0;
    if (h2o_timeout_is_linked(&c->total_timer))
        h2o_timeout_unlink(&c->total_timer);
    int total = c->route.provider->total_timeout_ms;
    h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, (uint64_t)(total > 0 ? total : DEFAULT_TOTAL_MS)),
                     &c->total_timer);
    if (c->t_up_start == 0)
        c->t_up_start = now_ns();
    start_upstream(c);
    return 0;

unusable:
    /* not transient: this request is never sent to that target */
    c->unusable |= 1u << c->ti;
    c->probe = 0; /* never sent: the half-open slot frees itself after the probe timeout */
    c->pending_from = c->route.provider->name;
    c->pending_reason = c->up.error_status == 400 ? "unsupported_request" : "unusable_provider";
    return -1;
}

static void on_backoff(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, backoff_timer, entry);
    if (dp_breaker_now_ms() < c->backoff_until_ms) {
        h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, BACKOFF_TICK_MS), &c->backoff_timer);
        return;
    }
    if (c->rechoose) {
        c->rechoose = 0;
        next_attempt(c);
    } else if (launch(c) != 0) {
        next_attempt(c);
    }
}

/* Starts the next attempt, after a backoff when it retries a credential
 * that already failed this request, or answers the last failure. */
static void next_attempt(call_t *c)
{
    int64_t now = dp_breaker_now_ms();
    /* each turn of the loop either starts an attempt or marks a target
     * unusable, so it ends within DP_MAX_TARGETS turns */
    for (;;) {
        if (c->attempts >= DP_RETRY_MAX_ATTEMPTS || now >= c->deadline_ms) {
            give_up(c);
            return;
        }
        if (choose(c, now) != 0) {
            /* only credentials the provider rate-limited are left: when the
             * first comes back soon, wait for it once */
            int64_t back = c->throttled_min_ms;
            if (back == 0 || c->waited_throttle || back - now > DP_RETRY_CAP_MS || back >= c->deadline_ms) {
                give_up(c);
                return;
            }
            c->waited_throttle = c->rechoose = 1;
            c->backoff_until_ms = back;
            h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, BACKOFF_TICK_MS), &c->backoff_timer);
            return;
        }
        uint32_t delay = 0;
        if (c->tried[c->ti] & (1ull << c->cred_index))
            delay = dp_retry_backoff_ms(c->fails[c->ti], dp_worker_rand(c->w), DP_RETRY_BASE_MS, DP_RETRY_CAP_MS);
        if (delay > 0) {
            if (now + delay >= c->deadline_ms) {
                give_up(c);
                return;
            }
            c->backoff_until_ms = now + delay;
            h2o_timeout_link(c->w->ctx.loop, dp_worker_timeout(c->w, BACKOFF_TICK_MS), &c->backoff_timer);
            return;
        }
        if (launch(c) == 0)
            return;
        now = dp_breaker_now_ms();
    }
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, timer, entry);
    if (c->streaming) {
        stream_failed(c, 0, "upstream_timeout", "the upstream stream stalled");
        return;
    }
    dp_metric_add(&c->w->m->upstream_errors, 1);
    attempt_failed(c, DP_OUTCOME_FAILURE, c->head_seen ? "timeout" : c->client_connected ? "timeout" : "connect",
                   504, "upstream_timeout", "the upstream did not answer in time");
}

static void on_total_timeout(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, total_timer, entry);
    if (c->streaming) {
        stream_failed(c, 0, "upstream_timeout", "the upstream exceeded the total time allowed");
        return;
    }
    dp_metric_add(&c->w->m->upstream_errors, 1);
    attempt_failed(c, DP_OUTCOME_FAILURE, "timeout", 504, "upstream_timeout",
                   "the upstream exceeded the total time allowed");
}

/* ---- upstream callbacks --------------------------------------------------- */

static void add_cost_header(call_t *c)
{
    if (!c->tokens.seen)
        return;
    char usd[40];
    c->cost_nano = dp_price_cost(c->route.price, &c->tokens);
    size_t n = sl_usd_format(c->cost_nano, 9, usd, sizeof(usd));
    add_header_str(c, &c->req->res.headers, "x-sluice-cost-usd", h2o_strdup(&c->req->pool, usd, n).base, n);
}

/* An upstream error answer, complete: fail over, or answer it. */
static void upstream_error_status(call_t *c, h2o_iovec_t body)
{
    h2o_req_t *req = c->req;
    int status = c->upstream_status;
    dp_upstream_error_t ue;
    memset(&ue, 0, sizeof(ue));
    c->route.ops->map_error(status, body.base, body.len, &ue);
    const char *msg;
    if (ue.message[0] != '\0') {
        msg = h2o_strdup(&req->pool, ue.message, strlen(ue.message)).base;
    } else {
        char m[64];
        int n = snprintf(m, sizeof(m), "the upstream provider answered HTTP %d", status);
        msg = h2o_strdup(&req->pool, m, (size_t)n).base;
    }
    set_last_error(c, ue.status, ue.type, ue.code, msg);
    if (ue.pass_body && body.len <= MAX_ERROR_BODY)
        c->last_body = h2o_strdup(&req->pool, body.base, body.len);
    c->answered_upstream = 1;
    if (status == 401 || status == 403) {
        c->stay = 1; /* the provider's other credentials may work */
        /* a refused access token being renewed is a passing failure, not a
         * bad credential to shut out for the auth cooldown */
        int renewing = status == 401 && c->route.ops->auth_refused != NULL &&
                       c->route.ops->auth_refused(c->route.provider, c->cred);
        attempt_failed(c, renewing ? DP_OUTCOME_FAILURE : DP_OUTCOME_AUTH, "auth", 0, NULL, NULL);
        return;
    }
    if (status == 408 || status == 429 || status >= 500) {
        c->stay = status == 429; /* rate limits are per credential */
        /* a 429 that says when it ends is the provider's limit, not a
         * failing credential: its breaker hears nothing (a probe, that the
         * credential answers) */
        int outcome = status == 429 && c->throttled ? (c->probe ? DP_OUTCOME_SUCCESS : -1) : DP_OUTCOME_FAILURE;
        attempt_failed(c, outcome, status == 429 ? "rate_limited" : status == 408 ? "timeout" : "server_error", 0,
                       NULL, NULL);
        return;
    }
    /* the client's own error: the provider is healthy */
    record_outcome(c, DP_OUTCOME_SUCCESS);
    c->error = "upstream error status";
    give_up(c);
}

/* A complete buffered (non-streaming or error) response. */
static void finish_buffered(call_t *c)
{
    h2o_req_t *req = c->req;
    const dp_provider_ops_t *ops = c->route.ops;
    h2o_iovec_t body = h2o_iovec_init(c->recv->bytes, c->recv->size);
    int status = c->upstream_status;
    cancel_upstream(c);
    if (c->stopped || c->final_sent)
        return;
    if (status < 200 || status >= 300) {
        upstream_error_status(c, body);
        return;
    }
    h2o_iovec_t out = body;
    int translated = 0, rc = 0;
    if (c->kind == CALL_CHAT && c->xlate) {
        rc = ops->translate_response(&req->pool, &c->xc, body.base, body.len, &out, &c->tokens);
        translated = 1;
    } else if (c->kind == CALL_EMBEDDINGS && ops->translate_embeddings != NULL) {
        rc = ops->translate_embeddings(&req->pool, &c->xc, &c->chat, &c->up_headers, body.base, body.len, &out,
                                       &c->tokens);
        translated = 1;
    } else if (ops->parse_usage != NULL) {
        ops->parse_usage(&req->pool, body.base, body.len, &c->tokens);
    }
    if (rc == 0 && c->ingress == INGRESS_ANTHROPIC) {
        rc = dp_anthropic_egress_response(&req->pool, out.base, out.len,
                                          h2o_iovec_init(c->route.model, c->route.model_len), &out);
        translated = 1;
    }
    if (rc != 0) {
        c->tokens = (dp_tokens_t){0};
        attempt_failed(c, -1, "invalid_response", 502, "upstream_invalid_response",
                       "the upstream provider's response could not be translated");
        return;
    }
    if (translated)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    add_cost_header(c);
    req->res.status = status;
    req->res.reason = dp_http_reason(status);
    req->res.content_length = out.len;
    add_gateway_headers(c);
    c->status = status;
    c->committed = 1;
    c->final_sent = 1;
    settle(c);
    c->gen.proceed = on_proceed;
    c->gen.stop = on_stop;
    h2o_start_response(req, &c->gen);
    if (c->log_content)
        dp_reqlog_capture(&c->capture, &req->pool, out.base, out.len);
    if (translated) {
        h2o_send(req, &out, 1, H2O_SEND_STATE_FINAL);
    } else {
        /* hand the whole body to the doublebuffer so it lives until the write is done */
        h2o_iovec_t iov = h2o_doublebuffer_prepare(&c->out, &c->recv, SIZE_MAX);
        h2o_send(req, &iov, iov.len != 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
    }
}

static int on_stream_body(call_t *c, h2o_http1client_t *client, const char *errstr)
{
    int rc = feed_stream(c, client->sock);
    if (errstr != NULL)
        c->client = NULL; /* freed by h2o when we return */
    if (rc != 0) {
        c->client = NULL; /* the non-zero return below closes the connection */
        stream_failed(c, rc == 1, rc == 1 ? "upstream_stream_error" : "upstream_invalid_response",
                      rc == 1 ? "the upstream provider reported an error in the stream"
                              : "the upstream stream could not be decoded");
        return -1;
    }
    if (errstr == NULL) {
        if (!c->committed && (c->saw_content || c->recv->size >= HOLD_MAX))
            commit(c);
        else
            try_send(c);
        arm(c, c->route.provider->idle_timeout_ms, DEFAULT_IDLE_MS);
        return 0;
    }
    c->t_up_end = now_ns();
    cancel_upstream(c);
    int clean = errstr == h2o_http1client_error_is_eos &&
                (c->saw_done || (!c->xlate && c->tokens.seen)) && (*client->sock->input).size == 0;
    if (!clean) {
        stream_failed(c, 0, "upstream_stream_broken", "the upstream stream ended unexpectedly");
        return 0;
    }
    if (c->egress != NULL && !c->saw_done)
        to_egress(c, H2O_STRLIT("[DONE]"));
    c->upstream_done = 1;
    if (c->stopped)
        return 0;
    if (!c->committed)
        commit(c);
    else
        try_send(c);
    return 0;
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        /* on a framing error h2o leaves the undecoded bytes in the buffer:
         * use nothing from a failed read */
        h2o_buffer_consume(&client->sock->input, client->sock->input->size);
    }
    if (c->streaming)
        return on_stream_body(c, client, errstr);
    take_input(c, client->sock);
    if (errstr == NULL) {
        if (c->recv->size > MAX_RESPONSE_BYTES) {
            c->client = NULL; /* returning non-zero closes it */
            attempt_failed(c, -1, "invalid_response", 502, "upstream_response_too_large",
                           "the upstream response is too large");
            return -1;
        }
        arm(c, c->route.provider->idle_timeout_ms, DEFAULT_IDLE_MS);
        return 0;
    }
    c->client = NULL;
    c->t_up_end = now_ns();
    if (errstr == h2o_http1client_error_is_eos) {
        finish_buffered(c);
    } else {
        dp_metric_add(&c->w->m->upstream_errors, 1);
        attempt_failed(c, DP_OUTCOME_FAILURE, "connect", 502, "upstream_unavailable",
                       "the upstream connection failed while reading the response");
    }
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

static void copy_headers(h2o_mem_pool_t *pool, h2o_headers_t *to, const h2o_header_t *headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const h2o_header_t *h = &headers[i];
        if (drop_response_header(h))
            continue;
        h2o_iovec_t v = h2o_strdup(pool, h->value.base, h->value.len);
        if (h2o_iovec_is_token(h->name)) {
            h2o_add_header(pool, to, (const h2o_token_t *)h->name, NULL, v.base, v.len);
        } else {
            h2o_iovec_t nm = h2o_strdup(pool, h->name->base, h->name->len);
            h2o_add_header_by_str(pool, to, nm.base, nm.len, 0, NULL, v.base, v.len);
        }
    }
}

/* A 429 or 503 with Retry-After (or OpenAI's and Azure's retry-after-ms):
 * every worker leaves the credential alone for that long, and a 429's
 * value goes back to the client if no other attempt succeeds. */
static void note_retry_after(call_t *c, const h2o_header_t *headers, size_t n)
{
    int64_t wait = -1;
    for (size_t i = 0; i < n; i++) {
        const h2o_header_t *h = &headers[i];
        int64_t w;
        if (h2o_iovec_is_token(h->name) && (const h2o_token_t *)h->name == H2O_TOKEN_RETRY_AFTER) {
            if (c->upstream_status == 429)
                c->retry_after = h2o_strdup(&c->req->pool, h->value.base, h->value.len);
            w = dp_retry_after_ms(h->value.base, h->value.len, 0, (int64_t)time(NULL) * 1000);
        } else if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("retry-after-ms"))) {
            w = dp_retry_after_ms(h->value.base, h->value.len, 1, 0);
        } else {
            continue;
        }
        if (w > wait)
            wait = w;
    }
    if (wait > 0 && c->breaker != NULL) {
        dp_breaker_throttle(c->breaker, dp_breaker_now_ms() + wait);
        c->throttled = 1;
    }
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        c->client = NULL;
        if (c->reused && c->resends < 2 && !c->stopped) {
            /* a pooled connection the upstream had closed: nothing was processed */
            c->resends++;
            start_upstream(c);
            return NULL;
        }
        dp_metric_add(&c->w->m->upstream_errors, 1);
        attempt_failed(c, DP_OUTCOME_FAILURE, "connect", 502, "upstream_unavailable",
                       "the upstream closed the connection before answering");
        return NULL;
    }
    c->head_seen = 1;
    c->upstream_status = status;
    h2o_req_t *req = c->req;
    int ok = status >= 200 && status < 300;
    if (ok) {
        record_outcome(c, DP_OUTCOME_SUCCESS);
        /* an OpenAI-format answer to an OpenAI-format client keeps the
         * provider's headers; a translated one is ours */
        if (!c->xlate && c->ingress == INGRESS_OPENAI &&
            !(c->kind == CALL_EMBEDDINGS && c->route.ops->translate_embeddings != NULL))
            copy_headers(&req->pool, &req->res.headers, headers, num_headers);
        else if (c->kind == CALL_EMBEDDINGS)
            copy_headers(&req->pool, &c->up_headers, headers, num_headers);
    } else if (status == 429 || status == 503) {
        note_retry_after(c, headers, num_headers);
    }
    if (errstr == h2o_http1client_error_is_eos) {
        c->client = NULL;
        c->t_up_end = now_ns();
        finish_buffered(c);
        return NULL;
    }
    if (ok && c->chat.stream && c->kind == CALL_CHAT) {
        c->streaming = 1;
        size_t cap = c->xlate || c->ingress == INGRESS_ANTHROPIC ? XLATE_EVENT_CAP : SSE_EVENT_CAP;
        if (c->ssecap < cap) {
            c->ssebuf = h2o_mem_alloc_pool(&req->pool, cap + 1);
            c->ssecap = cap;
        }
        sl_sse_init(&c->sse, c->ssebuf, c->ssecap);
        if (c->ingress == INGRESS_ANTHROPIC) {
            char id[4 + 32];
            memcpy(id, "msg_", 4);
            memcpy(id + 4, c->request_id, 32);
            c->egress = dp_anthropic_egress_new(&req->pool, h2o_iovec_init(id, sizeof(id)),
                                                h2o_iovec_init(c->route.model, c->route.model_len));
            if (c->xlate && c->xbuf == NULL)
                h2o_buffer_init(&c->xbuf, &h2o_socket_buffer_prototype);
        }
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
        dp_metric_add(&c->w->m->upstream_errors, 1);
        attempt_failed(c, DP_OUTCOME_FAILURE, "connect", 502, "upstream_unavailable",
                       "could not connect to the upstream provider");
        return NULL;
    }
    c->client_connected = 1;
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
    c->client_connected = 0;
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
    c->log_content = c->w->cfg->request_log && dp_reqlog_content_enabled(c->w->id, c->snap, key);
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


/* Validates and tokenizes the body once (the client's, or the OpenAI form
 * of an Anthropic-format request). */
static int parse_body(call_t *c, const char *body, size_t len)
{
    h2o_req_t *req = c->req;
    dp_chat_req_t *ch = &c->chat;
    ch->body = body != NULL ? body : "";
    ch->len = len;
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
    ch->max_tokens = -1;
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
    if (c->kind == CALL_EMBEDDINGS) {
        int in = sl_json_find(ch->body, t, 0, "input", 5);
        if (in < 0 || (t[in].type != SL_JSON_STRING && t[in].type != SL_JSON_ARRAY)) {
            fail(c, 400, "invalid_request_error", NULL, "input", "you must provide an input string or array");
            return -1;
        }
        return 0;
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
    int so = sl_json_find(ch->body, t, 0, "stream_options", 14);
    if (so > 0 && t[so].type == SL_JSON_OBJECT) {
        int iu = sl_json_find(ch->body, t, so, "include_usage", 13);
        c->include_usage = iu > 0 && t[iu].type == SL_JSON_TRUE;
    }
    int msgs = sl_json_find(ch->body, t, 0, "messages", 8);
    if (msgs < 0 || t[msgs].type != SL_JSON_ARRAY) {
        fail(c, 400, "invalid_request_error", NULL, "messages", "you must provide a messages array");
        return -1;
    }
    int mt = sl_json_find(ch->body, t, 0, "max_completion_tokens", 21);
    if (mt < 0)
        mt = sl_json_find(ch->body, t, 0, "max_tokens", 10);
    int64_t v;
    if (mt > 0 && sl_json_int64(ch->body, &t[mt], &v) == 0 && v >= 0)
        ch->max_tokens = v;
    return 0;
}

static int body_size_ok(call_t *c)
{
    if (c->req->entity.len <= c->w->cfg->max_request_bytes)
        return 1;
    fail(c, 400, "invalid_request_error", "request_too_large", NULL, "the request body is too large");
    return 0;
}

static void on_quota(void *ctx, int rc);

/* Routes the parsed request, then reserves quota (DESIGN §7 steps 2-3). */
static void route_and_reserve(call_t *c)
{
    dp_error_t err;
    if (dp_route_resolve(c->snap, c->key, c->asked_model.base, c->asked_model.len, &c->route, &err) != 0) {
        respond_error(c, &err);
        return;
    }
    c->routed = 1;
    /* reserve an upper bound before going upstream (may wait for the key's
     * first grant on this node; on_quota follows) */
    dp_quota_estimate_t est;
    dp_quota_estimate(c->snap, c->key, c->route.price, &c->chat, &est);
    if (c->kind == CALL_EMBEDDINGS) {
        est.output_tokens = 0;
        est.cost_nano = dp_price_estimate(c->route.price, est.input_tokens, 0);
    }
    int qrc = dp_quota_reserve(c->w, c->snap, c->key, c->route.provider->name, &est, &c->hold, on_quota, c);
    if (qrc != DP_QUOTA_PARKED)
        on_quota(c, qrc);
}

static void on_quota(void *ctx, int rc)
{
    call_t *c = ctx;
    h2o_req_t *req = c->req;
    if (rc != 0) {
        dp_quota_reject_headers(req, &c->hold);
        fail(c, c->hold.status, c->hold.type, c->hold.code, NULL, c->hold.message);
        return;
    }
    /* DESIGN §7 step 4: the targets, tried in order */
    c->ntargets = dp_route_targets(c->snap, c->key, &c->route, c->targets, DP_MAX_TARGETS);
    c->deadline_ms = dp_breaker_now_ms() + DP_RETRY_BUDGET_MS;
    next_attempt(c);
}

static void handle_chat(call_t *c)
{
    if (authenticate(c) != 0 || !body_size_ok(c) || parse_body(c, c->req->entity.base, c->req->entity.len) != 0)
        return;
    route_and_reserve(c);
}

static void handle_embeddings(call_t *c)
{
    c->kind = CALL_EMBEDDINGS;
    if (authenticate(c) != 0 || !body_size_ok(c) || parse_body(c, c->req->entity.base, c->req->entity.len) != 0)
        return;
    route_and_reserve(c);
}

/* POST /v1/messages: an Anthropic-format client. */
static void handle_messages(call_t *c)
{
    c->ingress = INGRESS_ANTHROPIC;
    if (authenticate(c) != 0 || !body_size_ok(c))
        return;
    h2o_iovec_t body;
    sl_err_t err = {0};
    h2o_req_t *req = c->req;
    if (dp_anthropic_ingress_to_openai(&req->pool, req->entity.base != NULL ? req->entity.base : "", req->entity.len,
                                       &body, &err) != 0) {
        const char *msg = err.msg[0] != '\0' ? h2o_strdup(&req->pool, err.msg, strlen(err.msg)).base
                                             : "the request is not a valid messages request";
        fail(c, 400, "invalid_request_error", NULL, NULL, msg);
        return;
    }
    if (parse_body(c, body.base, body.len) != 0)
        return;
    route_and_reserve(c);
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

static int method_is(call_t *c, const char *m, size_t len)
{
    if (h2o_memis(c->req->method.base, c->req->method.len, m, len))
        return 1;
    char msg[48];
    int n = snprintf(msg, sizeof(msg), "use %s for this endpoint", m);
    fail(c, 405, "invalid_request_error", "method_not_allowed", NULL, h2o_strdup(&c->req->pool, msg, (size_t)n).base);
    return 0;
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
    c->backoff_timer.cb = on_backoff;
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
        if (method_is(c, H2O_STRLIT("POST")))
            handle_chat(c);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/messages"))) {
        c->ingress = INGRESS_ANTHROPIC;
        if (method_is(c, H2O_STRLIT("POST")))
            handle_messages(c);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/embeddings"))) {
        if (method_is(c, H2O_STRLIT("POST")))
            handle_embeddings(c);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/sluice/usage"))) {
        if (authenticate(c) == 0)
            respond_body(c, 200, dp_quota_usage_json(&req->pool, c->snap, c->key));
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/models"))) {
        if (method_is(c, H2O_STRLIT("GET")))
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
