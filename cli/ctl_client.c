/* ctl_client.c - blocking Admin calls over gRPC, with user-facing errors. */
#include "ctl_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_grpc.h"

void ctl_client_open(ctl_client_t *c, const char *server, const char *token, int timeout_ms)
{
    grpc_init();
    c->server = strdup(server);
    c->token = strdup(token);
    if (c->server == NULL || c->token == NULL)
        abort();
    c->timeout_ms = timeout_ms;
    c->ch = sl_grpc_channel(server);
}

void ctl_client_close(ctl_client_t *c)
{
    if (c->ch == NULL)
        return;
    grpc_channel_destroy(c->ch);
    explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    free(c->server);
    memset(c, 0, sizeof(*c));
    grpc_shutdown();
}

const char *ctl_status_name(int code)
{
    static const char *const names[] = {
        "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    };
    if (code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN";
}

void ctl_call_error(sl_err_t *err, int status, const char *server, const char *detail, int timeout_ms)
{
    const char *name = ctl_status_name(status);
    if (detail == NULL || detail[0] == '\0')
        detail = "no details";
    switch (status) {
    case GRPC_STATUS_UNAVAILABLE:
        sl_err_set(err, SL_EUNAVAIL, "%s: could not reach the control plane at \"%s\" (is it running?): %s", name,
                   server, detail);
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        sl_err_set(err, SL_EUNAVAIL, "%s: no answer from the control plane at \"%s\" within %d s", name, server,
                   timeout_ms / 1000);
        break;
    case GRPC_STATUS_UNAUTHENTICATED:
        sl_err_set(err, SL_EPERM,
                   "%s: %s (check the admin token: --token-file, SLUICE_ADMIN_TOKEN_FILE or "
                   "SLUICE_ADMIN_TOKEN)",
                   name, detail);
        break;
    case GRPC_STATUS_UNIMPLEMENTED:
        sl_err_set(err, SL_EINTERNAL, "%s: %s (is \"%s\" a Sluice control plane of this version?)", name, detail,
                   server);
        break;
    default: sl_err_set(err, SL_EINVAL, "%s: %s", name, detail); break;
    }
}

grpc_status_code ctl_client_call(ctl_client_t *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, sl_err_t *err)
{
    char path[128];
    snprintf(path, sizeof(path), "/sluice.admin.v1.Admin/%s", method);
    sl_err_t e = {0};
    grpc_status_code st = sl_grpc_unary(c->ch, path, c->token, req, resp_desc, resp, c->timeout_ms, &e);
    if (st != GRPC_STATUS_OK)
        ctl_call_error(err, st, c->server, e.msg, c->timeout_ms);
    return st;
}
