/*
 * cp_apply.c - declarative apply: validate, load, diff, write, one bump.
 */
#include "cp_apply.h"
#include "cp_alert_store.h"
#include "cp_diff.h"
#include "cp_validate.h"
#include "sl_crypto.h"
#include "sl_log.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

/* The current state of every entity the document names. */
struct current {
    cp_tenant_pb **tenants;
    size_t ntenants;
    cp_vkey_pb **keys;
    size_t nkeys;
    cp_provider_pb **providers;
    size_t nproviders;
    cp_model_pb **models;
    size_t nmodels;
};

/* A growing arena array of pointers. */
struct vec {
    void **v;
    size_t n, cap;
};

static void vec_push(struct vec *x, cp_arena_t *a, void *p)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        void **v = cp_arena_ptrs(a, cap);
        if (x->n > 0)
            memcpy(v, x->v, x->n * sizeof(void *));
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n++] = p;
}

static int vec_has(const struct vec *x, const char *s)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->v[i], s) == 0)
            return 1;
    return 0;
}

static void vec_add_unique(struct vec *x, cp_arena_t *a, const char *s)
{
    if (!vec_has(x, s))
        vec_push(x, a, (void *)s);
}

static char *json_ids(const struct vec *x)
{
    return cp_store_json_strings((const char *const *)x->v, x->n);
}

static int load_current(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, cp_arena_t *a,
                        struct current *cur, struct vec *provider_names, sl_err_t *err)
{
    struct vec tenants = {0}, vkeys = {0}, models = {0};
    for (size_t i = 0; i < doc->n_tenants; i++)
        vec_add_unique(&tenants, a, doc->tenants[i]->id);
    for (size_t i = 0; i < doc->n_virtual_keys; i++) {
        const cp_vkey_pb *k = doc->virtual_keys[i];
        vec_add_unique(&vkeys, a, k->id);
        vec_add_unique(&tenants, a, k->tenant_id);
        for (size_t j = 0; j < k->n_allowed_providers; j++)
            vec_add_unique(provider_names, a, k->allowed_providers[j]);
        for (size_t j = 0; j < k->n_fallbacks; j++)
            vec_add_unique(provider_names, a, k->fallbacks[j]->provider);
    }
    for (size_t i = 0; i < doc->n_providers; i++)
        vec_add_unique(provider_names, a, doc->providers[i]->name);
    for (size_t i = 0; i < doc->n_models; i++)
        vec_add_unique(&models, a, cp_arena_printf(a, "%s/%s", doc->models[i]->provider, doc->models[i]->model));

    int rc = 0;
    char *ids;
    cp_filter_t f = {0};
    if (tenants.n > 0) {
        f.ids_json = ids = json_ids(&tenants);
        rc = cp_store_tenants(db, &f, a, &cur->tenants, &cur->ntenants, err);
        free(ids);
    }
    if (rc == 0 && vkeys.n > 0) {
        f.ids_json = ids = json_ids(&vkeys);
        rc = cp_store_vkeys(db, &f, a, &cur->keys, &cur->nkeys, err);
        free(ids);
    }
    if (rc == 0 && provider_names->n > 0) {
        f.ids_json = ids = json_ids(provider_names);
        rc = cp_store_providers(db, &f, keys, a, &cur->providers, &cur->nproviders, err);
        free(ids);
    }
    if (rc == 0 && models.n > 0) {
        f.ids_json = ids = json_ids(&models);
        rc = cp_store_models(db, &f, a, &cur->models, &cur->nmodels, err);
        free(ids);
    }
    return rc;
}

static const cp_tenant_pb *find_tenant(const struct current *c, const char *id)
{
    for (size_t i = 0; i < c->ntenants; i++)
        if (strcmp(c->tenants[i]->id, id) == 0)
            return c->tenants[i];
    return NULL;
}

static const cp_vkey_pb *find_vkey(const struct current *c, const char *id)
{
    for (size_t i = 0; i < c->nkeys; i++)
        if (strcmp(c->keys[i]->id, id) == 0)
            return c->keys[i];
    return NULL;
}

static const cp_provider_pb *find_provider(const struct current *c, const char *name)
{
    for (size_t i = 0; i < c->nproviders; i++)
        if (strcmp(c->providers[i]->name, name) == 0)
            return c->providers[i];
    return NULL;
}

static const cp_model_pb *find_model(const struct current *c, const char *provider, const char *model)
{
    for (size_t i = 0; i < c->nmodels; i++)
        if (strcmp(c->models[i]->provider, provider) == 0 && strcmp(c->models[i]->model, model) == 0)
            return c->models[i];
    return NULL;
}

static int doc_has_tenant(const cp_doc_pb *d, const char *id)
{
    for (size_t i = 0; i < d->n_tenants; i++)
        if (strcmp(d->tenants[i]->id, id) == 0)
            return 1;
    return 0;
}

static int doc_has_provider(const cp_doc_pb *d, const char *name)
{
    for (size_t i = 0; i < d->n_providers; i++)
        if (strcmp(d->providers[i]->name, name) == 0)
            return 1;
    return 0;
}

/* One planned write. */
struct plan {
    cp_change_pb *change;
    const char *entity_kind; /* config_changes.entity_kind */
    const void *entity;      /* the desired state (from the document or made here) */
    int is_new;
    int credentials_changed; /* providers */
};

static int credentials_differ(const cp_fields_t *old, const cp_fields_t *new_)
{
    /* any field whose name starts with "credential " differs or is missing */
    size_t no = 0, nn = 0;
    for (size_t i = 0; i < old->n; i++)
        no += strncmp(old->v[i].name, "credential ", 11) == 0;
    for (size_t i = 0; i < new_->n; i++) {
        const cp_field_t *f = &new_->v[i];
        if (strncmp(f->name, "credential ", 11) != 0)
            continue;
        nn++;
        size_t j;
        for (j = 0; j < old->n; j++)
            if (strcmp(old->v[j].name, f->name) == 0)
                break;
        if (j == old->n || old->v[j].len != f->len || (f->len > 0 && memcmp(old->v[j].value, f->value, f->len)))
            return 1;
    }
    return no != nn;
}

static char *detail_json(const cp_change_pb *c)
{
    json_t *o = json_pack("{s:s}", "action", c->action);
    json_t *d = json_array();
    for (size_t i = 0; i < c->n_details; i++)
        json_array_append_new(d, json_string(c->details[i]));
    json_object_set_new(o, "details", d);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        abort();
    return s;
}

static int check_time_zone(cp_db_t *db, const cp_tenant_pb *t, sl_err_t *err)
{
    const char *tz = cp_tenant_time_zone(t->time_zone);
    if (strcmp(tz, "UTC") == 0)
        return 0;
    const char *params[1] = {tz};
    PGresult *r = cp_db_query(db, "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)", 1, params, err);
    if (r == NULL)
        return err->code;
    int ok = cp_db_bool(r, 0, 0);
    PQclear(r);
    return ok ? 0 : sl_err_set(err, SL_EINVAL, "tenant \"%s\": time_zone \"%s\" is not a known time zone", t->id, tz);
}

/* Diffs the document against cur into plans; warnings go to w. */
static int plan_all(cp_db_t *db, const cp_doc_pb *doc, const struct current *cur, const cp_apply_opts_t *opts, cp_arena_t *a, struct vec *plans, struct vec *w, sl_err_t *err)
{
#define PLAN(kind_, ekind, id_, ent, oldf, newf, isnew)                                                                \
    do {                                                                                                               \
        struct plan *p = cp_arena_alloc(a, sizeof(*p));                                                                \
        p->change = cp_diff_change(a, kind_, id_, oldf, newf);                                                         \
        p->entity_kind = ekind;                                                                                        \
        p->entity = ent;                                                                                               \
        p->is_new = isnew;                                                                                             \
        vec_push(plans, a, p);                                                                                         \
    } while (0)

    for (size_t i = 0; i < doc->n_tenants; i++) {
        const cp_tenant_pb *t = doc->tenants[i], *old = find_tenant(cur, t->id);
        if (old != NULL && opts->create_only)
            return sl_err_set(err, SL_EEXISTS, "tenant \"%s\" already exists", t->id);
        int rc = check_time_zone(db, t, err);
        if (rc != 0)
            return rc;
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            cp_fields_tenant(old, a, &of);
        cp_fields_tenant(t, a, &nf);
        PLAN("tenant", "tenant", t->id, t, old ? &of : NULL, &nf, old == NULL);
    }
    /* tenants named by keys that exist nowhere */
    struct vec implicit = {0};
    for (size_t i = 0; i < doc->n_virtual_keys; i++) {
        const cp_vkey_pb *k = doc->virtual_keys[i];
        if (find_tenant(cur, k->tenant_id) != NULL || doc_has_tenant(doc, k->tenant_id) ||
            vec_has(&implicit, k->tenant_id))
            continue;
        if (opts->require_tenants)
            return sl_err_set(err, SL_ENOTFOUND, "tenant \"%s\" does not exist", k->tenant_id);
        vec_push(&implicit, a, k->tenant_id);
        cp_tenant_pb *t = cp_arena_msg(a, CP_DESC(tenant));
        t->id = k->tenant_id;
        cp_fields_t nf = {0};
        cp_fields_tenant(t, a, &nf);
        PLAN("tenant", "tenant", t->id, t, NULL, &nf, 1);
        struct plan *p = plans->v[plans->n - 1];
        p->change->n_details = 0;
        p->change->details = NULL;
        cp_diff_fields(NULL, &nf, a, &p->change->details, &p->change->n_details);
        char **d = p->change->details;
        /* say why it appeared: first line names the key */
        p->change->details = cp_arena_ptrs(a, p->change->n_details + 1);
        p->change->details[0] = cp_arena_printf(a, "created for virtual key \"%s\"", k->id);
        memcpy(p->change->details + 1, d, p->change->n_details * sizeof(char *));
        p->change->n_details++;
    }
    for (size_t i = 0; i < doc->n_providers; i++) {
        const cp_provider_pb *pr = doc->providers[i], *old = find_provider(cur, pr->name);
        if (old != NULL && opts->create_only)
            return sl_err_set(err, SL_EEXISTS, "provider \"%s\" already exists", pr->name);
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            cp_fields_provider(old, a, &of);
        cp_fields_provider(pr, a, &nf);
        PLAN("provider", "provider", pr->name, pr, old ? &of : NULL, &nf, old == NULL);
        ((struct plan *)plans->v[plans->n - 1])->credentials_changed = old == NULL || credentials_differ(&of, &nf);
    }
    for (size_t i = 0; i < doc->n_models; i++) {
        const cp_model_pb *m = doc->models[i], *old = find_model(cur, m->provider, m->model);
        const char *id = cp_arena_printf(a, "%s/%s", m->provider, m->model);
        if (old != NULL && opts->create_only)
            return sl_err_set(err, SL_EEXISTS, "model \"%s\" already exists", id);
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            cp_fields_model(old, a, &of);
        cp_fields_model(m, a, &nf);
        PLAN("model", "model", id, m, old ? &of : NULL, &nf, old == NULL);
    }
    for (size_t i = 0; i < doc->n_virtual_keys; i++) {
        const cp_vkey_pb *k = doc->virtual_keys[i], *old = find_vkey(cur, k->id);
        if (old != NULL && opts->create_only)
            return sl_err_set(err, SL_EEXISTS, "virtual key \"%s\" already exists", k->id);
        cp_fields_t of = {0}, nf = {0};
        if (old != NULL)
            cp_fields_vkey(old, a, &of);
        cp_fields_vkey(k, a, &nf);
        PLAN("virtual_key", "virtual_key", k->id, k, old ? &of : NULL, &nf, old == NULL);

        struct vec warned = {0};
        for (size_t j = 0; j < k->n_allowed_providers + k->n_fallbacks; j++) {
            int allowed = j < k->n_allowed_providers;
            const char *p = allowed ? k->allowed_providers[j] : k->fallbacks[j - k->n_allowed_providers]->provider;
            if (find_provider(cur, p) != NULL || doc_has_provider(doc, p) || vec_has(&warned, p))
                continue;
            vec_push(&warned, a, (void *)p);
            vec_push(w, a,
                     cp_arena_printf(a,
                                     "virtual key \"%s\": provider \"%s\" is not configured yet; data planes skip "
                                     "it until it is",
                                     k->id, p));
        }
    }
#undef PLAN
    return 0;
}

/* Alert sinks and rules (cp_alert_store) join the same plan list. */
static int plan_alerts(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, const cp_apply_opts_t *opts,
                       cp_arena_t *a, struct vec *plans, struct vec *w, sl_err_t *err)
{
    cp_alert_plan_t *ap = NULL;
    size_t nap = 0, nw = 0;
    char **warn = NULL;
    int rc = cp_alert_plan(db, keys, doc, opts->create_only, a, &ap, &nap, &warn, &nw, err);
    for (size_t i = 0; rc == 0 && i < nap; i++) {
        struct plan *p = cp_arena_alloc(a, sizeof(*p));
        p->change = ap[i].change;
        p->entity_kind = ap[i].entity_kind;
        p->entity = ap[i].entity;
        p->is_new = strcmp(ap[i].change->action, "create") == 0;
        vec_push(plans, a, p);
    }
    for (size_t i = 0; rc == 0 && i < nw; i++)
        vec_push(w, a, warn[i]);
    return rc;
}

static int write_plan(cp_db_t *db, const cp_keys_t *keys, const struct plan *p, int64_t version, int dry_run,
                      cp_arena_t *a, struct vec *secrets, sl_err_t *err)
{
    int rc;
    const char *kind = p->entity_kind;
    if (strcmp(kind, "tenant") == 0) {
        rc = cp_store_put_tenant(db, p->entity, version, err);
    } else if (strcmp(kind, "provider") == 0) {
        rc = cp_store_put_provider(db, p->entity, keys, p->credentials_changed, version, err);
    } else if (strcmp(kind, "model") == 0) {
        rc = cp_store_put_model(db, p->entity, version, err);
    } else if (strncmp(kind, "alert_", 6) == 0) {
        cp_alert_plan_t ap = {p->change, kind, p->entity};
        rc = cp_alert_put(db, keys, &ap, version, err);
    } else {
        const cp_vkey_pb *k = p->entity;
        uint8_t hash[SL_HASH_LEN] = {0};
        char secret[SL_KEY_SECRET_LEN + 1] = {0}, prefix[CP_KEY_PREFIX_LEN + 1] = {0};
        if (p->is_new) {
            if (sl_vkey_generate(secret) != 0)
                return sl_err_set(err, SL_ECRYPTO, "could not generate a key secret");
            sl_vkey_hash(keys->pepper, secret, strlen(secret), hash);
            memcpy(prefix, secret, CP_KEY_PREFIX_LEN);
        }
        rc = cp_store_put_vkey(db, k, hash, prefix, version, err);
        if (rc == 0 && p->is_new && !dry_run) {
            Sluice__Admin__V1__CreatedSecret *s = cp_arena_msg(a, &sluice__admin__v1__created_secret__descriptor);
            s->key_id = k->id;
            s->secret = cp_arena_strdup(a, secret);
            vec_push(secrets, a, s);
        }
        OPENSSL_cleanse(secret, sizeof(secret));
    }
    if (rc != 0)
        return rc;
    char *detail = detail_json(p->change);
    rc = cp_store_record_change(db, version, kind, p->change->id, "upsert", detail, err);
    free(detail);
    return rc;
}

int cp_apply(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, const cp_apply_opts_t *opts, cp_arena_t *a,
             cp_apply_resp_pb **out, sl_err_t *err)
{
    int rc = cp_validate_document(doc, err);
    if (rc == 0)
        rc = cp_alert_validate_document(doc, err);
    if (rc != 0)
        return rc;
    int64_t version = 0;
    struct current cur = {0};
    struct vec provider_names = {0}, plans = {0}, warnings = {0}, secrets = {0};
    if ((rc = cp_db_begin(db, err)) != 0)
        return rc;
    if ((rc = cp_store_lock_version(db, &version, err)) != 0)
        goto fail;
    if ((rc = load_current(db, keys, doc, a, &cur, &provider_names, err)) != 0)
        goto fail;
    if ((rc = plan_all(db, doc, &cur, opts, a, &plans, &warnings, err)) != 0)
        goto fail;
    if ((rc = plan_alerts(db, keys, doc, opts, a, &plans, &warnings, err)) != 0)
        goto fail;

    int changed = 0;
    for (size_t i = 0; i < plans.n; i++)
        changed |= strcmp(((struct plan *)plans.v[i])->change->action, "unchanged") != 0;
    if (changed) {
        int64_t newv;
        if ((rc = cp_store_bump(db, &newv, err)) != 0)
            goto fail;
        for (size_t i = 0; i < plans.n && rc == 0; i++) {
            const struct plan *p = plans.v[i];
            if (strcmp(p->change->action, "unchanged") != 0)
                rc = write_plan(db, keys, p, newv, opts->dry_run, a, &secrets, err);
        }
        if (rc != 0)
            goto fail;
        if (!opts->dry_run)
            version = newv;
    }
    if (opts->dry_run || !changed)
        cp_db_rollback(db);
    else if ((rc = cp_db_commit(db, err)) != 0)
        goto fail;

    cp_apply_resp_pb *r = cp_arena_msg(a, &sluice__admin__v1__apply_response__descriptor);
    r->changes = cp_arena_ptrs(a, plans.n);
    for (size_t i = 0; i < plans.n; i++)
        r->changes[i] = ((struct plan *)plans.v[i])->change;
    r->n_changes = plans.n;
    r->warnings = (char **)warnings.v;
    r->n_warnings = warnings.n;
    r->secrets = (Sluice__Admin__V1__CreatedSecret **)secrets.v;
    r->n_secrets = secrets.n;
    r->version = version;
    r->changed = changed;
    *out = r;
    if (changed && !opts->dry_run) {
        size_t n = 0;
        for (size_t i = 0; i < plans.n; i++)
            n += strcmp(((struct plan *)plans.v[i])->change->action, "unchanged") != 0;
        sl_info("apply", "applied %zu change(s) at version %lld (actor \"%s\")", n, (long long)version,
                opts->actor != NULL ? opts->actor : "admin");
    }
    return 0;
fail:
    cp_db_rollback(db);
    return rc;
}
