/*
 * dp_sync.c - the sync thread: Watch stream, usage reports, snapshot cache.
 *
 * One thread owns the gRPC channel to the control plane and everything in
 * the "sync thread only" sections of dp_snapshot.h and dp_usage.h. It runs a
 * loop on one completion queue (grpc_completion_queue_next with a short
 * deadline, so the loop also ticks when the stream is quiet):
 *
 *   - keeps one Watch call open (WatchRequest{node_id, boot_id,
 *     have_version = current version}, metadata "authorization: Bearer
 *     <node token>"); each message goes to dp_snapshot_apply. A delta that
 *     does not apply (SL_EINVAL) cancels the call and watches again at once
 *     from the current version, which makes the control plane send a full
 *     snapshot. A stream that ends or fails is reopened after a backoff of
 *     100 ms doubling to 2 s (+-20% jitter), reset by every message received;
 *   - between events: collects and sends usage reports (dp_usage; the send
 *     is a blocking unary Report call with a 2 s deadline), reclaims retired
 *     snapshots, and writes the snapshot cache at most once a second after a
 *     change (immediately after the first one).
 *
 * Watch call lifetime: three batches are started per call (start with
 * initial metadata, receive status, receive message); the call is released
 * only when all batches have completed (pending == 0), and a new call starts
 * only after that, so tags never mix between calls.
 *
 * dp_sync_start/stop and the accessors run on the main thread; connected and
 * last_update are atomics. The node serves from the snapshot cache loaded by
 * dp_sync_start until the control plane answers.
 */
#include "dp_sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "dp_cache.h"
#include "dp_lease.h"
#include "dp_gauth.h"
#include "dp_snapshot.h"
#include "dp_usage.h"
#include "sl_crypto.h"
#include "sl_grpc.h"
#include "sl_log.h"

#define MOD "sync"
#define WATCH_METHOD "/sluice.sync.v1.Sync/Watch"
#define REPORT_METHOD "/sluice.sync.v1.Sync/Report"
#define TICK_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define REPORT_TIMEOUT_MS 2000
#define CACHE_DEBOUNCE_MS 1000
#define SENDS_PER_TICK 16

enum { TAG_START = 1, TAG_STATUS, TAG_MSG, TAG_KICK };

/* Waking the sync thread from a worker (quota leases that need a report
 * now): an empty batch on a call that is never started posts its tag to
 * the completion queue at once. One kick in flight at a time. */
static pthread_mutex_t kick_mu = PTHREAD_MUTEX_INITIALIZER;
static grpc_call *kick_call; /* under kick_mu */
static atomic_int kick_pending;

typedef struct watch {
    grpc_call *call;
    int pending;   /* batches started and not completed */
    int got_start; /* initial metadata received: the stream is up */
    int got_message;
    int restart_now; /* watch again without backoff */
    int ended;       /* status received */
    grpc_metadata auth;
    grpc_metadata_array initial_md, trailing_md;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
} watch_t;

static struct {
    int started;
    char *controlplane, *token, *node_id, *boot_id, *cache_path, *spool_dir;
    char *bearer; /* "Bearer <token>" */
    grpc_channel *ch;
    grpc_completion_queue *cq;
    pthread_t thread;
    atomic_int stop;
    atomic_int drain_ms;
    atomic_int connected;
    atomic_llong last_update_ms;

    /* sync thread only */
    watch_t w;
    int active;
    int backoff_ms;
    int64_t reconnect_at;
    int failures;    /* consecutive watch attempts that never connected */
    int logged_down; /* a lost or failed watch was logged */
    int cache_dirty, cache_written_once;
    int64_t cache_written_at;
    int64_t report_deadline; /* while draining: sends must end by then */
    uint64_t rng;
} G;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int jitter(int ms)
{
    G.rng ^= G.rng << 13;
    G.rng ^= G.rng >> 7;
    G.rng ^= G.rng << 17;
    int span = ms / 5;
    return span > 0 ? ms - span + (int)(G.rng % (uint64_t)(2 * span + 1)) : ms;
}

/* ---- usage reports ------------------------------------------------------ */

static int send_report(const Sluice__Sync__V1__UsageReport *r, void *ctx)
{
    int timeout = REPORT_TIMEOUT_MS;
    if (G.report_deadline != 0) {
        int64_t left = G.report_deadline - mono_ms();
        if (left < timeout)
            timeout = left < 50 ? 50 : (int)left;
    }
    ProtobufCMessage *resp = NULL;
    sl_err_t err = {0};
    grpc_status_code st = sl_grpc_unary(G.ch, REPORT_METHOD, G.token, &r->base,
                                        &sluice__sync__v1__report_ack__descriptor, &resp, timeout, &err);
    if (st != GRPC_STATUS_OK) {
        sl_debug(MOD, "report %lld failed: status %d: %s", (long long)r->seq, (int)st, err.msg);
        if (st == GRPC_STATUS_UNAUTHENTICATED || st == GRPC_STATUS_PERMISSION_DENIED) {
            sl_error(MOD, "the control plane rejected the node token for usage reports");
            return SL_EPERM;
        }
        return st == GRPC_STATUS_INVALID_ARGUMENT ? SL_EINVAL : SL_EUNAVAIL;
    }
    const Sluice__Sync__V1__ReportAck *ack = (const Sluice__Sync__V1__ReportAck *)resp;
    if (ack->seq != r->seq)
        sl_warn(MOD, "report %lld acknowledged as seq %lld", (long long)r->seq, (long long)ack->seq);
    else if (strcmp(r->boot_id, G.boot_id) == 0) /* grants of a spooled earlier process are not ours */
        dp_lease_apply_ack(ack, unix_ms(), mono_ms());
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* ---- snapshot cache ----------------------------------------------------- */

static void write_cache(int64_t now, int force)
{
    if (G.cache_path == NULL || !G.cache_dirty)
        return;
    if (G.cache_written_once && !force && now - G.cache_written_at < CACHE_DEBOUNCE_MS)
        return;
    uint8_t *data = NULL;
    size_t len = 0;
    sl_err_t err = {0};
    G.cache_written_at = now;
    int rc = dp_snapshot_pack_full(&data, &len);
    if (rc == 0)
        rc = dp_cache_write(G.cache_path, G.token, data, len, &err);
    else
        sl_err_set(&err, rc, "could not serialize the snapshot");
    if (data != NULL) {
        explicit_bzero(data, len); /* holds provider credentials */
        free(data);
    }
    if (rc != 0) {
        sl_warn(MOD, "could not write the snapshot cache: %s", err.msg);
        return; /* stays dirty: retried after the debounce interval */
    }
    G.cache_dirty = 0;
    G.cache_written_once = 1;
    sl_debug(MOD, "snapshot cache written (version %lld)", (long long)dp_snapshot_current_version());
}

static void load_cache(void)
{
    Sluice__Sync__V1__Snapshot *m = NULL;
    sl_err_t err = {0};
    int rc = dp_cache_read(G.cache_path, G.token, &m, &err);
    if (rc == SL_ENOTFOUND) {
        sl_info(MOD, "no snapshot cache yet at \"%s\"", G.cache_path);
        return;
    }
    if (rc != 0) {
        sl_warn(MOD, "ignoring the snapshot cache: %s", err.msg);
        return;
    }
    int64_t version = m->version;
    if (dp_snapshot_apply(m) == 0) {
        atomic_store(&G.last_update_ms, unix_ms());
        G.cache_written_once = 1; /* the file already holds this version */
        G.cache_written_at = mono_ms();
        sl_info(MOD, "serving snapshot version %lld from the cache until the control plane answers",
                (long long)version);
    }
}

/* ---- the Watch call ----------------------------------------------------- */

static int post_recv(void)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &G.w.recv_bb;
    if (grpc_call_start_batch(G.w.call, &op, 1, (void *)(intptr_t)TAG_MSG, NULL) != GRPC_CALL_OK)
        return -1;
    G.w.pending++;
    return 0;
}

static void start_watch(void)
{
    watch_t *w = &G.w;
    memset(w, 0, sizeof(*w));
    grpc_metadata_array_init(&w->initial_md);
    grpc_metadata_array_init(&w->trailing_md);
    w->details = grpc_empty_slice();
    grpc_slice method = grpc_slice_from_static_string(WATCH_METHOD);
    w->call = grpc_channel_create_call(G.ch, NULL, GRPC_PROPAGATE_DEFAULTS, G.cq, method, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_slice_unref(method);
    G.active = 1;

    Sluice__Sync__V1__WatchRequest req = SLUICE__SYNC__V1__WATCH_REQUEST__INIT;
    req.node_id = G.node_id;
    req.boot_id = G.boot_id;
    req.have_version = dp_snapshot_current_version();
    w->send_bb = sl_pb_to_bb(&req.base);
    w->auth.key = grpc_slice_from_static_string("authorization");
    w->auth.value = grpc_slice_from_copied_string(G.bearer);

    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &w->auth;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = w->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &w->initial_md;
    if (grpc_call_start_batch(w->call, ops, 4, (void *)(intptr_t)TAG_START, NULL) == GRPC_CALL_OK)
        w->pending++;

    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &w->trailing_md;
    st.data.recv_status_on_client.status = &w->status;
    st.data.recv_status_on_client.status_details = &w->details;
    st.data.recv_status_on_client.error_string = &w->error_string;
    if (grpc_call_start_batch(w->call, &st, 1, (void *)(intptr_t)TAG_STATUS, NULL) == GRPC_CALL_OK)
        w->pending++;
    post_recv();
    if (w->pending < 3)
        grpc_call_cancel(w->call, NULL); /* could not start: end it, reconnect later */
    sl_debug(MOD, "watching %s from version %lld", G.controlplane, (long long)req.have_version);
}

/* All batches completed: release the call and schedule the next one. */
static void finish_watch(void)
{
    watch_t *w = &G.w;
    int was_connected = atomic_exchange(&G.connected, 0);
    char *details = grpc_slice_to_c_string(w->details);
    if (was_connected)
        G.failures = 0;
    else
        G.failures++;
    if (atomic_load(&G.stop)) {
        /* stopping: nothing to report */
    } else if (was_connected) {
        sl_warn(MOD, "watch stream to %s ended: status %d%s%s", G.controlplane, (int)w->status, details[0] ? ": " : "",
                details);
        G.logged_down = 1;
    } else if (G.failures == 1 || G.failures % 30 == 0) {
        sl_warn(MOD, "cannot watch %s: status %d%s%s (retrying)", G.controlplane, (int)w->status,
                details[0] ? ": " : "", details);
        G.logged_down = 1;
    }
    if (w->status == GRPC_STATUS_UNAUTHENTICATED && (G.failures == 1 || G.failures % 30 == 0))
        sl_error(MOD, "the control plane rejected the node token");
    gpr_free(details);

    int64_t now = mono_ms();
    if (w->restart_now) {
        G.reconnect_at = now;
    } else {
        G.reconnect_at = now + jitter(G.backoff_ms);
        G.backoff_ms = G.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : G.backoff_ms * 2;
    }

    if (w->recv_bb != NULL)
        grpc_byte_buffer_destroy(w->recv_bb);
    grpc_byte_buffer_destroy(w->send_bb);
    grpc_slice_unref(w->auth.value);
    grpc_slice_unref(w->details);
    if (w->error_string != NULL)
        gpr_free((void *)w->error_string);
    grpc_metadata_array_destroy(&w->initial_md);
    grpc_metadata_array_destroy(&w->trailing_md);
    grpc_call_unref(w->call);
    memset(w, 0, sizeof(*w));
    G.active = 0;
}

static void on_message(void)
{
    watch_t *w = &G.w;
    Sluice__Sync__V1__Snapshot *msg = NULL;
    int rc = sl_bb_to_pb(w->recv_bb, &sluice__sync__v1__snapshot__descriptor, (ProtobufCMessage **)&msg);
    grpc_byte_buffer_destroy(w->recv_bb);
    w->recv_bb = NULL;
    if (rc != 0) {
        sl_error(MOD, "undecodable snapshot message from %s; watching again", G.controlplane);
        grpc_call_cancel(w->call, NULL);
        return;
    }
    w->got_message = 1;
    G.backoff_ms = BACKOFF_MIN_MS;
    int64_t version = msg->version, base = msg->base_version;
    int full = msg->full;
    rc = dp_snapshot_apply(msg); /* takes msg */
    if (rc >= 0)
        atomic_store(&G.last_update_ms, unix_ms());
    if (rc == 0) {
        G.cache_dirty = 1;
        if (full)
            sl_info(MOD, "applied snapshot version %lld", (long long)version);
        else
            sl_info(MOD, "applied delta version %lld on %lld", (long long)version, (long long)base);
        return;
    }
    if (rc == 1)
        return; /* not newer than what is held */
    if (rc == SL_EINVAL) {
        w->restart_now = 1;
        grpc_call_cancel(w->call, NULL);
        return;
    }
    /* out of memory: keep serving the old snapshot; a fresh watch asks for
     * everything again after a backoff */
    grpc_call_cancel(w->call, NULL);
}

static void on_event(grpc_event ev)
{
    watch_t *w = &G.w;
    if ((intptr_t)ev.tag == TAG_KICK) {
        atomic_store(&kick_pending, 0);
        return;
    }
    if (!G.active)
        return;
    w->pending--;
    switch ((int)(intptr_t)ev.tag) {
    case TAG_START:
        w->got_start = ev.success != 0;
        break;
    case TAG_MSG:
        if (ev.success && w->recv_bb != NULL) {
            on_message();
            if (!atomic_load(&G.stop) && !w->restart_now && post_recv() != 0)
                grpc_call_cancel(w->call, NULL);
        }
        /* else: end of stream; the status batch completes the call */
        break;
    case TAG_STATUS:
        w->ended = 1;
        break;
    default:
        break;
    }
    if (w->pending == 0)
        finish_watch();
}

/* Connected: a Watch call is open on a ready channel (the control plane
 * sends nothing, not even headers, while the node is up to date). */
static void update_connected(void)
{
    int c = G.active && !G.w.ended &&
            (G.w.got_start || G.w.got_message || grpc_channel_check_connectivity_state(G.ch, 0) == GRPC_CHANNEL_READY);
    int was = atomic_exchange(&G.connected, c);
    if (c && !was) {
        G.failures = 0;
        if (G.logged_down)
            sl_info(MOD, "watching the control plane at %s again", G.controlplane);
        G.logged_down = 0;
    }
}

static void *sync_main(void *arg)
{
    G.backoff_ms = BACKOFF_MIN_MS;
    G.reconnect_at = 0;
    int stopping = 0;
    for (;;) {
        int64_t now = mono_ms();
        if (!stopping && atomic_load(&G.stop)) {
            stopping = 1;
            if (G.active)
                grpc_call_cancel(G.w.call, NULL);
        }
        if (stopping && !G.active)
            break;
        if (!stopping && !G.active && now >= G.reconnect_at)
            start_watch();

        gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(TICK_MS, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(G.cq, deadline, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(ev);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        /* on a quiet tick, or after a message: not between the batches of a
         * call the server rejects at once */
        if (!stopping && (ev.type == GRPC_QUEUE_TIMEOUT || G.w.got_message))
            update_connected();

        if (!stopping) {
            now = mono_ms();
            dp_usage_collect(dp_lease_tick(unix_ms(), now));
            dp_usage_send_due(SENDS_PER_TICK);
            dp_snapshot_reclaim();
            dp_gauth_on_snapshot(); /* vertex access tokens follow the credentials */
            write_cache(now, 0);
        }
    }
    /* the watch is over; flush what is left */
    write_cache(mono_ms(), 1);
    int drain = atomic_load(&G.drain_ms);
    G.report_deadline = mono_ms() + drain;
    if (dp_lease_held())
        dp_usage_report_soon(); /* a last report gives every lease back */
    int64_t left = dp_usage_drain(drain);
    if (left == 0 && dp_usage_pending_reports() == 0)
        sl_debug(MOD, "every usage report was acknowledged");
    dp_snapshot_reclaim();
    return NULL;
}

/* ---- public ------------------------------------------------------------- */

static void free_config(void)
{
    free(G.controlplane);
    if (G.token != NULL)
        explicit_bzero(G.token, strlen(G.token));
    free(G.token);
    if (G.bearer != NULL)
        explicit_bzero(G.bearer, strlen(G.bearer));
    free(G.bearer);
    free(G.node_id);
    free(G.boot_id);
    free(G.cache_path);
    free(G.spool_dir);
    G.controlplane = G.token = G.bearer = G.node_id = G.boot_id = G.cache_path = G.spool_dir = NULL;
}

static char *dup_opt(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

int dp_sync_start(const dp_sync_config_t *cfg, sl_err_t *err)
{
    if (G.started)
        return sl_err_set(err, SL_EINVAL, "sync already started");
    if (cfg->controlplane == NULL || cfg->controlplane[0] == '\0' || cfg->node_token == NULL ||
        cfg->node_token[0] == '\0' || cfg->node_id == NULL || cfg->boot_id == NULL)
        return sl_err_set(err, SL_EINVAL, "the control plane address, node token, node id and boot id are required");
    atomic_store(&G.stop, 0);
    atomic_store(&G.connected, 0);
    atomic_store(&G.last_update_ms, 0);
    G.controlplane = strdup(cfg->controlplane);
    G.token = strdup(cfg->node_token);
    G.node_id = strdup(cfg->node_id);
    G.boot_id = strdup(cfg->boot_id);
    G.cache_path = dup_opt(cfg->snapshot_cache);
    G.spool_dir = dup_opt(cfg->spool_dir);
    if (asprintf(&G.bearer, "Bearer %s", cfg->node_token) < 0)
        G.bearer = NULL;
    if (G.controlplane == NULL || G.token == NULL || G.node_id == NULL || G.boot_id == NULL || G.bearer == NULL ||
        (cfg->snapshot_cache != NULL && cfg->snapshot_cache[0] != '\0' && G.cache_path == NULL) ||
        (cfg->spool_dir != NULL && cfg->spool_dir[0] != '\0' && G.spool_dir == NULL)) {
        free_config();
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (sl_random(&G.rng, sizeof(G.rng)) != 0 || G.rng == 0)
        G.rng = 0x2545f4914f6cdd1dULL;
    G.cache_dirty = G.cache_written_once = 0;
    G.report_deadline = 0;

    if (G.cache_path != NULL)
        load_cache();
    int rc = dp_usage_reporter_start(G.node_id, G.boot_id, G.spool_dir);
    if (rc != 0) {
        free_config();
        return sl_err_set(err, rc, "could not start the usage reporter");
    }
    dp_usage_set_sender(send_report, NULL);
    dp_usage_set_lease_fill(dp_lease_fill_report, NULL);

    grpc_init();
    G.ch = sl_grpc_channel(G.controlplane);
    G.cq = grpc_completion_queue_create_for_next(NULL);
    if (G.ch == NULL || G.cq == NULL) {
        if (G.cq != NULL)
            grpc_completion_queue_destroy(G.cq);
        if (G.ch != NULL)
            grpc_channel_destroy(G.ch);
        G.ch = NULL;
        G.cq = NULL;
        grpc_shutdown();
        dp_usage_set_sender(NULL, NULL);
        free_config();
        return sl_err_set(err, SL_EINTERNAL, "could not create a channel to \"%s\"", cfg->controlplane);
    }
    if ((rc = pthread_create(&G.thread, NULL, sync_main, NULL)) != 0) {
        grpc_completion_queue_shutdown(G.cq);
        while (grpc_completion_queue_next(G.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(G.cq);
        grpc_channel_destroy(G.ch);
        G.ch = NULL;
        G.cq = NULL;
        grpc_shutdown();
        dp_usage_set_sender(NULL, NULL);
        free_config();
        return sl_err_set(err, SL_EINTERNAL, "could not start the sync thread: %s", strerror(rc));
    }
    pthread_mutex_lock(&kick_mu);
    grpc_slice kick_method = grpc_slice_from_static_string(REPORT_METHOD);
    kick_call = grpc_channel_create_call(G.ch, NULL, GRPC_PROPAGATE_DEFAULTS, G.cq, kick_method, NULL,
                                         gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_slice_unref(kick_method);
    pthread_mutex_unlock(&kick_mu);
    dp_lease_set_kick(dp_sync_kick);
    pthread_setname_np(G.thread, "sluice-sync");
    G.started = 1;
    sl_info(MOD, "syncing with the control plane at %s as node \"%s\"", G.controlplane, G.node_id);
    return 0;
}

void dp_sync_kick(void)
{
    if (atomic_exchange(&kick_pending, 1))
        return;
    pthread_mutex_lock(&kick_mu);
    if (kick_call == NULL || grpc_call_start_batch(kick_call, NULL, 0, (void *)(intptr_t)TAG_KICK, NULL) != GRPC_CALL_OK)
        atomic_store(&kick_pending, 0);
    pthread_mutex_unlock(&kick_mu);
}

int dp_sync_connected(void)
{
    return atomic_load(&G.connected);
}

int64_t dp_sync_last_update_ms(void)
{
    return atomic_load(&G.last_update_ms);
}

void dp_sync_stop(int timeout_ms)
{
    if (!G.started)
        return;
    atomic_store(&G.drain_ms, timeout_ms > 0 ? timeout_ms : 0);
    atomic_store(&G.stop, 1);
    pthread_join(G.thread, NULL);
    dp_lease_set_kick(NULL);
    pthread_mutex_lock(&kick_mu);
    if (kick_call != NULL)
        grpc_call_unref(kick_call);
    kick_call = NULL;
    pthread_mutex_unlock(&kick_mu);
    dp_usage_set_sender(NULL, NULL);
    dp_usage_set_lease_fill(NULL, NULL);
    grpc_completion_queue_shutdown(G.cq);
    while (grpc_completion_queue_next(G.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(G.cq);
    grpc_channel_destroy(G.ch);
    G.cq = NULL;
    G.ch = NULL;
    grpc_shutdown();
    free_config();
    G.started = 0;
    atomic_store(&G.connected, 0);
}
