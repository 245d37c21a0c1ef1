/*
 * sl_grpc.h - glue between gRPC core, protobuf-c and Sluice errors.
 *
 * Shared by the control plane (server side), the data plane (Sync client)
 * and sluicectl (Admin client).
 */
#ifndef SL_GRPC_H
#define SL_GRPC_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "sl_err.h"

/* Packs m into a new byte buffer; caller owns it (grpc_byte_buffer_destroy). */
grpc_byte_buffer *sl_pb_to_bb(const ProtobufCMessage *m);

/* Unpacks a received buffer (NULL allowed: returns SL_EINVAL). On success
 * *out is owned by the caller: protobuf_c_message_free_unpacked(*out, NULL).
 * Does not destroy bb. */
int sl_bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);

/* Finds "authorization: Bearer <token>" in md and compares in constant time.
 * Returns 1 when it matches. */
int sl_grpc_bearer_ok(const grpc_metadata_array *md, const char *token);

/* Maps an SL_E* code to the gRPC status an admin client should see. */
grpc_status_code sl_err_to_grpc(int code);

/* One unary call on a pluck queue of its own; blocks up to timeout_ms.
 * bearer may be NULL. Returns the gRPC status; on GRPC_STATUS_OK *resp is
 * owned by the caller, else err holds the server's message. */
grpc_status_code sl_grpc_unary(grpc_channel *ch, const char *method, const char *bearer, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int timeout_ms,
                               sl_err_t *err);

/* Creates an insecure channel to "host:port" with keepalive suited to long
 * config streams. Caller owns it (grpc_channel_destroy). */
grpc_channel *sl_grpc_channel(const char *target);

#endif
