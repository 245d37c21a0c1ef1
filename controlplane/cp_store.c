/*
 * cp_store.c - reading and writing configuration rows.
 *
 * Rows are ordered with COLLATE "C" so the order (and paging with after_id)
 * is bytewise whatever the database's collation, which lets quotas and
 * credentials be attached to their owners by a merge.
 */
#include "cp_store.h"
#include "cp_quota.h"
#include "cp_validate.h"
#include "sl_crypto.h"
#include "sl_log.h"
#include "sl_quota_names.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

void cp_keys_derive(const uint8_t master[32], cp_keys_t *k)
{
    uint8_t fp[SL_HASH_LEN];
    char hex[2 * SL_HASH_LEN + 1];
    sl_derive_pepper(master, k->pepper);
    sl_derive_credential_key(master, k->cred_key);
    sl_sha256(k->cred_key, sizeof(k->cred_key), fp);
    sl_hex_encode(fp, 6, hex);
    snprintf(k->cred_key_id, sizeof(k->cred_key_id), "mk-%.12s", hex);
}

void cp_keys_wipe(cp_keys_t *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}

char *cp_store_json_strings(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(s[i]));
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (out == NULL)
        abort();
    return out;
}

/* Parses a JSON array of strings into an arena array. Bad input -> empty. */
static char **strings_from_json(cp_arena_t *a, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    if (!json_is_array(v)) {
        json_decref(v);
        return NULL;
    }
    char **out = cp_arena_ptrs(a, json_array_size(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (s != NULL)
            out[(*n)++] = cp_arena_strdup(a, s);
    }
    json_decref(v);
    return out;
}

static cp_target_pb **targets_from_json(cp_arena_t *a, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    if (!json_is_array(v)) {
        json_decref(v);
        return NULL;
    }
    cp_target_pb **out = cp_arena_ptrs(a, json_array_size(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *o = json_array_get(v, i);
        const char *p = json_string_value(json_object_get(o, "provider"));
        const char *m = json_string_value(json_object_get(o, "model"));
        if (p == NULL || m == NULL)
            continue;
        cp_target_pb *t = cp_arena_msg(a, CP_DESC(target));
        t->provider = cp_arena_strdup(a, p);
        t->model = cp_arena_strdup(a, m);
        out[(*n)++] = t;
    }
    json_decref(v);
    return out;
}

/* A JSON object of string values as map entries (descriptor d). */
static void *params_from_json(cp_arena_t *a, const ProtobufCMessageDescriptor *d, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    cp_param_pb **out = cp_arena_ptrs(a, json_object_size(v));
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val)
    {
        if (!json_is_string(val))
            continue;
        cp_param_pb *e = cp_arena_msg(a, d);
        e->key = cp_arena_strdup(a, k);
        e->value = cp_arena_strdup(a, json_string_value(val));
        out[(*n)++] = e;
    }
    json_decref(v);
    return out;
}

/* Map entries (both map types share the {base, key, value} layout) as a
 * JSON object; caller frees. */
static char *params_to_json(cp_param_pb *const *e, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, e[i]->key, json_string(e[i]->value));
    char *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (out == NULL)
        abort();
    return out;
}

/* The common WHERE clause: $1 ids (jsonb or NULL), $2 after id, $3 limit. */
#define FILTER_PARAMS(f, lim)                                                                                         \
    (f) != NULL ? (f)->ids_json : NULL, (f) != NULL && (f)->after_id != NULL ? (f)->after_id : "",                   \
        cp_db_fmt_i64((f) != NULL && (f)->limit > 0 ? (f)->limit : INT32_MAX, lim)

/* Quotas of the given scope for the owners ids (sorted), attached by merge.
 * set(i, quotas, n) stores the list of owner i. */
typedef void (*quota_set_fn)(void *owner, cp_quota_pb **q, size_t n);

static int load_quotas(cp_db_t *db, const char *scope, void **owners, const char *const *ids, size_t nowners,
                       quota_set_fn set, cp_arena_t *a, sl_err_t *err)
{
    if (nowners == 0)
        return 0;
    char *ids_json = cp_store_json_strings(ids, nowners);
    const char *params[2] = {scope, ids_json};
    PGresult *r = cp_db_query(db,
                              "SELECT scope_id, provider, metric, \"window\", limit_value, on_unavailable, id"
                              " FROM quotas WHERE scope_kind = $1"
                              " AND scope_id IN (SELECT jsonb_array_elements_text($2::jsonb))"
                              " ORDER BY scope_id COLLATE \"C\", provider COLLATE \"C\", metric, \"window\"",
                              2, params, err);
    free(ids_json);
    if (r == NULL)
        return err->code;
    int rows = PQntuples(r), row = 0;
    for (size_t i = 0; i < nowners && row < rows; i++) {
        int start = row;
        while (row < rows && strcmp(cp_db_str(r, row, 0), ids[i]) < 0)
            row++; /* rows of owners we do not hold (cannot happen, be safe) */
        start = row;
        while (row < rows && strcmp(cp_db_str(r, row, 0), ids[i]) == 0)
            row++;
        if (row == start)
            continue;
        cp_quota_pb **q = cp_arena_ptrs(a, (size_t)(row - start));
        for (int j = start; j < row; j++) {
            cp_quota_pb *x = cp_arena_msg(a, CP_DESC(quota));
            x->provider = cp_arena_strdup(a, cp_db_str(r, j, 1));
            x->metric = sl_quota_metric_parse(cp_db_str(r, j, 2));
            x->window = sl_quota_window_parse(cp_db_str(r, j, 3));
            x->limit = cp_db_i64(r, j, 4);
            x->on_unavailable = sl_quota_on_unavailable_parse(cp_db_str(r, j, 5));
            x->id = cp_arena_strdup(a, cp_db_str(r, j, 6));
            q[j - start] = x;
        }
        set(owners[i], q, (size_t)(row - start));
    }
    PQclear(r);
    return 0;
}

static void set_tenant_quotas(void *o, cp_quota_pb **q, size_t n)
{
    ((cp_tenant_pb *)o)->quotas = q;
    ((cp_tenant_pb *)o)->n_quotas = n;
}

static void set_vkey_quotas(void *o, cp_quota_pb **q, size_t n)
{
    ((cp_vkey_pb *)o)->quotas = q;
    ((cp_vkey_pb *)o)->n_quotas = n;
}

int cp_store_tenants(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_tenant_pb ***out, size_t *n,
                     sl_err_t *err)
{
    char lim[24];
    const char *params[3] = {FILTER_PARAMS(f, lim)};
    PGresult *r = cp_db_query(db,
                              "SELECT id, name, metadata::text, time_zone, extract(epoch FROM created_at)::bigint"
                              " FROM tenants"
                              " WHERE ($1::jsonb IS NULL OR id IN (SELECT jsonb_array_elements_text($1::jsonb)))"
                              " AND id COLLATE \"C\" > $2 ORDER BY id COLLATE \"C\" LIMIT $3",
                              3, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_tenant_pb **v = cp_arena_ptrs(a, rows);
    const char **ids = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_tenant_pb *t = cp_arena_msg(a, CP_DESC(tenant));
        t->id = cp_arena_strdup(a, cp_db_str(r, i, 0));
        t->name = cp_arena_strdup(a, cp_db_str(r, i, 1));
        t->metadata_json = cp_arena_strdup(a, cp_db_str(r, i, 2));
        t->time_zone = cp_arena_strdup(a, cp_db_str(r, i, 3));
        t->created_unix = cp_db_i64(r, i, 4);
        v[i] = t;
        ids[i] = t->id;
    }
    PQclear(r);
    int rc = load_quotas(db, "tenant", (void **)v, ids, rows, set_tenant_quotas, a, err);
    *out = v;
    *n = rows;
    return rc;
}

int cp_store_vkeys(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_vkey_pb ***out, size_t *n, sl_err_t *err)
{
    char lim[24];
    const char *params[4] = {FILTER_PARAMS(f, lim), f != NULL ? f->tenant_id : NULL};
    PGresult *r = cp_db_query(
        db,
        "SELECT id, tenant_id, encode(key_hash, 'hex'), key_prefix, array_to_json(allowed_providers)::text,"
        " array_to_json(allowed_models)::text, fallbacks::text, metadata::text, budget_reset,"
        " COALESCE(extract(epoch FROM expires_at)::bigint, 0), revoked_at IS NOT NULL,"
        " COALESCE(extract(epoch FROM revoked_at)::bigint, 0), extract(epoch FROM created_at)::bigint"
        " FROM virtual_keys"
        " WHERE ($1::jsonb IS NULL OR id IN (SELECT jsonb_array_elements_text($1::jsonb)))"
        " AND id COLLATE \"C\" > $2 AND ($4::text IS NULL OR tenant_id = $4)"
        " ORDER BY id COLLATE \"C\" LIMIT $3",
        4, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_vkey_pb **v = cp_arena_ptrs(a, rows);
    const char **ids = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_vkey_pb *k = cp_arena_msg(a, CP_DESC(virtual_key));
        k->id = cp_arena_strdup(a, cp_db_str(r, i, 0));
        k->tenant_id = cp_arena_strdup(a, cp_db_str(r, i, 1));
        const char *hex = cp_db_str(r, i, 2);
        if (strlen(hex) == 2 * SL_HASH_LEN) {
            k->key_hash.data = cp_arena_alloc(a, SL_HASH_LEN);
            k->key_hash.len = SL_HASH_LEN;
            sl_hex_decode(hex, 2 * SL_HASH_LEN, k->key_hash.data, SL_HASH_LEN);
        }
        k->key_prefix = cp_arena_strdup(a, cp_db_str(r, i, 3));
        k->allowed_providers = strings_from_json(a, cp_db_str(r, i, 4), &k->n_allowed_providers);
        k->allowed_models = strings_from_json(a, cp_db_str(r, i, 5), &k->n_allowed_models);
        k->fallbacks = targets_from_json(a, cp_db_str(r, i, 6), &k->n_fallbacks);
        k->metadata_json = cp_arena_strdup(a, cp_db_str(r, i, 7));
        k->budget_reset = cp_arena_strdup(a, cp_db_str(r, i, 8));
        k->expires_unix = cp_db_i64(r, i, 9);
        k->revoked = cp_db_bool(r, i, 10);
        k->revoked_unix = cp_db_i64(r, i, 11);
        k->created_unix = cp_db_i64(r, i, 12);
        v[i] = k;
        ids[i] = k->id;
    }
    PQclear(r);
    int rc = load_quotas(db, "virtual_key", (void **)v, ids, rows, set_vkey_quotas, a, err);
    *out = v;
    *n = rows;
    return rc;
}

/* Opens one sealed credential; 0 or SL_ECRYPTO. */
static int open_credential(const cp_keys_t *keys, const char *provider, const char *id, const char *key_id,
                           const char *hex, cp_arena_t *a, ProtobufCBinaryData *out)
{
    size_t hlen = strlen(hex);
    if (strcmp(key_id, keys->cred_key_id) != 0 || hlen % 2 != 0 || hlen / 2 < SL_SEAL_OVERHEAD)
        return SL_ECRYPTO;
    size_t slen = hlen / 2;
    uint8_t *sealed = malloc(slen);
    if (sealed == NULL)
        abort();
    char *aad = cp_arena_printf(a, "%s/%s", provider, id);
    int rc = sl_hex_decode(hex, hlen, sealed, slen);
    out->len = slen - SL_SEAL_OVERHEAD;
    out->data = cp_arena_alloc(a, out->len + 1);
    if (rc == 0)
        rc = sl_open(keys->cred_key, aad, strlen(aad), sealed, slen, out->data);
    free(sealed);
    if (rc != 0) {
        OPENSSL_cleanse(out->data, out->len);
        out->data = NULL;
        out->len = 0;
        return SL_ECRYPTO;
    }
    return 0;
}

int cp_store_providers(cp_db_t *db, const cp_filter_t *f, const cp_keys_t *keys, cp_arena_t *a,
                       cp_provider_pb ***out, size_t *n, sl_err_t *err)
{
    char lim[24];
    const char *params[3] = {FILTER_PARAMS(f, lim)};
    PGresult *r = cp_db_query(db,
                              "SELECT name, kind, base_url, params::text, connect_timeout_ms, first_byte_timeout_ms,"
                              " idle_timeout_ms, total_timeout_ms FROM providers"
                              " WHERE ($1::jsonb IS NULL OR name IN (SELECT jsonb_array_elements_text($1::jsonb)))"
                              " AND name COLLATE \"C\" > $2 ORDER BY name COLLATE \"C\" LIMIT $3",
                              3, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_provider_pb **v = cp_arena_ptrs(a, rows);
    const char **names = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_provider_pb *p = cp_arena_msg(a, CP_DESC(provider));
        p->name = cp_arena_strdup(a, cp_db_str(r, i, 0));
        p->kind = cp_arena_strdup(a, cp_db_str(r, i, 1));
        p->base_url = cp_arena_strdup(a, cp_db_str(r, i, 2));
        p->params = params_from_json(a, CP_DESC(provider__params_entry), cp_db_str(r, i, 3), &p->n_params);
        p->connect_timeout_ms = (int32_t)cp_db_i64(r, i, 4);
        p->first_byte_timeout_ms = (int32_t)cp_db_i64(r, i, 5);
        p->idle_timeout_ms = (int32_t)cp_db_i64(r, i, 6);
        p->total_timeout_ms = (int32_t)cp_db_i64(r, i, 7);
        v[i] = p;
        names[i] = p->name;
    }
    PQclear(r);
    *out = v;
    *n = rows;
    if (rows == 0)
        return 0;

    char *names_json = cp_store_json_strings(names, rows);
    const char *cparams[1] = {names_json};
    r = cp_db_query(db,
                    "SELECT provider, id, encode(ciphertext, 'hex'), key_id, weight, secret_env, params::text"
                    " FROM provider_credentials WHERE provider IN (SELECT jsonb_array_elements_text($1::jsonb))"
                    " ORDER BY provider COLLATE \"C\", id COLLATE \"C\"",
                    1, cparams, err);
    free(names_json);
    if (r == NULL)
        return err->code;
    int crows = PQntuples(r), row = 0;
    for (size_t i = 0; i < rows; i++) {
        cp_provider_pb *p = v[i];
        while (row < crows && strcmp(cp_db_str(r, row, 0), p->name) < 0)
            row++;
        int start = row;
        while (row < crows && strcmp(cp_db_str(r, row, 0), p->name) == 0)
            row++;
        p->credentials = cp_arena_ptrs(a, (size_t)(row - start));
        for (int j = start; j < row; j++) {
            cp_cred_pb *c = cp_arena_msg(a, CP_DESC(credential));
            c->id = cp_arena_strdup(a, cp_db_str(r, j, 1));
            c->weight = (int32_t)cp_db_i64(r, j, 4);
            c->secret_env = cp_arena_strdup(a, cp_db_str(r, j, 5));
            c->params = params_from_json(a, CP_DESC(credential__params_entry), cp_db_str(r, j, 6), &c->n_params);
            if (keys != NULL && open_credential(keys, p->name, c->id, cp_db_str(r, j, 3), cp_db_str(r, j, 2), a,
                                                &c->secret) != 0) {
                sl_error("store", "could not decrypt credential \"%s/%s\" (sealed by key \"%s\"): left out",
                         p->name, c->id, cp_db_str(r, j, 3));
                continue;
            }
            p->credentials[p->n_credentials++] = c;
        }
    }
    PQclear(r);
    return 0;
}

int cp_store_models(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_model_pb ***out, size_t *n, sl_err_t *err)
{
    char lim[24];
    const char *params[3] = {FILTER_PARAMS(f, lim)};
    PGresult *r = cp_db_query(
        db,
        "SELECT provider, model, input_micro_per_mtok, output_micro_per_mtok, cached_input_micro_per_mtok,"
        " max_output_tokens FROM model_prices"
        " WHERE ($1::jsonb IS NULL OR provider || '/' || model IN (SELECT jsonb_array_elements_text($1::jsonb)))"
        " AND provider || '/' || model COLLATE \"C\" > $2"
        " ORDER BY provider COLLATE \"C\", model COLLATE \"C\" LIMIT $3",
        3, params, err);
    if (r == NULL)
        return err->code;
    size_t rows = (size_t)PQntuples(r);
    cp_model_pb **v = cp_arena_ptrs(a, rows);
    for (size_t i = 0; i < rows; i++) {
        cp_model_pb *m = cp_arena_msg(a, CP_DESC(model_price));
        m->provider = cp_arena_strdup(a, cp_db_str(r, i, 0));
        m->model = cp_arena_strdup(a, cp_db_str(r, i, 1));
        m->input_micro_per_mtok = cp_db_i64(r, i, 2);
        m->output_micro_per_mtok = cp_db_i64(r, i, 3);
        m->cached_input_micro_per_mtok = cp_db_i64(r, i, 4);
        m->max_output_tokens = cp_db_i64(r, i, 5);
        v[i] = m;
    }
    PQclear(r);
    *out = v;
    *n = rows;
    return 0;
}

static int one_i64(cp_db_t *db, const char *sql, int64_t *v, sl_err_t *err)
{
    PGresult *r = cp_db_query(db, sql, 0, NULL, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_EINTERNAL, "config_state has no row: the schema is damaged");
    }
    *v = cp_db_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

int cp_store_lock_version(cp_db_t *db, int64_t *version, sl_err_t *err)
{
    return one_i64(db, "SELECT version FROM config_state WHERE id = 1 FOR UPDATE", version, err);
}

int cp_store_version(cp_db_t *db, int64_t *version, sl_err_t *err)
{
    return one_i64(db, "SELECT version FROM config_state WHERE id = 1", version, err);
}

int cp_store_bump(cp_db_t *db, int64_t *version, sl_err_t *err)
{
    return one_i64(db, "SELECT sluice_bump_version()", version, err);
}

int cp_store_record_change(cp_db_t *db, int64_t version, const char *kind, const char *id, const char *op,
                           const char *detail_json, sl_err_t *err)
{
    char vb[24];
    const char *params[5] = {cp_db_fmt_i64(version, vb), kind, id, op, detail_json != NULL ? detail_json : "{}"};
    return cp_db_exec(db,
                      "INSERT INTO config_changes (version, entity_kind, entity_id, op, detail)"
                      " VALUES ($1, $2, $3, $4, $5::jsonb)"
                      " ON CONFLICT (version, entity_kind, entity_id) DO UPDATE SET op = EXCLUDED.op,"
                      " detail = EXCLUDED.detail",
                      5, params, err);
}

/* Makes the scope's quotas exactly q[0..n): unchanged ones keep their id. */
static int put_quotas(cp_db_t *db, const char *scope, const char *id, cp_quota_pb *const *q, size_t n,
                      sl_err_t *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s}", "provider", q[i]->provider, "metric",
                                             sl_quota_metric_name(q[i]->metric), "window",
                                             sl_quota_window_name(q[i]->window), "limit_value", (json_int_t)q[i]->limit,
                                             "on_unavailable", sl_quota_on_unavailable_name(q[i]->on_unavailable)));
    char *json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (json == NULL)
        abort();
    const char *params[3] = {scope, id, json};
    /* wait for reports in flight and hold new ones until commit: a quota
     * window created later starts from the ledger's sum, which must not miss
     * a report that did not see the quota (0002_quota_leases.sql) */
    int rc = cp_db_exec(db, "SELECT pg_advisory_xact_lock(sluice_quota_lock_key())", 0, NULL, err);
    if (rc != 0) {
        free(json);
        return rc;
    }
    rc = cp_db_exec(
        db,
        "WITH q AS (SELECT * FROM jsonb_to_recordset($3::jsonb) AS x(provider text, metric text, \"window\" text,"
        "   limit_value bigint, on_unavailable text)),"
        " gone AS (DELETE FROM quotas o WHERE o.scope_kind = $1 AND o.scope_id = $2 AND NOT EXISTS"
        "   (SELECT 1 FROM q WHERE q.provider = o.provider AND q.metric = o.metric AND q.\"window\" = o.\"window\"))"
        " INSERT INTO quotas (scope_kind, scope_id, provider, metric, \"window\", limit_value, on_unavailable)"
        " SELECT $1, $2, provider, metric, \"window\", limit_value, on_unavailable FROM q"
        " ON CONFLICT (scope_kind, scope_id, provider, metric, \"window\") DO UPDATE SET"
        " limit_value = EXCLUDED.limit_value, on_unavailable = EXCLUDED.on_unavailable",
        3, params, err);
    free(json);
    return rc;
}

int cp_store_put_tenant(cp_db_t *db, const cp_tenant_pb *t, int64_t version, sl_err_t *err)
{
    char vb[24];
    const char *params[5] = {t->id, t->name, t->metadata_json[0] != '\0' ? t->metadata_json : "{}",
                             cp_tenant_time_zone(t->time_zone), cp_db_fmt_i64(version, vb)};
    int rc = cp_db_exec(db,
                        "INSERT INTO tenants (id, name, metadata, time_zone, version)"
                        " VALUES ($1, $2, $3::jsonb, $4, $5)"
                        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, metadata = EXCLUDED.metadata,"
                        " time_zone = EXCLUDED.time_zone, version = EXCLUDED.version, updated_at = now()",
                        5, params, err);
    if (rc == 0)
        rc = put_quotas(db, "tenant", t->id, t->quotas, t->n_quotas, err);
    return rc;
}

int cp_store_put_vkey(cp_db_t *db, const cp_vkey_pb *k, const uint8_t hash[32], const char *prefix, int64_t version,
                      sl_err_t *err)
{
    char hex[2 * SL_HASH_LEN + 1], vb[24], eb[24];
    sl_hex_encode(hash, SL_HASH_LEN, hex);
    char *ap = cp_store_json_strings((const char *const *)k->allowed_providers, k->n_allowed_providers);
    char *am = cp_store_json_strings((const char *const *)k->allowed_models, k->n_allowed_models);
    json_t *fb = json_array();
    for (size_t i = 0; i < k->n_fallbacks; i++)
        json_array_append_new(fb, json_pack("{s:s, s:s}", "provider", k->fallbacks[i]->provider, "model",
                                            k->fallbacks[i]->model));
    char *fbs = json_dumps(fb, JSON_COMPACT);
    json_decref(fb);
    if (fbs == NULL)
        abort();
    const char *params[11] = {k->id, k->tenant_id, hex, prefix, ap, am, fbs,
                              k->metadata_json[0] != '\0' ? k->metadata_json : "{}", k->budget_reset,
                              cp_db_fmt_i64(k->expires_unix, eb), cp_db_fmt_i64(version, vb)};
    int rc = cp_db_exec(
        db,
        "INSERT INTO virtual_keys (id, tenant_id, key_hash, key_prefix, allowed_providers, allowed_models,"
        " fallbacks, metadata, budget_reset, expires_at, version)"
        " VALUES ($1, $2, decode($3, 'hex'), $4, ARRAY(SELECT jsonb_array_elements_text($5::jsonb)),"
        " ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7::jsonb, $8::jsonb, $9,"
        " CASE WHEN $10::bigint = 0 THEN NULL ELSE to_timestamp($10::bigint) END, $11)"
        " ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,"
        " allowed_providers = EXCLUDED.allowed_providers, allowed_models = EXCLUDED.allowed_models,"
        " fallbacks = EXCLUDED.fallbacks, metadata = EXCLUDED.metadata, budget_reset = EXCLUDED.budget_reset,"
        " expires_at = EXCLUDED.expires_at, version = EXCLUDED.version, updated_at = now()",
        11, params, err);
    free(ap);
    free(am);
    free(fbs);
    if (rc == 0)
        rc = put_quotas(db, "virtual_key", k->id, k->quotas, k->n_quotas, err);
    return rc;
}

int cp_store_put_provider(cp_db_t *db, const cp_provider_pb *p, const cp_keys_t *keys, int replace_credentials,
                          int64_t version, sl_err_t *err)
{
    char vb[24], t1[24], t2[24], t3[24], t4[24];
    char *params_json = params_to_json(p->params, p->n_params);
    const char *params[9] = {p->name,
                             p->kind,
                             p->base_url,
                             params_json,
                             cp_db_fmt_i64(p->connect_timeout_ms, t1),
                             cp_db_fmt_i64(p->first_byte_timeout_ms, t2),
                             cp_db_fmt_i64(p->idle_timeout_ms, t3),
                             cp_db_fmt_i64(p->total_timeout_ms, t4),
                             cp_db_fmt_i64(version, vb)};
    int rc = cp_db_exec(db,
                        "INSERT INTO providers (name, kind, base_url, params, connect_timeout_ms,"
                        " first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms, version)"
                        " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)"
                        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url,"
                        " params = EXCLUDED.params, connect_timeout_ms = EXCLUDED.connect_timeout_ms,"
                        " first_byte_timeout_ms = EXCLUDED.first_byte_timeout_ms,"
                        " idle_timeout_ms = EXCLUDED.idle_timeout_ms, total_timeout_ms = EXCLUDED.total_timeout_ms,"
                        " version = EXCLUDED.version, updated_at = now()",
                        9, params, err);
    free(params_json);
    if (rc != 0 || !replace_credentials)
        return rc;
    const char *dparams[1] = {p->name};
    if ((rc = cp_db_exec(db, "DELETE FROM provider_credentials WHERE provider = $1", 1, dparams, err)) != 0)
        return rc;
    for (size_t i = 0; i < p->n_credentials && rc == 0; i++) {
        const cp_cred_pb *c = p->credentials[i];
        char id[160], wb[24];
        cp_cred_id(c->id, i, id, sizeof(id));
        char aad[256];
        snprintf(aad, sizeof(aad), "%s/%s", p->name, id);
        size_t slen = c->secret.len + SL_SEAL_OVERHEAD;
        uint8_t *sealed = malloc(slen);
        if (sealed == NULL)
            abort();
        if (sl_seal(keys->cred_key, aad, strlen(aad), c->secret.data, c->secret.len, sealed) != 0) {
            free(sealed);
            return sl_err_set(err, SL_ECRYPTO, "could not seal credential \"%s\"", aad);
        }
        char *cparams_json = params_to_json((cp_param_pb *const *)c->params, c->n_params);
        const char *ip[7] = {p->name, id, (const char *)sealed, keys->cred_key_id, cp_db_fmt_i64(c->weight, wb),
                             c->secret_env, cparams_json};
        int lens[7] = {0, 0, (int)slen, 0, 0, 0, 0};
        int fmts[7] = {0, 0, 1, 0, 0, 0, 0};
        PGresult *r = cp_db_query_bin(db,
                                      "INSERT INTO provider_credentials (provider, id, ciphertext, key_id, weight,"
                                      " secret_env, params) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                                      7, ip, lens, fmts, err);
        OPENSSL_cleanse(sealed, slen);
        free(sealed);
        free(cparams_json);
        if (r == NULL)
            rc = err->code;
        PQclear(r);
    }
    return rc;
}

int cp_store_put_model(cp_db_t *db, const cp_model_pb *m, int64_t version, sl_err_t *err)
{
    char b[5][24];
    const char *params[7] = {m->provider,
                             m->model,
                             cp_db_fmt_i64(m->input_micro_per_mtok, b[0]),
                             cp_db_fmt_i64(m->output_micro_per_mtok, b[1]),
                             cp_db_fmt_i64(m->cached_input_micro_per_mtok, b[2]),
                             cp_db_fmt_i64(m->max_output_tokens, b[3]),
                             cp_db_fmt_i64(version, b[4])};
    return cp_db_exec(db,
                      "INSERT INTO model_prices (provider, model, input_micro_per_mtok, output_micro_per_mtok,"
                      " cached_input_micro_per_mtok, max_output_tokens, version)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                      " ON CONFLICT (provider, model) DO UPDATE SET"
                      " input_micro_per_mtok = EXCLUDED.input_micro_per_mtok,"
                      " output_micro_per_mtok = EXCLUDED.output_micro_per_mtok,"
                      " cached_input_micro_per_mtok = EXCLUDED.cached_input_micro_per_mtok,"
                      " max_output_tokens = EXCLUDED.max_output_tokens, version = EXCLUDED.version,"
                      " updated_at = now()",
                      7, params, err);
}

int cp_store_revoke_vkey(cp_db_t *db, const char *id, int64_t version, sl_err_t *err)
{
    char vb[24];
    const char *params[2] = {id, cp_db_fmt_i64(version, vb)};
    return cp_db_exec(db,
                      "UPDATE virtual_keys SET revoked_at = now(), version = $2, updated_at = now()"
                      " WHERE id = $1 AND revoked_at IS NULL",
                      2, params, err);
}
