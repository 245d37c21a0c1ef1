/* quota_test.c - dp_quota.h and dp_lease.h: reservation and settlement
 * arithmetic, all-or-nothing, estimate bounds, overruns, window rollover on
 * granted bounds, on_unavailable, rate-limit headers, concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dp_lease.h"
#include "dp_quota.h"
#include "dp_usage.h"
#include "sl_json.h"

#define M_COST SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO
#define M_REQ SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS
#define M_TOK SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS
#define M_CONC SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT
#define W_MIN SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE
#define W_MONTH SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    dp_usage_init(0); /* no workers: every flush ticket has passed */
    return 0;
}

static int teardown(void **state)
{
    dp_lease_shutdown();
    dp_usage_shutdown();
    return 0;
}

/* ---- a fake control plane ------------------------------------------------ */

typedef struct grant_rule {
    int64_t qid;         /* 0: any quota without its own rule */
    int64_t ws, we;      /* window to answer with */
    int64_t limit, used; /* the window's state */
    int64_t max_grant;   /* -1: whatever is asked */
    int64_t expires_in;  /* ms, 0: 30 s */
    int64_t outstanding; /* grants so far (this fake keeps no other node) */
} grant_rule_t;

static grant_rule_t *rule_for(grant_rule_t *rules, size_t n, int64_t qid)
{
    for (size_t i = 0; i < n; i++)
        if (rules[i].qid == qid)
            return &rules[i];
    for (size_t i = 0; i < n; i++)
        if (rules[i].qid == 0)
            return &rules[i];
    return NULL;
}

/* Runs the sync thread's side once: tick, freeze a report, answer every
 * request per its rule. Returns the requests seen; *asked: the last want. */
static size_t cp_round_n(grant_rule_t *rules, size_t nrules, int64_t now_ms, int64_t mono_ms, int64_t *asked)
{
    dp_lease_tick(now_ms, mono_ms);
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    dp_lease_fill_report(&m, mono_ms, 0, NULL);
    size_t n = m.n_lease_requests < 32 ? m.n_lease_requests : 32;
    Sluice__Sync__V1__LeaseGrant g[32], *gp[32];
    Sluice__Sync__V1__ReportAck ack = SLUICE__SYNC__V1__REPORT_ACK__INIT;
    char ids[32][24];
    for (size_t i = 0; i < n; i++) {
        const Sluice__Sync__V1__LeaseRequest *r = m.lease_requests[i];
        grant_rule_t *rule = rule_for(rules, nrules, dp_lease_parse_id(r->quota_id));
        assert_non_null(rule);
        sluice__sync__v1__lease_grant__init(&g[i]);
        snprintf(ids[i], sizeof(ids[i]), "%s", r->quota_id);
        g[i].quota_id = ids[i];
        g[i].window_start_unix = r->window_start_unix != 0 ? r->window_start_unix : rule->ws;
        g[i].window_end_unix = g[i].window_start_unix + (rule->we - rule->ws);
        int64_t room = rule->limit - rule->used - rule->outstanding;
        int64_t gr = r->want < room ? r->want : room;
        if (rule->max_grant >= 0 && gr > rule->max_grant)
            gr = rule->max_grant;
        if (gr < 0)
            gr = 0;
        rule->outstanding += gr;
        g[i].granted = gr;
        g[i].limit = rule->limit;
        g[i].used = rule->used;
        g[i].outstanding = rule->outstanding;
        g[i].expires_unix_ms = now_ms + (rule->expires_in > 0 ? rule->expires_in : 30000);
        gp[i] = &g[i];
        if (asked != NULL)
            *asked = r->want;
    }
    ack.grants = gp;
    ack.n_grants = n;
    dp_lease_apply_ack(&ack, now_ms, mono_ms);
    return n;
}

static size_t cp_round(grant_rule_t *rule, int64_t now_ms, int64_t mono_ms, int64_t *asked)
{
    return cp_round_n(rule, 1, now_ms, mono_ms, asked);
}

/* Reserves, answering the control plane's side until every quota has a lease. */
static int reserve_with_grants(dp_key_t *key, const dp_quota_estimate_t *est, dp_quota_hold_t *h, grant_rule_t *rules,
                               size_t nrules, int64_t now)
{
    int rc = SL_EPERM;
    for (int i = 0; i < 6; i++) {
        memset(h, 0, sizeof(*h));
        if ((rc = dp_quota_reserve(NULL, NULL, key, "openai", est, h, NULL, NULL)) == 0)
            return 0;
        cp_round_n(rules, nrules, now, 1000 + i, NULL);
    }
    return rc;
}

static dp_lease_quota_t quota(int64_t id, int metric, int64_t limit)
{
    return (dp_lease_quota_t){.id = id, .metric = metric, .window = W_MIN, .limit = limit,
                              .open = dp_lease_is_open(metric, 0), .scope = DP_LEASE_SCOPE_KEY,
                              .scope_id = "vk1", .provider = ""};
}

/* ---- tests ---------------------------------------------------------------- */

static void test_format_reset(void **state)
{
    char b[32];
    dp_quota_format_reset(6000, b, sizeof(b));
    assert_string_equal(b, "6s");
    dp_quota_format_reset(62000, b, sizeof(b));
    assert_string_equal(b, "1m2s");
    dp_quota_format_reset(3605000, b, sizeof(b));
    assert_string_equal(b, "1h0m5s");
    dp_quota_format_reset(250, b, sizeof(b));
    assert_string_equal(b, "250ms");
    dp_quota_format_reset(1001, b, sizeof(b)); /* rounds up: never says "reset" before it does */
    assert_string_equal(b, "2s");
}

static void test_ids_and_defaults(void **state)
{
    assert_int_equal(dp_lease_parse_id("42"), 42);
    assert_int_equal(dp_lease_parse_id("042"), 0);
    assert_int_equal(dp_lease_parse_id("4x"), 0);
    assert_int_equal(dp_lease_parse_id(""), 0);
    /* budgets fail closed, rate limits open, unless the quota says otherwise */
    assert_false(dp_lease_is_open(M_COST, 0));
    assert_true(dp_lease_is_open(M_REQ, 0));
    assert_true(dp_lease_is_open(M_TOK, 0));
    assert_true(dp_lease_is_open(M_COST, SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN));
    assert_false(dp_lease_is_open(M_REQ, SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED));
}

static void parse(dp_chat_req_t *ch, const char *body, sl_json_tok_t *toks, size_t cap)
{
    memset(ch, 0, sizeof(*ch));
    ch->body = body;
    ch->len = strlen(body);
    ch->ntoks = sl_json_parse(body, ch->len, toks, cap, NULL);
    assert_true(ch->ntoks > 0);
    ch->toks = toks;
    ch->max_tokens = -1;
    int mt = sl_json_find(body, toks, 0, "max_tokens", 10);
    int64_t v;
    if (mt > 0 && sl_json_int64(body, &toks[mt], &v) == 0)
        ch->max_tokens = v;
}

/* The mock's counts: prompt = 3 + per message (4 + words), completion =
 * max_tokens (or 16). The estimate must never be below them. */
static void test_estimate_bounds(void **state)
{
    sl_json_tok_t toks[256];
    dp_chat_req_t ch;
    dp_model_t gpt = {.provider = "openai", .model = "gpt-4o", .input_micro_per_mtok = 2500000,
                      .output_micro_per_mtok = 10000000, .max_output_tokens = 16384};
    dp_quota_estimate_t e;

    const char *b1 = "{\"model\":\"gpt-4o\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"a b c\"}]}";
    parse(&ch, b1, toks, 256);
    dp_quota_estimate(NULL, NULL, &gpt, &ch, &e);
    assert_int_equal(e.input_tokens, (int64_t)strlen(b1));
    assert_true(e.input_tokens >= 3 + 4 + 3);
    assert_int_equal(e.output_tokens, 10);
    /* 2.5 USD/M input, 10 USD/M output */
    assert_int_equal(e.cost_nano, (int64_t)strlen(b1) * 2500 + 10 * 10000);

    /* no max_tokens: the catalog's cap; unknown model: 4096 */
    const char *b2 = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    parse(&ch, b2, toks, 256);
    dp_quota_estimate(NULL, NULL, &gpt, &ch, &e);
    assert_int_equal(e.output_tokens, 16384);
    dp_quota_estimate(NULL, NULL, NULL, &ch, &e);
    assert_int_equal(e.output_tokens, DP_QUOTA_DEFAULT_OUTPUT);
    assert_int_equal(e.cost_nano, 0); /* unpriced: costs nothing either */

    /* n choices multiply the output; images by URL add a cap each, data: URLs do not */
    const char *b3 = "{\"model\":\"gpt-4o\",\"n\":3,\"max_tokens\":7,\"messages\":[{\"role\":\"user\",\"content\":["
                     "{\"type\":\"text\",\"text\":\"look\"},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.test/a.png\"}},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}},"
                     "{\"type\":\"file\",\"file\":{\"file_id\":\"file-1\"}}]}]}";
    parse(&ch, b3, toks, 256);
    dp_quota_estimate(NULL, NULL, &gpt, &ch, &e);
    assert_int_equal(e.output_tokens, 21);
    assert_int_equal(e.input_tokens, (int64_t)strlen(b3) + 2 * DP_QUOTA_URL_PART_TOKENS);
}

static void test_reserve_settle_arithmetic(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    dp_lease_quota_t q = quota(101, M_TOK, 100000);
    dp_lease_inst_t *in = dp_lease_get(&q);
    assert_non_null(in);
    assert_ptr_equal(dp_lease_find(101), in);
    dp_lease_slot_t *s = NULL;
    int retry = 0;
    /* first use: nothing granted yet, the sync thread is asked */
    assert_int_equal(dp_lease_take(in, 500, now, &s, &retry), DP_LEASE_WAIT);
    uint32_t gen = dp_lease_gen(in);
    grant_rule_t rule = {.ws = ws, .we = ws + 90, .limit = 100000, .max_grant = -1};
    int64_t asked = 0;
    assert_int_equal(cp_round(&rule, now, 1000, &asked), 1);
    assert_true(asked >= 500);
    assert_true(dp_lease_gen(in) != gen);
    assert_int_equal(dp_lease_take(in, 500, now, &s, &retry), DP_LEASE_OK);
    assert_non_null(s);
    assert_int_equal(atomic_load(&s->avail), asked - 500);
    assert_int_equal(atomic_load(&s->reserved), 500);
    /* settle: give back the estimate, take the actual */
    dp_lease_give(s, 500, 120);
    assert_int_equal(atomic_load(&s->avail), asked - 120);
    assert_int_equal(atomic_load(&s->reserved), 0);
    /* the report lists the lease with what is reserved and what is not */
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    dp_lease_fill_report(&m, 2000, 0, NULL);
    assert_int_equal(m.n_leases, 1);
    assert_string_equal(m.leases[0]->quota_id, "101");
    assert_int_equal(m.leases[0]->window_start_unix, ws);
    assert_int_equal(m.leases[0]->unreserved, asked - 120);
    /* a final report lists nothing: the control plane releases it all */
    dp_lease_fill_report(&m, 2000, 1, NULL);
    assert_int_equal(m.n_leases, 0);
    assert_int_equal(m.n_lease_requests, 0);
}

static void test_exhausted_and_refill(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    dp_lease_quota_t q = quota(102, M_REQ, 3);
    dp_lease_inst_t *in = dp_lease_get(&q);
    dp_lease_slot_t *s;
    int retry = 0;
    assert_int_equal(dp_lease_take(in, 1, now, &s, &retry), DP_LEASE_WAIT);
    grant_rule_t rule = {.ws = ws, .we = ws + 90, .limit = 3, .max_grant = -1};
    cp_round(&rule, now, 1000, NULL);
    /* refills are asked as the lease runs low, while the window has room;
     * once it has none the quota is exhausted until the window's end */
    int ok = 0, exhausted = 0;
    for (int i = 0; i < 20; i++) {
        int rc = dp_lease_take(in, 1, now, &s, &retry);
        if (rc == DP_LEASE_OK) {
            ok++;
            dp_lease_give(s, 1, 1);
        } else if (rc == DP_LEASE_WAIT) {
            cp_round(&rule, now, 2000 + i * 1000, NULL);
        } else {
            assert_int_equal(rc, DP_LEASE_EXHAUSTED);
            assert_true(retry >= 1 && retry <= 60);
            exhausted++;
        }
    }
    assert_int_equal(ok, 3);
    assert_true(exhausted > 0);
    assert_int_equal(rule.outstanding, 3);
}

static void test_window_rollover_uses_granted_bounds(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 100, we = now / 1000 + 3; /* 3 s left */
    dp_lease_quota_t q = quota(103, M_REQ, 1000);
    dp_lease_inst_t *in = dp_lease_get(&q);
    dp_lease_slot_t *s;
    int retry;
    dp_lease_take(in, 1, now, &s, &retry);
    grant_rule_t rule = {.ws = ws, .we = we, .limit = 1000, .max_grant = -1};
    cp_round(&rule, now, 1000, NULL);
    assert_int_equal(dp_lease_take(in, 1, now, &s, &retry), DP_LEASE_OK);
    dp_lease_give(s, 1, 1);
    /* near the end of a window in use, the next window is asked for ahead */
    int64_t asked_ws = 0;
    dp_lease_tick(now, 1200);
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    dp_lease_fill_report(&m, 1200, 0, NULL);
    for (size_t i = 0; i < m.n_lease_requests; i++)
        if (m.lease_requests[i]->window_start_unix == we)
            asked_ws = we;
    assert_int_equal(asked_ws, we);
    /* granted for [we, we + 13) */
    Sluice__Sync__V1__LeaseGrant g = SLUICE__SYNC__V1__LEASE_GRANT__INIT, *gp = &g;
    g.quota_id = "103";
    g.window_start_unix = we;
    g.window_end_unix = we + 13;
    g.granted = 5;
    g.limit = 1000;
    g.expires_unix_ms = now + 60000;
    Sluice__Sync__V1__ReportAck ack = SLUICE__SYNC__V1__REPORT_ACK__INIT;
    ack.grants = &gp;
    ack.n_grants = 1;
    dp_lease_apply_ack(&ack, now, 1300);
    /* before the boundary the old window's lease serves, after it the new one */
    assert_int_equal(dp_lease_take(in, 1, we * 1000 - 1, &s, &retry), DP_LEASE_OK);
    assert_int_equal(atomic_load(&s->we), we);
    dp_lease_give(s, 1, 1);
    assert_int_equal(dp_lease_take(in, 1, we * 1000, &s, &retry), DP_LEASE_OK);
    assert_int_equal(atomic_load(&s->ws), we);
    assert_int_equal(atomic_load(&s->avail), 4);
    dp_lease_give(s, 1, 1);
    /* the old window's lease is wound down and dropped from reports */
    int64_t t = we * 1000 + 10;
    for (int i = 0; i < 5; i++)
        dp_lease_tick(t, 2000 + i);
    dp_lease_fill_report(&m, 3000, 0, NULL);
    assert_int_equal(m.n_leases, 1);
    assert_int_equal(m.leases[0]->window_start_unix, we);
}

static void test_on_unavailable(void **state)
{
    int64_t now = real_now_ms();
    /* no answer for longer than the wait: cost closed, requests open */
    dp_lease_quota_t qc = quota(104, M_COST, 1000000), qr = quota(105, M_REQ, 10);
    dp_lease_inst_t *c = dp_lease_get(&qc), *r = dp_lease_get(&qr);
    dp_lease_slot_t *s;
    int retry;
    assert_int_equal(dp_lease_take(c, 10, now, &s, &retry), DP_LEASE_WAIT);
    assert_int_equal(dp_lease_take(r, 1, now, &s, &retry), DP_LEASE_WAIT);
    int64_t later = now + DP_LEASE_WAIT_MS + 1;
    assert_int_equal(dp_lease_take(c, 10, later, &s, &retry), DP_LEASE_CLOSED);
    assert_int_equal(dp_lease_take(r, 1, later, &s, &retry), DP_LEASE_OPEN);
    /* a granted lease is spent until it expires, then the policy applies */
    int64_t ws = now / 1000 / 60 * 60;
    grant_rule_t rule = {.ws = ws, .we = ws + 90, .limit = 1000000, .max_grant = -1};
    cp_round(&rule, now, 1000, NULL);
    assert_int_equal(dp_lease_take(c, 10, now, &s, &retry), DP_LEASE_OK);
    dp_lease_give(s, 10, 10);
    assert_int_equal(dp_lease_take(c, 10, now + 30001, &s, &retry), DP_LEASE_CLOSED);
}

static Sluice__Config__V1__Quota pbq(const char *id, int metric, int64_t limit, const char *provider)
{
    Sluice__Config__V1__Quota q = SLUICE__CONFIG__V1__QUOTA__INIT;
    q.id = (char *)id;
    q.metric = metric;
    q.window = metric == M_COST ? W_MONTH : W_MIN;
    q.limit = limit;
    q.provider = (char *)provider;
    return q;
}

static void test_all_or_nothing_and_overrun(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    Sluice__Config__V1__Quota q1 = pbq("201", M_TOK, 100000, ""), q2 = pbq("202", M_REQ, 1, "openai"),
                              q3 = pbq("203", M_REQ, 5, "other");
    Sluice__Config__V1__Quota *qs[3] = {&q1, &q2, &q3};
    Sluice__Config__V1__VirtualKey kpb = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    kpb.quotas = qs;
    kpb.n_quotas = 3;
    dp_key_t key = {.id = "vk2", .tenant_id = "", .pb = &kpb};
    dp_quota_estimate_t est = {.input_tokens = 300, .output_tokens = 200, .cost_nano = 0};
    dp_quota_hold_t h;
    grant_rule_t rules[2] = {{.qid = 201, .ws = ws, .we = ws + 90, .limit = 100000, .max_grant = -1},
                             {.qid = 202, .ws = ws, .we = ws + 90, .limit = 1, .max_grant = -1}};
    /* without a worker nothing waits: the first try is the last */
    memset(&h, 0, sizeof(h));
    assert_int_equal(dp_quota_reserve(NULL, NULL, &key, "openai", &est, &h, NULL, NULL), SL_EPERM);
    assert_int_equal(reserve_with_grants(&key, &est, &h, rules, 2, now), 0);
    dp_lease_inst_t *tok = dp_lease_find(201), *req = dp_lease_find(202);
    assert_non_null(tok);
    assert_non_null(req);
    assert_null(dp_lease_find(203)); /* another provider's quota is not touched */
    dp_lease_slot_t *ts = &tok->slot[0];
    int64_t before = rules[0].outstanding; /* all granted to this node */
    assert_int_equal(h.n, 2);
    assert_true(h.admit_unix > 0);
    assert_int_equal(atomic_load(&ts->avail), before - 500);
    /* the requests quota had room for one: a second request takes nothing anywhere */
    dp_quota_hold_t h2;
    memset(&h2, 0, sizeof(h2));
    int64_t mid = atomic_load(&ts->avail);
    int rc = dp_quota_reserve(NULL, NULL, &key, "openai", &est, &h2, NULL, NULL);
    assert_int_equal(rc, SL_EPERM);
    assert_int_equal(h2.status, 429);
    assert_string_equal(h2.code, "rate_limit_exceeded");
    assert_true(h2.retry_after >= 1);
    assert_int_equal(atomic_load(&ts->avail), mid);
    assert_int_equal(atomic_load(&ts->reserved), 500);
    /* the provider reports more than the upper bound: settled as reported, counted */
    dp_quota_actual_t act = {.input_tokens = 400, .output_tokens = 300, .provider = "openai"};
    dp_quota_settle(0, &key, &h, &act);
    assert_int_equal(atomic_load(&ts->avail), before - 700);
    assert_int_equal(atomic_load(&ts->reserved), 0);
    dp_quota_settle(0, &key, &h, &act); /* idempotent */
    assert_int_equal(atomic_load(&ts->avail), before - 700);
    sl_buf_t b = {0};
    dp_quota_metrics_render(&b);
    assert_non_null(strstr(b.data, "sluice_quota_overrun_total 1\n"));
    assert_non_null(strstr(b.data, "sluice_quota_rejections_total{kind=\"rate\"} "));
    sl_buf_free(&b);
}

static void test_budget_rejection_shape(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    Sluice__Config__V1__Quota q1 = pbq("301", M_COST, 1000, "");
    Sluice__Config__V1__Quota *qs[1] = {&q1};
    Sluice__Config__V1__VirtualKey kpb = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    kpb.quotas = qs;
    kpb.n_quotas = 1;
    dp_key_t key = {.id = "vk3", .tenant_id = "", .pb = &kpb};
    dp_quota_estimate_t est = {.input_tokens = 1, .output_tokens = 1, .cost_nano = 600};
    dp_quota_hold_t h;
    grant_rule_t rule = {.ws = ws, .we = ws + 86400 * 30, .limit = 1000, .max_grant = -1};
    assert_int_equal(reserve_with_grants(&key, &est, &h, &rule, 1, now), 0);
    dp_quota_hold_t h2;
    memset(&h2, 0, sizeof(h2));
    assert_int_equal(dp_quota_reserve(NULL, NULL, &key, "openai", &est, &h2, NULL, NULL), SL_EPERM);
    assert_int_equal(h2.status, 429);
    assert_string_equal(h2.type, "insufficient_quota");
    assert_string_equal(h2.code, "budget_exceeded");
    /* settled below the estimate: room again for another */
    dp_quota_actual_t act = {.cost_nano = 100, .provider = "openai"};
    dp_quota_settle(0, &key, &h, &act);
    memset(&h2, 0, sizeof(h2));
    assert_int_equal(dp_quota_reserve(NULL, NULL, &key, "openai", &est, &h2, NULL, NULL), 0);
    dp_quota_settle(0, &key, &h2, &act);
}

static void test_concurrency(void **state)
{
    dp_lease_quota_t q = quota(401, M_CONC, 2);
    dp_lease_inst_t *in = dp_lease_get(&q);
    assert_true(dp_lease_conc_enter(in, 2));
    assert_true(dp_lease_conc_enter(in, 2));
    assert_false(dp_lease_conc_enter(in, 2));
    dp_lease_conc_leave(in);
    assert_true(dp_lease_conc_enter(in, 2));
    dp_lease_conc_leave(in);
    dp_lease_conc_leave(in);
    assert_int_equal(atomic_load(&in->inflight), 0);
}

static const char *header(h2o_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->res.headers.size; i++) {
        h2o_header_t *h = &req->res.headers.entries[i];
        if (h->name->len == strlen(name) && memcmp(h->name->base, name, h->name->len) == 0) {
            static char v[64];
            snprintf(v, sizeof(v), "%.*s", (int)h->value.len, h->value.base);
            return v;
        }
    }
    return NULL;
}

static void test_headers(void **state)
{
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    Sluice__Config__V1__Quota q1 = pbq("501", M_REQ, 30, ""), q2 = pbq("502", M_REQ, 1000, ""),
                              q3 = pbq("503", M_TOK, 5000, "");
    Sluice__Config__V1__Quota *qs[3] = {&q1, &q2, &q3};
    Sluice__Config__V1__VirtualKey kpb = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    kpb.quotas = qs;
    kpb.n_quotas = 3;
    dp_key_t key = {.id = "vk5", .tenant_id = "", .pb = &kpb};
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    /* before any grant: the limit, all of it remaining */
    dp_quota_add_headers(&req, NULL, &key, "openai");
    assert_string_equal(header(&req, "x-ratelimit-limit-requests"), "30");
    assert_string_equal(header(&req, "x-ratelimit-remaining-requests"), "30");
    assert_string_equal(header(&req, "x-ratelimit-limit-tokens"), "5000");
    assert_non_null(header(&req, "x-ratelimit-reset-requests"));
    h2o_mem_clear_pool(&req.pool);

    dp_quota_estimate_t est = {.input_tokens = 1, .output_tokens = 1};
    dp_quota_hold_t h;
    grant_rule_t rules[3] = {{.qid = 501, .ws = ws, .we = ws + 90, .limit = 30, .used = 10, .max_grant = 5},
                             {.qid = 502, .ws = ws, .we = ws + 90, .limit = 1000, .max_grant = -1},
                             {.qid = 503, .ws = ws, .we = ws + 90, .limit = 5000, .max_grant = -1}};
    assert_int_equal(reserve_with_grants(&key, &est, &h, rules, 3, now), 0);
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    dp_quota_add_headers(&req, NULL, &key, "openai");
    /* the tightest requests quota: 30 - 10 used - 5 outstanding (granted
     * here) + the 4 this node holds unreserved */
    assert_string_equal(header(&req, "x-ratelimit-limit-requests"), "30");
    assert_string_equal(header(&req, "x-ratelimit-remaining-requests"), "19");
    const char *reset = header(&req, "x-ratelimit-reset-requests");
    assert_non_null(reset);
    assert_true(reset[strlen(reset) - 1] == 's');
    h2o_mem_clear_pool(&req.pool);
    dp_quota_actual_t act = {.input_tokens = 10, .output_tokens = 10, .provider = "openai"};
    dp_quota_settle(0, &key, &h, &act);
}

static void test_limit_lowered_lease_is_given_back(void **state)
{
    /* the lease module notices configuration through snapshots; here the
     * drain path itself: a drained lease is listed until its usage is
     * reported, then omitted once */
    int64_t now = real_now_ms(), ws = now / 1000 - 30;
    dp_lease_quota_t q = quota(601, M_REQ, 100);
    dp_lease_inst_t *in = dp_lease_get(&q);
    dp_lease_slot_t *s;
    int retry;
    dp_lease_take(in, 1, now, &s, &retry);
    grant_rule_t rule = {.ws = ws, .we = ws + 90, .limit = 100, .max_grant = -1};
    cp_round(&rule, now, 1000, NULL);
    assert_int_equal(dp_lease_take(in, 1, now, &s, &retry), DP_LEASE_OK);
    /* the window ends with a request in flight: listed (reserved) until it settles */
    int64_t after = (ws + 90) * 1000 + 5;
    Sluice__Sync__V1__UsageReport m = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    for (int i = 0; i < 3; i++)
        dp_lease_tick(after, 2000 + i);
    dp_lease_fill_report(&m, 2100, 0, NULL);
    assert_int_equal(m.n_leases, 1);
    assert_int_equal(m.leases[0]->reserved, 1);
    assert_int_equal(m.leases[0]->unreserved, 0);
    dp_lease_give(s, 1, 1);
    for (int i = 0; i < 3; i++)
        dp_lease_tick(after, 3000 + i);
    /* a report sealed before the usage was collected still lists it */
    dp_lease_fill_report(&m, 2999, 0, NULL);
    assert_int_equal(m.n_leases, 1);
    dp_lease_fill_report(&m, 3100, 0, NULL);
    assert_int_equal(m.n_leases, 0);
    assert_int_equal(atomic_load(&in->slot[0].state), DP_SLOT_FREE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_reset),
        cmocka_unit_test(test_ids_and_defaults),
        cmocka_unit_test(test_estimate_bounds),
        cmocka_unit_test_setup_teardown(test_reserve_settle_arithmetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exhausted_and_refill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_rollover_uses_granted_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing_and_overrun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_rejection_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_lowered_lease_is_given_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
