/*
 * cp_rpc.c - gRPC core server, completion-queue loop and worker pool.
 *
 * Tags are embedded in the call (one per kind of batch; each kind has at
 * most one batch in flight), and each pending batch holds a reference, so
 * a call is freed by whichever thread drops the last reference, never
 * while a tag can still arrive.
 */
#include "cp_rpc.h"
#include "cp_metrics.h"
#include "sl_grpc.h"
#include "sl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define PREPOSTED_CALLS 8
#define MAX_MESSAGE (64 * 1024 * 1024)

enum tag_kind { T_NEW, T_RECV, T_CLOSE, T_SEND, T_REPLY, T_SHUTDOWN };

struct tag {
    cp_call_t *call;
    enum tag_kind kind;
};

struct cp_call {
    cp_rpc_t *rpc;
    _Atomic int refs;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv_bb, *send_bb, *reply_bb;
    grpc_slice status_details;
    int has_status_details;
    int cancelled;
    int sent_initial_md;
    const cp_method_t *method;
    char path[128];              /* for logs; "" until the call arrives */
    ProtobufCMessage *req;       /* unary: the decoded request, owned */
    void *user;
    struct timespec started;
    struct tag t_new, t_recv, t_close, t_send, t_reply;
    cp_call_t *next;             /* worker queue */
};

struct cp_rpc {
    cp_rpc_config_t cfg;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    pthread_t cq_thread;
    _Atomic int live_calls;
    _Atomic int shutting_down;
    int shutdown_done;           /* cq thread only */
    struct tag t_shutdown;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    cp_call_t *head, *tail;      /* worker queue */
    int stop_workers;
    pthread_t *workers;
    int nworkers;
};

static void call_free(cp_call_t *c)
{
    cp_rpc_t *r = c->rpc;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->recv_bb != NULL)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb != NULL)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->reply_bb != NULL)
        grpc_byte_buffer_destroy(c->reply_bb);
    if (c->has_status_details)
        grpc_slice_unref(c->status_details);
    if (c->req != NULL)
        protobuf_c_message_free_unpacked(c->req, NULL);
    free(c);
    atomic_fetch_sub(&r->live_calls, 1);
}

void cp_call_ref(cp_call_t *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void cp_call_unref(cp_call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

void cp_call_set_user(cp_call_t *c, void *user)
{
    c->user = user;
}

void *cp_call_user(const cp_call_t *c)
{
    return c->user;
}

char *cp_call_peer(const cp_call_t *c)
{
    return grpc_call_get_peer(c->call);
}

/* Posts one request_call; the new call object holds one reference for it. */
static void post_request(cp_rpc_t *r)
{
    if (atomic_load(&r->shutting_down))
        return;
    cp_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->rpc = r;
    atomic_init(&c->refs, 1);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->t_new = (struct tag){c, T_NEW};
    c->t_recv = (struct tag){c, T_RECV};
    c->t_close = (struct tag){c, T_CLOSE};
    c->t_send = (struct tag){c, T_SEND};
    c->t_reply = (struct tag){c, T_REPLY};
    atomic_fetch_add(&r->live_calls, 1);
    if (grpc_server_request_call(r->server, &c->call, &c->details, &c->md, r->cq, r->cq, &c->t_new) != GRPC_CALL_OK) {
        sl_error("rpc", "could not post request_call");
        c->call = NULL;
        call_free(c);
    }
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Ends a call with status code and, when bb is set, one message first. The
 * message is lower-case text for the client. Takes a reference for the batch. */
static void reply(cp_call_t *c, grpc_status_code code, const char *msg, grpc_byte_buffer *bb)
{
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->sent_initial_md) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->sent_initial_md = 1;
    }
    if (bb != NULL) {
        c->reply_bb = bb;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    c->status_details = grpc_slice_from_copied_string(msg != NULL ? msg : "");
    c->has_status_details = 1;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
    n++;

    const cp_method_t *m = c->method;
    int admin = m != NULL ? m->auth == CP_AUTH_ADMIN : strncmp(c->path, "/sluice.admin.v1.Admin/", 23) == 0;
    if (admin)
        cp_metrics_admin_request(m != NULL ? m->name : "unknown", code);
    if (code != GRPC_STATUS_OK)
        sl_info("rpc", "%s -> %s: %s (%ld ms)", c->path, cp_grpc_code_name(code), msg, elapsed_ms(&c->started));
    else if (admin)
        sl_info("rpc", "%s -> OK (%ld ms)", c->path, elapsed_ms(&c->started));

    cp_call_ref(c);
    if (grpc_call_start_batch(c->call, ops, n, &c->t_reply, NULL) != GRPC_CALL_OK) {
        sl_error("rpc", "could not start reply batch on %s", c->path);
        cp_call_unref(c);
    }
}

static void reply_err(cp_call_t *c, int code, const sl_err_t *err)
{
    reply(c, sl_err_to_grpc(code), err->msg[0] != '\0' ? err->msg : sl_strerror(code), NULL);
}

int cp_call_send(cp_call_t *c, grpc_byte_buffer *bb)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    c->send_bb = bb;
    cp_call_ref(c);
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_send, NULL) != GRPC_CALL_OK) {
        c->send_bb = NULL;
        grpc_byte_buffer_destroy(bb);
        cp_call_unref(c);
        return SL_EIO;
    }
    return 0;
}

static const cp_method_t *find_method(const cp_rpc_t *r, const char *path)
{
    for (size_t i = 0; i < r->cfg.nmethods; i++)
        if (strcmp(r->cfg.methods[i].path, path) == 0)
            return &r->cfg.methods[i];
    return NULL;
}

static void on_new_call(cp_rpc_t *r, cp_call_t *c)
{
    post_request(r);
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    size_t plen = GRPC_SLICE_LENGTH(c->details.method);
    if (plen >= sizeof(c->path))
        plen = sizeof(c->path) - 1;
    memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), plen);
    c->path[plen] = '\0';

    /* learn early when the client goes away */
    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->cancelled;
    cp_call_ref(c);
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
        cp_call_unref(c);
        return;
    }

    c->method = find_method(r, c->path);
    sl_err_t err = {0};
    if (c->method == NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown method \"%s\"", c->path);
        reply(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
        return;
    }
    if (cp_auth_check(r->cfg.auth, c->method->auth, &c->md, c->method->name, &err) != 0) {
        reply_err(c, SL_EPERM, &err);
        return;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &c->recv_bb;
    c->sent_initial_md = 1;
    cp_call_ref(c);
    if (grpc_call_start_batch(c->call, ops, 2, &c->t_recv, NULL) != GRPC_CALL_OK)
        cp_call_unref(c);
}

static void enqueue(cp_rpc_t *r, cp_call_t *c)
{
    cp_call_ref(c);
    pthread_mutex_lock(&r->mu);
    c->next = NULL;
    if (r->tail != NULL)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_recv(cp_rpc_t *r, cp_call_t *c, int ok)
{
    if (!ok)
        return; /* the call is over; the close tag cleans up */
    sl_err_t err = {0};
    ProtobufCMessage *req = NULL;
    if (c->recv_bb == NULL) {
        reply(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing", NULL);
        return;
    }
    int rc = sl_bb_to_pb(c->recv_bb, c->method->request, &req);
    grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    if (rc != 0) {
        reply(c, GRPC_STATUS_INVALID_ARGUMENT, "could not decode the request message", NULL);
        return;
    }
    if (c->method->stream != NULL) {
        rc = c->method->stream(r->cfg.app, c, req, &err);
        protobuf_c_message_free_unpacked(req, NULL);
        if (rc != 0)
            reply_err(c, rc, &err);
        return;
    }
    c->req = req;
    enqueue(r, c);
}

static void on_event(cp_rpc_t *r, grpc_event ev)
{
    struct tag *t = ev.tag;
    if (t->kind == T_SHUTDOWN) {
        r->shutdown_done = 1;
        return;
    }
    cp_call_t *c = t->call;
    switch (t->kind) {
    case T_NEW:
        if (ev.success)
            on_new_call(r, c);
        /* else: the server is shutting down and the slot is simply freed */
        break;
    case T_RECV:
        on_recv(r, c, ev.success);
        break;
    case T_CLOSE:
        if (c->method != NULL && c->method->stream != NULL && c->user != NULL && r->cfg.stream_closed != NULL)
            r->cfg.stream_closed(r->cfg.app, c);
        break;
    case T_SEND:
        if (c->send_bb != NULL) {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
        if (r->cfg.stream_sent != NULL)
            r->cfg.stream_sent(r->cfg.app, c, ev.success);
        break;
    case T_REPLY:
        break;
    default:
        break;
    }
    cp_call_unref(c);
}

static void *cq_main(void *arg)
{
    cp_rpc_t *r = arg;
    for (;;) {
        if (r->shutdown_done && atomic_load(&r->live_calls) == 0)
            break;
        gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(200, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(r->cq, deadline, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(r, ev);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_shutdown(r->cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(r, ev);
    }
    return NULL;
}

/* One unary call on a worker. */
static void run_unary(cp_rpc_t *r, cp_db_t *db, cp_call_t *c, int stopping)
{
    sl_err_t err = {0};
    if (stopping) {
        reply(c, GRPC_STATUS_UNAVAILABLE, "the control plane is shutting down", NULL);
        return;
    }
    cp_unary_ctx_t ctx = {r->cfg.app, db, cp_arena_new()};
    ProtobufCMessage *resp = NULL;
    int rc = c->method->unary(&ctx, c->req, &resp, &err);
    if (rc == 0 && resp != NULL)
        reply(c, GRPC_STATUS_OK, "", sl_pb_to_bb(resp));
    else
        reply_err(c, rc != 0 ? rc : SL_EINTERNAL, &err);
    cp_arena_free(ctx.arena);
    protobuf_c_message_free_unpacked(c->req, NULL);
    c->req = NULL;
}

struct worker_arg {
    cp_rpc_t *rpc;
    int index;
};

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    cp_rpc_t *r = wa->rpc;
    free(wa);
    cp_db_t db;
    cp_db_init(&db, r->cfg.database_url);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->head == NULL && !r->stop_workers)
            pthread_cond_wait(&r->cv, &r->mu);
        cp_call_t *c = r->head;
        if (c != NULL) {
            r->head = c->next;
            if (r->head == NULL)
                r->tail = NULL;
        }
        int stopping = r->stop_workers;
        pthread_mutex_unlock(&r->mu);
        if (c == NULL)
            break;
        run_unary(r, &db, c, stopping);
        cp_call_unref(c);
    }
    cp_db_close(&db);
    return NULL;
}

cp_rpc_t *cp_rpc_start(const cp_rpc_config_t *cfg, sl_err_t *err)
{
    cp_rpc_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        sl_err_set(err, SL_ENOMEM, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    r->t_shutdown = (struct tag){NULL, T_SHUTDOWN};
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);

    grpc_arg args[7];
    int nargs = 0;
#define IARG(k, v) args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)(k), .value.integer = (v)}
    IARG(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);           /* ping idle connections every 10 s */
    IARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);         /* and drop them when no answer in 5 s */
    IARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    IARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000); /* allow clients' keepalive pings */
    IARG(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    IARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, MAX_MESSAGE);
    IARG(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1);
#undef IARG
    grpc_channel_args ca = {(size_t)nargs, args};
    r->server = grpc_server_create(&ca, NULL);
    r->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(r->server, r->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    r->port = grpc_server_add_http2_port(r->server, cfg->listen, creds);
    grpc_server_credentials_release(creds);
    if (r->port <= 0) {
        sl_err_set(err, SL_EIO, "could not listen for gRPC on \"%s\"", cfg->listen);
        grpc_server_destroy(r->server);
        grpc_completion_queue_shutdown(r->cq);
        while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(r->cq);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        return NULL;
    }
    grpc_server_start(r->server);
    for (int i = 0; i < PREPOSTED_CALLS; i++)
        post_request(r);

    r->workers = calloc((size_t)cfg->workers, sizeof(pthread_t));
    if (r->workers == NULL)
        abort();
    for (int i = 0; i < cfg->workers; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (wa == NULL)
            abort();
        *wa = (struct worker_arg){r, i};
        if (pthread_create(&r->workers[i], NULL, worker_main, wa) != 0)
            abort();
        r->nworkers++;
    }
    if (pthread_create(&r->cq_thread, NULL, cq_main, r) != 0)
        abort();
    return r;
}

int cp_rpc_port(const cp_rpc_t *r)
{
    return r->port;
}

void cp_rpc_begin_shutdown(cp_rpc_t *r)
{
    if (atomic_exchange(&r->shutting_down, 1))
        return;
    grpc_server_shutdown_and_notify(r->server, r->cq, &r->t_shutdown);
    grpc_server_cancel_all_calls(r->server);
}

void cp_rpc_finish(cp_rpc_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->stop_workers = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->nworkers; i++)
        pthread_join(r->workers[i], NULL);
    pthread_join(r->cq_thread, NULL);
    grpc_server_destroy(r->server);
    grpc_completion_queue_destroy(r->cq);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->workers);
    free(r);
}
