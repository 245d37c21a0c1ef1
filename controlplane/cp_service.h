/*
 * cp_service.h - the gRPC surface: the method table of the Admin and Sync
 * services, and the state their handlers share.
 *
 * Handlers map requests onto cp_apply / cp_store / cp_report / cp_sync and
 * return SL_E* codes; cp_rpc turns those into gRPC status at the edge.
 */
#ifndef CP_SERVICE_H
#define CP_SERVICE_H

#include <stddef.h>

#include "cp_auth.h"
#include "cp_lease.h"
#include "cp_rpc.h"
#include "cp_store.h"
#include "cp_sync.h"

/* Shared by every handler; immutable after start except through sync. */
typedef struct cp_app {
    cp_keys_t keys;
    cp_auth_t auth;
    cp_sync_t *sync;
    cp_lease_cfg_t lease;
} cp_app_t;

extern const cp_method_t cp_methods[];
extern const size_t cp_methods_count;

/* Admin handlers (cp_admin.c), on worker threads. */
int cp_admin_create_tenant(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_get_tenant(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_list_tenants(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_create_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_get_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_list_vkeys(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_revoke_vkey(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_upsert_provider(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                             sl_err_t *err);
int cp_admin_upsert_model(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_apply(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);

/* Spend and quota status (cp_spend.c), read-only. */
int cp_admin_get_spend(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_get_quota_status(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                              sl_err_t *err);

/* Alert rules, state and history (cp_alert_admin.c), read-only. */
int cp_admin_list_alerts(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
int cp_admin_alert_history(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                           sl_err_t *err);

/* Page size of List methods when the request gives none, and the maximum. */
#define CP_LIST_DEFAULT 100
#define CP_LIST_MAX 1000
int cp_admin_page_size(int32_t requested);

#endif
