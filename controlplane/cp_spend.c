/*
 * cp_spend.c - spend and quota status handlers.
 */
#include "cp_spend.h"
#include "cp_lease.h"
#include "cp_quota.h"
#include "cp_service.h"
#include "sl_quota_names.h"

#include <stdlib.h>
#include <string.h>

static int is_leap(long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = y / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cp_spend_parse_date(const char *s, long *days)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return SL_EINVAL;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return SL_EINVAL;
    long y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    long m = (s[5] - '0') * 10 + (s[6] - '0');
    long d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1970 || y > 9998 || m < 1 || m > 12 || d < 1)
        return SL_EINVAL;
    if (d > mdays[m - 1] + (m == 2 && is_leap(y)))
        return SL_EINVAL;
    *days = days_from_civil(y, m, d);
    return 0;
}

int cp_spend_validate(const Sluice__Admin__V1__GetSpendRequest *q, cp_spend_by_t *by, sl_err_t *err)
{
    if (q->tenant_id[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "tenant_id is required");
    long from, to;
    if (q->from_date[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "from_date is required (YYYY-MM-DD)");
    if (cp_spend_parse_date(q->from_date, &from) != 0)
        return sl_err_set(err, SL_EINVAL, "from_date \"%.40s\" is not a date (YYYY-MM-DD)", q->from_date);
    if (q->to_date[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "to_date is required (YYYY-MM-DD)");
    if (cp_spend_parse_date(q->to_date, &to) != 0)
        return sl_err_set(err, SL_EINVAL, "to_date \"%.40s\" is not a date (YYYY-MM-DD)", q->to_date);
    if (to <= from)
        return sl_err_set(err, SL_EINVAL, "to_date %s must be after from_date %s (to_date is exclusive)", q->to_date,
                          q->from_date);
    if (to - from > CP_SPEND_MAX_DAYS)
        return sl_err_set(err, SL_EINVAL, "the range from %s to %s is longer than %d days", q->from_date, q->to_date,
                          CP_SPEND_MAX_DAYS);
    const char *g = q->group_by;
    if (g[0] == '\0' || strcmp(g, "day") == 0)
        *by = CP_SPEND_BY_DAY;
    else if (strcmp(g, "model") == 0)
        *by = CP_SPEND_BY_MODEL;
    else if (strcmp(g, "key") == 0)
        *by = CP_SPEND_BY_KEY;
    else
        return sl_err_set(err, SL_EINVAL, "group_by \"%.40s\" is not day, model or key", g);
    return 0;
}

int cp_quota_status_validate(const Sluice__Admin__V1__GetQuotaStatusRequest *q, sl_err_t *err)
{
    int t = q->tenant_id[0] != '\0', k = q->key_id[0] != '\0';
    if (t == k)
        return sl_err_set(err, SL_EINVAL, "exactly one of tenant_id and key_id is required");
    return 0;
}

/* The tenant's time zone; SL_ENOTFOUND when there is no such tenant. */
static int tenant_zone(cp_db_t *db, const char *tenant, cp_arena_t *a, const char **tz, sl_err_t *err)
{
    const char *p[1] = {tenant};
    PGresult *r =
        cp_db_query(db, "SELECT COALESCE(NULLIF(time_zone, ''), 'UTC') FROM tenants WHERE id = $1", 1, p, err);
    if (r == NULL)
        return err->code;
    int found = PQntuples(r) == 1;
    if (found)
        *tz = cp_arena_strdup(a, cp_db_str(r, 0, 0));
    PQclear(r);
    return found ? 0 : sl_err_set(err, SL_ENOTFOUND, "tenant \"%s\" not found", tenant);
}

/* $1 tenant, $2 from date, $3 to date (exclusive), $4 time zone. The last
 * row (grouping set ()) is the total. */
#define SPEND_SQL(G)                                                                                                   \
    "SELECT " G " AS g, sum(u.requests)::bigint, sum(u.errors)::bigint, sum(u.input_tokens)::bigint,"                  \
    " sum(u.cached_input_tokens)::bigint, sum(u.output_tokens)::bigint, sum(u.cost_nano)::bigint, GROUPING(" G ")"     \
    " FROM usage_minute u WHERE u.tenant_id = $1"                                                                      \
    " AND u.minute >= ($2::date)::timestamp AT TIME ZONE $4 AND u.minute < ($3::date)::timestamp AT TIME ZONE $4"      \
    " GROUP BY GROUPING SETS ((" G "), ()) ORDER BY GROUPING(" G "), " G " COLLATE \"C\""

static const char *const spend_sql[] = {
    [CP_SPEND_BY_DAY] = SPEND_SQL("to_char((u.minute AT TIME ZONE $4)::date, 'YYYY-MM-DD')"),
    [CP_SPEND_BY_MODEL] = SPEND_SQL("(u.provider || '/' || u.model)"),
    [CP_SPEND_BY_KEY] = SPEND_SQL("u.key_id"),
};

static Sluice__Admin__V1__SpendRow *spend_row(cp_arena_t *a, const PGresult *r, int i)
{
    Sluice__Admin__V1__SpendRow *row = cp_arena_msg(a, &sluice__admin__v1__spend_row__descriptor);
    row->group = cp_arena_strdup(a, cp_db_str(r, i, 0));
    row->requests = cp_db_i64(r, i, 1);
    row->errors = cp_db_i64(r, i, 2);
    row->input_tokens = cp_db_i64(r, i, 3);
    row->cached_input_tokens = cp_db_i64(r, i, 4);
    row->output_tokens = cp_db_i64(r, i, 5);
    row->cost_nano = cp_db_i64(r, i, 6);
    return row;
}

int cp_admin_get_spend(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__GetSpendRequest *q = (const void *)req;
    cp_spend_by_t by;
    int rc = cp_spend_validate(q, &by, err);
    const char *tz = NULL;
    if (rc == 0)
        rc = tenant_zone(ctx->db, q->tenant_id, ctx->arena, &tz, err);
    if (rc != 0)
        return rc;
    const char *p[4] = {q->tenant_id, q->from_date, q->to_date, tz};
    PGresult *r = cp_db_query(ctx->db, spend_sql[by], 4, p, err);
    if (r == NULL)
        return err->code;
    Sluice__Admin__V1__GetSpendResponse *out =
        cp_arena_msg(ctx->arena, &sluice__admin__v1__get_spend_response__descriptor);
    int n = PQntuples(r);
    out->rows = cp_arena_ptrs(ctx->arena, (size_t)n);
    for (int i = 0; i < n; i++) {
        Sluice__Admin__V1__SpendRow *row = spend_row(ctx->arena, r, i);
        if (cp_db_i64(r, i, 7) != 0) {
            row->group = "total";
            out->total = row;
        } else {
            out->rows[out->n_rows++] = row;
        }
    }
    PQclear(r);
    if (out->total == NULL) { /* no rows at all: a zero total */
        out->total = cp_arena_msg(ctx->arena, &sluice__admin__v1__spend_row__descriptor);
        out->total->group = "total";
    }
    *resp = &out->base;
    return 0;
}

/* The current window of every quota that applies: $1 tenant (its quotas and
 * its keys'), or $2 key (its quotas and its tenant's). */
static const char STATUS_SQL[] =
    "SELECT z.id, z.scope_kind, z.scope_id, z.provider, z.metric, z.\"window\", z.limit_value, z.on_unavailable,"
    " CASE WHEN z.metric = 'concurrent' THEN 0 ELSE extract(epoch FROM z.ws)::bigint END,"
    " CASE WHEN z.metric = 'concurrent' THEN 0 ELSE extract(epoch FROM z.we)::bigint END,"
    " CASE WHEN z.metric = 'concurrent' THEN 0 ELSE COALESCE(w.used, sluice_quota_ledger_sum(z.id, z.ws, z.we)) END,"
    " COALESCE(w.outstanding, 0)"
    " FROM (SELECT z.*, s.ws, sluice_window_end(z.\"window\", z.time_zone, s.ws) AS we"
    "   FROM sluice_quota_zones z CROSS JOIN LATERAL"
    "   (SELECT sluice_window_start(z.\"window\", z.time_zone, now()) AS ws) s"
    "   WHERE ($1::text IS NOT NULL AND z.tenant_id = $1)"
    "   OR ($2::text IS NOT NULL AND ((z.scope_kind = 'virtual_key' AND z.scope_id = $2)"
    "   OR (z.scope_kind = 'tenant' AND z.scope_id = (SELECT k.tenant_id FROM virtual_keys k WHERE k.id = $2))))) z"
    " LEFT JOIN quota_windows w ON w.quota_id = z.id AND w.window_start = z.ws"
    " ORDER BY z.scope_kind = 'virtual_key', z.scope_id COLLATE \"C\", z.provider COLLATE \"C\", z.metric,"
    " z.\"window\"";

int cp_admin_get_quota_status(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__GetQuotaStatusRequest *q = (const void *)req;
    int rc = cp_quota_status_validate(q, err);
    if (rc != 0)
        return rc;
    int by_tenant = q->tenant_id[0] != '\0';
    const char *id = by_tenant ? q->tenant_id : q->key_id;
    const char *cp[1] = {id};
    PGresult *r = cp_db_query(
        ctx->db, by_tenant ? "SELECT 1 FROM tenants WHERE id = $1" : "SELECT 1 FROM virtual_keys WHERE id = $1", 1, cp,
        err);
    if (r == NULL)
        return err->code;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found)
        return sl_err_set(err, SL_ENOTFOUND, "%s \"%s\" not found", by_tenant ? "tenant" : "virtual key", id);
    const char *p[2] = {by_tenant ? id : NULL, by_tenant ? NULL : id};
    if ((r = cp_db_query(ctx->db, STATUS_SQL, 2, p, err)) == NULL)
        return err->code;
    Sluice__Admin__V1__GetQuotaStatusResponse *out =
        cp_arena_msg(ctx->arena, &sluice__admin__v1__get_quota_status_response__descriptor);
    int n = PQntuples(r);
    out->quotas = cp_arena_ptrs(ctx->arena, (size_t)n);
    for (int i = 0; i < n; i++) {
        Sluice__Admin__V1__QuotaStatus *s = cp_arena_msg(ctx->arena, &sluice__admin__v1__quota_status__descriptor);
        cp_quota_pb *qu = cp_arena_msg(ctx->arena, CP_DESC(quota));
        qu->id = cp_arena_strdup(ctx->arena, cp_db_str(r, i, 0));
        qu->provider = cp_arena_strdup(ctx->arena, cp_db_str(r, i, 3));
        qu->metric = sl_quota_metric_parse(cp_db_str(r, i, 4));
        qu->window = sl_quota_window_parse(cp_db_str(r, i, 5));
        qu->limit = cp_db_i64(r, i, 6);
        qu->on_unavailable = sl_quota_on_unavailable_parse(cp_db_str(r, i, 7));
        s->quota = qu;
        s->scope_kind = cp_arena_strdup(ctx->arena, cp_db_str(r, i, 1));
        s->scope_id = cp_arena_strdup(ctx->arena, cp_db_str(r, i, 2));
        s->window_start_unix = cp_db_i64(r, i, 8);
        s->window_end_unix = cp_db_i64(r, i, 9);
        s->used = cp_db_i64(r, i, 10);
        s->outstanding = cp_db_i64(r, i, 11);
        s->remaining = cp_lease_remaining(qu->limit, s->used, s->outstanding);
        out->quotas[out->n_quotas++] = s;
    }
    PQclear(r);
    *resp = &out->base;
    return 0;
}
