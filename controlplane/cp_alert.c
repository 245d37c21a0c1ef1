/*
 * cp_alert.c - the alert evaluator thread: leadership, rule evaluation and
 * the outbox writes (semantics in cp_alert.h and 0004_alerts.sql).
 */
#include "cp_alert.h"
#include "cp_alert_deliver.h"
#include "cp_alert_logic.h"
#include "cp_alert_payload.h"
#include "cp_alert_store.h"
#include "cp_anomaly.h"
#include "cp_arena.h"
#include "cp_metrics.h"
#include "sl_buf.h"
#include "sl_duration.h"
#include "sl_log.h"
#include "sl_money.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

/* A model is prepared again after this long within its hour: reports that
 * arrive late for past hours, and, for a scope without enough history yet
 * (a young tenant), the history that has accrued or been imported since.
 * Not at every pass: thousands of young tenants would have their histories
 * read every minute. */
#define MODEL_REFRESH_S 600
/* Hours of history handed to the anomaly detector: six weeks and a day. */
#define ANOMALY_HISTORY_HOURS (6 * CP_ANOMALY_WEEK_HOURS + 24)
#define DELIVERIES_PER_TICK 50

/* ---- the anomaly model cache ------------------------------------------------------ */

typedef struct model_entry {
    char *key;           /* rule "\n" scope */
    uint64_t hash;
    int64_t hour_start;  /* the hour the model was prepared for */
    int64_t prepared_at; /* database time (unix s) it was prepared */
    int64_t sensitivity_micro, min_hourly_nano;
    cp_anomaly_model_t model;
    int seen;
} model_entry_t;

/* The models by key: an open-addressing table of entries that never move
 * (callers hold pointers to them through a pass), rebuilt by the sweep. */
struct cp_alert_eval {
    model_entry_t **slot;
    size_t n, cap; /* cap: a power of two, at most half full */
};

cp_alert_eval_t *cp_alert_eval_new(void)
{
    cp_alert_eval_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        abort();
    return e;
}

void cp_alert_eval_free(cp_alert_eval_t *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->cap; i++)
        if (e->slot[i] != NULL) {
            free(e->slot[i]->key);
            free(e->slot[i]);
        }
    free(e->slot);
    free(e);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void model_place(model_entry_t **slot, size_t cap, model_entry_t *m)
{
    size_t i = m->hash & (cap - 1);
    while (slot[i] != NULL)
        i = (i + 1) & (cap - 1);
    slot[i] = m;
}

/* Moves the entries into a table of cap slots. sweep: drops the entries
 * no pass asked for since the last sweep and clears the marks of the rest. */
static void model_rebuild(cp_alert_eval_t *e, size_t cap, int sweep)
{
    model_entry_t **slot = calloc(cap, sizeof(*slot));
    if (slot == NULL)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < e->cap; i++) {
        model_entry_t *m = e->slot[i];
        if (m == NULL)
            continue;
        if (sweep && !m->seen) {
            free(m->key);
            free(m);
            continue;
        }
        if (sweep)
            m->seen = 0;
        model_place(slot, cap, m);
        n++;
    }
    free(e->slot);
    e->slot = slot;
    e->cap = cap;
    e->n = n;
}

static model_entry_t *model_slot(cp_alert_eval_t *e, const char *key)
{
    uint64_t h = fnv1a(key);
    for (size_t i = e->cap ? h & (e->cap - 1) : 0; e->cap && e->slot[i] != NULL; i = (i + 1) & (e->cap - 1))
        if (e->slot[i]->hash == h && strcmp(e->slot[i]->key, key) == 0)
            return e->slot[i];
    if ((e->n + 1) * 2 > e->cap)
        model_rebuild(e, e->cap ? e->cap * 2 : 16, 0);
    model_entry_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->key = strdup(key);
    if (m->key == NULL)
        abort();
    m->hash = h;
    m->hour_start = -1;
    model_place(e->slot, e->cap, m);
    e->n++;
    return m;
}

/* Drops the models no scope asked for in the last pass. */
static void model_sweep(cp_alert_eval_t *e)
{
    size_t seen = 0, cap = 16;
    for (size_t i = 0; i < e->cap; i++)
        seen += e->slot[i] != NULL && e->slot[i]->seen;
    while (cap < seen * 2)
        cap *= 2;
    model_rebuild(e, cap, 1);
}

/* ---- formatting ---------------------------------------------------------------------- */

/* USD rounded to cents, for summaries ("6000.00"); details carry exact values. */
static const char *usd2(cp_arena_t *a, int64_t nano)
{
    char b[40];
    int64_t cents = nano >= INT64_MAX - 5000000 ? nano / 10000000 : (nano + 5000000) / 10000000;
    int n = snprintf(b, sizeof(b), "%lld.%02lld", (long long)(cents / 100), (long long)(cents % 100));
    return cp_arena_strndup(a, b, (size_t)n);
}

static const char *usd_exact(cp_arena_t *a, int64_t nano)
{
    char b[40];
    sl_usd_format(nano, 9, b, sizeof(b));
    return cp_arena_strdup(a, b);
}

static const char *iso(cp_arena_t *a, int64_t t)
{
    char b[32];
    cp_alert_time(t, b);
    return cp_arena_strdup(a, b);
}

/* "virtual_key/vk_1" -> "virtual key vk_1" */
static const char *scope_human(cp_arena_t *a, const char *scope)
{
    const char *slash = strchr(scope, '/');
    if (slash == NULL)
        return scope;
    size_t n = (size_t)(slash - scope);
    if (n == 11 && strncmp(scope, "virtual_key", 11) == 0)
        return cp_arena_printf(a, "virtual key %s", slash + 1);
    return cp_arena_printf(a, "%.*s %s", (int)n, scope, slash + 1);
}

static const char *window_adj(const char *w)
{
    static const char *const names[][2] = {{"minute", "per-minute"}, {"hour", "hourly"},   {"day", "daily"},
                                           {"week", "weekly"},       {"month", "monthly"}, {"total", "total"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i][0], w) == 0)
            return names[i][1];
    return w;
}

static char *dumps(cp_arena_t *a, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL)
        abort();
    char *r = cp_arena_strdup(a, s);
    free(s);
    return r;
}

/* ---- state transitions and the outbox ---------------------------------------------- */

typedef struct rctx {
    cp_db_t *db;
    cp_arena_t *a;
    const cp_rule_pb *r;
    const char *sinks_json;
    int fired, resolved;
    sl_err_t *err;
} rctx_t;

static const char EVENT_SQL[] =
    "WITH e AS (INSERT INTO alert_events (rule, rule_kind, scope, instance, kind, severity, dedup_key, summary,"
    "   details, fired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb,"
    "   CASE WHEN $10::bigint = 0 THEN now() ELSE to_timestamp($10::bigint) END) RETURNING id),"
    " d AS (INSERT INTO alert_deliveries (event_id, sink)"
    "   SELECT e.id, s FROM e, jsonb_array_elements_text($11::jsonb) AS s RETURNING 1)"
    " SELECT (SELECT id FROM e), (SELECT count(*) FROM d)";

/* Records one event and its deliveries (the caller's transaction). */
static int write_event(rctx_t *c, const char *scope, const char *instance, const char *kind, const char *severity,
                       const char *summary, const char *details, int64_t fired_unix)
{
    sl_buf_t dk = {0};
    cp_alert_dedup_key(c->r->name, scope, instance, &dk);
    char fb[24];
    const char *p[11] = {c->r->name,
                         c->r->kind,
                         scope,
                         instance,
                         kind,
                         severity,
                         dk.data,
                         summary,
                         details[0] != '\0' ? details : "{}",
                         cp_db_fmt_i64(fired_unix, fb),
                         c->sinks_json};
    PGresult *r = cp_db_query(c->db, EVENT_SQL, 11, p, c->err);
    sl_buf_free(&dk);
    if (r == NULL)
        return c->err->code;
    sl_info("alert", "rule \"%s\" %s for %s%s%s: %s (event %s, %s deliveries)", c->r->name,
            strcmp(kind, "fire") == 0 ? "fired" : "resolved", scope, instance[0] ? " " : "", instance, summary,
            cp_db_str(r, 0, 0), cp_db_str(r, 0, 1));
    PQclear(r);
    if (strcmp(kind, "fire") == 0)
        c->fired++;
    else
        c->resolved++;
    return 0;
}

static const char FIRE_SQL[] =
    "INSERT INTO alert_state AS s (rule, scope, instance, status, severity, summary, last_values, period_end)"
    " VALUES ($1, $2, $3, 'firing', $4, $5, $6::jsonb,"
    "   CASE WHEN $7::bigint = 0 THEN NULL ELSE to_timestamp($7::bigint) END)"
    " ON CONFLICT (rule, scope, instance) DO UPDATE SET status = 'firing', fired_at = now(), resolved_at = NULL,"
    "   severity = EXCLUDED.severity, summary = EXCLUDED.summary, last_values = EXCLUDED.last_values,"
    "   period_end = EXCLUDED.period_end, evaluated_at = now()"
    "   WHERE s.status = 'resolved' AND $8::boolean"
    " RETURNING 1";

/* Fires (rule, scope, instance) unless it is firing already (or, without
 * refire, unless it ever fired). The event is recorded only when the state
 * changed. */
static int fire(rctx_t *c, const char *scope, const char *instance, const char *severity, const char *summary,
                const char *values, int64_t period_end, int refire)
{
    char pe[24];
    const char *p[8] = {c->r->name,
                        scope,
                        instance,
                        severity,
                        summary,
                        values,
                        cp_db_fmt_i64(period_end, pe),
                        refire ? "true" : "false"};
    PGresult *r = cp_db_query(c->db, FIRE_SQL, 8, p, c->err);
    if (r == NULL)
        return c->err->code;
    int changed = PQntuples(r) == 1;
    PQclear(r);
    return changed ? write_event(c, scope, instance, "fire", severity, summary, values, 0) : 0;
}

static const char RESOLVE_SQL[] =
    "UPDATE alert_state SET status = 'resolved', resolved_at = now(), evaluated_at = now(), summary = $4,"
    " last_values = CASE WHEN $5 = '' THEN last_values ELSE $5::jsonb END"
    " WHERE rule = $1 AND scope = $2 AND instance = $3 AND status = 'firing'"
    " RETURNING extract(epoch FROM fired_at)::bigint, severity, last_values::text";

static int resolve(rctx_t *c, const char *scope, const char *instance, const char *summary, const char *values)
{
    const char *p[5] = {c->r->name, scope, instance, summary, values != NULL ? values : ""};
    PGresult *r = cp_db_query(c->db, RESOLVE_SQL, 5, p, c->err);
    if (r == NULL)
        return c->err->code;
    int rc = 0;
    if (PQntuples(r) == 1) {
        int64_t fired = cp_db_i64(r, 0, 0);
        const char *sev = cp_arena_strdup(c->a, cp_db_str(r, 0, 1));
        const char *vals = cp_arena_strdup(c->a, cp_db_str(r, 0, 2));
        rc = write_event(c, scope, instance, "resolve", sev, summary, vals, fired);
    }
    PQclear(r);
    return rc;
}

/* Keeps the numbers of the last evaluation on an existing state row. */
static int touch(rctx_t *c, const char *scope, const char *values)
{
    const char *p[3] = {c->r->name, scope, values};
    return cp_db_exec(c->db,
                      "UPDATE alert_state SET last_values = $3::jsonb, evaluated_at = now()"
                      " WHERE rule = $1 AND scope = $2 AND instance = ''",
                      3, p, c->err);
}

/* Scopes of a rule's state rows (instance '') that are firing. */
typedef struct firing_set {
    char **scope;
    int *visited;
    size_t n;
} firing_set_t;

static int load_firing(rctx_t *c, firing_set_t *f)
{
    const char *p[1] = {c->r->name};
    PGresult *r = cp_db_query(c->db,
                              "SELECT scope FROM alert_state WHERE rule = $1 AND instance = '' AND status = 'firing'"
                              " ORDER BY scope",
                              1, p, c->err);
    if (r == NULL)
        return c->err->code;
    f->n = (size_t)PQntuples(r);
    f->scope = cp_arena_ptrs(c->a, f->n);
    f->visited = cp_arena_alloc(c->a, (f->n + 1) * sizeof(int));
    for (size_t i = 0; i < f->n; i++)
        f->scope[i] = cp_arena_strdup(c->a, cp_db_str(r, (int)i, 0));
    PQclear(r);
    return 0;
}

/* Whether scope is firing; marks it visited. */
static int visit(firing_set_t *f, const char *scope)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->scope[i], scope) == 0) {
            f->visited[i] = 1;
            return 1;
        }
    return 0;
}

/* Resolves firing scopes the rule no longer covers (its scope changed). */
static int resolve_unvisited(rctx_t *c, const firing_set_t *f)
{
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++)
        if (!f->visited[i])
            rc = resolve(
                c, f->scope[i], "",
                cp_arena_printf(c->a, "rule \"%s\" no longer watches %s", c->r->name, scope_human(c->a, f->scope[i])),
                NULL);
    return rc;
}

/* ---- budget_threshold ------------------------------------------------------------------ */

static const char BUDGET_SQL[] =
    "SELECT z.id, z.scope_kind, z.scope_id, z.provider, z.\"window\", z.limit_value,"
    " extract(epoch FROM b.ws)::bigint, extract(epoch FROM e.we)::bigint, sluice_quota_ledger_sum(z.id, b.ws, e.we)"
    " FROM sluice_quota_zones z"
    " CROSS JOIN LATERAL (SELECT sluice_window_start(z.\"window\", z.time_zone, now()) AS ws) b"
    " CROSS JOIN LATERAL (SELECT sluice_window_end(z.\"window\", z.time_zone, b.ws) AS we) e"
    " WHERE z.metric = 'cost_nano' AND z.limit_value > 0"
    " AND (($1 = 'all_tenants' AND z.scope_kind = 'tenant') OR (z.scope_kind = $1 AND z.scope_id = $2))"
    " ORDER BY z.id";

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int eval_budget(rctx_t *c)
{
    const cp_rule_pb *r = c->r;
    cp_arena_t *a = c->a;
    /* windows that ended resolve first: a rollover and a crossing in the new
     * window may happen in one pass, and the resolve belongs before it */
    const char *rp[1] = {r->name};
    PGresult *res = cp_db_query(c->db,
                                "UPDATE alert_state SET status = 'resolved', resolved_at = now(), evaluated_at = now()"
                                " WHERE rule = $1 AND status = 'firing' AND period_end IS NOT NULL"
                                " AND period_end <= now()"
                                " RETURNING scope, instance, extract(epoch FROM fired_at)::bigint, severity,"
                                " last_values::text",
                                1, rp, c->err);
    if (res == NULL)
        return c->err->code;
    int rc = 0;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const char *scope = cp_arena_strdup(a, cp_db_str(res, i, 0));
        const char *inst = cp_arena_strdup(a, cp_db_str(res, i, 1));
        const char *summary =
            cp_arena_printf(a, "the budget window of %s ended; threshold %s is reset", scope_human(a, scope), inst);
        rc = write_event(c, scope, inst, "resolve", cp_db_str(res, i, 3), summary, cp_db_str(res, i, 4),
                         cp_db_i64(res, i, 2));
    }
    PQclear(res);
    if (rc != 0)
        return rc;

    const cp_scope_pb *s = r->scope;
    const char *sk = s->virtual_key[0] ? "virtual_key" : s->tenant[0] ? "tenant" : "all_tenants";
    const char *sid = s->virtual_key[0] ? s->virtual_key : s->tenant;
    const char *p[2] = {sk, sid};
    res = cp_db_query(c->db, BUDGET_SQL, 2, p, c->err);
    if (res == NULL)
        return c->err->code;
    size_t nt = r->n_thresholds_micro;
    int64_t *th = cp_arena_alloc(a, (nt + 1) * sizeof(int64_t));
    memcpy(th, r->thresholds_micro, nt * sizeof(int64_t));
    qsort(th, nt, sizeof(int64_t), cmp_i64);
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const char *quota_id = cp_db_str(res, i, 0), *qsk = cp_db_str(res, i, 1), *qsid = cp_db_str(res, i, 2);
        const char *provider = cp_db_str(res, i, 3), *window = cp_db_str(res, i, 4);
        int64_t limit = cp_db_i64(res, i, 5), ws = cp_db_i64(res, i, 6), we = cp_db_i64(res, i, 7);
        int64_t spend = cp_db_i64(res, i, 8);
        const char *scope = cp_arena_printf(a, "%s/%s", qsk, qsid);
        for (size_t t = 0; t < nt && rc == 0; t++) {
            if (!cp_alert_budget_crossed(spend, limit, th[t]))
                break; /* ascending: the higher ones are not crossed either */
            sl_buf_t inst = {0};
            cp_alert_budget_instance(provider, window, ws, th[t], &inst);
            char tf[32], tp[32], fp[32];
            cp_alert_fraction(th[t], tf);
            cp_alert_percent(th[t], tp);
            /* the fraction of the budget spent, in millionths, floored */
            int64_t frac = (int64_t)(((__int128)spend * 1000000) / limit);
            cp_alert_percent(frac, fp);
            json_t *v = json_object();
            json_object_set_new(v, "spend_usd", json_string(usd_exact(a, spend)));
            json_object_set_new(v, "limit_usd", json_string(usd_exact(a, limit)));
            json_object_set_new(v, "threshold", json_string(tf));
            json_object_set_new(v, "spent_fraction", json_string(cp_arena_printf(a, "%.6f", (double)frac / 1e6)));
            json_object_set_new(v, "spend_nano", json_integer(spend));
            json_object_set_new(v, "limit_nano", json_integer(limit));
            json_object_set_new(v, "window", json_string(window));
            json_object_set_new(v, "window_start", json_string(iso(a, ws)));
            json_object_set_new(v, "window_end", json_string(iso(a, we)));
            if (provider[0] != '\0')
                json_object_set_new(v, "provider", json_string(provider));
            json_object_set_new(v, "quota_id", json_string(quota_id));
            const char *values = dumps(a, v);
            const char *sev = r->severity[0] ? r->severity : cp_alert_default_severity(r->kind, th[t]);
            const char *summary = cp_arena_printf(
                a, "%s has spent %s USD of its %s USD %s%s%s budget (%s), crossing %s", scope_human(a, scope),
                usd2(a, spend), usd2(a, limit), window_adj(window), provider[0] ? " " : "", provider, fp, tp);
            rc = fire(c, scope, cp_arena_strdup(a, inst.data), sev, summary, values, we, 0);
            sl_buf_free(&inst);
        }
    }
    PQclear(res);
    return rc;
}

/* ---- spend_anomaly -------------------------------------------------------------------------- */

/* The scopes of a spend_anomaly rule with their current hour, in one query:
 * id, the hour's start (unix s, in the tenant's time zone), its hour of the
 * week, the spend so far in it, and the database's clock. */
#define ANOMALY_NOW_SQL(source, column)                                                                                \
    "SELECT s.id, extract(epoch FROM s.cs)::bigint,"                                                                   \
    " (extract(isodow FROM s.cs AT TIME ZONE s.tz)::int - 1) * 24 + extract(hour FROM s.cs AT TIME ZONE s.tz)::int,"  \
    " (SELECT COALESCE(sum(u.cost_nano), 0)::bigint FROM usage_minute u WHERE u." column " = s.id"                    \
    "   AND u.minute >= s.cs AND u.minute < s.cs + interval '1 hour'),"                                               \
    " extract(epoch FROM now())::float8"                                                                               \
    " FROM (SELECT q.id, q.tz, sluice_window_start('hour', q.tz, now()) AS cs FROM (" source ") q) s ORDER BY s.id"

static const char ANOMALY_KEY_SQL[] =
    ANOMALY_NOW_SQL("SELECT k.id, COALESCE(NULLIF(t.time_zone, ''), 'UTC') AS tz FROM virtual_keys k"
                    " LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
                    "key_id");
static const char ANOMALY_TENANTS_SQL[] =
    ANOMALY_NOW_SQL("SELECT id, COALESCE(NULLIF(time_zone, ''), 'UTC') AS tz FROM tenants WHERE ($1 = '' OR id = $1)",
                    "tenant_id");

/* Hourly spend of many scopes at once: $1 ids, $2 the start of each one's
 * history (unix s), $3 its length in seconds. Rows: index into $1 (from 1),
 * hour since the start, spend. */
#define ANOMALY_HISTORY_SQL(column)                                                                                    \
    "SELECT x.i, (extract(epoch FROM u.minute)::bigint - x.start) / 3600, sum(u.cost_nano)::bigint"                    \
    " FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS x(id, start, i)"                                        \
    " JOIN usage_minute u ON u." column " = x.id"                                                                      \
    "  AND u.minute >= to_timestamp(x.start) AND u.minute < to_timestamp(x.start + $3::bigint)"                       \
    " GROUP BY 1, 2 ORDER BY 1, 2"

/* Scopes whose history is fetched in one query. */
#define ANOMALY_BATCH 256

typedef struct anomaly_scope {
    const char *id;
    const char *scope;
    int64_t hour_start;
    int64_t current; /* spend so far this hour */
    int how;         /* hour of the week */
    model_entry_t *m;
} anomaly_scope_t;

/* Whether sc's model must be prepared (again) before deciding. */
static int model_stale(const rctx_t *c, const anomaly_scope_t *sc, double now)
{
    const model_entry_t *m = sc->m;
    return m->hour_start != sc->hour_start || now - (double)m->prepared_at >= MODEL_REFRESH_S ||
           m->sensitivity_micro != c->r->sensitivity_micro || m->min_hourly_nano != c->r->min_hourly_nano;
}

static void prepare_model(rctx_t *c, anomaly_scope_t *sc, int64_t *hist, double now)
{
    model_entry_t *m = sc->m;
    long first = -1;
    for (long h = 0; h < ANOMALY_HISTORY_HOURS && first < 0; h++)
        if (hist[h] > 0)
            first = h;
    /* the series starts where the scope first spent: earlier hours are not
     * zeros, they did not exist */
    if (first < 0)
        first = ANOMALY_HISTORY_HOURS;
    cp_anomaly_params_t params;
    cp_anomaly_params_default(&params);
    if (c->r->sensitivity_micro > 0)
        params.sensitivity = (double)c->r->sensitivity_micro / 1e6;
    if (c->r->min_hourly_nano > 0)
        params.min_hourly_nano = c->r->min_hourly_nano;
    if (cp_anomaly_prepare(&params, hist + first, (size_t)(ANOMALY_HISTORY_HOURS - first), sc->how, &m->model) != 0) {
        sl_warn("alert", "rule \"%s\": %s: %s", c->r->name, sc->scope, m->model.reason);
        m->hour_start = -1;
        return;
    }
    m->hour_start = sc->hour_start;
    m->prepared_at = (int64_t)now;
    m->sensitivity_micro = c->r->sensitivity_micro;
    m->min_hourly_nano = c->r->min_hourly_nano;
}

/* Prepares the models of the stale scopes among v[0..n), fetching their
 * histories ANOMALY_BATCH at a time. */
static int prepare_stale(rctx_t *c, anomaly_scope_t *v, size_t n, int by_key, double now)
{
    static const char by_key_sql[] = ANOMALY_HISTORY_SQL("key_id"), by_tenant_sql[] = ANOMALY_HISTORY_SQL("tenant_id");
    anomaly_scope_t **batch = cp_arena_ptrs(c->a, ANOMALY_BATCH);
    int64_t *hist = cp_arena_alloc(c->a, (size_t)ANOMALY_BATCH * ANOMALY_HISTORY_HOURS * sizeof(int64_t));
    char span[24];
    cp_db_fmt_i64((int64_t)ANOMALY_HISTORY_HOURS * 3600, span);
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        for (; i < n && k < ANOMALY_BATCH; i++)
            if (model_stale(c, &v[i], now))
                batch[k++] = &v[i];
        if (k == 0)
            break;
        sl_buf_t ids = {0}, starts = {0};
        sl_buf_puts(&ids, "{");
        sl_buf_puts(&starts, "{");
        for (size_t j = 0; j < k; j++) {
            /* ids are [A-Za-z0-9_.:-] (a CHECK says so); quoted, so that an id
             * such as NULL stays a string in the array literal */
            sl_buf_printf(&ids, "%s\"%s\"", j ? "," : "", batch[j]->id);
            sl_buf_printf(&starts, "%s%lld", j ? "," : "",
                          (long long)(batch[j]->hour_start - (int64_t)ANOMALY_HISTORY_HOURS * 3600));
        }
        sl_buf_puts(&ids, "}");
        sl_buf_puts(&starts, "}");
        const char *p[3] = {ids.data, starts.data, span};
        PGresult *r = cp_db_query(c->db, by_key ? by_key_sql : by_tenant_sql, 3, p, c->err);
        sl_buf_free(&ids);
        sl_buf_free(&starts);
        if (r == NULL)
            return c->err->code;
        memset(hist, 0, k * ANOMALY_HISTORY_HOURS * sizeof(int64_t));
        for (int row = 0; row < PQntuples(r); row++) {
            int64_t j = cp_db_i64(r, row, 0) - 1, h = cp_db_i64(r, row, 1);
            if (j >= 0 && (size_t)j < k && h >= 0 && h < ANOMALY_HISTORY_HOURS)
                hist[j * ANOMALY_HISTORY_HOURS + h] = cp_db_i64(r, row, 2);
        }
        PQclear(r);
        for (size_t j = 0; j < k; j++)
            prepare_model(c, batch[j], hist + j * ANOMALY_HISTORY_HOURS, now);
    }
    return 0;
}

/* Decides on one scope whose model is ready; fires, resolves or touches. */
static int decide_scope(rctx_t *c, firing_set_t *f, const anomaly_scope_t *sc, double now)
{
    cp_arena_t *a = c->a;
    int firing = visit(f, sc->scope);
    if (sc->m->hour_start != sc->hour_start)
        return 0; /* no model (insufficient history): keep the state as it is */
    double frac = (now - (double)sc->hour_start) / 3600.0;
    if (frac < 1.0 / 3600)
        frac = 1.0 / 3600;
    if (frac > 1)
        frac = 1;
    cp_anomaly_result_t res;
    if (cp_anomaly_decide(&sc->m->model, sc->current, frac, firing, &res) != 0)
        return 0;
    static const char *const basis[] = {"none", "current_hour", "last_hour", "sustained"};
    json_t *v = json_object();
    json_object_set_new(v, "current_hour_usd", json_string(usd_exact(a, sc->current)));
    json_object_set_new(v, "observed_usd", json_string(usd_exact(a, res.observed_nano)));
    json_object_set_new(v, "expected_usd", json_string(usd_exact(a, res.expected_nano)));
    json_object_set_new(v, "scale_usd", json_string(usd_exact(a, res.scale_nano)));
    json_object_set_new(v, "score", json_real(res.score));
    json_object_set_new(v, "basis", json_string(basis[res.basis < 4 ? res.basis : 0]));
    json_object_set_new(v, "history_weeks", json_integer(res.history_weeks));
    json_object_set_new(v, "hour_start", json_string(iso(a, sc->hour_start)));
    json_object_set_new(v, "reason", json_string(res.reason));
    const char *values = dumps(a, v);
    const char *who = scope_human(a, sc->scope);
    if (res.action == CP_ANOMALY_FIRE) {
        const char *sev = c->r->severity[0] ? c->r->severity : cp_alert_default_severity(c->r->kind, 0);
        const char *summary =
            cp_arena_printf(a, "%s: spend of %s USD is far above the usual %s USD (score %.1f): %s", who,
                            usd2(a, res.observed_nano), usd2(a, res.expected_nano), res.score, res.reason);
        return fire(c, sc->scope, "", sev, summary, values, 0, 1);
    }
    if (res.action == CP_ANOMALY_RESOLVE)
        return resolve(c, sc->scope, "",
                       cp_arena_printf(a, "%s: spend is back to normal (%s USD against the usual %s USD): %s", who,
                                       usd2(a, res.observed_nano), usd2(a, res.expected_nano), res.reason),
                       values);
    return firing ? touch(c, sc->scope, values) : 0;
}

/* Every scope of the rule (one key, one tenant or all tenants): the current
 * hours and their spend in one query, the histories of stale models in
 * batches, then a decision per scope. */
static int eval_anomaly(rctx_t *c, cp_alert_eval_t *e)
{
    const cp_scope_pb *s = c->r->scope;
    firing_set_t f = {0};
    int rc = load_firing(c, &f);
    if (rc != 0)
        return rc;
    int by_key = s->virtual_key[0] != '\0';
    const char *p[1] = {by_key ? s->virtual_key : s->tenant};
    PGresult *r = cp_db_query(c->db, by_key ? ANOMALY_KEY_SQL : ANOMALY_TENANTS_SQL, 1, p, c->err);
    if (r == NULL)
        return c->err->code;
    size_t n = (size_t)PQntuples(r);
    anomaly_scope_t *v = cp_arena_alloc(c->a, (n > 0 ? n : 1) * sizeof(*v));
    double now = n > 0 ? strtod(cp_db_str(r, 0, 4), NULL) : 0;
    for (size_t i = 0; i < n; i++) {
        anomaly_scope_t *sc = &v[i];
        sc->id = cp_arena_strdup(c->a, cp_db_str(r, (int)i, 0));
        sc->scope = cp_arena_printf(c->a, "%s/%s", by_key ? "virtual_key" : "tenant", sc->id);
        sc->hour_start = cp_db_i64(r, (int)i, 1);
        sc->how = (int)cp_db_i64(r, (int)i, 2);
        sc->current = cp_db_i64(r, (int)i, 3);
        sc->m = model_slot(e, cp_arena_printf(c->a, "%s\n%s", c->r->name, sc->scope));
        sc->m->seen = 1;
    }
    PQclear(r);
    rc = prepare_stale(c, v, n, by_key, now);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = decide_scope(c, &f, &v[i], now);
    return rc == 0 ? resolve_unvisited(c, &f) : rc;
}

/* ---- error_rate and circuit_open ------------------------------------------------------------- */

static int eval_provider(rctx_t *c)
{
    const cp_rule_pb *rule = c->r;
    cp_arena_t *a = c->a;
    int errors = strcmp(rule->kind, "error_rate") == 0;
    const char *provider = rule->scope->provider;
    const char *scope = cp_arena_printf(a, "provider/%s", provider);
    firing_set_t f = {0};
    int rc = load_firing(c, &f);
    if (rc != 0)
        return rc;
    int firing = visit(&f, scope);
    int64_t window = rule->window_seconds > 0 ? rule->window_seconds
                     : errors                 ? CP_ALERT_ERROR_WINDOW_S
                                              : CP_ALERT_CIRCUIT_WINDOW_S;
    char wb[24], dur[32];
    const char *p[2] = {provider, cp_db_fmt_i64(window, wb)};
    sl_duration_format(window * 1000, dur, sizeof(dur));
    PGresult *r =
        cp_db_query(c->db,
                    errors ? "SELECT COALESCE(sum(requests), 0)::bigint, COALESCE(sum(errors), 0)::bigint"
                             " FROM usage_minute WHERE provider = $1"
                             " AND minute >= now() - $2::bigint * interval '1 second'"
                           : "SELECT count(*) FILTER (WHERE state = 'open'), COALESCE(json_agg(json_build_object("
                             "'node', node_id, 'credential', credential) ORDER BY node_id, credential)"
                             " FILTER (WHERE state = 'open'), '[]')::text"
                             " FROM provider_health WHERE provider = $1"
                             " AND reported_at >= now() - $2::bigint * interval '1 second'",
                    2, p, c->err);
    if (r == NULL)
        return c->err->code;
    json_t *v = json_object();
    cp_alert_action_t act;
    const char *fire_summary, *resolve_summary;
    if (errors) {
        int64_t req = cp_db_i64(r, 0, 0), err = cp_db_i64(r, 0, 1);
        char rate[32], th[32];
        int64_t micro = req > 0 ? (int64_t)(((__int128)err * 1000000) / req) : 0;
        cp_alert_percent(micro, rate);
        cp_alert_percent(rule->threshold_micro, th);
        json_object_set_new(v, "requests", json_integer(req));
        json_object_set_new(v, "errors", json_integer(err));
        json_object_set_new(v, "error_rate", json_string(cp_arena_printf(a, "%.6f", (double)micro / 1e6)));
        json_object_set_new(v, "threshold", json_string(cp_arena_printf(a, "%.6f", rule->threshold_micro / 1e6)));
        json_object_set_new(v, "window_seconds", json_integer(window));
        act = cp_alert_error_rate_decide(req, err, rule->threshold_micro, rule->min_requests, firing);
        fire_summary = cp_arena_printf(a, "provider %s: %s of requests failed in the last %s (%lld of %lld), above %s",
                                       provider, rate, dur, (long long)err, (long long)req, th);
        resolve_summary = req > 0 ? cp_arena_printf(a, "provider %s: error rate back to %s in the last %s (at most %s)",
                                                    provider, rate, dur, th)
                                  : cp_arena_printf(a, "provider %s: no requests in the last %s", provider, dur);
    } else {
        int64_t open = cp_db_i64(r, 0, 0);
        json_object_set_new(v, "open_circuits", json_integer(open));
        json_object_set_new(v, "open", json_loads(cp_db_str(r, 0, 1), 0, NULL));
        json_object_set_new(v, "window_seconds", json_integer(window));
        act = cp_alert_circuit_decide(open, firing);
        fire_summary =
            cp_arena_printf(a, "provider %s: %lld circuit(s) open on data planes", provider, (long long)open);
        resolve_summary = cp_arena_printf(a, "provider %s: no circuit open", provider);
    }
    PQclear(r);
    const char *values = dumps(a, v);
    if (act == CP_ALERT_FIRE)
        rc = fire(c, scope, "", rule->severity[0] ? rule->severity : cp_alert_default_severity(rule->kind, 0),
                  fire_summary, values, 0, 1);
    else if (act == CP_ALERT_RESOLVE)
        rc = resolve(c, scope, "", resolve_summary, values);
    else if (firing)
        rc = touch(c, scope, values);
    return rc == 0 ? resolve_unvisited(c, &f) : rc;
}

/* ---- a pass ------------------------------------------------------------------------------------ */

int cp_alert_evaluate(cp_alert_eval_t *e, cp_db_t *db, int *events, sl_err_t *err)
{
    if (events != NULL)
        *events = 0;
    cp_arena_t *a = cp_arena_new();
    cp_rule_pb **rules = NULL;
    size_t n = 0;
    int rc = cp_alert_store_rules(db, NULL, a, &rules, &n, err);
    int total = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const cp_rule_pb *rule = rules[i];
        sl_err_t rerr = {0};
        rctx_t c = {.db = db, .a = a, .r = rule, .err = &rerr};
        c.sinks_json = cp_store_json_strings((const char *const *)rule->sinks, rule->n_sinks);
        int rrc = cp_db_begin(db, &rerr);
        if (rrc == 0) {
            if (strcmp(rule->kind, "budget_threshold") == 0)
                rrc = eval_budget(&c);
            else if (strcmp(rule->kind, "spend_anomaly") == 0)
                rrc = eval_anomaly(&c, e);
            else
                rrc = eval_provider(&c);
        }
        if (rrc == 0)
            rrc = cp_db_commit(db, &rerr);
        free((char *)c.sinks_json);
        if (rrc != 0) {
            cp_db_rollback(db);
            sl_warn("alert", "evaluating rule \"%s\" failed: %s", rule->name, rerr.msg);
            if (rrc == SL_EUNAVAIL)
                rc = sl_err_set(err, rrc, "%s", rerr.msg);
            continue;
        }
        cp_metrics_inc(CP_M_ALERTS_FIRED, (uint64_t)c.fired);
        cp_metrics_inc(CP_M_ALERTS_RESOLVED, (uint64_t)c.resolved);
        total += c.fired + c.resolved;
    }
    if (rc == 0)
        model_sweep(e);
    cp_arena_free(a);
    if (events != NULL)
        *events = total;
    return rc;
}

/* ---- the thread ------------------------------------------------------------------------------- */

struct cp_alert {
    cp_db_t db;
    const cp_keys_t *keys;
    int64_t interval_ms;
    int64_t resend_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1: this session holds the leader lock now. */
static int try_lead(cp_db_t *db, sl_err_t *err)
{
    PGresult *r = cp_db_query(db, "SELECT pg_try_advisory_lock(hashtext('sluice_alert_leader'))", 0, NULL, err);
    if (r == NULL)
        return 0;
    int got = cp_db_bool(r, 0, 0);
    PQclear(r);
    return got;
}

static void *alert_main(void *arg)
{
    cp_alert_t *al = arg;
    cp_alert_eval_t *ev = cp_alert_eval_new();
    cp_alert_sender_t *snd = cp_alert_sender_new(CP_ALERT_HTTP_TIMEOUT_MS, al->resend_ms);
    int leader = 0, failing = 0, pid = 0;
    int64_t next_eval = 0;
    int64_t tick = al->interval_ms < CP_ALERT_TICK_MS ? al->interval_ms : CP_ALERT_TICK_MS;
    pthread_mutex_lock(&al->mu);
    while (!al->stop) {
        pthread_mutex_unlock(&al->mu);
        sl_err_t err = {0};
        int rc = 0;
        /* a reconnected session (cp_db retries on a fresh connection) does
         * not hold the lock the old one had */
        if (leader &&
            (al->db.conn == NULL || PQstatus(al->db.conn) != CONNECTION_OK || PQbackendPID(al->db.conn) != pid)) {
            leader = 0;
            cp_metrics_set_alert_leader(0);
            sl_warn("alert", "lost the alert leader lock with the database connection");
        }
        if (!leader && try_lead(&al->db, &err)) {
            leader = 1;
            pid = PQbackendPID(al->db.conn);
            next_eval = 0;
            cp_metrics_set_alert_leader(1);
            sl_info("alert", "this replica now evaluates alerts (every %lld ms)", (long long)al->interval_ms);
        }
        if (err.code != 0)
            rc = err.code;
        if (leader) {
            int64_t now = mono_ms();
            if (now >= next_eval) {
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                rc = cp_alert_evaluate(ev, &al->db, NULL, &err);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                cp_metrics_observe_alert_eval((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
                next_eval = now + al->interval_ms;
            }
            if (rc == 0)
                rc = cp_alert_deliver_once(snd, &al->db, al->keys, DELIVERIES_PER_TICK, NULL, &err);
            if (rc == 0)
                rc = cp_alert_refresh_once(snd, &al->db, al->keys, DELIVERIES_PER_TICK, NULL, &err);
        }
        if (rc != 0 && !failing)
            sl_warn("alert", "alert evaluation failed: %s", err.msg);
        failing = rc != 0;

        pthread_mutex_lock(&al->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += tick / 1000;
        until.tv_nsec += (tick % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!al->stop && pthread_cond_timedwait(&al->cv, &al->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&al->mu);
    if (leader)
        cp_metrics_set_alert_leader(0);
    cp_alert_sender_free(snd);
    cp_alert_eval_free(ev);
    return NULL;
}

cp_alert_t *cp_alert_start(const cp_alert_cfg_t *cfg)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cp_alert_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    cp_db_init(&a->db, cfg->database_url);
    a->keys = cfg->keys;
    a->interval_ms = cfg->interval_ms > 0 ? cfg->interval_ms : CP_ALERT_INTERVAL_MS_DEFAULT;
    a->resend_ms = cfg->resend_ms;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&a->thread, NULL, alert_main, a) != 0)
        abort();
    return a;
}

void cp_alert_stop(cp_alert_t *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    cp_db_close(&a->db); /* ends the session: the leader lock goes with it */
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    curl_global_cleanup();
}
