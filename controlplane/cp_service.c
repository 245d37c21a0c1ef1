/*
 * cp_service.c - the method table and the Sync service handlers.
 */
#include "cp_report.h"
#include "cp_service.h"

#define ADMIN(m, fn, req)                                                                                             \
    {"/sluice.admin.v1.Admin/" m, m, CP_AUTH_ADMIN, &sluice__admin__v1__##req##__descriptor, fn, NULL}

static int sync_watch(void *app, cp_call_t *call, const ProtobufCMessage *req, sl_err_t *err)
{
    return cp_sync_watch(((cp_app_t *)app)->sync, call, (const cp_watch_req_pb *)req, err);
}

static int sync_report(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    cp_ack_pb *ack = NULL;
    int rc = cp_report_apply(ctx->db, (const cp_report_pb *)req, &((cp_app_t *)ctx->app)->lease, ctx->arena, &ack, err);
    if (rc == 0)
        *resp = &ack->base;
    return rc;
}

const cp_method_t cp_methods[] = {
    ADMIN("CreateTenant", cp_admin_create_tenant, create_tenant_request),
    ADMIN("GetTenant", cp_admin_get_tenant, get_tenant_request),
    ADMIN("ListTenants", cp_admin_list_tenants, list_tenants_request),
    ADMIN("CreateVirtualKey", cp_admin_create_vkey, create_virtual_key_request),
    ADMIN("GetVirtualKey", cp_admin_get_vkey, get_virtual_key_request),
    ADMIN("ListVirtualKeys", cp_admin_list_vkeys, list_virtual_keys_request),
    ADMIN("RevokeVirtualKey", cp_admin_revoke_vkey, revoke_virtual_key_request),
    ADMIN("UpsertProvider", cp_admin_upsert_provider, upsert_provider_request),
    ADMIN("UpsertModelPrice", cp_admin_upsert_model, upsert_model_price_request),
    ADMIN("Apply", cp_admin_apply, apply_request),
    ADMIN("GetSpend", cp_admin_get_spend, get_spend_request),
    ADMIN("GetQuotaStatus", cp_admin_get_quota_status, get_quota_status_request),
    ADMIN("ListAlerts", cp_admin_list_alerts, list_alerts_request),
    ADMIN("AlertHistory", cp_admin_alert_history, alert_history_request),
    {"/sluice.sync.v1.Sync/Watch", "Watch", CP_AUTH_NODE, &sluice__sync__v1__watch_request__descriptor, NULL,
     sync_watch},
    {"/sluice.sync.v1.Sync/Report", "Report", CP_AUTH_NODE, &sluice__sync__v1__usage_report__descriptor,
     sync_report, NULL},
};
const size_t cp_methods_count = sizeof(cp_methods) / sizeof(cp_methods[0]);
