/*
 * cp_admin.c - the Admin service handlers.
 *
 * Writes go through cp_apply (one transaction, one version bump, change
 * log) except revocation, which has its own idempotent path. Responses
 * never carry secrets: key hashes are stripped and credential secrets are
 * not loaded; a new key's secret is returned once by CreateVirtualKey.
 */
#include "cp_apply.h"
#include "cp_service.h"
#include "cp_validate.h"
#include "sl_log.h"

#include <stdlib.h>
#include <string.h>

#define APP(ctx) ((cp_app_t *)(ctx)->app)

int cp_admin_page_size(int32_t requested)
{
    if (requested <= 0)
        return CP_LIST_DEFAULT;
    return requested > CP_LIST_MAX ? CP_LIST_MAX : requested;
}

static const char *one_id_json(cp_arena_t *a, const char *id)
{
    char *j = cp_store_json_strings(&id, 1);
    const char *out = cp_arena_strdup(a, j);
    free(j);
    return out;
}

static void strip_vkey(cp_vkey_pb *k)
{
    k->key_hash.data = NULL;
    k->key_hash.len = 0;
}

static int load_tenant(cp_unary_ctx_t *ctx, const char *id, cp_tenant_pb **out, sl_err_t *err)
{
    cp_filter_t f = {.ids_json = one_id_json(ctx->arena, id)};
    cp_tenant_pb **v;
    size_t n;
    int rc = cp_store_tenants(ctx->db, &f, ctx->arena, &v, &n, err);
    if (rc != 0)
        return rc;
    if (n == 0)
        return sl_err_set(err, SL_ENOTFOUND, "tenant \"%s\" not found", id);
    *out = v[0];
    return 0;
}

static int load_vkey(cp_unary_ctx_t *ctx, const char *id, cp_vkey_pb **out, sl_err_t *err)
{
    cp_filter_t f = {.ids_json = one_id_json(ctx->arena, id)};
    cp_vkey_pb **v;
    size_t n;
    int rc = cp_store_vkeys(ctx->db, &f, ctx->arena, &v, &n, err);
    if (rc != 0)
        return rc;
    if (n == 0)
        return sl_err_set(err, SL_ENOTFOUND, "virtual key \"%s\" not found", id);
    strip_vkey(v[0]);
    *out = v[0];
    return 0;
}

/* Runs a one-entity document through cp_apply and kicks the publisher. */
static int apply_one(cp_unary_ctx_t *ctx, cp_doc_pb *doc, const cp_apply_opts_t *opts, cp_apply_resp_pb **out,
                     sl_err_t *err)
{
    cp_apply_resp_pb *r = NULL;
    int rc = cp_apply(ctx->db, &APP(ctx)->keys, doc, opts, ctx->arena, &r, err);
    if (rc == 0 && r->changed && !opts->dry_run)
        cp_sync_kick(APP(ctx)->sync);
    if (out != NULL)
        *out = r;
    return rc;
}

int cp_admin_create_tenant(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__CreateTenantRequest *q = (const void *)req;
    if (q->tenant == NULL)
        return sl_err_set(err, SL_EINVAL, "tenant is required");
    cp_doc_pb doc = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_tenant_pb *t = q->tenant;
    doc.tenants = &t;
    doc.n_tenants = 1;
    cp_apply_opts_t opts = {.create_only = 1, .actor = "admin"};
    int rc = apply_one(ctx, &doc, &opts, NULL, err);
    cp_tenant_pb *out = NULL;
    if (rc == 0)
        rc = load_tenant(ctx, t->id, &out, err);
    if (rc == 0)
        *resp = &out->base;
    return rc;
}

int cp_admin_get_tenant(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__GetTenantRequest *q = (const void *)req;
    if (q->id[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "id is required");
    cp_tenant_pb *t = NULL;
    int rc = load_tenant(ctx, q->id, &t, err);
    if (rc == 0)
        *resp = &t->base;
    return rc;
}

int cp_admin_list_tenants(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__ListTenantsRequest *q = (const void *)req;
    Sluice__Admin__V1__ListTenantsResponse *r =
        cp_arena_msg(ctx->arena, &sluice__admin__v1__list_tenants_response__descriptor);
    cp_filter_t f = {.after_id = q->after_id, .limit = cp_admin_page_size(q->limit)};
    int rc = cp_store_tenants(ctx->db, &f, ctx->arena, &r->tenants, &r->n_tenants, err);
    *resp = &r->base;
    return rc;
}

int cp_admin_create_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__CreateVirtualKeyRequest *q = (const void *)req;
    if (q->key == NULL)
        return sl_err_set(err, SL_EINVAL, "key is required");
    cp_doc_pb doc = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_vkey_pb *k = q->key;
    doc.virtual_keys = &k;
    doc.n_virtual_keys = 1;
    cp_apply_opts_t opts = {.create_only = 1, .require_tenants = 1, .actor = "admin"};
    cp_apply_resp_pb *ar = NULL;
    int rc = apply_one(ctx, &doc, &opts, &ar, err);
    if (rc != 0)
        return rc;
    if (ar->n_secrets != 1)
        return sl_err_set(err, SL_EINTERNAL, "virtual key \"%s\" was not created", k->id);
    Sluice__Admin__V1__CreateVirtualKeyResponse *r =
        cp_arena_msg(ctx->arena, &sluice__admin__v1__create_virtual_key_response__descriptor);
    r->secret = ar->secrets[0]->secret;
    rc = load_vkey(ctx, k->id, &r->key, err);
    *resp = &r->base;
    return rc;
}

int cp_admin_get_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__GetVirtualKeyRequest *q = (const void *)req;
    if (q->id[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "id is required");
    cp_vkey_pb *k = NULL;
    int rc = load_vkey(ctx, q->id, &k, err);
    if (rc == 0)
        *resp = &k->base;
    return rc;
}

int cp_admin_list_vkeys(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__ListVirtualKeysRequest *q = (const void *)req;
    Sluice__Admin__V1__ListVirtualKeysResponse *r =
        cp_arena_msg(ctx->arena, &sluice__admin__v1__list_virtual_keys_response__descriptor);
    cp_filter_t f = {.after_id = q->after_id,
                     .limit = cp_admin_page_size(q->limit),
                     .tenant_id = q->tenant_id[0] != '\0' ? q->tenant_id : NULL};
    int rc = cp_store_vkeys(ctx->db, &f, ctx->arena, &r->keys, &r->n_keys, err);
    for (size_t i = 0; rc == 0 && i < r->n_keys; i++)
        strip_vkey(r->keys[i]);
    *resp = &r->base;
    return rc;
}

int cp_admin_revoke_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__RevokeVirtualKeyRequest *q = (const void *)req;
    if (q->id[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "id is required");
    int64_t version;
    cp_vkey_pb *k = NULL;
    int revoked_now = 0;
    int rc = cp_db_begin(ctx->db, err);
    if (rc != 0)
        return rc;
    if ((rc = cp_store_lock_version(ctx->db, &version, err)) == 0 && (rc = load_vkey(ctx, q->id, &k, err)) == 0 &&
        !k->revoked) {
        int64_t newv;
        if ((rc = cp_store_bump(ctx->db, &newv, err)) == 0 &&
            (rc = cp_store_revoke_vkey(ctx->db, q->id, newv, err)) == 0 &&
            (rc = cp_store_record_change(ctx->db, newv, "virtual_key", q->id, "upsert",
                                         "{\"action\":\"revoke\",\"details\":[\"revoked\"]}", err)) == 0 &&
            (rc = cp_db_commit(ctx->db, err)) == 0)
            revoked_now = 1;
    }
    if (!revoked_now)
        cp_db_rollback(ctx->db);
    if (rc != 0)
        return rc;
    if (revoked_now) {
        cp_sync_kick(APP(ctx)->sync);
        sl_info("admin", "virtual key \"%s\" revoked", q->id);
        rc = load_vkey(ctx, q->id, &k, err);
    }
    if (rc == 0)
        *resp = &k->base;
    return rc;
}

int cp_admin_upsert_provider(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                             sl_err_t *err)
{
    const Sluice__Admin__V1__UpsertProviderRequest *q = (const void *)req;
    if (q->provider == NULL)
        return sl_err_set(err, SL_EINVAL, "provider is required");
    cp_doc_pb doc = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_provider_pb *p = q->provider;
    doc.providers = &p;
    doc.n_providers = 1;
    cp_apply_opts_t opts = {.actor = "admin"};
    int rc = apply_one(ctx, &doc, &opts, NULL, err);
    if (rc != 0)
        return rc;
    cp_filter_t f = {.ids_json = one_id_json(ctx->arena, p->name)};
    cp_provider_pb **v;
    size_t n;
    if ((rc = cp_store_providers(ctx->db, &f, NULL, ctx->arena, &v, &n, err)) != 0)
        return rc;
    if (n == 0)
        return sl_err_set(err, SL_EINTERNAL, "provider \"%s\" vanished", p->name);
    *resp = &v[0]->base;
    return 0;
}

int cp_admin_upsert_model(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__UpsertModelPriceRequest *q = (const void *)req;
    if (q->model == NULL)
        return sl_err_set(err, SL_EINVAL, "model is required");
    cp_doc_pb doc = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_model_pb *m = q->model;
    doc.models = &m;
    doc.n_models = 1;
    cp_apply_opts_t opts = {.actor = "admin"};
    int rc = apply_one(ctx, &doc, &opts, NULL, err);
    if (rc != 0)
        return rc;
    const char *id = cp_arena_printf(ctx->arena, "%s/%s", m->provider, m->model);
    cp_filter_t f = {.ids_json = one_id_json(ctx->arena, id)};
    cp_model_pb **v;
    size_t n;
    if ((rc = cp_store_models(ctx->db, &f, ctx->arena, &v, &n, err)) != 0)
        return rc;
    if (n == 0)
        return sl_err_set(err, SL_EINTERNAL, "model \"%s\" vanished", id);
    *resp = &v[0]->base;
    return 0;
}

int cp_admin_apply(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__ApplyRequest *q = (const void *)req;
    cp_doc_pb empty = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_apply_opts_t opts = {.dry_run = q->dry_run, .actor = "admin"};
    cp_apply_resp_pb *r = NULL;
    int rc = apply_one(ctx, q->document != NULL ? q->document : &empty, &opts, &r, err);
    if (rc == 0)
        *resp = &r->base;
    return rc;
}
