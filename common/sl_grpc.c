/* sl_grpc.c - protobuf-c <-> gRPC byte buffers, bearer checks, unary client. */
#include "sl_grpc.h"
#include "sl_crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

grpc_byte_buffer *sl_pb_to_bb(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

int sl_bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb))
        return SL_EINVAL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *out = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return *out != NULL ? 0 : SL_EINVAL;
}

int sl_grpc_bearer_ok(const grpc_metadata_array *md, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (!grpc_slice_str_cmp(m->key, "authorization")) {
            const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
            size_t vlen = GRPC_SLICE_LENGTH(m->value);
            if (vlen == tlen + 7 && strncmp(v, "Bearer ", 7) == 0 && sl_ct_equal(v + 7, token, tlen))
                return 1;
            return 0;
        }
    }
    return 0;
}

grpc_status_code sl_err_to_grpc(int code)
{
    switch (code) {
    case SL_OK: return GRPC_STATUS_OK;
    case SL_EINVAL: return GRPC_STATUS_INVALID_ARGUMENT;
    case SL_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
    case SL_EEXISTS: return GRPC_STATUS_ALREADY_EXISTS;
    case SL_EPERM: return GRPC_STATUS_UNAUTHENTICATED;
    case SL_EUNAVAIL: case SL_EIO: return GRPC_STATUS_UNAVAILABLE;
    case SL_ECONFLICT: return GRPC_STATUS_ABORTED;
    case SL_ETOOBIG: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    default: return GRPC_STATUS_INTERNAL;
    }
}

grpc_status_code sl_grpc_unary(grpc_channel *ch, const char *method, const char *bearer, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int timeout_ms,
                               sl_err_t *err)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL, deadline, NULL);
    grpc_slice_unref(mslice);

    char authval[600];
    grpc_metadata md[1];
    size_t nmd = 0;
    if (bearer != NULL) {
        snprintf(authval, sizeof(authval), "Bearer %s", bearer);
        md[0].key = grpc_slice_from_static_string("authorization");
        md[0].value = grpc_slice_from_copied_string(authval);
        nmd = 1;
    }
    grpc_byte_buffer *sendbb = sl_pb_to_bb(req), *recvbb = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = sendbb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recvbb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    int tag;
    if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
        grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } else {
        status = GRPC_STATUS_INTERNAL;
    }

    *resp = NULL;
    if (status == GRPC_STATUS_OK) {
        if (sl_bb_to_pb(recvbb, resp_desc, resp) != 0) {
            status = GRPC_STATUS_INTERNAL;
            sl_err_set(err, SL_EINTERNAL, "could not decode response of %s", method);
        }
    } else {
        char *d = grpc_slice_to_c_string(details);
        sl_err_set(err, SL_EUNAVAIL, "%s", d[0] != '\0' ? d : (error_string != NULL ? error_string : "call failed"));
        gpr_free(d);
    }

    if (recvbb != NULL)
        grpc_byte_buffer_destroy(recvbb);
    grpc_byte_buffer_destroy(sendbb);
    if (nmd)
        grpc_slice_unref(md[0].value);
    grpc_slice_unref(details);
    if (error_string != NULL)
        gpr_free((void *)error_string);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return status;
}

grpc_channel *sl_grpc_channel(const char *target)
{
    grpc_arg args[4];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_KEEPALIVE_TIME_MS;
    args[0].value.integer = 10000;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[1].value.integer = 5000;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[2].value.integer = 512 * 1024 * 1024;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[3].value.integer = 2000;
    grpc_channel_args ca = {4, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}
