/*
 * cp_snapshot.c - full snapshots and deltas from the change log.
 */
#include "cp_snapshot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <jansson.h>

cp_snap_mode_t cp_snapshot_mode(int64_t have, int64_t current, int64_t oldest_change)
{
    if (have <= 0 || have > current)
        return CP_SNAP_FULL;
    if (have == current)
        return CP_SNAP_NONE;
    if (oldest_change <= 0 || have < oldest_change - 1)
        return CP_SNAP_FULL;
    return CP_SNAP_DELTA;
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A JSON array of strings (from json_agg) as an arena array. */
static char **json_strings(cp_arena_t *a, const char *json, size_t *n)
{
    *n = 0;
    json_t *v = json_loads(json, 0, NULL);
    size_t len = json_is_array(v) ? json_array_size(v) : 0;
    char **out = cp_arena_ptrs(a, len);
    for (size_t i = 0; i < len; i++) {
        const char *str = json_string_value(json_array_get(v, i));
        if (str != NULL)
            out[(*n)++] = cp_arena_strdup(a, str);
    }
    json_decref(v);
    return out;
}

enum { K_TENANT, K_KEY, K_PROVIDER, K_MODEL, K_N };
static const char *kind_names[K_N] = {"tenant", "virtual_key", "provider", "model"};
static const int kind_enum[K_N] = {SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_TENANT,
                                   SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY,
                                   SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_PROVIDER,
                                   SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_MODEL};

static int load_all(cp_db_t *db, const cp_keys_t *keys, const cp_filter_t *f[K_N], cp_arena_t *a, cp_snapshot_pb *s,
                    sl_err_t *err)
{
    int rc = 0;
    if (f[K_TENANT] != NULL)
        rc = cp_store_tenants(db, f[K_TENANT], a, &s->tenants, &s->n_tenants, err);
    if (rc == 0 && f[K_KEY] != NULL)
        rc = cp_store_vkeys(db, f[K_KEY], a, &s->keys, &s->n_keys, err);
    if (rc == 0 && f[K_PROVIDER] != NULL)
        rc = cp_store_providers(db, f[K_PROVIDER], keys, a, &s->providers, &s->n_providers, err);
    if (rc == 0 && f[K_MODEL] != NULL)
        rc = cp_store_models(db, f[K_MODEL], a, &s->models, &s->n_models, err);
    return rc;
}

/* Whether entity id of kind k is among the loaded ones. */
static int loaded(const cp_snapshot_pb *s, int k, const char *id)
{
    switch (k) {
    case K_TENANT:
        for (size_t i = 0; i < s->n_tenants; i++)
            if (strcmp(s->tenants[i]->id, id) == 0)
                return 1;
        return 0;
    case K_KEY:
        for (size_t i = 0; i < s->n_keys; i++)
            if (strcmp(s->keys[i]->id, id) == 0)
                return 1;
        return 0;
    case K_PROVIDER:
        for (size_t i = 0; i < s->n_providers; i++)
            if (strcmp(s->providers[i]->name, id) == 0)
                return 1;
        return 0;
    default:
        for (size_t i = 0; i < s->n_models; i++) {
            size_t pl = strlen(s->models[i]->provider);
            if (strncmp(id, s->models[i]->provider, pl) == 0 && id[pl] == '/' &&
                strcmp(id + pl + 1, s->models[i]->model) == 0)
                return 1;
        }
        return 0;
    }
}

static int build_delta(cp_db_t *db, const cp_keys_t *keys, int64_t have, int64_t current, cp_arena_t *a,
                       cp_snapshot_pb *s, sl_err_t *err)
{
    char hb[24], cb[24];
    const char *params[2] = {cp_db_fmt_i64(have, hb), cp_db_fmt_i64(current, cb)};
    PGresult *r = cp_db_query(db,
                              "SELECT entity_kind, json_agg(DISTINCT entity_id)::text FROM config_changes"
                              " WHERE version > $1 AND version <= $2 GROUP BY entity_kind",
                              2, params, err);
    if (r == NULL)
        return err->code;
    cp_filter_t filters[K_N];
    const cp_filter_t *f[K_N] = {NULL};
    char *ids[K_N] = {NULL};
    for (int i = 0; i < PQntuples(r); i++) {
        for (int k = 0; k < K_N; k++) {
            if (strcmp(cp_db_str(r, i, 0), kind_names[k]) == 0) {
                ids[k] = cp_arena_strdup(a, cp_db_str(r, i, 1));
                filters[k] = (cp_filter_t){.ids_json = ids[k]};
                f[k] = &filters[k];
            }
        }
    }
    PQclear(r);
    int rc = load_all(db, keys, f, a, s, err);
    if (rc != 0)
        return rc;
    /* entities in the log that no longer exist were removed */
    size_t nremoved = 0, cap = 0;
    for (int k = 0; k < K_N; k++) {
        if (ids[k] == NULL)
            continue;
        size_t n;
        char **list = json_strings(a, ids[k], &n);
        for (size_t i = 0; i < n; i++) {
            if (loaded(s, k, list[i]))
                continue;
            if (nremoved == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                cp_removed_pb **v = cp_arena_ptrs(a, ncap);
                if (nremoved > 0)
                    memcpy(v, s->removed, nremoved * sizeof(*v));
                s->removed = v;
                cap = ncap;
            }
            cp_removed_pb *rm = cp_arena_msg(a, &sluice__sync__v1__removed__descriptor);
            rm->kind = kind_enum[k];
            rm->id = list[i];
            s->removed[nremoved++] = rm;
        }
    }
    s->n_removed = nremoved;
    return 0;
}

int cp_snapshot_build(cp_db_t *db, const cp_keys_t *keys, int64_t have, cp_arena_t *a, cp_snapshot_pb **out,
                      sl_err_t *err)
{
    *out = NULL;
    int rc = cp_db_begin_snapshot(db, err);
    if (rc != 0)
        return rc;
    PGresult *r = cp_db_query(db,
                              "SELECT s.version, COALESCE((SELECT min(version) FROM config_changes), 0)"
                              " FROM config_state s WHERE s.id = 1",
                              0, NULL, err);
    if (r == NULL) {
        cp_db_rollback(db);
        return err->code;
    }
    int64_t current = cp_db_i64(r, 0, 0), oldest = cp_db_i64(r, 0, 1);
    PQclear(r);
    cp_snap_mode_t mode = cp_snapshot_mode(have, current, oldest);
    if (mode == CP_SNAP_NONE) {
        cp_db_rollback(db);
        return 0;
    }
    cp_snapshot_pb *s = cp_arena_msg(a, &sluice__sync__v1__snapshot__descriptor);
    s->version = current;
    s->generated_unix_ms = now_ms();
    if (mode == CP_SNAP_FULL) {
        cp_filter_t all = {0};
        const cp_filter_t *f[K_N] = {&all, &all, &all, &all};
        s->full = 1;
        s->key_pepper.data = cp_arena_memdup(a, keys->pepper, sizeof(keys->pepper));
        s->key_pepper.len = sizeof(keys->pepper);
        rc = load_all(db, keys, f, a, s, err);
    } else {
        s->base_version = have;
        rc = build_delta(db, keys, have, current, a, s, err);
    }
    cp_db_rollback(db); /* read-only: nothing to commit */
    if (rc == 0)
        *out = s;
    return rc;
}
