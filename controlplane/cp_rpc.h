/*
 * cp_rpc.h - the gRPC server: one completion-queue thread and a pool of
 * worker threads.
 *
 * The completion-queue thread accepts calls (several request_call always
 * posted), checks auth, reads the request and routes it; it never blocks on
 * the database. Unary methods are handed to the workers, each of which owns
 * one database connection, runs the handler and starts the reply batch
 * itself. Streaming methods are opened on the completion-queue thread by the
 * method's open function, which registers the call with whoever will feed it
 * (cp_sync); sends on a stream are started from any thread with
 * cp_call_send, at most one in flight per call.
 *
 * Call lifetime: a call is reference counted; every pending batch, a queued
 * job and each holder (cp_call_ref) keep it alive. RECV_CLOSE_ON_SERVER is
 * posted as soon as a call arrives, so a client that leaves is noticed at
 * once (the closed hook).
 */
#ifndef CP_RPC_H
#define CP_RPC_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "cp_arena.h"
#include "cp_auth.h"
#include "cp_db.h"
#include "sl_err.h"

typedef struct cp_rpc cp_rpc_t;
typedef struct cp_call cp_call_t;

/* What a unary handler gets: its worker's connection and an arena for the
 * response, freed after the response is sent. */
typedef struct cp_unary_ctx {
    void *app;
    cp_db_t *db;
    cp_arena_t *arena;
} cp_unary_ctx_t;

/* Runs on a worker. Returns 0 with *resp set (arena memory) or an SL_E*
 * code with err set; the code becomes the gRPC status. */
typedef int (*cp_unary_fn)(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err);
/* Runs on the completion-queue thread; must not block. Returns 0 when it
 * took the stream (and a reference with cp_call_ref), else an SL_E* code
 * that ends the call with err's message. req is freed after it returns. */
typedef int (*cp_stream_fn)(void *app, cp_call_t *call, const ProtobufCMessage *req, sl_err_t *err);

typedef struct cp_method {
    const char *path;  /* "/sluice.admin.v1.Admin/Apply" */
    const char *name;  /* "Apply": metrics and logs */
    cp_auth_kind_t auth;
    const ProtobufCMessageDescriptor *request;
    cp_unary_fn unary; /* exactly one of unary, stream */
    cp_stream_fn stream;
} cp_method_t;

typedef struct cp_rpc_config {
    const char *listen;            /* host:port */
    const cp_method_t *methods;
    size_t nmethods;
    const cp_auth_t *auth;
    void *app;                     /* passed to handlers and hooks */
    const char *database_url;      /* workers' connections */
    int workers;
    /* Stream hooks, on the completion-queue thread: a send finished (ok=0:
     * the call is over), and the call ended (client left, cancelled or
     * server shutdown). After closed, sends fail; release the stream's
     * reference there. */
    void (*stream_sent)(void *app, cp_call_t *call, int ok);
    void (*stream_closed)(void *app, cp_call_t *call);
} cp_rpc_config_t;

/* Binds, starts the server and its threads. NULL with err on failure. */
cp_rpc_t *cp_rpc_start(const cp_rpc_config_t *cfg, sl_err_t *err);
int cp_rpc_port(const cp_rpc_t *r);
/* Stops accepting calls and cancels every call in progress (streams see
 * their closed hook). Returns at once. */
void cp_rpc_begin_shutdown(cp_rpc_t *r);
/* Waits for workers and the completion-queue thread, destroys the server
 * and frees r. Call after cp_rpc_begin_shutdown, once nothing will start
 * new sends. */
void cp_rpc_finish(cp_rpc_t *r);

/* Stream helpers (any thread). */
void cp_call_ref(cp_call_t *c);
void cp_call_unref(cp_call_t *c);
void cp_call_set_user(cp_call_t *c, void *user);
void *cp_call_user(const cp_call_t *c);
/* Starts SEND_MESSAGE with bb (ownership passes to the call). The caller
 * guarantees no other send is in flight on c. Returns 0, or SL_EIO when the
 * batch could not start (bb is destroyed and no sent hook will run). */
int cp_call_send(cp_call_t *c, grpc_byte_buffer *bb);
/* The peer address, for logs ("ipv4:127.0.0.1:5555"); caller frees with gpr_free. */
char *cp_call_peer(const cp_call_t *c);

#endif
