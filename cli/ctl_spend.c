/*
 * ctl_spend.c - spend and quota status renderings.
 */
#include "ctl_spend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_output.h"
#include "sl_money.h"
#include "sl_quota_names.h"

typedef Sluice__Admin__V1__SpendRow row_t;
typedef Sluice__Admin__V1__QuotaStatus status_t;

/* "YYYY-MM-DD" with a real month and day (the control plane checks the
 * calendar fully); compares as text. */
static int date_ok(const char *s)
{
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

int ctl_spend_request(const char *tenant, const char *from, const char *to, const char *by,
                      Sluice__Admin__V1__GetSpendRequest *req, sl_err_t *err)
{
    if (tenant == NULL || tenant[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "--tenant is required");
    if (from == NULL || to == NULL)
        return sl_err_set(err, SL_EINVAL, "--from and --to are required (YYYY-MM-DD; --to is exclusive)");
    if (!date_ok(from))
        return sl_err_set(err, SL_EINVAL, "--from \"%s\" is not a date (YYYY-MM-DD)", from);
    if (!date_ok(to))
        return sl_err_set(err, SL_EINVAL, "--to \"%s\" is not a date (YYYY-MM-DD)", to);
    if (strcmp(to, from) <= 0)
        return sl_err_set(err, SL_EINVAL, "--to %s must be after --from %s (--to is exclusive)", to, from);
    if (by != NULL && strcmp(by, "day") != 0 && strcmp(by, "model") != 0 && strcmp(by, "key") != 0)
        return sl_err_set(err, SL_EINVAL, "--by \"%s\" is not day, model or key", by);
    *req = (Sluice__Admin__V1__GetSpendRequest)SLUICE__ADMIN__V1__GET_SPEND_REQUEST__INIT;
    req->tenant_id = (char *)tenant;
    req->from_date = (char *)from;
    req->to_date = (char *)to;
    req->group_by = (char *)(by != NULL ? by : "day");
    return 0;
}

int ctl_quotas_request(const char *tenant, const char *key, Sluice__Admin__V1__GetQuotaStatusRequest *req,
                       sl_err_t *err)
{
    int t = tenant != NULL && tenant[0] != '\0', k = key != NULL && key[0] != '\0';
    if (t == k)
        return sl_err_set(err, SL_EINVAL, "give exactly one of --tenant T and --key K");
    *req = (Sluice__Admin__V1__GetQuotaStatusRequest)SLUICE__ADMIN__V1__GET_QUOTA_STATUS_REQUEST__INIT;
    if (t)
        req->tenant_id = (char *)tenant;
    else
        req->key_id = (char *)key;
    return 0;
}

void ctl_csv_field(sl_buf_t *out, const char *s)
{
    if (s == NULL)
        s = "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        sl_buf_puts(out, s);
        return;
    }
    sl_buf_puts(out, "\"");
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"')
            sl_buf_puts(out, "\"\"");
        else
            sl_buf_append(out, p, 1);
    }
    sl_buf_puts(out, "\"");
}

static const char *usd(int64_t nano, char buf[40])
{
    sl_usd_format(nano, 9, buf, 40);
    return buf;
}

/* ---- a small aligned table ---------------------------------------------------------------- */

#define MAXCOLS 12

typedef struct table {
    size_t ncols;
    int right[MAXCOLS]; /* right-aligned (numbers) */
    size_t width[MAXCOLS];
    char **cells; /* rows x ncols, malloc'd */
    size_t nrows;
} table_t;

static void t_row(table_t *t, const char *const *v)
{
    t->cells = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    if (t->cells == NULL)
        abort();
    for (size_t i = 0; i < t->ncols; i++) {
        char *c = strdup(v[i] != NULL ? v[i] : "");
        if (c == NULL)
            abort();
        t->cells[t->nrows * t->ncols + i] = c;
        if (strlen(c) > t->width[i])
            t->width[i] = strlen(c);
    }
    t->nrows++;
}

static void t_render(sl_buf_t *out, table_t *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * t->ncols + i];
            int w = (int)t->width[i];
            int last = i + 1 == t->ncols;
            if (t->right[i])
                sl_buf_printf(out, "%*s%s", w, c, last ? "" : "  ");
            else if (last)
                sl_buf_puts(out, c);
            else
                sl_buf_printf(out, "%-*s  ", w, c);
            free(t->cells[r * t->ncols + i]);
        }
        sl_buf_puts(out, "\n");
    }
    free(t->cells);
}

/* ---- spend ---------------------------------------------------------------------------------- */

static void json_row(sl_buf_t *out, const row_t *r, int with_group)
{
    char u[40];
    sl_buf_puts(out, "{");
    if (with_group) {
        sl_buf_puts(out, "\"group\": ");
        sl_buf_json_str(out, r->group, strlen(r->group));
        sl_buf_puts(out, ", ");
    }
    sl_buf_printf(out,
                  "\"requests\": %lld, \"errors\": %lld, \"input_tokens\": %lld, \"cached_input_tokens\": %lld, "
                  "\"output_tokens\": %lld, \"cost_nano\": %lld, \"cost_usd\": \"%s\"}",
                  (long long)r->requests, (long long)r->errors, (long long)r->input_tokens,
                  (long long)r->cached_input_tokens, (long long)r->output_tokens, (long long)r->cost_nano,
                  usd(r->cost_nano, u));
}

void ctl_out_spend(sl_buf_t *out, ctl_spend_fmt_t f, const Sluice__Admin__V1__GetSpendRequest *req,
                   const Sluice__Admin__V1__GetSpendResponse *r)
{
    const char *by = req->group_by[0] != '\0' ? req->group_by : "day";
    static const row_t zero = SLUICE__ADMIN__V1__SPEND_ROW__INIT;
    const row_t *total = r->total != NULL ? r->total : &zero;
    char u[40];
    if (f == CTL_SPEND_JSON) {
        sl_buf_puts(out, "{\"tenant_id\": ");
        sl_buf_json_str(out, req->tenant_id, strlen(req->tenant_id));
        sl_buf_printf(out, ", \"from\": \"%s\", \"to\": \"%s\", \"group_by\": \"%s\",\n \"rows\": [", req->from_date,
                      req->to_date, by);
        for (size_t i = 0; i < r->n_rows; i++) {
            sl_buf_puts(out, i > 0 ? ",\n  " : "\n  ");
            json_row(out, r->rows[i], 1);
        }
        sl_buf_puts(out, r->n_rows > 0 ? "\n ],\n \"total\": " : "],\n \"total\": ");
        json_row(out, total, 0);
        sl_buf_puts(out, "}\n");
        return;
    }
    if (f == CTL_SPEND_CSV) {
        sl_buf_printf(out, "%s,requests,errors,input_tokens,cached_input_tokens,output_tokens,cost_usd,cost_nano\n",
                      by);
        for (size_t i = 0; i < r->n_rows; i++) {
            const row_t *x = r->rows[i];
            ctl_csv_field(out, x->group);
            sl_buf_printf(out, ",%lld,%lld,%lld,%lld,%lld,%s,%lld\n", (long long)x->requests, (long long)x->errors,
                          (long long)x->input_tokens, (long long)x->cached_input_tokens, (long long)x->output_tokens,
                          usd(x->cost_nano, u), (long long)x->cost_nano);
        }
        return;
    }
    table_t t = {.ncols = 7, .right = {0, 1, 1, 1, 1, 1, 1}};
    const char *head[7] = {strcmp(by, "day") == 0     ? "DAY"
                           : strcmp(by, "model") == 0 ? "MODEL"
                                                      : "KEY",
                           "REQUESTS",
                           "ERRORS",
                           "INPUT TOKENS",
                           "CACHED INPUT",
                           "OUTPUT TOKENS",
                           "COST USD"};
    t_row(&t, head);
    for (size_t i = 0; i <= r->n_rows; i++) {
        const row_t *x = i < r->n_rows ? r->rows[i] : total;
        char n[5][24];
        snprintf(n[0], 24, "%lld", (long long)x->requests);
        snprintf(n[1], 24, "%lld", (long long)x->errors);
        snprintf(n[2], 24, "%lld", (long long)x->input_tokens);
        snprintf(n[3], 24, "%lld", (long long)x->cached_input_tokens);
        snprintf(n[4], 24, "%lld", (long long)x->output_tokens);
        const char *v[7] = {i < r->n_rows ? x->group : "TOTAL", n[0], n[1], n[2], n[3], n[4], usd(x->cost_nano, u)};
        t_row(&t, v);
    }
    t_render(out, &t);
}

/* ---- quotas ----------------------------------------------------------------------------------- */

/* The words of the quota vocabulary, except that a cost quota is "cost". */
static const char *metric_word(int m)
{
    if (m == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO)
        return "cost";
    const char *name = sl_quota_metric_name(m);
    return name != NULL ? name : "unknown";
}

static const char *window_word(int w)
{
    const char *name = sl_quota_window_name(w);
    return name != NULL ? name : "unknown";
}

/* The start of a status's window, which may be the epoch. */
static const char *window_start(const status_t *s, char buf[32])
{
    return s->window_start_unix > 0 ? ctl_time_text(s->window_start_unix, buf, 32) : "1970-01-01T00:00:00Z";
}

/* An amount in the quota's unit as text: USD for cost quotas. */
static const char *amount(const status_t *s, int64_t v, char buf[40])
{
    if (s->quota != NULL && s->quota->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO)
        return usd(v, buf);
    snprintf(buf, 40, "%lld", (long long)v);
    return buf;
}

void ctl_out_quotas(sl_buf_t *out, ctl_spend_fmt_t f, const Sluice__Admin__V1__GetQuotaStatusResponse *r)
{
    static const Sluice__Config__V1__Quota noquota = SLUICE__CONFIG__V1__QUOTA__INIT;
    if (f == CTL_SPEND_JSON) {
        sl_buf_puts(out, "{\"quotas\": [");
        for (size_t i = 0; i < r->n_quotas; i++) {
            const status_t *s = r->quotas[i];
            const Sluice__Config__V1__Quota *q = s->quota != NULL ? s->quota : &noquota;
            char a[32], b[32], u[40];
            sl_buf_puts(out, i > 0 ? ",\n  {" : "\n  {");
            sl_buf_puts(out, "\"id\": ");
            sl_buf_json_str(out, q->id, strlen(q->id));
            sl_buf_puts(out, ", \"scope_kind\": ");
            sl_buf_json_str(out, s->scope_kind, strlen(s->scope_kind));
            sl_buf_puts(out, ", \"scope_id\": ");
            sl_buf_json_str(out, s->scope_id, strlen(s->scope_id));
            sl_buf_puts(out, ", \"provider\": ");
            sl_buf_json_str(out, q->provider, strlen(q->provider));
            sl_buf_printf(out, ", \"metric\": \"%s\", \"window\": \"%s\"", metric_word(q->metric),
                          window_word(q->window));
            if (s->window_end_unix > 0)
                sl_buf_printf(out, ", \"window_start\": \"%s\", \"window_end\": \"%s\"", window_start(s, a),
                              ctl_time_text(s->window_end_unix, b, sizeof(b)));
            sl_buf_printf(out, ", \"limit\": %lld, \"used\": %lld, \"outstanding\": %lld, \"remaining\": %lld",
                          (long long)q->limit, (long long)s->used, (long long)s->outstanding, (long long)s->remaining);
            if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO) {
                sl_buf_printf(out, ", \"limit_usd\": \"%s\"", usd(q->limit, u));
                sl_buf_printf(out, ", \"used_usd\": \"%s\"", usd(s->used, u));
                sl_buf_printf(out, ", \"outstanding_usd\": \"%s\"", usd(s->outstanding, u));
                sl_buf_printf(out, ", \"remaining_usd\": \"%s\"", usd(s->remaining, u));
            }
            sl_buf_puts(out, "}");
        }
        sl_buf_puts(out, r->n_quotas > 0 ? "\n]}\n" : "]}\n");
        return;
    }
    table_t t = {.ncols = 9, .right = {0, 0, 0, 0, 0, 1, 1, 1, 1}};
    if (f == CTL_SPEND_CSV)
        sl_buf_puts(out, "scope_kind,scope_id,quota_id,provider,metric,window,window_start,window_end,limit,used,"
                         "outstanding,remaining\n");
    else {
        const char *head[9] = {"SCOPE", "QUOTA", "ID", "WINDOW", "RESETS", "LIMIT", "USED", "OUTSTANDING", "REMAINING"};
        t_row(&t, head);
    }
    for (size_t i = 0; i < r->n_quotas; i++) {
        const status_t *s = r->quotas[i];
        const Sluice__Config__V1__Quota *q = s->quota != NULL ? s->quota : &noquota;
        char lim[40], used[40], outs[40], rem[40], a[32], b[32];
        amount(s, q->limit, lim);
        amount(s, s->used, used);
        amount(s, s->outstanding, outs);
        amount(s, s->remaining, rem);
        if (f == CTL_SPEND_CSV) {
            ctl_csv_field(out, s->scope_kind);
            sl_buf_puts(out, ",");
            ctl_csv_field(out, s->scope_id);
            sl_buf_puts(out, ",");
            ctl_csv_field(out, q->id);
            sl_buf_puts(out, ",");
            ctl_csv_field(out, q->provider);
            sl_buf_printf(out, ",%s,%s,%s,%s,%s,%s,%s,%s\n", metric_word(q->metric), window_word(q->window),
                          s->window_end_unix > 0 ? window_start(s, a) : "",
                          ctl_time_text(s->window_end_unix, b, sizeof(b)), lim, used, outs, rem);
            continue;
        }
        char scope[300], what[200];
        snprintf(scope, sizeof(scope), "%s %s", strcmp(s->scope_kind, "tenant") == 0 ? "tenant" : "key", s->scope_id);
        snprintf(what, sizeof(what), "%s%s%s%s", q->provider, q->provider[0] != '\0' ? ":" : "", metric_word(q->metric),
                 q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO ? " USD" : "");
        const char *resets = q->window == SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_TOTAL ? "never"
                             : s->window_end_unix > 0 ? ctl_time_text(s->window_end_unix, b, sizeof(b))
                                                      : "-";
        const char *v[9] = {scope, what, q->id, window_word(q->window), resets, lim, used, outs, rem};
        if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT)
            v[6] = v[7] = v[8] = "-";
        t_row(&t, v);
    }
    if (f != CTL_SPEND_CSV)
        t_render(out, &t);
}
