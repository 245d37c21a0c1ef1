/*
 * cp_report.c - exactly-once usage reports.
 */
#include "cp_report.h"
#include "cp_metrics.h"

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
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (s == NULL)
        abort();
    return s;
}

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
    " ON CONFLICT (minute, key_id, provider, model) DO UPDATE SET"
    " requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors,"
    " input_tokens = u.input_tokens + EXCLUDED.input_tokens,"
    " cached_input_tokens = u.cached_input_tokens + EXCLUDED.cached_input_tokens,"
    " output_tokens = u.output_tokens + EXCLUDED.output_tokens, cost_nano = u.cost_nano + EXCLUDED.cost_nano";

int cp_report_apply(cp_db_t *db, const cp_report_pb *r, int *duplicate, sl_err_t *err)
{
    *duplicate = 0;
    int rc = cp_report_validate(r, err);
    if (rc != 0)
        return rc;
    if ((rc = cp_db_begin(db, err)) != 0)
        return rc;
    char sb[24], nb[24];
    const char *params[4] = {r->node_id, r->boot_id, cp_db_fmt_i64(r->seq, sb),
                             cp_db_fmt_i64((int64_t)r->n_entries, nb)};
    PGresult *res = cp_db_query(db,
                                "INSERT INTO usage_reports (node_id, boot_id, seq, entries) VALUES ($1, $2, $3, $4)"
                                " ON CONFLICT DO NOTHING",
                                4, params, err);
    if (res == NULL) {
        rc = err->code;
        goto fail;
    }
    int inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!inserted) {
        *duplicate = 1;
        if ((rc = cp_db_commit(db, err)) != 0)
            goto fail;
        cp_metrics_inc(CP_M_REPORTS_DUPLICATE, 1);
        return 0;
    }
    if (r->n_entries > 0) {
        int64_t months[64];
        size_t nm = cp_report_months(r, months, sizeof(months) / sizeof(months[0]));
        if (nm == sizeof(months) / sizeof(months[0])) {
            rc = sl_err_set(err, SL_EINVAL, "report spans too many months");
            goto fail;
        }
        for (size_t i = 0; i < nm && rc == 0; i++) {
            char mb[24];
            const char *mp[1] = {cp_db_fmt_i64(months[i], mb)};
            rc = cp_db_exec(db, "SELECT sluice_ensure_usage_partition(to_timestamp($1))", 1, mp, err);
        }
        if (rc != 0)
            goto fail;
        char *json = cp_report_entries_json(r);
        const char *lp[1] = {json};
        rc = cp_db_exec(db, LEDGER_SQL, 1, lp, err);
        free(json);
        if (rc != 0)
            goto fail;
    }
    if ((rc = cp_db_commit(db, err)) != 0)
        goto fail;
    cp_metrics_inc(CP_M_REPORTS_APPLIED, 1);
    cp_metrics_inc(CP_M_USAGE_ENTRIES, r->n_entries);
    return 0;
fail:
    cp_db_rollback(db);
    return rc;
}
