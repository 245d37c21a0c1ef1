/*
 * cp_report.c - exactly-once usage reports and quota leases.
 *
 * Lists travel to PostgreSQL as JSON parameters; quota instances travel
 * back to C between statements (they are few: keys x windows a node is
 * active in), so each statement stays set-based and the grant rule itself
 * is plain C (cp_lease_grant).
 */
#include "cp_report.h"
#include "cp_metrics.h"
#include "sl_crypto.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static int text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

int cp_report_quota_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || s[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int cp_report_validate(const cp_report_pb *r, sl_err_t *err)
{
    if (!text_ok(r->node_id, 128))
        return sl_err_set(err, SL_EINVAL, "report node_id must be 1 to 128 printable characters");
    if (!text_ok(r->boot_id, 128))
        return sl_err_set(err, SL_EINVAL, "report boot_id must be 1 to 128 printable characters");
    if (r->seq <= 0)
        return sl_err_set(err, SL_EINVAL, "report seq must be greater than 0, not %lld", (long long)r->seq);
    if (r->n_entries > CP_REPORT_MAX_ENTRIES)
        return sl_err_set(err, SL_EINVAL, "report has %zu entries, at most %d are allowed", r->n_entries,
                          CP_REPORT_MAX_ENTRIES);
    for (size_t i = 0; i < r->n_entries; i++) {
        const cp_usage_pb *e = r->entries[i];
        if (!text_ok(e->key_id, 128))
            return sl_err_set(err, SL_EINVAL, "report entry %zu: key_id is missing or invalid", i + 1);
        if (!text_ok(e->provider, 64) || !text_ok(e->model, 256))
            return sl_err_set(err, SL_EINVAL, "report entry %zu: provider and model are required", i + 1);
        if (e->tenant_id[0] != '\0' && !text_ok(e->tenant_id, 128))
            return sl_err_set(err, SL_EINVAL, "report entry %zu: tenant_id is invalid", i + 1);
        /* 2000-01-01 .. 2200-01-01: anything else is a unit mistake (ms instead of s) */
        if (e->minute_unix < 946684800 || e->minute_unix > 7258118400)
            return sl_err_set(err, SL_EINVAL, "report entry %zu: minute_unix %lld is out of range", i + 1,
                              (long long)e->minute_unix);
        if (e->requests < 0 || e->errors < 0 || e->input_tokens < 0 || e->cached_input_tokens < 0 ||
            e->output_tokens < 0 || e->cost_nano < 0)
            return sl_err_set(err, SL_EINVAL, "report entry %zu: counts must not be negative", i + 1);
    }
    if (r->n_lease_requests > CP_REPORT_MAX_LEASES || r->n_leases > CP_REPORT_MAX_LEASES)
        return sl_err_set(err, SL_EINVAL, "report has %zu lease requests and %zu leases, at most %d of each",
                          r->n_lease_requests, r->n_leases, CP_REPORT_MAX_LEASES);
    for (size_t i = 0; i < r->n_lease_requests; i++) {
        const Sluice__Sync__V1__LeaseRequest *q = r->lease_requests[i];
        if (!cp_report_quota_id_ok(q->quota_id))
            return sl_err_set(err, SL_EINVAL, "lease request %zu: quota_id \"%.40s\" is not a quota id", i + 1,
                              q->quota_id);
        if (q->window_start_unix < 0 || q->window_start_unix > 7258118400)
            return sl_err_set(err, SL_EINVAL, "lease request %zu: window_start_unix %lld is out of range", i + 1,
                              (long long)q->window_start_unix);
        if (q->want < 0)
            return sl_err_set(err, SL_EINVAL, "lease request %zu: want must not be negative", i + 1);
    }
    for (size_t i = 0; i < r->n_leases; i++) {
        const Sluice__Sync__V1__LeaseState *s = r->leases[i];
        if (!cp_report_quota_id_ok(s->quota_id))
            return sl_err_set(err, SL_EINVAL, "lease %zu: quota_id \"%.40s\" is not a quota id", i + 1, s->quota_id);
        if (s->window_start_unix < 0 || s->window_start_unix > 7258118400)
            return sl_err_set(err, SL_EINVAL, "lease %zu: window_start_unix %lld is out of range", i + 1,
                              (long long)s->window_start_unix);
        if (s->reserved < 0 || s->unreserved < 0)
            return sl_err_set(err, SL_EINVAL, "lease %zu: reserved and unreserved must not be negative", i + 1);
    }
    return 0;
}

static int64_t month_start(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm);
}

size_t cp_report_months(const cp_report_pb *r, int64_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_entries; i++) {
        int64_t m = month_start(r->entries[i]->minute_unix);
        size_t j = 0;
        while (j < n && out[j] < m)
            j++;
        if (j < n && out[j] == m)
            continue;
        if (n == cap)
            break;
        memmove(out + j + 1, out + j, (n - j) * sizeof(*out));
        out[j] = m;
        n++;
    }
    return n;
}

static char *dump(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (s == NULL)
        abort();
    return s;
}

char *cp_report_entries_json(const cp_report_pb *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_entries; i++) {
        const cp_usage_pb *e = r->entries[i];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "minute",
                         (json_int_t)(e->minute_unix - e->minute_unix % 60), "tenant_id", e->tenant_id, "key_id",
                         e->key_id, "provider", e->provider, "model", e->model, "requests", (json_int_t)e->requests,
                         "errors", (json_int_t)e->errors, "input_tokens", (json_int_t)e->input_tokens,
                         "cached_input_tokens", (json_int_t)e->cached_input_tokens, "output_tokens",
                         (json_int_t)e->output_tokens, "cost_nano", (json_int_t)e->cost_nano));
    }
    return dump(a);
}

static char *circuits_json(const cp_report_pb *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_circuits; i++) {
        const Sluice__Sync__V1__CircuitState *c = r->circuits[i];
        json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "provider", c->provider, "credential", c->credential,
                                           "state", c->state));
    }
    return dump(a);
}

/* Circuit states of the reporting node for circuit_open alerts. A state
 * reported later (an older report retried or replayed from a spool) never
 * overwrites a newer one. Unknown states are ignored. */
static const char CIRCUITS_SQL[] =
    "INSERT INTO provider_health (node_id, provider, credential, state, reported_at)"
    " SELECT $1, c.provider, c.credential, c.state, to_timestamp($3::bigint / 1000.0)"
    " FROM jsonb_to_recordset($2::jsonb) AS c(provider text, credential text, state text)"
    " WHERE c.state IN ('closed', 'open', 'half_open') AND c.provider <> ''"
    " ON CONFLICT (node_id, provider, credential) DO UPDATE"
    " SET state = EXCLUDED.state, reported_at = EXCLUDED.reported_at"
    " WHERE provider_health.reported_at <= EXCLUDED.reported_at";

static char *states_json(const cp_report_pb *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_leases; i++) {
        const Sluice__Sync__V1__LeaseState *s = r->leases[i];
        json_array_append_new(a, json_pack("{s:I, s:I, s:I}", "q", (json_int_t)strtoll(s->quota_id, NULL, 10), "ws",
                                           (json_int_t)s->window_start_unix, "reserved", (json_int_t)s->reserved));
    }
    return dump(a);
}

static char *requests_json(const cp_report_pb *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_lease_requests; i++) {
        const Sluice__Sync__V1__LeaseRequest *q = r->lease_requests[i];
        json_array_append_new(a, json_pack("{s:I, s:I, s:I}", "q", (json_int_t)strtoll(q->quota_id, NULL, 10), "ws",
                                           (json_int_t)q->window_start_unix, "want", (json_int_t)q->want));
    }
    return dump(a);
}

/* ---- statements ------------------------------------------------------------------------------ */

/* The tenant a ledger row of an entry belongs to, as the ledger statement
 * decides it: the row's own when it exists, else the entry's, else the
 * key's. */
#define ENTRY_TENANT(g)                                                                                               \
    "COALESCE((SELECT u.tenant_id FROM usage_minute u WHERE u.minute = to_timestamp(" g ".minute)"                   \
    " AND u.key_id = " g ".key_id AND u.provider = " g ".provider AND u.model = " g ".model),"                       \
    " NULLIF(" g ".tenant_id, ''), (SELECT k.tenant_id FROM virtual_keys k WHERE k.id = " g ".key_id), '')"

/* Quotas an entry row e (minute, key_id, provider, tenant_id) counts in,
 * with the window start of the minute; SEL is the select list. */
#define QUOTAS_OF(SEL)                                                                                                \
    " SELECT " SEL " FROM e JOIN sluice_quota_zones z ON z.scope_kind = 'virtual_key' AND z.scope_id = e.key_id"     \
    " WHERE z.metric <> 'concurrent' AND (z.provider = '' OR z.provider = e.provider)"                               \
    " UNION ALL SELECT " SEL " FROM e JOIN sluice_quota_zones z ON z.scope_kind = 'tenant'"                          \
    " AND z.scope_id = e.tenant_id WHERE z.metric <> 'concurrent' AND (z.provider = '' OR z.provider = e.provider)"

/* Every quota instance the report touches: $1 entries, $2 node, $3 boot,
 * $4 lease states, $5 lease requests. Per (quota, window start): its end,
 * whether it may be created (entries and valid requests), the sum of the
 * wants (NULL: not requested), whether the node listed it. A request for
 * window 0 means the current window; other starts must be a window start
 * of the quota whose window has not ended and is at most the next one. */
static const char INSTANCES_SQL[] =
    "WITH g AS (SELECT x.minute, x.key_id, x.provider, x.model, max(x.tenant_id) AS tenant_id"
    "   FROM jsonb_to_recordset($1::jsonb) AS x(minute bigint, tenant_id text, key_id text, provider text,"
    "   model text) GROUP BY 1, 2, 3, 4),"
    " e AS (SELECT DISTINCT to_timestamp(g.minute) AS minute, g.key_id, g.provider, " ENTRY_TENANT("g") " AS tenant_id"
    "   FROM g),"
    " eq AS (" QUOTAS_OF("z.id, sluice_window_start(z.\"window\", z.time_zone, e.minute) AS ws, z.\"window\" AS win,"
                         " z.time_zone") "),"
    " rq AS (SELECT z.id, z.\"window\" AS win, z.time_zone, x.want,"
    "   CASE WHEN x.ws = 0 THEN sluice_window_start(z.\"window\", z.time_zone, now()) ELSE to_timestamp(x.ws) END AS ws"
    "   FROM jsonb_to_recordset($5::jsonb) AS x(q bigint, ws bigint, want bigint)"
    "   JOIN sluice_quota_zones z ON z.id = x.q AND z.metric <> 'concurrent'),"
    " rv AS (SELECT id, ws, win, time_zone, sum(want) AS want FROM rq"
    "   WHERE ws = sluice_window_start(win, time_zone, ws) AND sluice_window_end(win, time_zone, ws) > now()"
    "   AND ws <= sluice_window_end(win, time_zone, sluice_window_start(win, time_zone, now()))"
    "   GROUP BY 1, 2, 3, 4),"
    " st AS (SELECT DISTINCT x.q AS id, to_timestamp(x.ws) AS ws FROM jsonb_to_recordset($4::jsonb) AS x(q bigint,"
    "   ws bigint)),"
    " al AS (SELECT id, ws, win, time_zone, true AS mk, NULL::numeric AS want, false AS listed FROM eq"
    "   UNION ALL SELECT id, ws, win, time_zone, true, want, false FROM rv"
    "   UNION ALL SELECT id, ws, NULL, NULL, false, NULL, true FROM st"
    "   UNION ALL SELECT l.quota_id, l.window_start, NULL, NULL, false, NULL, false FROM quota_leases l"
    "     WHERE l.node_id = $2 AND (l.boot_id = $3 OR l.expires_at < now()))"
    " SELECT id, extract(epoch FROM ws)::bigint,"
    "   COALESCE(extract(epoch FROM sluice_window_end(max(win), max(time_zone), ws))::bigint, 0),"
    "   bool_or(mk), least(sum(want), 9223372036854775807)::bigint, sum(want) IS NOT NULL, bool_or(listed)"
    " FROM al GROUP BY id, ws ORDER BY id, ws";

/* Creates missing windows with the ledger's sum (before this report's rows):
 * $1 [{q, ws, we}] sorted. */
static const char CREATE_SQL[] =
    "INSERT INTO quota_windows (quota_id, window_start, window_end, used, outstanding)"
    " SELECT x.q, to_timestamp(x.ws), to_timestamp(x.we),"
    "   sluice_quota_ledger_sum(x.q, to_timestamp(x.ws), to_timestamp(x.we)), 0"
    " FROM jsonb_to_recordset($1::jsonb) AS x(q bigint, ws bigint, we bigint)"
    " WHERE NOT EXISTS (SELECT 1 FROM quota_windows w WHERE w.quota_id = x.q AND w.window_start = to_timestamp(x.ws))"
    "   AND EXISTS (SELECT 1 FROM quotas z WHERE z.id = x.q)"
    " ORDER BY x.q, x.ws ON CONFLICT DO NOTHING";

/* Locks the windows $1 [{q, ws}] in key order. */
static const char LOCK_SQL[] =
    "SELECT 1 FROM quota_windows w JOIN jsonb_to_recordset($1::jsonb) AS x(q bigint, ws bigint)"
    " ON w.quota_id = x.q AND w.window_start = to_timestamp(x.ws)"
    " ORDER BY w.quota_id, w.window_start FOR UPDATE OF w";

/* Sums are checked against bigint overflow by PostgreSQL itself (an error
 * rolls the whole report back). A blank tenant is filled in from the key. */
static const char LEDGER_SQL[] =
    "INSERT INTO usage_minute AS u (minute, tenant_id, key_id, provider, model, requests, errors, input_tokens,"
    " cached_input_tokens, output_tokens, cost_nano)"
    " SELECT to_timestamp(e.minute), COALESCE(NULLIF(max(e.tenant_id), ''),"
    "   (SELECT k.tenant_id FROM virtual_keys k WHERE k.id = e.key_id), ''),"
    "   e.key_id, e.provider, e.model, sum(e.requests), sum(e.errors), sum(e.input_tokens),"
    "   sum(e.cached_input_tokens), sum(e.output_tokens), sum(e.cost_nano)"
    " FROM jsonb_to_recordset($1::jsonb) AS e(minute bigint, tenant_id text, key_id text, provider text, model text,"
    "   requests bigint, errors bigint, input_tokens bigint, cached_input_tokens bigint, output_tokens bigint,"
    "   cost_nano bigint)"
    " GROUP BY e.minute, e.key_id, e.provider, e.model"
    " ORDER BY e.minute, e.key_id, e.provider, e.model" /* rows are locked in one order by every report */
    " ON CONFLICT (minute, key_id, provider, model) DO UPDATE SET"
    " requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors,"
    " input_tokens = u.input_tokens + EXCLUDED.input_tokens,"
    " cached_input_tokens = u.cached_input_tokens + EXCLUDED.cached_input_tokens,"
    " output_tokens = u.output_tokens + EXCLUDED.output_tokens, cost_nano = u.cost_nano + EXCLUDED.cost_nano";

/* Consumption, after the ledger statement: $1 entries, $2 node, $3 boot.
 * Entries are matched to the ledger rows they went into, so tenant quotas
 * count exactly the rows the ledger attributes to the tenant. A window that
 * exists gets used += amount; one that does not (its tenant could not be
 * foreseen) is created with the ledger's sum, which already holds this
 * report's rows. The node's lease gives back what was consumed from it. */
static const char CONSUME_SQL[] =
    "WITH g AS (SELECT to_timestamp(x.minute) AS minute, x.key_id, x.provider, x.model, sum(x.requests) AS requests,"
    "   sum(x.input_tokens) AS input_tokens, sum(x.output_tokens) AS output_tokens, sum(x.cost_nano) AS cost_nano"
    "   FROM jsonb_to_recordset($1::jsonb) AS x(minute bigint, key_id text, provider text, model text,"
    "   requests bigint, input_tokens bigint, output_tokens bigint, cost_nano bigint) GROUP BY 1, 2, 3, 4),"
    " e AS (SELECT g.*, u.tenant_id FROM g JOIN usage_minute u ON u.minute = g.minute AND u.key_id = g.key_id"
    "   AND u.provider = g.provider AND u.model = g.model),"
    " m AS (" QUOTAS_OF("z.id AS quota_id, z.\"window\" AS win, z.time_zone,"
                        " sluice_window_start(z.\"window\", z.time_zone, e.minute) AS ws,"
                        " sluice_quota_amount(z.metric, e.requests::bigint, e.input_tokens::bigint,"
                        " e.output_tokens::bigint, e.cost_nano::bigint) AS amount") "),"
    " c AS (SELECT quota_id, ws, max(win) AS win, max(time_zone) AS tz, sum(amount)::bigint AS amount"
    "   FROM m GROUP BY 1, 2),"
    " d AS (SELECT l.quota_id, l.window_start, least(c.amount, l.outstanding) AS d FROM quota_leases l"
    "   JOIN c ON l.quota_id = c.quota_id AND l.window_start = c.ws WHERE l.node_id = $2 AND l.boot_id = $3),"
    " ul AS (UPDATE quota_leases l SET outstanding = l.outstanding - d.d FROM d"
    "   WHERE l.quota_id = d.quota_id AND l.window_start = d.window_start AND l.node_id = $2 AND l.boot_id = $3"
    "   AND d.d > 0)"
    " INSERT INTO quota_windows AS w (quota_id, window_start, window_end, used, outstanding)"
    " SELECT c.quota_id, c.ws, sluice_window_end(c.win, c.tz, c.ws),"
    "   CASE WHEN EXISTS (SELECT 1 FROM quota_windows x WHERE x.quota_id = c.quota_id AND x.window_start = c.ws)"
    "   THEN 0 ELSE sluice_quota_ledger_sum(c.quota_id, c.ws, sluice_window_end(c.win, c.tz, c.ws)) END, 0"
    " FROM c ORDER BY 1, 2"
    " ON CONFLICT (quota_id, window_start) DO UPDATE SET"
    " used = w.used + (SELECT c.amount FROM c WHERE c.quota_id = EXCLUDED.quota_id AND c.ws = EXCLUDED.window_start),"
    " outstanding = w.outstanding - COALESCE((SELECT d.d FROM d WHERE d.quota_id = EXCLUDED.quota_id"
    "   AND d.window_start = EXCLUDED.window_start), 0)";

/* Lease states: $1 node, $2 boot, $3 states, $4 seq, $5 ttl ms, $6 grace ms.
 * Renews listed leases; releases this process's leases it no longer lists
 * (unless a newer report touched them) and expired leases of the node's
 * earlier processes. Returns (renewed, released). */
static const char STATES_SQL[] =
    "WITH s AS (SELECT x.q, to_timestamp(x.ws) AS ws, max(x.reserved) AS reserved"
    "   FROM jsonb_to_recordset($3::jsonb) AS x(q bigint, ws bigint, reserved bigint) GROUP BY 1, 2),"
    " renew AS (UPDATE quota_leases l SET reserved = s.reserved,"
    "   expires_at = now() + $5::bigint * interval '1 millisecond',"
    "   reclaim_at = now() + ($5::bigint + $6::bigint) * interval '1 millisecond', seq = $4::bigint"
    "   FROM s WHERE l.quota_id = s.q AND l.window_start = s.ws AND l.node_id = $1 AND l.boot_id = $2"
    "   AND l.seq <= $4::bigint RETURNING 1),"
    " rel AS (DELETE FROM quota_leases l WHERE l.node_id = $1 AND ((l.boot_id = $2 AND l.seq < $4::bigint"
    "   AND NOT EXISTS (SELECT 1 FROM s WHERE s.q = l.quota_id AND s.ws = l.window_start))"
    "   OR (l.boot_id <> $2 AND l.expires_at < now()))"
    "   RETURNING l.quota_id, l.window_start, l.outstanding),"
    " rw AS (UPDATE quota_windows w SET outstanding = w.outstanding - r.o"
    "   FROM (SELECT quota_id, window_start, sum(outstanding)::bigint AS o FROM rel GROUP BY 1, 2) r"
    "   WHERE w.quota_id = r.quota_id AND w.window_start = r.window_start RETURNING 1)"
    " SELECT (SELECT count(*) FROM renew), (SELECT count(*) FROM rel), (SELECT count(*) FROM rw)";

/* The state a grant is computed from: $1 [{i, q, ws}], $2 node, $3 boot. */
static const char GRANT_STATE_SQL[] =
    "SELECT x.i, z.limit_value, w.used, w.outstanding, COALESCE(l.outstanding, 0)"
    " FROM jsonb_to_recordset($1::jsonb) AS x(i int, q bigint, ws bigint)"
    " JOIN quotas z ON z.id = x.q"
    " JOIN quota_windows w ON w.quota_id = x.q AND w.window_start = to_timestamp(x.ws)"
    " LEFT JOIN quota_leases l ON l.quota_id = x.q AND l.window_start = w.window_start AND l.node_id = $2"
    "   AND l.boot_id = $3";

/* Records grants: $1 [{q, ws, g}] (g > 0), $2 node, $3 boot, $4 seq, $5 ttl
 * ms, $6 grace ms. */
static const char GRANT_SQL[] =
    "WITH g AS (SELECT x.q, to_timestamp(x.ws) AS ws, x.g FROM jsonb_to_recordset($1::jsonb) AS x(q bigint,"
    "   ws bigint, g bigint)),"
    " uw AS (UPDATE quota_windows w SET outstanding = w.outstanding + g.g FROM g"
    "   WHERE w.quota_id = g.q AND w.window_start = g.ws)"
    " INSERT INTO quota_leases AS l (quota_id, window_start, node_id, boot_id, outstanding, reserved, expires_at,"
    "   reclaim_at, seq)"
    " SELECT g.q, g.ws, $2, $3, g.g, 0, now() + $5::bigint * interval '1 millisecond',"
    "   now() + ($5::bigint + $6::bigint) * interval '1 millisecond', $4::bigint FROM g ORDER BY 1, 2"
    " ON CONFLICT (quota_id, window_start, node_id, boot_id) DO UPDATE SET"
    " outstanding = l.outstanding + EXCLUDED.outstanding, expires_at = EXCLUDED.expires_at,"
    " reclaim_at = EXCLUDED.reclaim_at, seq = greatest(l.seq, EXCLUDED.seq)";

/* What the ack says about instances $1 [{q, ws}]: $2 node, $3 boot. */
static const char ACK_SQL[] =
    "SELECT x.q, x.ws, extract(epoch FROM w.window_end)::bigint, z.limit_value, w.used, w.outstanding,"
    " COALESCE((extract(epoch FROM l.expires_at) * 1000)::bigint, 0)"
    " FROM (SELECT DISTINCT q, ws FROM jsonb_to_recordset($1::jsonb) AS y(q bigint, ws bigint)) x"
    " JOIN quotas z ON z.id = x.q"
    " JOIN quota_windows w ON w.quota_id = x.q AND w.window_start = to_timestamp(x.ws)"
    " LEFT JOIN quota_leases l ON l.quota_id = x.q AND l.window_start = w.window_start AND l.node_id = $2"
    "   AND l.boot_id = $3"
    " ORDER BY x.q, x.ws";

/* ---- the transaction ---------------------------------------------------------------------------- */

/* One quota instance the report touches. */
struct inst {
    int64_t q, ws, we;
    int create;     /* entries or a valid request: create the window if missing */
    int requested;
    int listed;
    int64_t want;
    int64_t granted;
};

static int load_instances(cp_db_t *db, const cp_report_pb *r, const char *entries, const char *states,
                          const char *requests, cp_arena_t *a, struct inst **out, size_t *n, sl_err_t *err)
{
    const char *p[5] = {entries, r->node_id, r->boot_id, states, requests};
    PGresult *res = cp_db_query(db, INSTANCES_SQL, 5, p, err);
    if (res == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(res);
    struct inst *v = cp_arena_alloc(a, sizeof(*v) * (rows > 0 ? rows : 1));
    for (size_t i = 0; i < rows; i++) {
        v[i].q = cp_db_i64(res, (int)i, 0);
        v[i].ws = cp_db_i64(res, (int)i, 1);
        v[i].we = cp_db_i64(res, (int)i, 2);
        v[i].create = cp_db_bool(res, (int)i, 3);
        v[i].want = cp_db_i64(res, (int)i, 4);
        v[i].requested = cp_db_bool(res, (int)i, 5);
        v[i].listed = cp_db_bool(res, (int)i, 6);
    }
    PQclear(res);
    *out = v;
    *n = rows;
    return 0;
}

/* JSON of the instances selected by pick; fields: "q", "ws", and "we" /
 * "i" / "g" as asked. Returns NULL when none is picked. */
enum { J_WE = 1, J_I = 2, J_G = 4 };
static char *inst_json(const struct inst *v, size_t n, int (*pick)(const struct inst *), int fields)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!pick(&v[i]))
            continue;
        json_t *o = json_pack("{s:I, s:I}", "q", (json_int_t)v[i].q, "ws", (json_int_t)v[i].ws);
        if (fields & J_WE)
            json_object_set_new(o, "we", json_integer(v[i].we));
        if (fields & J_I)
            json_object_set_new(o, "i", json_integer((json_int_t)i));
        if (fields & J_G)
            json_object_set_new(o, "g", json_integer(v[i].granted));
        json_array_append_new(arr, o);
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return dump(arr);
}

static int pick_create(const struct inst *x)
{
    return x->create && x->we > x->ws;
}
static int pick_all(const struct inst *x)
{
    return 1;
}
static int pick_requested(const struct inst *x)
{
    return x->requested;
}
static int pick_granted(const struct inst *x)
{
    return x->requested && x->granted > 0;
}
static int pick_acked(const struct inst *x)
{
    return x->requested || x->listed;
}

/* Runs sql with one JSON parameter (skipped when json is NULL). */
static int exec_json(cp_db_t *db, const char *sql, char *json, sl_err_t *err)
{
    if (json == NULL)
        return 0;
    const char *p[1] = {json};
    int rc = cp_db_exec(db, sql, 1, p, err);
    free(json);
    return rc;
}

static int compute_grants(cp_db_t *db, const cp_report_pb *r, struct inst *v, size_t n, sl_err_t *err)
{
    char *json = inst_json(v, n, pick_requested, J_I);
    if (json == NULL)
        return 0;
    const char *p[3] = {json, r->node_id, r->boot_id};
    PGresult *res = cp_db_query(db, GRANT_STATE_SQL, 3, p, err);
    free(json);
    if (res == NULL)
        return err->code;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t i = cp_db_i64(res, row, 0);
        if (i < 0 || (size_t)i >= n)
            continue;
        struct inst *x = &v[i];
        x->granted = cp_lease_grant(cp_db_i64(res, row, 1), cp_db_i64(res, row, 2), cp_db_i64(res, row, 3),
                                    cp_db_i64(res, row, 4), x->want);
    }
    PQclear(res);
    return 0;
}

static int record_grants(cp_db_t *db, const cp_report_pb *r, const cp_lease_cfg_t *cfg, struct inst *v, size_t n,
                         sl_err_t *err)
{
    char *json = inst_json(v, n, pick_granted, J_G);
    if (json == NULL)
        return 0;
    char sb[24], tb[24], gb[24];
    const char *p[6] = {json,
                        r->node_id,
                        r->boot_id,
                        cp_db_fmt_i64(r->seq, sb),
                        cp_db_fmt_i64(cfg->ttl_ms, tb),
                        cp_db_fmt_i64(cfg->grace_ms, gb)};
    int rc = cp_db_exec(db, GRANT_SQL, 6, p, err);
    free(json);
    return rc;
}

static const struct inst *find_inst(const struct inst *v, size_t n, int64_t q, int64_t ws)
{
    size_t lo = 0, hi = n; /* v is sorted by (q, ws) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].q < q || (v[mid].q == q && v[mid].ws < ws))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].q == q && v[lo].ws == ws ? &v[lo] : NULL;
}

static int build_ack(cp_db_t *db, const cp_report_pb *r, const struct inst *v, size_t n, cp_arena_t *a, cp_ack_pb *ack,
                     sl_err_t *err)
{
    char *json = inst_json(v, n, pick_acked, 0);
    if (json == NULL)
        return 0;
    const char *p[3] = {json, r->node_id, r->boot_id};
    PGresult *res = cp_db_query(db, ACK_SQL, 3, p, err);
    free(json);
    if (res == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(res);
    ack->grants = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_grant_pb *g = cp_arena_msg(a, &sluice__sync__v1__lease_grant__descriptor);
        int64_t q = cp_db_i64(res, (int)i, 0);
        g->quota_id = cp_arena_strdup(a, cp_db_str(res, (int)i, 0));
        g->window_start_unix = cp_db_i64(res, (int)i, 1);
        g->window_end_unix = cp_db_i64(res, (int)i, 2);
        g->limit = cp_db_i64(res, (int)i, 3);
        g->used = cp_db_i64(res, (int)i, 4);
        g->outstanding = cp_db_i64(res, (int)i, 5);
        g->expires_unix_ms = cp_db_i64(res, (int)i, 6);
        const struct inst *x = find_inst(v, n, q, g->window_start_unix);
        g->granted = x != NULL && x->requested ? x->granted : 0;
        ack->grants[ack->n_grants++] = g;
    }
    PQclear(res);
    return 0;
}

static void *arena_pb_alloc(void *ud, size_t n)
{
    return cp_arena_alloc(ud, n);
}

static void arena_pb_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

/* The ack stored with an applied report (NULL when it predates acks). */
static int stored_ack(cp_db_t *db, const cp_report_pb *r, const char *const *key, cp_arena_t *a, cp_ack_pb **out,
                      sl_err_t *err)
{
    *out = NULL;
    PGresult *res = cp_db_query(db,
                                "SELECT encode(ack, 'hex') FROM usage_reports WHERE node_id = $1 AND boot_id = $2"
                                " AND seq = $3 AND ack IS NOT NULL",
                                3, key, err);
    if (res == NULL)
        return err->code;
    if (PQntuples(res) == 1) {
        const char *hex = cp_db_str(res, 0, 0);
        size_t len = strlen(hex) / 2;
        uint8_t *buf = cp_arena_alloc(a, len + 1);
        ProtobufCAllocator al = {arena_pb_alloc, arena_pb_free, a};
        if (sl_hex_decode(hex, len * 2, buf, len) == 0)
            *out = (cp_ack_pb *)protobuf_c_message_unpack(&sluice__sync__v1__report_ack__descriptor, &al, len, buf);
    }
    PQclear(res);
    return 0;
}

static int store_ack(cp_db_t *db, const char *const *key, const cp_ack_pb *ack, sl_err_t *err)
{
    size_t len = protobuf_c_message_get_packed_size(&ack->base);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL)
        abort();
    protobuf_c_message_pack(&ack->base, buf);
    const char *p[4] = {key[0], key[1], key[2], (const char *)buf};
    int lens[4] = {0, 0, 0, (int)len};
    int fmts[4] = {0, 0, 0, 1};
    PGresult *res = cp_db_query_bin(
        db, "UPDATE usage_reports SET ack = $4 WHERE node_id = $1 AND boot_id = $2 AND seq = $3", 4, p, lens, fmts, err);
    free(buf);
    if (res == NULL)
        return err->code;
    PQclear(res);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cp_report_apply(cp_db_t *db, const cp_report_pb *r, const cp_lease_cfg_t *cfg, cp_arena_t *a, cp_ack_pb **out,
                    sl_err_t *err)
{
    *out = NULL;
    int rc = cp_report_validate(r, err);
    if (rc != 0)
        return rc;
    double t0 = now_s();
    cp_ack_pb *ack = cp_arena_msg(a, &sluice__sync__v1__report_ack__descriptor);
    ack->seq = r->seq;
    /* Partitions first, each in its own transaction: creating one locks the
     * whole ledger, which must never happen while holding quota windows */
    if (r->n_entries > 0) {
        int64_t months[64];
        size_t nm = cp_report_months(r, months, sizeof(months) / sizeof(months[0]));
        if (nm == sizeof(months) / sizeof(months[0]))
            return sl_err_set(err, SL_EINVAL, "report spans too many months");
        for (size_t i = 0; i < nm && rc == 0; i++) {
            char mb[24];
            const char *mp[1] = {cp_db_fmt_i64(months[i], mb)};
            rc = cp_db_exec(db, "SELECT sluice_ensure_usage_partition(to_timestamp($1))", 1, mp, err);
            /* another report created it between the function's check and
             * its CREATE: a new transaction sees it */
            if (rc != 0 && strstr(err->msg, "already exists") != NULL)
                rc = cp_db_exec(db, "SELECT sluice_ensure_usage_partition(to_timestamp($1))", 1, mp, err);
        }
        if (rc != 0)
            return rc;
    }
    if ((rc = cp_db_begin(db, err)) != 0)
        return rc;
    char sb[24], nb[24];
    const char *key[4] = {r->node_id, r->boot_id, cp_db_fmt_i64(r->seq, sb), cp_db_fmt_i64((int64_t)r->n_entries, nb)};
    char *entries = NULL, *states = NULL, *requests = NULL;
    PGresult *res = cp_db_query(db,
                                "INSERT INTO usage_reports (node_id, boot_id, seq, entries) VALUES ($1, $2, $3, $4)"
                                " ON CONFLICT DO NOTHING",
                                4, key, err);
    if (res == NULL) {
        rc = err->code;
        goto fail;
    }
    int inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!inserted) {
        cp_ack_pb *old = NULL;
        if ((rc = stored_ack(db, r, key, a, &old, err)) != 0 || (rc = cp_db_commit(db, err)) != 0)
            goto fail;
        if (old != NULL)
            ack = old;
        ack->seq = r->seq;
        ack->duplicate = 1;
        *out = ack;
        cp_metrics_inc(CP_M_REPORTS_DUPLICATE, 1);
        return 0;
    }
    /* quotas cannot appear while this report is half applied (0002) */
    if ((rc = cp_db_exec(db, "SELECT pg_advisory_xact_lock_shared(sluice_quota_lock_key())", 0, NULL, err)) != 0)
        goto fail;

    entries = cp_report_entries_json(r);
    states = states_json(r);
    requests = requests_json(r);
    struct inst *v = NULL;
    size_t n = 0;
    if ((rc = load_instances(db, r, entries, states, requests, a, &v, &n, err)) != 0)
        goto fail;
    if ((rc = exec_json(db, CREATE_SQL, inst_json(v, n, pick_create, J_WE), err)) != 0 ||
        (rc = exec_json(db, LOCK_SQL, inst_json(v, n, pick_all, 0), err)) != 0)
        goto fail;

    int64_t rows = 0;
    if (r->n_entries > 0) {
        const char *lp[1] = {entries};
        if ((res = cp_db_query(db, LEDGER_SQL, 1, lp, err)) == NULL) {
            rc = err->code;
            goto fail;
        }
        rows = strtoll(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        const char *cp[3] = {entries, r->node_id, r->boot_id};
        if ((rc = cp_db_exec(db, CONSUME_SQL, 3, cp, err)) != 0)
            goto fail;
    }

    /* no instance at all: the node neither holds nor lists a lease */
    if (n > 0) {
        char tb[24], gb[24];
        const char *sp[6] = {r->node_id, r->boot_id, states, key[2], cp_db_fmt_i64(cfg->ttl_ms, tb),
                             cp_db_fmt_i64(cfg->grace_ms, gb)};
        if ((res = cp_db_query(db, STATES_SQL, 6, sp, err)) == NULL) {
            rc = err->code;
            goto fail;
        }
        PQclear(res);
    }

    if (r->n_circuits > 0) {
        char *cj = circuits_json(r), tb[24];
        int64_t sent = r->sent_unix_ms > 0 ? r->sent_unix_ms : (int64_t)(now_s() * 1000);
        const char *hp[3] = {r->node_id, cj, cp_db_fmt_i64(sent, tb)};
        rc = cj != NULL ? cp_db_exec(db, CIRCUITS_SQL, 3, hp, err) : SL_ENOMEM;
        free(cj);
        if (rc != 0)
            goto fail;
    }

    if ((rc = compute_grants(db, r, v, n, err)) != 0 || (rc = record_grants(db, r, cfg, v, n, err)) != 0 ||
        (rc = build_ack(db, r, v, n, a, ack, err)) != 0 || (rc = store_ack(db, key, ack, err)) != 0 ||
        (rc = cp_db_commit(db, err)) != 0)
        goto fail;

    free(entries);
    free(states);
    free(requests);
    uint64_t grants = 0, denials = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].requested)
            continue;
        grants += v[i].granted > 0;
        denials += v[i].granted < v[i].want;
    }
    cp_metrics_inc(CP_M_REPORTS_APPLIED, 1);
    cp_metrics_inc(CP_M_USAGE_ENTRIES, r->n_entries);
    cp_metrics_inc(CP_M_LEDGER_ROWS, (uint64_t)rows);
    cp_metrics_inc(CP_M_LEASE_GRANTS, grants);
    cp_metrics_inc(CP_M_LEASE_DENIALS, denials);
    cp_metrics_observe_report(now_s() - t0);
    *out = ack;
    return 0;
fail:
    free(entries);
    free(states);
    free(requests);
    cp_db_rollback(db);
    return rc;
}
