/*
 * ctl_client.h - sluicectl's calls to the control plane's Admin service.
 *
 * One channel per process; each call is a blocking unary call with the admin
 * token as "authorization: Bearer" metadata and a deadline. Failures come
 * back as text meant for the user ("UNAVAILABLE: could not reach ...").
 */
#ifndef CTL_CLIENT_H
#define CTL_CLIENT_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "sl_err.h"

typedef struct ctl_client {
    grpc_channel *ch;
    char *server; /* "host:port" as given */
    char *token;  /* admin token; wiped on close */
    int timeout_ms;
} ctl_client_t;

/* Initializes gRPC and creates the channel; connecting happens on the first
 * call. server and token are copied. Close with ctl_client_close(). */
void ctl_client_open(ctl_client_t *c, const char *server, const char *token, int timeout_ms);

/* Calls /sluice.admin.v1.Admin/<method>. Returns GRPC_STATUS_OK with *resp
 * owned by the caller (protobuf_c_message_free_unpacked), or another status
 * with err->msg set to "STATUS_NAME: explanation". */
grpc_status_code ctl_client_call(ctl_client_t *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, sl_err_t *err);

/* Destroys the channel and shuts gRPC down. Safe on a zeroed client. */
void ctl_client_close(ctl_client_t *c);

/* The canonical upper-case name of a gRPC status code ("NOT_FOUND"). */
const char *ctl_status_name(int code);

/* Describes a failed call for the user: "STATUS_NAME: detail", with a hint
 * for the statuses an operator can act on (control plane unreachable, no
 * answer before the deadline, wrong token). */
void ctl_call_error(sl_err_t *err, int status, const char *server, const char *detail, int timeout_ms);

#endif
