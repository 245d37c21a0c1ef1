/*
 * cp_alert_store.c - alert sinks and rules in PostgreSQL.
 */
#include "cp_alert_store.h"
#include "cp_alert_logic.h"
#include "cp_diff.h"
#include "cp_validate.h"
#include "sl_crypto.h"
#include "sl_duration.h"
#include "sl_log.h"
#include "sl_money.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#define MAX_URL 2048
#define MAX_SECRET 4096
#define MAX_SINKS_PER_RULE 16
#define MAX_THRESHOLDS 16

/* ---- validation ------------------------------------------------------------------ */

static int http_url(const char *s, size_t n)
{
    if (n < 8 || n > MAX_URL)
        return 0;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    const char *host = s + (s[4] == 's' ? 8 : 7);
    return *host != '\0' && *host != '/';
}

static int env_name_ok(const char *s)
{
    if (s[0] == '\0')
        return 1;
    if (strlen(s) > 128 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

int cp_alert_validate_sink(const cp_sink_pb *s, sl_err_t *err)
{
    if (!cp_valid_id(s->name))
        return sl_err_set(err, SL_EINVAL,
                          "alert sink name \"%.140s\" is not valid (letters, digits and _ . : -, starting with a "
                          "letter or digit, at most 128 characters)",
                          s->name);
    const char *k = s->kind;
    int webhook = !strcmp(k, "webhook"), slack = !strcmp(k, "slack"), pd = !strcmp(k, "pagerduty"),
        am = !strcmp(k, "alertmanager");
    if (!webhook && !slack && !pd && !am)
        return sl_err_set(err, SL_EINVAL,
                          "alert sink \"%s\": kind \"%.64s\" is not one of webhook, slack, pagerduty, alertmanager",
                          s->name, k);
    if (!env_name_ok(s->secret_env))
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": \"%.140s\" is not an environment variable name", s->name,
                          s->secret_env);
    size_t ulen = strlen(s->url);
    if (s->secret.len > MAX_SECRET)
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": the secret is longer than %d bytes", s->name, MAX_SECRET);
    if (s->secret.len > 0 && memchr(s->secret.data, '\0', s->secret.len) != NULL)
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": the secret must not contain a NUL byte", s->name);
    if (slack) {
        if (ulen > 0)
            return sl_err_set(err, SL_EINVAL,
                              "alert sink \"%s\": a Slack webhook URL is a secret: give it with url_env, not url",
                              s->name);
        if (s->secret.len == 0)
            return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": a slack sink needs its webhook URL (url_env)",
                              s->name);
        if (!http_url((const char *)s->secret.data, s->secret.len))
            return sl_err_set(err, SL_EINVAL,
                              "alert sink \"%s\": the Slack webhook URL (from %s) is not an http(s) URL", s->name,
                              s->secret_env[0] != '\0' ? s->secret_env : "url_env");
        return 0;
    }
    if (ulen > 0 && !http_url(s->url, ulen))
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": url \"%.200s\" is not an http(s) URL", s->name, s->url);
    if ((webhook || am) && ulen == 0)
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": a %s sink needs a url", s->name, k);
    if (pd && s->secret.len == 0)
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": a pagerduty sink needs a routing key (routing_key_env)",
                          s->name);
    if (am && s->secret.len > 0)
        return sl_err_set(err, SL_EINVAL, "alert sink \"%s\": an alertmanager sink takes no secret", s->name);
    return 0;
}

static int scope_count(const cp_scope_pb *s)
{
    return (s->virtual_key[0] != '\0') + (s->tenant[0] != '\0') + (s->all_tenants != 0) + (s->provider[0] != '\0');
}

int cp_alert_validate_rule(const cp_rule_pb *r, sl_err_t *err)
{
    if (!cp_valid_id(r->name))
        return sl_err_set(err, SL_EINVAL,
                          "alert rule name \"%.140s\" is not valid (letters, digits and _ . : -, starting with a "
                          "letter or digit, at most 128 characters)",
                          r->name);
    const char *k = r->kind, *n = r->name;
    int budget = !strcmp(k, "budget_threshold"), anomaly = !strcmp(k, "spend_anomaly"),
        errors = !strcmp(k, "error_rate"), circuit = !strcmp(k, "circuit_open");
    if (!budget && !anomaly && !errors && !circuit)
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": kind \"%.64s\" is not one of budget_threshold, spend_anomaly, "
                          "error_rate, circuit_open",
                          n, k);
    const cp_scope_pb *s = r->scope;
    if (s == NULL || scope_count(s) != 1)
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": scope must name exactly one of virtual_key, tenant, all_tenants, "
                          "provider",
                          n);
    if ((budget || anomaly) && s->provider[0] != '\0')
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": a %s rule watches a virtual_key, a tenant or "
                          "all_tenants, not a provider",
                          n, k);
    if ((errors || circuit) && s->provider[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": a %s rule watches a provider", n, k);
    if (s->virtual_key[0] != '\0' && !cp_valid_id(s->virtual_key))
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": scope.virtual_key \"%.140s\" is not a valid id", n,
                          s->virtual_key);
    if (s->tenant[0] != '\0' && !cp_valid_id(s->tenant))
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": scope.tenant \"%.140s\" is not a valid id", n, s->tenant);
    if (s->provider[0] != '\0' && !cp_valid_provider_name(s->provider))
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": scope.provider \"%.80s\" is not a valid provider name", n,
                          s->provider);
    if (budget && r->n_thresholds_micro == 0)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": a budget_threshold rule needs thresholds", n);
    if (!budget && r->n_thresholds_micro > 0)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": thresholds apply only to budget_threshold rules", n);
    if (r->n_thresholds_micro > MAX_THRESHOLDS)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": at most %d thresholds", n, MAX_THRESHOLDS);
    for (size_t i = 0; i < r->n_thresholds_micro; i++) {
        int64_t t = r->thresholds_micro[i];
        if (t <= 0 || t > 10 * 1000000)
            return sl_err_set(err, SL_EINVAL,
                              "alert rule \"%s\": threshold %zu must be above 0 and at most 10 (1000%% of the budget)",
                              n, i + 1);
        for (size_t j = 0; j < i; j++)
            if (r->thresholds_micro[j] == t)
                return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": threshold %zu is listed twice", n, i + 1);
    }
    if (!anomaly && (r->sensitivity_micro != 0 || r->min_hourly_nano != 0))
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": sensitivity and min_hourly_usd apply only to "
                          "spend_anomaly rules",
                          n);
    if (r->sensitivity_micro < 0 || r->sensitivity_micro > 100 * 1000000)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": sensitivity must be above 0 and at most 100", n);
    if (r->min_hourly_nano < 0)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": min_hourly_usd must not be negative", n);
    if (!errors && (r->threshold_micro != 0 || r->min_requests != 0))
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": threshold and min_requests apply only to error_rate "
                          "rules",
                          n);
    if (errors && (r->threshold_micro <= 0 || r->threshold_micro >= 1000000))
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": an error_rate rule needs a threshold above 0 and below 1 (a fraction "
                          "of requests)",
                          n);
    if (r->min_requests < 0 || r->min_requests > 1000000000)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": min_requests is out of range", n);
    if (!errors && !circuit && r->window_seconds != 0)
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": window applies only to error_rate and circuit_open "
                          "rules",
                          n);
    if (r->window_seconds < 0 || r->window_seconds > 7 * 86400)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": window must be at most 7 days", n);
    if (errors && r->window_seconds != 0 && r->window_seconds < 60)
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": window must be at least 1m (the ledger counts "
                          "per minute)",
                          n);
    const char *sev = r->severity;
    if (sev[0] != '\0' && strcmp(sev, "critical") && strcmp(sev, "error") && strcmp(sev, "warning") &&
        strcmp(sev, "info"))
        return sl_err_set(err, SL_EINVAL,
                          "alert rule \"%s\": severity \"%.40s\" is not one of critical, error, warning, info", n, sev);
    if (r->n_sinks > MAX_SINKS_PER_RULE)
        return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": at most %d sinks", n, MAX_SINKS_PER_RULE);
    for (size_t i = 0; i < r->n_sinks; i++) {
        if (!cp_valid_id(r->sinks[i]))
            return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": sink \"%.140s\" is not a valid sink name", n,
                              r->sinks[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->sinks[i], r->sinks[j]) == 0)
                return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": sink \"%s\" is listed twice", n, r->sinks[i]);
    }
    return 0;
}

int cp_alert_validate_document(const cp_doc_pb *d, sl_err_t *err)
{
    for (size_t i = 0; i < d->n_alert_sinks; i++) {
        if (cp_alert_validate_sink(d->alert_sinks[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->alert_sinks[i]->name, d->alert_sinks[j]->name) == 0)
                return sl_err_set(err, SL_EINVAL, "alert sink \"%s\" is listed twice", d->alert_sinks[i]->name);
    }
    for (size_t i = 0; i < d->n_alert_rules; i++) {
        if (cp_alert_validate_rule(d->alert_rules[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->alert_rules[i]->name, d->alert_rules[j]->name) == 0)
                return sl_err_set(err, SL_EINVAL, "alert rule \"%s\" is listed twice", d->alert_rules[i]->name);
    }
    return 0;
}

const char *cp_alert_scope_str(const cp_scope_pb *s, cp_arena_t *a)
{
    if (s == NULL)
        return "";
    if (s->virtual_key[0] != '\0')
        return cp_arena_printf(a, "virtual_key/%s", s->virtual_key);
    if (s->tenant[0] != '\0')
        return cp_arena_printf(a, "tenant/%s", s->tenant);
    if (s->provider[0] != '\0')
        return cp_arena_printf(a, "provider/%s", s->provider);
    return s->all_tenants ? "all_tenants" : "";
}

/* ---- reading ---------------------------------------------------------------------- */

/* Ends a SELECT of alert_sinks or alert_rules: only the names in the JSON
 * array $1 (all when $1 is NULL), in name order. */
#define NAMED                                                                                                          \
    " WHERE ($1::jsonb IS NULL OR name IN (SELECT jsonb_array_elements_text($1::jsonb)))"                              \
    " ORDER BY name COLLATE \"C\""

static char *sink_aad(cp_arena_t *a, const char *name)
{
    return cp_arena_printf(a, "alert_sink/%s", name);
}

int cp_alert_store_sinks(cp_db_t *db, const char *names_json, const cp_keys_t *keys, cp_arena_t *a, cp_sink_pb ***out,
                         size_t *n, sl_err_t *err)
{
    const char *params[1] = {names_json};
    PGresult *r =
        cp_db_query(db, "SELECT name, kind, url, secret_env, encode(ciphertext, 'hex'), key_id FROM alert_sinks" NAMED,
                    1, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_sink_pb **v = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_sink_pb *s = cp_arena_msg(a, &sluice__config__v1__alert_sink__descriptor);
        s->name = cp_arena_strdup(a, cp_db_str(r, i, 0));
        s->kind = cp_arena_strdup(a, cp_db_str(r, i, 1));
        s->url = cp_arena_strdup(a, cp_db_str(r, i, 2));
        s->secret_env = cp_arena_strdup(a, cp_db_str(r, i, 3));
        const char *hex = cp_db_str(r, i, 4), *key_id = cp_db_str(r, i, 5);
        size_t hlen = strlen(hex);
        if (keys != NULL && hlen > 0) {
            size_t slen = hlen / 2;
            uint8_t *sealed = cp_arena_alloc(a, slen + 1);
            int ok = strcmp(key_id, keys->cred_key_id) == 0 && hlen % 2 == 0 && slen >= SL_SEAL_OVERHEAD &&
                     sl_hex_decode(hex, hlen, sealed, slen) == 0;
            if (ok) {
                uint8_t *plain = cp_arena_alloc(a, slen - SL_SEAL_OVERHEAD + 1);
                const char *aad = sink_aad(a, s->name);
                ok = sl_open(keys->cred_key, aad, strlen(aad), sealed, slen, plain) == 0;
                if (ok) {
                    s->secret.data = plain;
                    s->secret.len = slen - SL_SEAL_OVERHEAD;
                } else {
                    OPENSSL_cleanse(plain, slen - SL_SEAL_OVERHEAD);
                }
            }
            if (!ok)
                sl_error("alert", "could not decrypt the secret of alert sink \"%s\" (sealed by key \"%s\")", s->name,
                         key_id);
        }
        v[i] = s;
    }
    PQclear(r);
    *out = v;
    *n = rows;
    return 0;
}

static void *int64s_from_json(cp_arena_t *a, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    size_t len = json_is_array(v) ? json_array_size(v) : 0;
    int64_t *out = cp_arena_alloc(a, (len > 0 ? len : 1) * sizeof(int64_t));
    for (size_t i = 0; i < len; i++)
        if (json_is_integer(json_array_get(v, i)))
            out[(*n)++] = json_integer_value(json_array_get(v, i));
    json_decref(v);
    return out;
}

static char **strings_from_json(cp_arena_t *a, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    size_t len = json_is_array(v) ? json_array_size(v) : 0;
    char **out = cp_arena_ptrs(a, len);
    for (size_t i = 0; i < len; i++)
        if (json_is_string(json_array_get(v, i)))
            out[(*n)++] = cp_arena_strdup(a, json_string_value(json_array_get(v, i)));
    json_decref(v);
    return out;
}

int cp_alert_store_rules(cp_db_t *db, const char *names_json, cp_arena_t *a, cp_rule_pb ***out, size_t *n,
                         sl_err_t *err)
{
    const char *params[1] = {names_json};
    PGresult *r = cp_db_query(db,
                              "SELECT name, kind, scope_kind, scope_id, array_to_json(thresholds_micro)::text,"
                              " sensitivity_micro, min_hourly_nano, threshold_micro, window_seconds, min_requests,"
                              " severity, array_to_json(sinks)::text FROM alert_rules" NAMED,
                              1, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_rule_pb **v = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_rule_pb *x = cp_arena_msg(a, &sluice__config__v1__alert_rule__descriptor);
        cp_scope_pb *s = cp_arena_msg(a, &sluice__config__v1__alert_scope__descriptor);
        x->name = cp_arena_strdup(a, cp_db_str(r, i, 0));
        x->kind = cp_arena_strdup(a, cp_db_str(r, i, 1));
        const char *sk = cp_db_str(r, i, 2), *sid = cp_db_str(r, i, 3);
        if (strcmp(sk, "virtual_key") == 0)
            s->virtual_key = cp_arena_strdup(a, sid);
        else if (strcmp(sk, "tenant") == 0)
            s->tenant = cp_arena_strdup(a, sid);
        else if (strcmp(sk, "provider") == 0)
            s->provider = cp_arena_strdup(a, sid);
        else
            s->all_tenants = 1;
        x->scope = s;
        x->thresholds_micro = int64s_from_json(a, cp_db_str(r, i, 4), &x->n_thresholds_micro);
        x->sensitivity_micro = cp_db_i64(r, i, 5);
        x->min_hourly_nano = cp_db_i64(r, i, 6);
        x->threshold_micro = cp_db_i64(r, i, 7);
        x->window_seconds = cp_db_i64(r, i, 8);
        x->min_requests = cp_db_i64(r, i, 9);
        x->severity = cp_arena_strdup(a, cp_db_str(r, i, 10));
        x->sinks = strings_from_json(a, cp_db_str(r, i, 11), &x->n_sinks);
        v[i] = x;
    }
    PQclear(r);
    *out = v;
    *n = rows;
    return 0;
}

/* ---- field renderings ------------------------------------------------------------ */

static void fields_sink(const cp_sink_pb *s, cp_arena_t *a, cp_fields_t *out)
{
    cp_fields_add_str(out, a, "kind", cp_diff_quoted(a, s->kind));
    cp_fields_add_str(out, a, "url", cp_diff_quoted(a, s->url));
    cp_fields_add_str(out, a, "secret_env", cp_diff_quoted(a, s->secret_env));
    cp_fields_add(out, a, "secret", (const char *)s->secret.data, s->secret.len, 1);
}

static void fields_rule(const cp_rule_pb *r, cp_arena_t *a, cp_fields_t *out)
{
    char b[32];
    cp_fields_add_str(out, a, "kind", cp_diff_quoted(a, r->kind));
    cp_fields_add_str(out, a, "scope", cp_diff_quoted(a, cp_alert_scope_str(r->scope, a)));
    if (strcmp(r->kind, "budget_threshold") == 0) {
        sl_buf_t t = {0};
        sl_buf_puts(&t, "[");
        for (size_t i = 0; i < r->n_thresholds_micro; i++) {
            cp_alert_fraction(r->thresholds_micro[i], b);
            sl_buf_printf(&t, "%s%s", i ? ", " : "", b);
        }
        sl_buf_puts(&t, "]");
        cp_fields_add_str(out, a, "thresholds", cp_arena_strdup(a, t.data));
        sl_buf_free(&t);
    } else if (strcmp(r->kind, "spend_anomaly") == 0) {
        cp_alert_fraction(r->sensitivity_micro, b);
        cp_fields_add_str(out, a, "sensitivity", r->sensitivity_micro ? cp_arena_strdup(a, b) : "default");
        sl_usd_format(r->min_hourly_nano, 9, b, sizeof(b));
        cp_fields_add_str(out, a, "min_hourly_usd", r->min_hourly_nano ? cp_arena_strdup(a, b) : "default");
    } else if (strcmp(r->kind, "error_rate") == 0) {
        cp_alert_fraction(r->threshold_micro, b);
        cp_fields_add_str(out, a, "threshold", cp_arena_strdup(a, b));
        cp_fields_add_str(out, a, "min_requests",
                          r->min_requests ? cp_arena_printf(a, "%lld", (long long)r->min_requests) : "default");
    }
    if (strcmp(r->kind, "error_rate") == 0 || strcmp(r->kind, "circuit_open") == 0) {
        sl_duration_format(r->window_seconds * 1000, b, sizeof(b));
        cp_fields_add_str(out, a, "window", r->window_seconds ? cp_arena_strdup(a, b) : "default");
    }
    cp_fields_add_str(out, a, "severity", r->severity[0] != '\0' ? cp_diff_quoted(a, r->severity) : "default");
    cp_fields_add_str(out, a, "sinks", cp_diff_list(a, r->sinks, r->n_sinks));
}

/* ---- apply -------------------------------------------------------------------------- */

static char *names_json(cp_arena_t *a, char **names, size_t n)
{
    char *j = cp_store_json_strings((const char *const *)names, n);
    char *out = cp_arena_strdup(a, j);
    free(j);
    return out;
}

static void push_plan(cp_arena_t *a, cp_alert_plan_t **plans, size_t *n, cp_alert_plan_t p)
{
    if (*n == 0 || (*n & (*n - 1)) == 0) {
        cp_alert_plan_t *v = cp_arena_alloc(a, (*n == 0 ? 4 : *n * 2) * sizeof(*v));
        if (*n > 0)
            memcpy(v, *plans, *n * sizeof(*v));
        *plans = v;
    }
    (*plans)[(*n)++] = p;
}

static void push_str(cp_arena_t *a, char ***v, size_t *n, char *s)
{
    char **nv = cp_arena_ptrs(a, *n + 1);
    if (*n > 0)
        memcpy(nv, *v, *n * sizeof(char *));
    nv[(*n)++] = s;
    *v = nv;
}

static int doc_has_sink(const cp_doc_pb *d, const char *name)
{
    for (size_t i = 0; i < d->n_alert_sinks; i++)
        if (strcmp(d->alert_sinks[i]->name, name) == 0)
            return 1;
    return 0;
}

/* Whether the entity a rule's scope names exists in the database or doc. */
static int scope_exists(cp_db_t *db, const cp_doc_pb *d, const cp_scope_pb *s, sl_err_t *err, int *exists)
{
    const char *sql = NULL, *id = NULL;
    *exists = 1;
    if (s->virtual_key[0] != '\0') {
        id = s->virtual_key;
        for (size_t i = 0; i < d->n_virtual_keys; i++)
            if (strcmp(d->virtual_keys[i]->id, id) == 0)
                return 0;
        sql = "SELECT EXISTS (SELECT 1 FROM virtual_keys WHERE id = $1)";
    } else if (s->tenant[0] != '\0') {
        id = s->tenant;
        for (size_t i = 0; i < d->n_tenants; i++)
            if (strcmp(d->tenants[i]->id, id) == 0)
                return 0;
        for (size_t i = 0; i < d->n_virtual_keys; i++)
            if (strcmp(d->virtual_keys[i]->tenant_id, id) == 0)
                return 0;
        sql = "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)";
    } else if (s->provider[0] != '\0') {
        id = s->provider;
        for (size_t i = 0; i < d->n_providers; i++)
            if (strcmp(d->providers[i]->name, id) == 0)
                return 0;
        sql = "SELECT EXISTS (SELECT 1 FROM providers WHERE name = $1)";
    } else {
        return 0;
    }
    const char *params[1] = {id};
    PGresult *r = cp_db_query(db, sql, 1, params, err);
    if (r == NULL)
        return err->code;
    *exists = cp_db_bool(r, 0, 0);
    PQclear(r);
    return 0;
}

int cp_alert_plan(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, int create_only, cp_arena_t *a,
                  cp_alert_plan_t **plans, size_t *nplans, char ***warnings, size_t *nwarnings, sl_err_t *err)
{
    if (doc->n_alert_sinks == 0 && doc->n_alert_rules == 0)
        return 0;
    /* sinks the document defines or its rules name */
    char **sn = NULL, **rn = NULL;
    size_t nsn = 0, nrn = 0;
    for (size_t i = 0; i < doc->n_alert_sinks; i++)
        push_str(a, &sn, &nsn, doc->alert_sinks[i]->name);
    for (size_t i = 0; i < doc->n_alert_rules; i++) {
        push_str(a, &rn, &nrn, doc->alert_rules[i]->name);
        for (size_t j = 0; j < doc->alert_rules[i]->n_sinks; j++)
            push_str(a, &sn, &nsn, doc->alert_rules[i]->sinks[j]);
    }
    cp_sink_pb **sinks = NULL;
    cp_rule_pb **rules = NULL;
    size_t nsinks = 0, nrules = 0;
    int rc = 0;
    if (nsn > 0)
        rc = cp_alert_store_sinks(db, names_json(a, sn, nsn), keys, a, &sinks, &nsinks, err);
    if (rc == 0 && nrn > 0)
        rc = cp_alert_store_rules(db, names_json(a, rn, nrn), a, &rules, &nrules, err);
    if (rc != 0)
        return rc;

    for (size_t i = 0; i < doc->n_alert_sinks; i++) {
        const cp_sink_pb *s = doc->alert_sinks[i], *old = NULL;
        for (size_t j = 0; j < nsinks; j++)
            if (strcmp(sinks[j]->name, s->name) == 0)
                old = sinks[j];
        if (old != NULL && create_only)
            return sl_err_set(err, SL_EEXISTS, "alert sink \"%s\" already exists", s->name);
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            fields_sink(old, a, &of);
        fields_sink(s, a, &nf);
        push_plan(a, plans, nplans,
                  (cp_alert_plan_t){cp_diff_change(a, "alert_sink", s->name, old ? &of : NULL, &nf), "alert_sink", s});
    }
    for (size_t i = 0; i < doc->n_alert_rules; i++) {
        const cp_rule_pb *r = doc->alert_rules[i], *old = NULL;
        for (size_t j = 0; j < nrules; j++)
            if (strcmp(rules[j]->name, r->name) == 0)
                old = rules[j];
        if (old != NULL && create_only)
            return sl_err_set(err, SL_EEXISTS, "alert rule \"%s\" already exists", r->name);
        for (size_t j = 0; j < r->n_sinks; j++) {
            int found = doc_has_sink(doc, r->sinks[j]);
            for (size_t k = 0; !found && k < nsinks; k++)
                found = strcmp(sinks[k]->name, r->sinks[j]) == 0;
            if (!found)
                return sl_err_set(err, SL_EINVAL, "alert rule \"%s\": sink \"%s\" is not configured", r->name,
                                  r->sinks[j]);
        }
        int exists;
        if ((rc = scope_exists(db, doc, r->scope, err, &exists)) != 0)
            return rc;
        if (!exists)
            push_str(a, warnings, nwarnings,
                     cp_arena_printf(a, "alert rule \"%s\": %s does not exist yet; the rule watches it once it does",
                                     r->name, cp_alert_scope_str(r->scope, a)));
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            fields_rule(old, a, &of);
        fields_rule(r, a, &nf);
        push_plan(a, plans, nplans,
                  (cp_alert_plan_t){cp_diff_change(a, "alert_rule", r->name, old ? &of : NULL, &nf), "alert_rule", r});
    }
    return 0;
}

static int put_sink(cp_db_t *db, const cp_sink_pb *s, const cp_keys_t *keys, int64_t version, sl_err_t *err)
{
    char vb[24];
    uint8_t *sealed = NULL;
    size_t slen = 0;
    if (s->secret.len > 0) {
        slen = s->secret.len + SL_SEAL_OVERHEAD;
        sealed = malloc(slen);
        if (sealed == NULL)
            abort();
        char aad[160];
        snprintf(aad, sizeof(aad), "alert_sink/%s", s->name);
        if (sl_seal(keys->cred_key, aad, strlen(aad), s->secret.data, s->secret.len, sealed) != 0) {
            free(sealed);
            return sl_err_set(err, SL_ECRYPTO, "could not seal the secret of alert sink \"%s\"", s->name);
        }
    }
    const char *p[7] = {s->name,
                        s->kind,
                        s->url,
                        (const char *)sealed,
                        sealed ? keys->cred_key_id : "",
                        s->secret_env,
                        cp_db_fmt_i64(version, vb)};
    int lens[7] = {0, 0, 0, (int)slen, 0, 0, 0};
    int fmts[7] = {0, 0, 0, 1, 0, 0, 0};
    PGresult *r = cp_db_query_bin(db,
                                  "INSERT INTO alert_sinks (name, kind, url, ciphertext, key_id, secret_env, version)"
                                  " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                                  " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, url = EXCLUDED.url,"
                                  " ciphertext = EXCLUDED.ciphertext, key_id = EXCLUDED.key_id,"
                                  " secret_env = EXCLUDED.secret_env, version = EXCLUDED.version, updated_at = now()",
                                  7, p, lens, fmts, err);
    if (sealed != NULL) {
        OPENSSL_cleanse(sealed, slen);
        free(sealed);
    }
    if (r == NULL)
        return err->code;
    PQclear(r);
    return 0;
}

static int put_rule(cp_db_t *db, const cp_rule_pb *r, int64_t version, sl_err_t *err)
{
    const cp_scope_pb *s = r->scope;
    const char *sk = s->virtual_key[0] ? "virtual_key"
                     : s->tenant[0]    ? "tenant"
                     : s->provider[0]  ? "provider"
                                       : "all_tenants";
    const char *sid = s->virtual_key[0] ? s->virtual_key : s->tenant[0] ? s->tenant : s->provider;
    json_t *th = json_array();
    for (size_t i = 0; i < r->n_thresholds_micro; i++)
        json_array_append_new(th, json_integer(r->thresholds_micro[i]));
    char *ths = json_dumps(th, JSON_COMPACT);
    json_decref(th);
    char *sinks = cp_store_json_strings((const char *const *)r->sinks, r->n_sinks);
    if (ths == NULL)
        abort();
    char b[6][24];
    const char *p[13] = {r->name,
                         r->kind,
                         sk,
                         sid,
                         ths,
                         cp_db_fmt_i64(r->sensitivity_micro, b[0]),
                         cp_db_fmt_i64(r->min_hourly_nano, b[1]),
                         cp_db_fmt_i64(r->threshold_micro, b[2]),
                         cp_db_fmt_i64(r->window_seconds, b[3]),
                         cp_db_fmt_i64(r->min_requests, b[4]),
                         r->severity,
                         sinks,
                         cp_db_fmt_i64(version, b[5])};
    int rc = cp_db_exec(
        db,
        "INSERT INTO alert_rules (name, kind, scope_kind, scope_id, thresholds_micro, sensitivity_micro,"
        " min_hourly_nano, threshold_micro, window_seconds, min_requests, severity, sinks, version)"
        " VALUES ($1, $2, $3, $4,"
        " ARRAY(SELECT x::bigint FROM jsonb_array_elements_text($5::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o),"
        " $6, $7, $8, $9, $10, $11,"
        " ARRAY(SELECT x FROM jsonb_array_elements_text($12::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o), $13)"
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, scope_kind = EXCLUDED.scope_kind,"
        " scope_id = EXCLUDED.scope_id, thresholds_micro = EXCLUDED.thresholds_micro,"
        " sensitivity_micro = EXCLUDED.sensitivity_micro, min_hourly_nano = EXCLUDED.min_hourly_nano,"
        " threshold_micro = EXCLUDED.threshold_micro, window_seconds = EXCLUDED.window_seconds,"
        " min_requests = EXCLUDED.min_requests, severity = EXCLUDED.severity, sinks = EXCLUDED.sinks,"
        " version = EXCLUDED.version, updated_at = now()",
        13, p, err);
    free(ths);
    free(sinks);
    return rc;
}

int cp_alert_put(cp_db_t *db, const cp_keys_t *keys, const cp_alert_plan_t *p, int64_t version, sl_err_t *err)
{
    if (strcmp(p->entity_kind, "alert_sink") == 0)
        return put_sink(db, p->entity, keys, version, err);
    return put_rule(db, p->entity, version, err);
}
