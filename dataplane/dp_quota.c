/*
 * dp_quota.c - reservation, settlement, waiting for grants, rate-limit
 * headers and the usage endpoint (see dp_quota.h).
 *
 * Waiting. A request that finds no usable lease is parked on its worker's
 * list (thread-local) and a 5 ms poll timer runs on that worker while the
 * list is not empty: each tick looks at the generation counter of the
 * instance each request waits on (the sync thread bumps it on every grant
 * or state change) and at its deadline, and retries the whole reservation
 * for those that moved. Polling rather than a cross-thread message: it
 * needs no receiver registered in the server, no allocation per wake-up and
 * no knowledge of which worker waits on what on the sync thread; waiting is
 * rare (a quota's first request on a node, a refill that fell behind), a
 * poll costs one atomic load per parked request, and it adds at most 5 ms
 * to a wait that is a network round trip anyway.
 */
#include "dp_quota.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dp_price.h"
#include "sl_err.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_money.h"
#include "sl_quota_names.h"

#define MOD "quota"
#define POLL_MS 5

typedef Sluice__Config__V1__Quota quota_pb;

enum { REJ_BUDGET, REJ_RATE, REJ_CONCURRENCY, REJ_UNAVAILABLE, REJ_MAX };
static _Atomic uint64_t g_rejections[REJ_MAX];
static _Atomic uint64_t g_overruns;
static _Atomic uint64_t g_parked_total;
static _Atomic uint64_t g_open_admits;
static _Atomic int g_warned_many;

/* ---- time --------------------------------------------------------------- */

static int64_t now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- estimate ----------------------------------------------------------- */

/* Parts of the messages the provider fetches or decodes itself (an image
 * by URL, a file by id or URL): their tokens are not bounded by the body's
 * bytes. Inline data (data: URLs, base64 audio) is in the body already. */
static int64_t referenced_parts(const dp_chat_req_t *ch)
{
    const sl_json_tok_t *t = ch->toks;
    if (t == NULL)
        return 0;
    int msgs = sl_json_find(ch->body, t, 0, "messages", 8);
    if (msgs < 0 || t[msgs].type != SL_JSON_ARRAY)
        return 0;
    int64_t n = 0;
    for (uint32_t i = 0; i < t[msgs].size; i++) {
        int m = sl_json_array_at(t, msgs, i);
        if (m < 0 || t[m].type != SL_JSON_OBJECT)
            continue;
        int content = sl_json_find(ch->body, t, m, "content", 7);
        if (content < 0 || t[content].type != SL_JSON_ARRAY)
            continue;
        for (uint32_t j = 0; j < t[content].size; j++) {
            int p = sl_json_array_at(t, content, j);
            if (p < 0 || t[p].type != SL_JSON_OBJECT)
                continue;
            int img = sl_json_find(ch->body, t, p, "image_url", 9);
            if (img >= 0) {
                int url = t[img].type == SL_JSON_OBJECT ? sl_json_find(ch->body, t, img, "url", 3) : img;
                if (url >= 0 && t[url].type == SL_JSON_STRING &&
                    !(t[url].end - t[url].start >= 5 && memcmp(ch->body + t[url].start, "data:", 5) == 0))
                    n++;
                continue;
            }
            int file = sl_json_find(ch->body, t, p, "file", 4);
            if (file >= 0 && t[file].type == SL_JSON_OBJECT && sl_json_find(ch->body, t, file, "file_data", 9) < 0)
                n++; /* file_id or a URL: not in the body */
            int audio = sl_json_find(ch->body, t, p, "input_audio", 11);
            if (audio >= 0 && t[audio].type == SL_JSON_OBJECT && sl_json_find(ch->body, t, audio, "data", 4) < 0)
                n++;
        }
    }
    return n;
}

static int64_t output_cap(const dp_model_t *m, int64_t max_tokens)
{
    if (max_tokens >= 0)
        return max_tokens;
    return m != NULL && m->max_output_tokens > 0 ? m->max_output_tokens : DP_QUOTA_DEFAULT_OUTPUT;
}

static int64_t mul_sat(int64_t a, int64_t b)
{
    if (a <= 0 || b <= 0)
        return 0;
    return a > INT64_MAX / b ? INT64_MAX : a * b;
}

void dp_quota_estimate(const dp_snapshot_t *snap, const dp_key_t *key, const dp_model_t *price,
                       const dp_chat_req_t *chat, dp_quota_estimate_t *est)
{
    int64_t choices = 1;
    if (chat->toks != NULL) {
        int n = sl_json_find(chat->body, chat->toks, 0, "n", 1);
        int64_t v;
        if (n > 0 && sl_json_int64(chat->body, &chat->toks[n], &v) == 0 && v > 1)
            choices = v > 128 ? 128 : v;
    }
    est->input_tokens = sl_add_sat((int64_t)chat->len, mul_sat(referenced_parts(chat), DP_QUOTA_URL_PART_TOKENS));
    int64_t out = output_cap(price, chat->max_tokens);
    int64_t cost = dp_price_estimate(price, est->input_tokens, mul_sat(out, choices));
    /* a fallback may serve it: the bound holds for the dearest target */
    for (size_t i = 0; key != NULL && snap != NULL && i < key->n_fallbacks; i++) {
        const dp_target_t *f = &key->fallbacks[i];
        const dp_model_t *m = dp_snapshot_find_model(snap, f->provider, strlen(f->provider), f->model, strlen(f->model));
        int64_t o = output_cap(m, chat->max_tokens);
        if (o > out)
            out = o;
        int64_t c = dp_price_estimate(m, est->input_tokens, mul_sat(o, choices));
        if (c > cost)
            cost = c;
    }
    est->output_tokens = mul_sat(out, choices);
    est->cost_nano = cost;
}

/* ---- which quotas a request touches ------------------------------------- */

static int provider_applies(const char *qp, const dp_key_t *key, const char *provider)
{
    if (qp == NULL || qp[0] == '\0')
        return 1;
    if (provider != NULL && strcmp(qp, provider) == 0)
        return 1;
    for (size_t i = 0; key != NULL && i < key->n_fallbacks; i++)
        if (strcmp(qp, key->fallbacks[i].provider) == 0)
            return 1;
    return 0;
}

static int64_t amount_for(int metric, int64_t cost, int64_t input, int64_t output)
{
    switch (metric) {
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO:
        return cost;
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS:
        return 1;
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS:
        return sl_add_sat(input, output);
    default:
        return 0;
    }
}

/* ---- reserve ------------------------------------------------------------ */

static void rollback(dp_quota_hold_t *h)
{
    for (int i = h->n - 1; i >= 0; i--) {
        dp_quota_ent_t *e = &h->ent[i];
        if (e->conc)
            dp_lease_conc_leave(e->p);
        else
            dp_lease_give(e->p, e->amount, 0);
    }
    h->n = 0;
}

static void reject(dp_quota_hold_t *h, int kind, int metric, int retry)
{
    rollback(h);
    atomic_fetch_add_explicit(&g_rejections[kind], 1, memory_order_relaxed);
    h->status = 429;
    h->retry_after = 0;
    switch (kind) {
    case REJ_BUDGET:
        h->type = "insufficient_quota";
        h->code = "budget_exceeded";
        h->message = "this key's budget is exhausted";
        break;
    case REJ_RATE:
        h->type = "rate_limit_error";
        h->code = "rate_limit_exceeded";
        h->message = metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS
                         ? "token rate limit reached for this key"
                         : "request rate limit reached for this key";
        h->retry_after = retry > 0 ? retry : 1;
        break;
    case REJ_CONCURRENCY:
        h->type = "rate_limit_error";
        h->code = "rate_limit_exceeded";
        h->message = "too many concurrent requests for this key";
        h->retry_after = 1;
        break;
    default:
        h->status = 503;
        h->type = "api_error";
        h->code = "quota_unavailable";
        h->message = "the quota service cannot be reached and this key's budget cannot be checked";
        h->retry_after = 5;
        break;
    }
}

static int is_cost(int metric)
{
    return metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
}

/* One quota. Returns 0 (held or not enforced), DP_LEASE_WAIT, or SL_EPERM
 * (rejected: the hold says why). */
static int reserve_one(dp_quota_hold_t *h, const quota_pb *q, int scope, const char *scope_id, int64_t now_ms,
                       int last_try)
{
    int64_t qid = dp_lease_parse_id(q->id);
    int metric = (int)q->metric;
    if (qid == 0 || metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_UNSPECIFIED)
        return 0;
    if (h->n == DP_QUOTA_MAX) {
        if (!atomic_exchange(&g_warned_many, 1))
            sl_warn(MOD, "a request touches more than %d quotas; the rest are not enforced", DP_QUOTA_MAX);
        return 0;
    }
    dp_lease_quota_t d = {.id = qid,
                          .metric = metric,
                          .window = (int)q->window,
                          .limit = q->limit,
                          .open = dp_lease_is_open(metric, q->on_unavailable),
                          .scope = scope,
                          .scope_id = scope_id,
                          .provider = q->provider != NULL ? q->provider : ""};
    dp_lease_inst_t *in = dp_lease_get(&d);
    if (in == NULL)
        return 0; /* out of memory: not enforced rather than a failed request */
    dp_quota_ent_t *e = &h->ent[h->n];
    if (metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT) {
        if (!dp_lease_conc_enter(in, q->limit)) {
            reject(h, REJ_CONCURRENCY, metric, 0);
            return SL_EPERM;
        }
        *e = (dp_quota_ent_t){.p = in, .amount = 1, .provider = d.provider, .metric = (uint8_t)metric, .conc = 1};
        h->n++;
        return 0;
    }
    int64_t amount = amount_for(metric, h->est.cost_nano, h->est.input_tokens, h->est.output_tokens);
    if (amount < 1)
        amount = 1;
    dp_lease_slot_t *slot = NULL;
    int retry = 0;
    int rc = dp_lease_take(in, amount, now_ms, &slot, &retry);
    if (rc == DP_LEASE_WAIT && last_try) {
        /* waited long enough: unanswered means unavailable, answered short means exhausted */
        int64_t since = atomic_load_explicit(&in->want_since_ms, memory_order_relaxed);
        if (since != 0 && now_ms - since >= DP_LEASE_WAIT_MS - 2 * POLL_MS)
            rc = atomic_load_explicit(&in->open, memory_order_relaxed) ? DP_LEASE_OPEN : DP_LEASE_CLOSED;
        else
            rc = DP_LEASE_EXHAUSTED;
        if (retry == 0)
            retry = 1;
    }
    switch (rc) {
    case DP_LEASE_OK:
        *e = (dp_quota_ent_t){.p = slot, .amount = amount, .provider = d.provider, .metric = (uint8_t)metric};
        h->n++;
        return 0;
    case DP_LEASE_OPEN:
        if (!atomic_load_explicit(&in->dead, memory_order_relaxed))
            atomic_fetch_add_explicit(&g_open_admits, 1, memory_order_relaxed);
        return 0;
    case DP_LEASE_WAIT:
        rollback(h);
        h->wait_on = in;
        h->wait_gen = dp_lease_gen(in);
        return DP_LEASE_WAIT;
    case DP_LEASE_CLOSED:
        reject(h, REJ_UNAVAILABLE, metric, 0);
        return SL_EPERM;
    default:
        reject(h, is_cost(metric) ? REJ_BUDGET : REJ_RATE, metric, retry);
        return SL_EPERM;
    }
}

/* Every quota, all or nothing. Returns 0, DP_LEASE_WAIT or SL_EPERM. */
static int try_reserve(dp_quota_hold_t *h, int64_t now_ms, int last_try)
{
    const dp_key_t *key = h->key;
    h->n = 0;
    h->wait_on = NULL;
    if (key->pb != NULL) {
        for (size_t i = 0; i < key->pb->n_quotas; i++) {
            const quota_pb *q = key->pb->quotas[i];
            if (!provider_applies(q->provider, key, h->provider))
                continue;
            int rc = reserve_one(h, q, DP_LEASE_SCOPE_KEY, key->id, now_ms, last_try);
            if (rc != 0)
                return rc;
        }
    }
    const Sluice__Config__V1__Tenant *t =
        key->tenant_id != NULL && key->tenant_id[0] != '\0'
            ? dp_snapshot_find_tenant(h->snap, key->tenant_id, strlen(key->tenant_id))
            : NULL;
    for (size_t i = 0; t != NULL && i < t->n_quotas; i++) {
        const quota_pb *q = t->quotas[i];
        if (!provider_applies(q->provider, key, h->provider))
            continue;
        int rc = reserve_one(h, q, DP_LEASE_SCOPE_TENANT, t->id, now_ms, last_try);
        if (rc != 0)
            return rc;
    }
    h->held = 1;
    h->admit_unix = now_ms / 1000;
    return 0;
}

/* ---- waiting ------------------------------------------------------------ */

typedef struct parking {
    int init;
    dp_worker_t *w;
    h2o_linklist_t list;
    h2o_timeout_entry_t timer;
} parking_t;

static __thread parking_t tls_park;

static void unpark(dp_quota_hold_t *h)
{
    if (!h->parked)
        return;
    h->parked = 0;
    h2o_linklist_unlink(&h->link);
    atomic_fetch_sub_explicit(&h->wait_on->parked, 1, memory_order_release);
}

static void on_poll(h2o_timeout_entry_t *entry);

static void arm_poll(parking_t *p)
{
    if (!h2o_timeout_is_linked(&p->timer) && !h2o_linklist_is_empty(&p->list))
        h2o_timeout_link(p->w->ctx.loop, dp_worker_timeout(p->w, POLL_MS), &p->timer);
}

static void park(dp_quota_hold_t *h)
{
    parking_t *p = &tls_park;
    if (!p->init) {
        h2o_linklist_init_anchor(&p->list);
        p->timer.cb = on_poll;
        p->w = h->w;
        p->init = 1;
    }
    atomic_fetch_add_explicit(&h->wait_on->parked, 1, memory_order_acq_rel);
    h->parked = 1;
    h2o_linklist_insert(&p->list, &h->link);
    arm_poll(p);
}

static void on_poll(h2o_timeout_entry_t *entry)
{
    parking_t *p = &tls_park;
    int64_t now = now_unix_ms();
    h2o_linklist_t ready;
    h2o_linklist_init_anchor(&ready);
    for (h2o_linklist_t *l = p->list.next, *next; l != &p->list; l = next) {
        next = l->next;
        dp_quota_hold_t *h = H2O_STRUCT_FROM_MEMBER(dp_quota_hold_t, link, l);
        dp_lease_inst_t *in = h->wait_on;
        if (now >= h->deadline_ms || dp_lease_gen(in) != h->wait_gen ||
            atomic_load_explicit(&in->retired, memory_order_relaxed) ||
            atomic_load_explicit(&in->dead, memory_order_relaxed)) {
            h2o_linklist_unlink(l);
            h2o_linklist_insert(&ready, l);
        }
    }
    /* a callback may settle other ready holds (never this list's anchor) */
    while (!h2o_linklist_is_empty(&ready)) {
        dp_quota_hold_t *h = H2O_STRUCT_FROM_MEMBER(dp_quota_hold_t, link, ready.next);
        h2o_linklist_unlink(&h->link);
        h->parked = 0;
        atomic_fetch_sub_explicit(&h->wait_on->parked, 1, memory_order_release);
        int last = now >= h->deadline_ms;
        int rc = try_reserve(h, now, last);
        if (rc == DP_LEASE_WAIT) {
            park(h); /* moved on, not there yet: keep waiting until the deadline */
            continue;
        }
        h->cb(h->ctx, rc);
    }
    arm_poll(p);
}

int dp_quota_reserve(dp_worker_t *w, dp_snapshot_t *snap, const dp_key_t *key, const char *provider,
                     const dp_quota_estimate_t *est, dp_quota_hold_t *hold, dp_quota_cb cb, void *ctx)
{
    hold->est = *est;
    hold->w = w;
    hold->snap = snap;
    hold->key = key;
    hold->provider = provider;
    hold->cb = cb;
    hold->ctx = ctx;
    int64_t now = now_unix_ms();
    int rc = try_reserve(hold, now, cb == NULL || w == NULL);
    if (rc != DP_LEASE_WAIT)
        return rc;
    hold->deadline_ms = now + DP_LEASE_WAIT_MS;
    atomic_fetch_add_explicit(&g_parked_total, 1, memory_order_relaxed);
    park(hold);
    return DP_QUOTA_PARKED;
}

/* ---- settle ------------------------------------------------------------- */

void dp_quota_settle(int worker, const dp_key_t *key, dp_quota_hold_t *hold, const dp_quota_actual_t *actual)
{
    unpark(hold);
    if (!hold->held)
        return;
    hold->held = 0;
    for (int i = 0; i < hold->n; i++) {
        dp_quota_ent_t *e = &hold->ent[i];
        if (e->conc) {
            dp_lease_conc_leave(e->p);
            continue;
        }
        int64_t act = 0;
        if (actual != NULL && (e->provider[0] == '\0' ||
                               (actual->provider != NULL && strcmp(e->provider, actual->provider) == 0)))
            act = amount_for(e->metric, actual->cost_nano, actual->input_tokens, actual->output_tokens);
        if (act > e->amount)
            atomic_fetch_add_explicit(&g_overruns, 1, memory_order_relaxed);
        dp_lease_give(e->p, e->amount, act);
    }
    hold->n = 0;
}

void dp_quota_reject_headers(h2o_req_t *req, const dp_quota_hold_t *hold)
{
    if (hold->retry_after <= 0)
        return;
    char ra[16];
    int n = snprintf(ra, sizeof(ra), "%d", hold->retry_after);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, ra, (size_t)n).base,
                   (size_t)n);
}

/* ---- headers ------------------------------------------------------------ */

size_t dp_quota_format_reset(int64_t ms, char *out, size_t cap)
{
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        return (size_t)snprintf(out, cap, "%lldms", (long long)ms);
    int64_t s = (ms + 999) / 1000, h = s / 3600, m = s % 3600 / 60, sec = s % 60;
    int n;
    if (h > 0)
        n = snprintf(out, cap, "%lldh%lldm%llds", (long long)h, (long long)m, (long long)sec);
    else if (m > 0)
        n = snprintf(out, cap, "%lldm%llds", (long long)m, (long long)sec);
    else
        n = snprintf(out, cap, "%llds", (long long)sec);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* A guess of the window end before any grant was seen (UTC-aligned). */
static int64_t guess_end(int window, int64_t now_s)
{
    switch (window) {
    case SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE:
        return now_s - now_s % 60 + 60;
    case SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_HOUR:
        return now_s - now_s % 3600 + 3600;
    case SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY:
        return now_s - now_s % 86400 + 86400;
    case SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_WEEK: {
        int64_t day = now_s / 86400;           /* 1970-01-01 was a Thursday */
        int64_t monday = day - (day + 3) % 7;
        return (monday + 7) * 86400;
    }
    case SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH: {
        time_t t = (time_t)now_s;
        struct tm tm;
        gmtime_r(&t, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_mon++;
        return (int64_t)timegm(&tm);
    }
    default:
        return 0;
    }
}

typedef struct tight {
    int have;
    int64_t limit, remaining, reset_ms;
} tight_t;

static void consider(tight_t *t, const quota_pb *q, int64_t now_ms)
{
    int64_t qid = dp_lease_parse_id(q->id);
    dp_lease_inst_t *in = qid != 0 ? dp_lease_find(qid) : NULL;
    dp_lease_view_t v;
    int64_t remaining = q->limit, end = 0;
    if (in != NULL) {
        dp_lease_view(in, q->limit, now_ms, &v);
        if (v.known) {
            remaining = v.remaining;
            end = v.we;
        }
    }
    if (end == 0)
        end = guess_end((int)q->window, now_ms / 1000);
    int64_t reset = end > 0 ? end * 1000 - now_ms : 0;
    if (!t->have || remaining < t->remaining || (remaining == t->remaining && reset < t->reset_ms)) {
        t->have = 1;
        t->limit = q->limit;
        t->remaining = remaining;
        t->reset_ms = reset;
    }
}

static void add_num(h2o_req_t *req, const char *name, size_t nlen, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, h2o_strdup(&req->pool, buf, (size_t)n).base,
                          (size_t)n);
}

static void emit(h2o_req_t *req, const tight_t *t, int tokens)
{
    if (!t->have)
        return;
    if (tokens) {
        add_num(req, H2O_STRLIT("x-ratelimit-limit-tokens"), t->limit);
        add_num(req, H2O_STRLIT("x-ratelimit-remaining-tokens"), t->remaining);
    } else {
        add_num(req, H2O_STRLIT("x-ratelimit-limit-requests"), t->limit);
        add_num(req, H2O_STRLIT("x-ratelimit-remaining-requests"), t->remaining);
    }
    char buf[40];
    size_t n = dp_quota_format_reset(t->reset_ms, buf, sizeof(buf));
    if (tokens)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-ratelimit-reset-tokens"), 0, NULL,
                              h2o_strdup(&req->pool, buf, n).base, n);
    else
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-ratelimit-reset-requests"), 0, NULL,
                              h2o_strdup(&req->pool, buf, n).base, n);
}

void dp_quota_add_headers(h2o_req_t *req, const dp_snapshot_t *snap, const dp_key_t *key, const char *provider)
{
    tight_t rq = {0}, tk = {0};
    int64_t now = 0;
    const Sluice__Config__V1__Tenant *t = NULL;
    for (int scope = 0; scope < 2; scope++) {
        Sluice__Config__V1__Quota **qs;
        size_t n;
        if (scope == 0) {
            if (key->pb == NULL)
                continue;
            qs = key->pb->quotas;
            n = key->pb->n_quotas;
        } else {
            t = snap != NULL && key->tenant_id != NULL ? dp_snapshot_find_tenant(snap, key->tenant_id, strlen(key->tenant_id))
                                                       : NULL;
            if (t == NULL)
                break;
            qs = t->quotas;
            n = t->n_quotas;
        }
        for (size_t i = 0; i < n; i++) {
            const quota_pb *q = qs[i];
            int tokens = q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS;
            if (!tokens && q->metric != SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS)
                continue;
            if (q->provider != NULL && q->provider[0] != '\0' && (provider == NULL || strcmp(q->provider, provider) != 0))
                continue;
            if (now == 0)
                now = now_unix_ms();
            consider(tokens ? &tk : &rq, q, now);
        }
    }
    emit(req, &rq, 0);
    emit(req, &tk, 1);
}

/* ---- GET /v1/sluice/usage ----------------------------------------------- */

static const char *name_or_unknown(const char *name)
{
    return name != NULL ? name : "unknown";
}

static size_t json_str(char *p, const char *s)
{
    size_t n = 0;
    p[n++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            p[n++] = '\\';
            p[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)sprintf(p + n, "\\u%04x", ch);
        } else {
            p[n++] = (char)ch;
        }
    }
    p[n++] = '"';
    return n;
}

static size_t iso(char *p, int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return (size_t)sprintf(p, "\"%04d-%02d-%02dT%02d:%02d:%02dZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                           tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static size_t usd_field(char *p, const char *name, int64_t nano)
{
    char usd[48];
    size_t n = sl_usd_format(nano, 9, usd, sizeof(usd));
    return (size_t)sprintf(p, ",\"%s\":\"%.*s\"", name, (int)n, usd);
}

/* One quota object at p; returns bytes written (at most 1024 + escaped strings). */
static size_t quota_json(char *p, const quota_pb *q, const char *scope, int64_t now_ms)
{
    size_t n = 0;
    int metric = (int)q->metric;
    n += (size_t)sprintf(p + n, "{\"id\":");
    n += json_str(p + n, q->id != NULL ? q->id : "");
    n += (size_t)sprintf(p + n, ",\"scope\":\"%s\",\"metric\":\"%s\",\"window\":\"%s\",\"provider\":", scope,
                         name_or_unknown(sl_quota_metric_name(metric)),
                         name_or_unknown(sl_quota_window_name((int)q->window)));
    n += json_str(p + n, q->provider != NULL ? q->provider : "");
    n += (size_t)sprintf(p + n, ",\"limit\":%lld,\"on_unavailable\":\"%s\"", (long long)q->limit,
                         dp_lease_is_open(metric, q->on_unavailable) ? "open" : "closed");
    int64_t qid = dp_lease_parse_id(q->id);
    dp_lease_inst_t *in = qid != 0 ? dp_lease_find(qid) : NULL;
    dp_lease_view_t v;
    if (in != NULL)
        dp_lease_view(in, q->limit, now_ms, &v);
    else
        memset(&v, 0, sizeof(v)), v.remaining = q->limit;
    if (metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT) {
        n += (size_t)sprintf(p + n, ",\"in_flight\":%lld,\"remaining\":%lld}", (long long)v.inflight,
                             (long long)(q->limit - v.inflight > 0 ? q->limit - v.inflight : 0));
        return n;
    }
    if (v.known) {
        n += (size_t)sprintf(p + n, ",\"window_start\":");
        n += iso(p + n, v.ws);
        n += (size_t)sprintf(p + n, ",\"window_end\":");
        n += iso(p + n, v.we);
        n += (size_t)sprintf(p + n, ",\"used\":%lld,\"outstanding\":%lld,\"lease_remaining\":%lld,\"reserved\":%lld",
                             (long long)v.used, (long long)v.outstanding, (long long)(v.avail > 0 ? v.avail : 0),
                             (long long)v.reserved);
    } else {
        n += (size_t)sprintf(p + n, ",\"window_start\":null,\"window_end\":null,\"used\":null,\"outstanding\":null,"
                                    "\"lease_remaining\":0,\"reserved\":0");
    }
    n += (size_t)sprintf(p + n, ",\"remaining\":%lld", (long long)v.remaining);
    if (is_cost(metric)) {
        n += usd_field(p + n, "limit_usd", q->limit);
        n += usd_field(p + n, "remaining_usd", v.remaining);
        if (v.known)
            n += usd_field(p + n, "used_usd", v.used);
    }
    p[n++] = '}';
    return n;
}

static size_t strsz(const char *s)
{
    return s != NULL ? 6 * strlen(s) + 2 : 2;
}

h2o_iovec_t dp_quota_usage_json(h2o_mem_pool_t *pool, const dp_snapshot_t *snap, const dp_key_t *key)
{
    const Sluice__Config__V1__Tenant *t =
        snap != NULL && key->tenant_id != NULL ? dp_snapshot_find_tenant(snap, key->tenant_id, strlen(key->tenant_id))
                                               : NULL;
    size_t nk = key->pb != NULL ? key->pb->n_quotas : 0, nt = t != NULL ? t->n_quotas : 0;
    size_t cap = 256 + strsz(key->id) + strsz(key->tenant_id);
    for (size_t i = 0; i < nk; i++)
        cap += 1200 + strsz(key->pb->quotas[i]->id) + strsz(key->pb->quotas[i]->provider);
    for (size_t i = 0; i < nt; i++)
        cap += 1200 + strsz(t->quotas[i]->id) + strsz(t->quotas[i]->provider);
    char *buf = h2o_mem_alloc_pool(pool, cap), *p = buf;
    int64_t now = now_unix_ms();
    p += sprintf(p, "{\"object\":\"sluice.usage\",\"key_id\":");
    p += json_str(p, key->id);
    p += sprintf(p, ",\"tenant_id\":");
    p += json_str(p, key->tenant_id != NULL ? key->tenant_id : "");
    p += sprintf(p, ",\"quotas\":[");
    for (size_t i = 0; i < nk; i++) {
        if (i > 0)
            *p++ = ',';
        p += quota_json(p, key->pb->quotas[i], "key", now);
    }
    for (size_t i = 0; i < nt; i++) {
        if (i > 0 || nk > 0)
            *p++ = ',';
        p += quota_json(p, t->quotas[i], "tenant", now);
    }
    p += sprintf(p, "]}\n");
    return h2o_iovec_init(buf, (size_t)(p - buf));
}

/* ---- metrics ------------------------------------------------------------ */

void dp_quota_metrics_render(sl_buf_t *out)
{
    static const char *const kinds[REJ_MAX] = {"budget", "rate", "concurrency", "unavailable"};
    sl_buf_puts(out, "# HELP sluice_quota_rejections_total Requests rejected by a quota, by kind.\n"
                     "# TYPE sluice_quota_rejections_total counter\n");
    for (int i = 0; i < REJ_MAX; i++)
        sl_buf_printf(out, "sluice_quota_rejections_total{kind=\"%s\"} %llu\n", kinds[i],
                      (unsigned long long)atomic_load_explicit(&g_rejections[i], memory_order_relaxed));
    sl_buf_printf(out,
                  "# HELP sluice_quota_overrun_total Settlements where the provider reported more than the "
                  "reserved upper bound.\n# TYPE sluice_quota_overrun_total counter\nsluice_quota_overrun_total %llu\n"
                  "# HELP sluice_quota_waits_total Requests that waited for a quota grant.\n"
                  "# TYPE sluice_quota_waits_total counter\nsluice_quota_waits_total %llu\n"
                  "# HELP sluice_quota_open_admissions_total Requests admitted without a lease because the control "
                  "plane could not be reached and the quota fails open.\n"
                  "# TYPE sluice_quota_open_admissions_total counter\nsluice_quota_open_admissions_total %llu\n"
                  "# HELP sluice_quota_instances Quotas with state on this node.\n"
                  "# TYPE sluice_quota_instances gauge\nsluice_quota_instances %lld\n",
                  (unsigned long long)atomic_load_explicit(&g_overruns, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&g_parked_total, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&g_open_admits, memory_order_relaxed),
                  (long long)dp_lease_instances());
}
