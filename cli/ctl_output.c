/*
 * ctl_output.c - tables, JSON and YAML for sluicectl.
 *
 * JSON and YAML are produced from one small ordered tree (onode_t) built per
 * result, so both formats carry the same data in the same order. Numbers
 * that must keep their exact text (USD amounts) are stored as text nodes of
 * kind O_NUM, never as doubles.
 */
#include "ctl_output.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_yaml.h"
#include "sl_err.h"
#include "sl_money.h"
#include "sl_quota_names.h"

typedef Sluice__Config__V1__Tenant tenant_t;
typedef Sluice__Config__V1__VirtualKey vkey_t;
typedef Sluice__Config__V1__Quota quota_t;

/* ---- the output tree -------------------------------------------------------- */

typedef enum { O_NULL, O_BOOL, O_INT, O_NUM, O_STR, O_ARR, O_OBJ } okind_t;

typedef struct onode {
    okind_t kind;
    char *key;   /* member name inside an object */
    char *s;     /* O_STR text, O_NUM number text */
    long long i; /* O_INT value, O_BOOL 0/1 */
    struct onode **items;
    size_t n;
    char *comment; /* YAML only: comment lines written before this list item */
} onode_t;

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *r = strdup(s != NULL ? s : "");
    if (r == NULL)
        abort();
    return r;
}

static onode_t *o_new(okind_t k)
{
    onode_t *o = xcalloc(sizeof(*o));
    o->kind = k;
    return o;
}

static onode_t *o_str(const char *s)
{
    onode_t *o = o_new(O_STR);
    o->s = xstrdup(s);
    return o;
}

static onode_t *o_num(const char *text)
{
    onode_t *o = o_new(O_NUM);
    o->s = xstrdup(text);
    return o;
}

static onode_t *o_int(long long v)
{
    onode_t *o = o_new(O_INT);
    o->i = v;
    return o;
}

static onode_t *o_bool(int v)
{
    onode_t *o = o_new(O_BOOL);
    o->i = v != 0;
    return o;
}

/* Appends v to an array (key NULL) or object; returns v. */
static onode_t *o_add(onode_t *parent, const char *key, onode_t *v)
{
    void *p = realloc(parent->items, (parent->n + 1) * sizeof(*parent->items));
    if (p == NULL)
        abort();
    parent->items = p;
    parent->items[parent->n++] = v;
    if (key != NULL)
        v->key = xstrdup(key);
    return v;
}

static void o_free(onode_t *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->n; i++)
        o_free(o->items[i]);
    free(o->items);
    free(o->key);
    free(o->s);
    free(o->comment);
    free(o);
}

static onode_t *o_strings(char *const *v, size_t n)
{
    onode_t *a = o_new(O_ARR);
    for (size_t i = 0; i < n; i++)
        o_add(a, NULL, o_str(v[i]));
    return a;
}

/* ---- JSON ---------------------------------------------------------------------- */

static void indent(sl_buf_t *b, int n)
{
    for (int i = 0; i < n; i++)
        sl_buf_puts(b, " ");
}

static void json_emit(sl_buf_t *b, const onode_t *o, int ind)
{
    switch (o->kind) {
    case O_NULL: sl_buf_puts(b, "null"); break;
    case O_BOOL: sl_buf_puts(b, o->i ? "true" : "false"); break;
    case O_INT: sl_buf_printf(b, "%lld", o->i); break;
    case O_NUM: sl_buf_puts(b, o->s); break;
    case O_STR: sl_buf_json_str(b, o->s, strlen(o->s)); break;
    case O_ARR:
    case O_OBJ:
        if (o->n == 0) {
            sl_buf_puts(b, o->kind == O_ARR ? "[]" : "{}");
            break;
        }
        sl_buf_puts(b, o->kind == O_ARR ? "[\n" : "{\n");
        for (size_t i = 0; i < o->n; i++) {
            indent(b, ind + 2);
            if (o->kind == O_OBJ) {
                sl_buf_json_str(b, o->items[i]->key, strlen(o->items[i]->key));
                sl_buf_puts(b, ": ");
            }
            json_emit(b, o->items[i], ind + 2);
            sl_buf_puts(b, i + 1 < o->n ? ",\n" : "\n");
        }
        indent(b, ind);
        sl_buf_puts(b, o->kind == O_ARR ? "]" : "}");
        break;
    }
}

/* ---- YAML ---------------------------------------------------------------------- */

static int ci_eq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* Whether s can be written as a plain scalar that every YAML 1.1 or 1.2
 * reader takes back as this same string. */
static int yaml_plain_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || strchr("-?:,[]{}#&*!|>'\"%@` 0123456789+.~", s[0]) != NULL || s[len - 1] == ' ' ||
        s[len - 1] == ':')
        return 0;
    static const char *const words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", NULL};
    for (size_t i = 0; words[i] != NULL; i++)
        if (ci_eq(s, words[i]))
            return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (c == ':' && (s[i + 1] == ' ' || s[i + 1] == '\0')) ||
            (c == '#' && s[i - 1] == ' ') || c == '\\' || c == '"')
            return 0;
    }
    return 1;
}

static void yaml_str(sl_buf_t *b, const char *s)
{
    if (yaml_plain_ok(s)) {
        sl_buf_puts(b, s);
        return;
    }
    sl_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            sl_buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            sl_buf_puts(b, "\\n");
        else if (*p == '\t')
            sl_buf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            sl_buf_printf(b, "\\x%02x", *p);
        else
            sl_buf_append(b, p, 1);
    }
    sl_buf_puts(b, "\"");
}

static void yaml_scalar(sl_buf_t *b, const onode_t *o)
{
    switch (o->kind) {
    case O_NULL: sl_buf_puts(b, "null"); break;
    case O_BOOL: sl_buf_puts(b, o->i ? "true" : "false"); break;
    case O_INT: sl_buf_printf(b, "%lld", o->i); break;
    case O_NUM: sl_buf_puts(b, o->s); break;
    case O_STR: yaml_str(b, o->s); break;
    case O_ARR: sl_buf_puts(b, "[]"); break; /* only empty containers are scalars here */
    case O_OBJ: sl_buf_puts(b, "{}"); break;
    }
}

static int is_block(const onode_t *o)
{
    return (o->kind == O_ARR || o->kind == O_OBJ) && o->n > 0;
}

static void yaml_comment(sl_buf_t *b, const char *comment, int ind)
{
    for (const char *p = comment; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        indent(b, ind);
        sl_buf_puts(b, "# ");
        sl_buf_append(b, p, len);
        sl_buf_puts(b, "\n");
        p += len + (nl != NULL);
    }
}

static void yaml_obj(sl_buf_t *b, const onode_t *o, int ind, int first_inline);
static void yaml_arr(sl_buf_t *b, const onode_t *o, int ind, int first_inline);

/* Writes what follows "key:" for a member at indentation ind. */
static void yaml_member_value(sl_buf_t *b, const onode_t *v, int ind)
{
    if (!is_block(v)) {
        sl_buf_puts(b, " ");
        yaml_scalar(b, v);
        sl_buf_puts(b, "\n");
    } else if (v->kind == O_OBJ) {
        sl_buf_puts(b, "\n");
        yaml_obj(b, v, ind + 2, 0);
    } else {
        sl_buf_puts(b, "\n");
        yaml_arr(b, v, ind, 0);
    }
}

static void yaml_obj(sl_buf_t *b, const onode_t *o, int ind, int first_inline)
{
    for (size_t i = 0; i < o->n; i++) {
        if (i > 0 || !first_inline)
            indent(b, ind);
        yaml_str(b, o->items[i]->key);
        sl_buf_puts(b, ":");
        yaml_member_value(b, o->items[i], ind);
    }
}

static void yaml_arr(sl_buf_t *b, const onode_t *o, int ind, int first_inline)
{
    for (size_t i = 0; i < o->n; i++) {
        const onode_t *it = o->items[i];
        if (it->comment != NULL && (i > 0 || !first_inline))
            yaml_comment(b, it->comment, ind);
        if (i > 0 || !first_inline)
            indent(b, ind);
        sl_buf_puts(b, "- ");
        if (!is_block(it)) {
            yaml_scalar(b, it);
            sl_buf_puts(b, "\n");
        } else if (it->kind == O_OBJ) {
            yaml_obj(b, it, ind + 2, 1);
        } else {
            yaml_arr(b, it, ind + 2, 1);
        }
    }
}

static void emit(sl_buf_t *b, ctl_format_t f, const onode_t *o)
{
    if (f == CTL_OUT_JSON) {
        json_emit(b, o, 0);
        sl_buf_puts(b, "\n");
    } else if (o->kind == O_OBJ && o->n > 0) {
        yaml_obj(b, o, 0, 0);
    } else if (o->kind == O_ARR && o->n > 0) {
        yaml_arr(b, o, 0, 0);
    } else {
        yaml_scalar(b, o);
        sl_buf_puts(b, "\n");
    }
}

/* ---- shared pieces ------------------------------------------------------------ */

int ctl_format_parse(const char *s, ctl_format_t *out)
{
    if (strcmp(s, "table") == 0)
        *out = CTL_OUT_TABLE;
    else if (strcmp(s, "json") == 0)
        *out = CTL_OUT_JSON;
    else if (strcmp(s, "yaml") == 0)
        *out = CTL_OUT_YAML;
    else
        return SL_EINVAL;
    return 0;
}

/* A name of the quota vocabulary, or what to print when the value has none. */
static const char *name_or(const char *name, const char *none)
{
    return name != NULL ? name : none;
}

static const char *metric_name(int m)
{
    return name_or(sl_quota_metric_name(m), "unspecified");
}

static const char *window_name(int w)
{
    return name_or(sl_quota_window_name(w), "unspecified");
}

static const char *on_unavailable_name(int v)
{
    return name_or(sl_quota_on_unavailable_name(v), "default");
}

const char *ctl_time_text(long long unix_s, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (unix_s <= 0)
        return buf;
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static onode_t *o_time(long long unix_s)
{
    char buf[40];
    return unix_s > 0 ? o_str(ctl_time_text(unix_s, buf, sizeof(buf))) : o_new(O_NULL);
}

static int is_cost(const quota_t *q)
{
    return q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
}

void ctl_quota_summary(sl_buf_t *out, const quota_t *q)
{
    static const char *const per[] = {"", "/min", "/h", "/day", "/week", "/month", " total"};
    const char *w = q->window >= 0 && q->window < 7 ? per[q->window] : "";
    char usd[40];
    switch (q->metric) {
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO:
        sl_usd_format(q->limit, 9, usd, sizeof(usd));
        sl_buf_printf(out, "%s USD%s", usd, w);
        break;
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS:
        sl_buf_printf(out, "%lld req%s", (long long)q->limit, w);
        break;
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS:
        sl_buf_printf(out, "%lld tok%s", (long long)q->limit, w);
        break;
    case SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT:
        sl_buf_printf(out, "%lld concurrent", (long long)q->limit);
        break;
    default:
        sl_buf_printf(out, "%lld %s/%s", (long long)q->limit, metric_name(q->metric), window_name(q->window));
        break;
    }
    if (q->provider != NULL && q->provider[0] != '\0')
        sl_buf_printf(out, " (%s)", q->provider);
}

static void quotas_summary(sl_buf_t *out, quota_t *const *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            sl_buf_puts(out, ", ");
        ctl_quota_summary(out, q[i]);
    }
}

static onode_t *json_quotas(quota_t *const *qs, size_t n)
{
    onode_t *a = o_new(O_ARR);
    for (size_t i = 0; i < n; i++) {
        const quota_t *q = qs[i];
        onode_t *o = o_add(a, NULL, o_new(O_OBJ));
        o_add(o, "metric", o_str(metric_name(q->metric)));
        o_add(o, "window", o_str(window_name(q->window)));
        o_add(o, "limit", o_int(q->limit));
        if (is_cost(q)) {
            char usd[40];
            sl_usd_format(q->limit, 9, usd, sizeof(usd));
            o_add(o, "limit_usd", o_str(usd));
        }
        o_add(o, "provider", o_str(q->provider));
        o_add(o, "on_unavailable", o_str(on_unavailable_name(q->on_unavailable)));
        o_add(o, "id", o_str(q->id));
    }
    return a;
}

/* A jansson value as an output node; reals keep a shortest-exact text. */
static onode_t *from_json(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        onode_t *o = o_new(O_OBJ);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) o_add(o, k, from_json(v));
        return o;
    }
    case JSON_ARRAY: {
        onode_t *a = o_new(O_ARR);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) o_add(a, NULL, from_json(v));
        return a;
    }
    case JSON_STRING: return o_str(json_string_value(j));
    case JSON_INTEGER: return o_int(json_integer_value(j));
    case JSON_REAL: {
        char *t = json_dumps(j, JSON_ENCODE_ANY);
        onode_t *o = o_num(t != NULL ? t : "0");
        free(t);
        return o;
    }
    case JSON_TRUE: return o_bool(1);
    case JSON_FALSE: return o_bool(0);
    default: return o_new(O_NULL);
    }
}

/* metadata_json as an object node ({} when empty, the raw text if invalid). */
static onode_t *o_metadata(const char *text)
{
    if (text == NULL || text[0] == '\0')
        return o_new(O_OBJ);
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (j == NULL)
        return o_str(text);
    onode_t *o = from_json(j);
    json_decref(j);
    return o;
}

/* ---- tables --------------------------------------------------------------------- */

typedef struct table {
    size_t ncol;
    size_t nrow; /* including the header */
    char **cells;
} table_t;

/* Width in characters of UTF-8 text (code points; no wide-glyph handling). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

/* A cell copy with control characters made visible as '?'. */
static char *cell(const char *s)
{
    char *c = xstrdup(s);
    for (char *p = c; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return c;
}

static void table_row(table_t *t, const char *const *vals)
{
    char **p = realloc(t->cells, (t->nrow + 1) * t->ncol * sizeof(char *));
    if (p == NULL)
        abort();
    t->cells = p;
    for (size_t c = 0; c < t->ncol; c++)
        t->cells[t->nrow * t->ncol + c] = cell(vals[c] != NULL && vals[c][0] != '\0' ? vals[c] : "-");
    t->nrow++;
}

static void table_render(sl_buf_t *out, table_t *t)
{
    size_t width[16] = {0};
    for (size_t r = 0; r < t->nrow; r++)
        for (size_t c = 0; c < t->ncol; c++) {
            size_t w = text_width(t->cells[r * t->ncol + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrow; r++) {
        for (size_t c = 0; c < t->ncol; c++) {
            const char *v = t->cells[r * t->ncol + c];
            sl_buf_puts(out, v);
            if (c + 1 < t->ncol)
                indent(out, (int)(width[c] - text_width(v) + 2));
        }
        sl_buf_puts(out, "\n");
    }
    for (size_t i = 0; i < t->nrow * t->ncol; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrow = 0;
}

/* "label:  value" lines for a single entity. */
static void field_line(sl_buf_t *out, const char *label, const char *value)
{
    char *v = cell(value != NULL && value[0] != '\0' ? value : "-");
    sl_buf_printf(out, "%-19s%s\n", label, v);
    free(v);
}

static void joined(sl_buf_t *b, char *const *v, size_t n, const char *none)
{
    if (n == 0)
        sl_buf_puts(b, none);
    for (size_t i = 0; i < n; i++)
        sl_buf_printf(b, "%s%s", i ? ", " : "", v[i]);
}

/* ---- tenants ---------------------------------------------------------------------- */

static onode_t *tenant_json(const tenant_t *t)
{
    onode_t *o = o_new(O_OBJ);
    o_add(o, "id", o_str(t->id));
    o_add(o, "name", o_str(t->name));
    o_add(o, "time_zone", o_str(t->time_zone));
    o_add(o, "metadata", o_metadata(t->metadata_json));
    o_add(o, "quotas", json_quotas(t->quotas, t->n_quotas));
    o_add(o, "created_unix", o_int(t->created_unix));
    o_add(o, "created_at", o_time(t->created_unix));
    return o;
}

/* budget/rate_limit sections from quotas; quotas without a YAML form are
 * described in *left (a comment). */
static void quotas_yaml(onode_t *entity, quota_t *const *qs, size_t n, const char *budget_reset, sl_buf_t *left)
{
    onode_t *budget = NULL, *rate = NULL;
    const char *reset_field = NULL;
    if (budget_reset != NULL && strcmp(budget_reset, "daily") == 0)
        reset_field = "max_per_day_usd";
    else if (budget_reset != NULL && strcmp(budget_reset, "weekly") == 0)
        reset_field = "max_per_week_usd";
    else if (budget_reset != NULL && strcmp(budget_reset, "monthly") == 0)
        reset_field = "max_per_month_usd";
    int reset_ok = 0;
    for (size_t i = 0; i < n; i++) {
        const char *section, *field;
        if (!ctl_quota_field(qs[i], &section, &field)) {
            sl_buf_puts(left, left->len ? ", " : "also limited to ");
            ctl_quota_summary(left, qs[i]);
            continue;
        }
        if (strcmp(section, "budget") == 0) {
            char usd[40];
            sl_usd_format(qs[i]->limit, 9, usd, sizeof(usd));
            if (budget == NULL)
                budget = o_new(O_OBJ);
            o_add(budget, field, o_num(usd));
            if (reset_field != NULL && strcmp(reset_field, field) == 0)
                reset_ok = 1;
        } else {
            if (rate == NULL)
                rate = o_new(O_OBJ);
            o_add(rate, field, o_int(qs[i]->limit));
        }
    }
    if (budget != NULL) {
        if (reset_ok)
            o_add(budget, "reset_duration", o_str(budget_reset));
        o_add(entity, "budget", budget);
    }
    if (rate != NULL)
        o_add(entity, "rate_limit", rate);
}

static onode_t *tenant_yaml(const tenant_t *t)
{
    onode_t *o = o_new(O_OBJ);
    o_add(o, "id", o_str(t->id));
    if (t->name[0] != '\0')
        o_add(o, "name", o_str(t->name));
    onode_t *md = o_metadata(t->metadata_json);
    if (md->n > 0 || md->kind != O_OBJ)
        o_add(o, "metadata", md);
    else
        o_free(md);
    if (t->time_zone[0] != '\0')
        o_add(o, "time_zone", o_str(t->time_zone));
    sl_buf_t left = {0};
    quotas_yaml(o, t->quotas, t->n_quotas, NULL, &left);
    char ts[40];
    sl_buf_t c = {0};
    if (t->created_unix > 0)
        sl_buf_printf(&c, "created %s", ctl_time_text(t->created_unix, ts, sizeof(ts)));
    if (left.len > 0)
        sl_buf_printf(&c, "%s%s", c.len ? "\n" : "", left.data);
    if (c.len > 0)
        o->comment = xstrdup(c.data);
    sl_buf_free(&c);
    sl_buf_free(&left);
    return o;
}

static void tenants_yaml(sl_buf_t *out, tenant_t *const *t, size_t n)
{
    onode_t *root = o_new(O_OBJ);
    onode_t *list = o_add(root, "tenants", o_new(O_ARR));
    for (size_t i = 0; i < n; i++)
        o_add(list, NULL, tenant_yaml(t[i]));
    emit(out, CTL_OUT_YAML, root);
    o_free(root);
}

void ctl_out_tenants(sl_buf_t *out, ctl_format_t f, tenant_t *const *t, size_t n)
{
    if (f == CTL_OUT_YAML) {
        tenants_yaml(out, t, n);
        return;
    }
    if (f == CTL_OUT_JSON) {
        onode_t *root = o_new(O_OBJ);
        onode_t *list = o_add(root, "tenants", o_new(O_ARR));
        for (size_t i = 0; i < n; i++)
            o_add(list, NULL, tenant_json(t[i]));
        emit(out, f, root);
        o_free(root);
        return;
    }
    if (n == 0) {
        sl_buf_puts(out, "no tenants\n");
        return;
    }
    table_t tb = {.ncol = 5};
    const char *hdr[] = {"ID", "NAME", "TIME ZONE", "LIMITS", "CREATED"};
    table_row(&tb, hdr);
    for (size_t i = 0; i < n; i++) {
        sl_buf_t lim = {0};
        char ts[40];
        quotas_summary(&lim, t[i]->quotas, t[i]->n_quotas);
        const char *row[] = {t[i]->id, t[i]->name, t[i]->time_zone, lim.data,
                             ctl_time_text(t[i]->created_unix, ts, sizeof(ts))};
        table_row(&tb, row);
        sl_buf_free(&lim);
    }
    table_render(out, &tb);
}

void ctl_out_tenant(sl_buf_t *out, ctl_format_t f, const tenant_t *t)
{
    if (f == CTL_OUT_YAML) {
        tenants_yaml(out, (tenant_t *const *)&t, 1);
        return;
    }
    if (f == CTL_OUT_JSON) {
        onode_t *o = tenant_json(t);
        emit(out, f, o);
        o_free(o);
        return;
    }
    sl_buf_t lim = {0};
    char ts[40];
    quotas_summary(&lim, t->quotas, t->n_quotas);
    field_line(out, "id:", t->id);
    field_line(out, "name:", t->name);
    field_line(out, "time zone:", t->time_zone[0] ? t->time_zone : "UTC");
    field_line(out, "metadata:", t->metadata_json[0] ? t->metadata_json : "{}");
    field_line(out, "limits:", lim.data);
    field_line(out, "created:", ctl_time_text(t->created_unix, ts, sizeof(ts)));
    sl_buf_free(&lim);
}

/* ---- virtual keys ---------------------------------------------------------------- */

static const char *key_status(const vkey_t *k, long long now)
{
    if (k->revoked)
        return "revoked";
    if (k->expires_unix > 0 && k->expires_unix <= now)
        return "expired";
    return "active";
}

static onode_t *fallbacks_node(const vkey_t *k)
{
    onode_t *a = o_new(O_ARR);
    for (size_t i = 0; i < k->n_fallbacks; i++) {
        onode_t *t = o_add(a, NULL, o_new(O_OBJ));
        o_add(t, "provider", o_str(k->fallbacks[i]->provider));
        o_add(t, "model", o_str(k->fallbacks[i]->model));
    }
    return a;
}

static onode_t *key_json(const vkey_t *k, long long now)
{
    onode_t *o = o_new(O_OBJ);
    o_add(o, "id", o_str(k->id));
    o_add(o, "tenant_id", o_str(k->tenant_id));
    o_add(o, "key_prefix", o_str(k->key_prefix));
    o_add(o, "status", o_str(key_status(k, now)));
    o_add(o, "revoked", o_bool(k->revoked));
    o_add(o, "allowed_providers", o_strings(k->allowed_providers, k->n_allowed_providers));
    o_add(o, "allowed_models", o_strings(k->allowed_models, k->n_allowed_models));
    o_add(o, "fallbacks", fallbacks_node(k));
    o_add(o, "quotas", json_quotas(k->quotas, k->n_quotas));
    o_add(o, "budget_reset", o_str(k->budget_reset));
    o_add(o, "metadata", o_metadata(k->metadata_json));
    o_add(o, "created_unix", o_int(k->created_unix));
    o_add(o, "created_at", o_time(k->created_unix));
    o_add(o, "revoked_unix", o_int(k->revoked_unix));
    o_add(o, "revoked_at", o_time(k->revoked_unix));
    o_add(o, "expires_unix", o_int(k->expires_unix));
    o_add(o, "expires_at", o_time(k->expires_unix));
    return o;
}

static onode_t *key_yaml(const vkey_t *k, long long now)
{
    onode_t *o = o_new(O_OBJ);
    o_add(o, "id", o_str(k->id));
    o_add(o, "customer_id", o_str(k->tenant_id));
    sl_buf_t left = {0};
    quotas_yaml(o, k->quotas, k->n_quotas, k->budget_reset, &left);
    if (k->n_allowed_providers > 0)
        o_add(o, "allowed_providers", o_strings(k->allowed_providers, k->n_allowed_providers));
    if (k->n_allowed_models > 0)
        o_add(o, "allowed_models", o_strings(k->allowed_models, k->n_allowed_models));
    if (k->n_fallbacks > 0)
        o_add(o, "fallbacks", fallbacks_node(k));
    onode_t *md = o_metadata(k->metadata_json);
    if (md->n > 0 || md->kind != O_OBJ)
        o_add(o, "metadata", md);
    else
        o_free(md);

    char ts[40];
    sl_buf_t c = {0};
    sl_buf_printf(&c, "%s", key_status(k, now));
    if (k->key_prefix[0] != '\0')
        sl_buf_printf(&c, ", secret %s...", k->key_prefix);
    if (k->created_unix > 0)
        sl_buf_printf(&c, ", created %s", ctl_time_text(k->created_unix, ts, sizeof(ts)));
    if (k->revoked_unix > 0)
        sl_buf_printf(&c, ", revoked %s", ctl_time_text(k->revoked_unix, ts, sizeof(ts)));
    if (k->expires_unix > 0)
        sl_buf_printf(&c, ", expires %s", ctl_time_text(k->expires_unix, ts, sizeof(ts)));
    if (left.len > 0)
        sl_buf_printf(&c, "\n%s", left.data);
    o->comment = xstrdup(c.data);
    sl_buf_free(&c);
    sl_buf_free(&left);
    return o;
}

static void keys_tree(sl_buf_t *out, ctl_format_t f, vkey_t *const *k, size_t n, long long now)
{
    onode_t *root = o_new(O_OBJ);
    onode_t *list = o_add(root, "virtual_keys", o_new(O_ARR));
    for (size_t i = 0; i < n; i++)
        o_add(list, NULL, f == CTL_OUT_YAML ? key_yaml(k[i], now) : key_json(k[i], now));
    emit(out, f, root);
    o_free(root);
}

void ctl_out_keys(sl_buf_t *out, ctl_format_t f, vkey_t *const *k, size_t n, long long now)
{
    if (f != CTL_OUT_TABLE) {
        keys_tree(out, f, k, n, now);
        return;
    }
    if (n == 0) {
        sl_buf_puts(out, "no virtual keys\n");
        return;
    }
    table_t tb = {.ncol = 6};
    const char *hdr[] = {"ID", "TENANT", "PREFIX", "STATUS", "LIMITS", "CREATED"};
    table_row(&tb, hdr);
    for (size_t i = 0; i < n; i++) {
        sl_buf_t lim = {0};
        char ts[40];
        quotas_summary(&lim, k[i]->quotas, k[i]->n_quotas);
        const char *row[] = {k[i]->id,         k[i]->tenant_id,
                             k[i]->key_prefix, key_status(k[i], now),
                             lim.data,         ctl_time_text(k[i]->created_unix, ts, sizeof(ts))};
        table_row(&tb, row);
        sl_buf_free(&lim);
    }
    table_render(out, &tb);
}

void ctl_out_key(sl_buf_t *out, ctl_format_t f, const vkey_t *k, long long now)
{
    if (f == CTL_OUT_YAML) {
        keys_tree(out, f, (vkey_t *const *)&k, 1, now);
        return;
    }
    if (f == CTL_OUT_JSON) {
        onode_t *o = key_json(k, now);
        emit(out, f, o);
        o_free(o);
        return;
    }
    sl_buf_t b = {0};
    char ts[40];
    field_line(out, "id:", k->id);
    field_line(out, "tenant:", k->tenant_id);
    field_line(out, "secret prefix:", k->key_prefix);
    field_line(out, "status:", key_status(k, now));
    quotas_summary(&b, k->quotas, k->n_quotas);
    field_line(out, "limits:", b.data);
    b.len = 0;
    field_line(out, "budget reset:", k->budget_reset);
    joined(&b, k->allowed_providers, k->n_allowed_providers, "all");
    field_line(out, "allowed providers:", b.data);
    b.len = 0;
    joined(&b, k->allowed_models, k->n_allowed_models, "all");
    field_line(out, "allowed models:", b.data);
    b.len = 0;
    for (size_t i = 0; i < k->n_fallbacks; i++)
        sl_buf_printf(&b, "%s%s/%s", i ? ", " : "", k->fallbacks[i]->provider, k->fallbacks[i]->model);
    field_line(out, "fallbacks:", b.len ? b.data : "");
    field_line(out, "metadata:", k->metadata_json[0] ? k->metadata_json : "{}");
    field_line(out, "created:", ctl_time_text(k->created_unix, ts, sizeof(ts)));
    if (k->revoked_unix > 0)
        field_line(out, "revoked:", ctl_time_text(k->revoked_unix, ts, sizeof(ts)));
    if (k->expires_unix > 0)
        field_line(out, "expires:", ctl_time_text(k->expires_unix, ts, sizeof(ts)));
    sl_buf_free(&b);
}

void ctl_out_created_key(sl_buf_t *out, ctl_format_t f, const Sluice__Admin__V1__CreateVirtualKeyResponse *r,
                         long long now)
{
    const char *id = r->key != NULL ? r->key->id : "";
    if (f == CTL_OUT_TABLE) {
        sl_buf_printf(out, "created virtual key %s: %s\n", id, r->secret);
        return;
    }
    onode_t *root = o_new(O_OBJ);
    if (r->key != NULL)
        o_add(root, "key", key_json(r->key, now));
    o_add(root, "secret", o_str(r->secret));
    emit(out, f, root);
    o_free(root);
}

/* ---- apply ---------------------------------------------------------------------- */

void ctl_out_apply(sl_buf_t *out, sl_buf_t *err, ctl_format_t f, const Sluice__Admin__V1__ApplyResponse *r, int dry_run,
                   int verbose)
{
    for (size_t i = 0; i < r->n_warnings; i++)
        sl_buf_printf(err, "warning: %s\n", r->warnings[i]);

    if (f != CTL_OUT_TABLE) {
        onode_t *root = o_new(O_OBJ);
        o_add(root, "dry_run", o_bool(dry_run));
        o_add(root, "changed", o_bool(r->changed));
        o_add(root, "version", o_int(r->version));
        onode_t *ch = o_add(root, "changes", o_new(O_ARR));
        for (size_t i = 0; i < r->n_changes; i++) {
            const Sluice__Admin__V1__Change *c = r->changes[i];
            onode_t *o = o_add(ch, NULL, o_new(O_OBJ));
            o_add(o, "kind", o_str(c->kind));
            o_add(o, "id", o_str(c->id));
            o_add(o, "action", o_str(c->action));
            o_add(o, "details", o_strings(c->details, c->n_details));
        }
        o_add(root, "warnings", o_strings(r->warnings, r->n_warnings));
        onode_t *se = o_add(root, "secrets", o_new(O_ARR));
        for (size_t i = 0; i < r->n_secrets; i++) {
            onode_t *o = o_add(se, NULL, o_new(O_OBJ));
            o_add(o, "key_id", o_str(r->secrets[i]->key_id));
            o_add(o, "secret", o_str(r->secrets[i]->secret));
        }
        emit(out, f, root);
        o_free(root);
        return;
    }

    size_t created = 0, updated = 0, unchanged = 0, other = 0;
    for (size_t i = 0; i < r->n_changes; i++) {
        const Sluice__Admin__V1__Change *c = r->changes[i];
        const char *mark;
        if (strcmp(c->action, "create") == 0)
            mark = "+", created++;
        else if (strcmp(c->action, "update") == 0)
            mark = "~", updated++;
        else if (strcmp(c->action, "unchanged") == 0)
            mark = "=", unchanged++;
        else if (strcmp(c->action, "delete") == 0)
            mark = "-", other++;
        else
            mark = "?", other++;
        if (mark[0] == '=' && !verbose)
            continue;
        sl_buf_printf(out, "%s %s %s %s\n", mark, c->action, c->kind, c->id);
        /* a create's details are the whole new entity: shown with -v only */
        for (size_t j = 0; (mark[0] != '+' || verbose) && j < c->n_details; j++)
            sl_buf_printf(out, "    %s\n", c->details[j]);
    }
    if (!dry_run)
        for (size_t i = 0; i < r->n_secrets; i++)
            sl_buf_printf(out, "created virtual key %s: %s\n", r->secrets[i]->key_id, r->secrets[i]->secret);

    if (created + updated + other == 0) {
        if (dry_run)
            sl_buf_printf(out, "no changes (dry run, config version %lld)\n", (long long)r->version);
        else
            sl_buf_printf(out, "no changes (config version %lld)\n", (long long)r->version);
    } else if (dry_run) {
        sl_buf_printf(out, "dry run: %zu to create, %zu to update, %zu unchanged; nothing was applied\n", created,
                      updated, unchanged);
    } else {
        sl_buf_printf(out, "applied: %zu created, %zu updated, %zu unchanged (config version %lld)\n", created, updated,
                      unchanged, (long long)r->version);
    }
}
