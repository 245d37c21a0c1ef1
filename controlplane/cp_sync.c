/*
 * cp_sync.c - watcher registry and the publisher thread.
 */
#include "cp_sync.h"
#include "cp_metrics.h"
#include "cp_migrations.h"
#include "cp_snapshot.h"
#include "sl_grpc.h"
#include "sl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/alloc.h>

struct watcher {
    cp_call_t *call;      /* the hub's reference, dropped when refs reaches 0 */
    char node_id[129];
    char boot_id[129];
    int64_t sent_version; /* what the data plane has once the in-flight send lands */
    int initial;          /* nothing sent yet */
    int busy;             /* a send is in flight */
    int closed;
    int refs;             /* list membership + publisher rounds; under mu */
    uint64_t push_t0_ns;  /* in-flight send of a new version: when it was learned of; 0: not a push */
    struct watcher *prev, *next;
};

struct cp_sync {
    cp_keys_t keys;
    char *database_url;
    pthread_mutex_t mu;
    struct watcher *head;
    _Atomic int nwatchers;
    _Atomic int64_t version;   /* latest version seen */
    _Atomic int db_ok;
    _Atomic int stop;
    int wake[2];               /* pipe: write a byte to wake the publisher */
    pthread_t thread;
    int started;
};

cp_sync_t *cp_sync_new(const char *database_url, const cp_keys_t *keys)
{
    cp_sync_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->database_url = strdup(database_url)) == NULL)
        abort();
    s->keys = *keys;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->version, -1);
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        abort();
    return s;
}

void cp_sync_free(cp_sync_t *s)
{
    if (s == NULL)
        return;
    /* watchers left (none after a clean shutdown) belong to calls that are gone */
    pthread_mutex_destroy(&s->mu);
    close(s->wake[0]);
    close(s->wake[1]);
    cp_keys_wipe(&s->keys);
    free(s->database_url);
    free(s);
}

void cp_sync_kick(cp_sync_t *s)
{
    char b = 1;
    ssize_t n = write(s->wake[1], &b, 1); /* a full pipe already means "wake up" */
    (void)n;
}

int cp_sync_watchers(const cp_sync_t *s)
{
    return atomic_load(&((cp_sync_t *)s)->nwatchers);
}

int64_t cp_sync_version(const cp_sync_t *s)
{
    int64_t v = atomic_load(&((cp_sync_t *)s)->version);
    return v < 0 ? 0 : v;
}

int cp_sync_db_ok(const cp_sync_t *s)
{
    return atomic_load(&((cp_sync_t *)s)->db_ok);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int printable_id(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\')
            return 0;
    return 1;
}

int cp_sync_validate_watch(const cp_watch_req_pb *req, sl_err_t *err)
{
    if (!printable_id(req->node_id, 128))
        return sl_err_set(err, SL_EINVAL, "node_id must be 1 to 128 printable characters without spaces or quotes");
    if (!printable_id(req->boot_id, 128))
        return sl_err_set(err, SL_EINVAL, "boot_id must be 1 to 128 printable characters without spaces or quotes");
    if (req->have_version < 0)
        return sl_err_set(err, SL_EINVAL, "have_version must not be negative");
    return 0;
}

/* Drops one reference; the last frees the watcher and its call reference.
 * Caller holds mu. */
static void watcher_release(struct watcher *w)
{
    if (--w->refs > 0)
        return;
    cp_call_unref(w->call);
    free(w);
}

int cp_sync_watch(cp_sync_t *s, cp_call_t *call, const cp_watch_req_pb *req, sl_err_t *err)
{
    int rc = cp_sync_validate_watch(req, err);
    if (rc != 0)
        return rc;
    struct watcher *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    w->call = call;
    snprintf(w->node_id, sizeof(w->node_id), "%s", req->node_id);
    snprintf(w->boot_id, sizeof(w->boot_id), "%s", req->boot_id);
    w->sent_version = req->have_version;
    w->initial = 1;
    w->refs = 1;
    cp_call_ref(call);
    cp_call_set_user(call, w);
    pthread_mutex_lock(&s->mu);
    w->next = s->head;
    if (s->head != NULL)
        s->head->prev = w;
    s->head = w;
    atomic_fetch_add(&s->nwatchers, 1);
    pthread_mutex_unlock(&s->mu);
    char *peer = cp_call_peer(call);
    sl_info("sync", "data plane \"%s\" (boot \"%s\", %s) watching from version %lld", w->node_id, w->boot_id,
            peer != NULL ? peer : "?", (long long)req->have_version);
    gpr_free(peer);
    cp_sync_kick(s);
    return 0;
}

void cp_sync_on_sent(cp_sync_t *s, cp_call_t *call, int ok)
{
    struct watcher *w = cp_call_user(call);
    if (w == NULL)
        return;
    int behind;
    pthread_mutex_lock(&s->mu);
    w->busy = 0;
    uint64_t t0 = w->push_t0_ns;
    w->push_t0_ns = 0;
    behind = ok && !w->closed && w->sent_version != atomic_load(&s->version);
    pthread_mutex_unlock(&s->mu);
    if (ok && t0 != 0)
        cp_metrics_observe_push((double)(mono_ns() - t0) / 1e9);
    if (behind)
        cp_sync_kick(s);
}

void cp_sync_on_closed(cp_sync_t *s, cp_call_t *call)
{
    struct watcher *w = cp_call_user(call);
    if (w == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    cp_call_set_user(call, NULL);
    w->closed = 1;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        s->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    atomic_fetch_sub(&s->nwatchers, 1);
    sl_info("sync", "data plane \"%s\" (boot \"%s\") stopped watching at version %lld", w->node_id, w->boot_id,
            (long long)w->sent_version);
    watcher_release(w);
    pthread_mutex_unlock(&s->mu);
}

/* One publishing round: every idle watcher behind `current` gets the
 * message for its version, built once per distinct base. learned_ns: when
 * this replica learned of `current` (push latency starts there). */
static void publish(cp_sync_t *s, cp_db_t *db, int64_t current, uint64_t learned_ns)
{
    struct watcher **todo = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&s->mu);
    for (struct watcher *w = s->head; w != NULL; w = w->next) {
        if (w->busy || w->closed || (!w->initial && w->sent_version == current))
            continue;
        if (w->initial && w->sent_version == current && current > 0) {
            w->initial = 0; /* up to date already: nothing to send until the next change */
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct watcher **v = realloc(todo, cap * sizeof(*v));
            if (v == NULL)
                abort();
            todo = v;
        }
        w->refs++;
        todo[n++] = w;
    }
    pthread_mutex_unlock(&s->mu);

    for (size_t i = 0; i < n; i++) {
        if (todo[i] == NULL)
            continue;
        int64_t base = todo[i]->sent_version;
        cp_arena_t *a = cp_arena_new();
        cp_snapshot_pb *snap = NULL;
        sl_err_t err = {0};
        if (cp_snapshot_build(db, &s->keys, base, a, &snap, &err) != 0) {
            sl_warn("sync", "could not build the snapshot from version %lld: %s", (long long)base, err.msg);
            snap = NULL;
        }
        grpc_slice slice = grpc_empty_slice();
        if (snap != NULL) {
            size_t len = protobuf_c_message_get_packed_size(&snap->base);
            slice = grpc_slice_malloc(len);
            protobuf_c_message_pack(&snap->base, GRPC_SLICE_START_PTR(slice));
        }
        /* every watcher at the same base gets the same bytes */
        pthread_mutex_lock(&s->mu);
        for (size_t j = i; j < n; j++) {
            struct watcher *w = todo[j];
            if (w == NULL || w->sent_version != base)
                continue;
            if (snap != NULL && !w->closed && !w->busy) {
                grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
                w->busy = 1;
                /* a watcher's first message is its catch-up, not a push */
                w->push_t0_ns = w->initial ? 0 : learned_ns;
                if (cp_call_send(w->call, bb) == 0) {
                    w->sent_version = snap->version;
                    w->initial = 0;
                    cp_metrics_inc(snap->full ? CP_M_SNAPSHOTS_FULL : CP_M_SNAPSHOTS_DELTA, 1);
                    sl_debug("sync", "sent %s version %lld to \"%s\"", snap->full ? "snapshot" : "delta",
                             (long long)snap->version, w->node_id);
                } else {
                    w->busy = 0;
                    w->push_t0_ns = 0;
                }
            } else if (snap == NULL && err.code == 0) {
                w->initial = 0; /* nothing to send: already current */
            }
            watcher_release(w);
            todo[j] = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        grpc_slice_unref(slice);
        cp_arena_free(a);
    }
    free(todo);
}

/* (Re)connects the LISTEN connection. */
static int listen_connect(cp_db_t *ldb, sl_err_t *err)
{
    if (ldb->conn != NULL && PQstatus(ldb->conn) == CONNECTION_OK)
        return 0;
    int rc = cp_db_ensure(ldb, err);
    if (rc == 0)
        rc = cp_db_exec(ldb, "LISTEN sluice_config", 0, NULL, err);
    if (rc == 0 && PQsetnonblocking(ldb->conn, 1) != 0)
        rc = sl_err_set(err, SL_EIO, "could not make the LISTEN connection non-blocking");
    return rc;
}

/* Reads pending notifications; returns how many arrived, -1 when the
 * connection broke. */
static int listen_drain(cp_db_t *ldb)
{
    if (PQconsumeInput(ldb->conn) != 1) {
        cp_db_disconnect(ldb);
        return -1;
    }
    int n = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(ldb->conn)) != NULL) {
        n++;
        PQfreemem(nt);
    }
    return n;
}

static void *publisher_main(void *arg)
{
    cp_sync_t *s = arg;
    cp_db_t db, ldb;
    cp_db_init(&db, s->database_url);
    cp_db_init(&ldb, s->database_url);
    time_t last_warn = 0, last_schema = 0;
    int schema_ok = 1;
    uint64_t woke_ns = mono_ns(), learned_ns = woke_ns;
    while (!atomic_load(&s->stop)) {
        sl_err_t err = {0};
        if (ldb.conn == NULL && listen_connect(&ldb, &err) != 0 && time(NULL) - last_warn >= 10) {
            sl_warn("sync", "LISTEN connection failed, polling instead: %s", err.msg);
            last_warn = time(NULL);
        }
        int64_t current;
        err = (sl_err_t){0};
        if (cp_store_version(&db, &current, &err) == 0) {
            if (time(NULL) - last_schema >= 30) {
                sl_err_t e2 = {0};
                schema_ok = cp_migrate_verify(&db, &e2) == 0;
                if (!schema_ok)
                    sl_error("sync", "%s", e2.msg);
                last_schema = time(NULL);
            }
            atomic_store(&s->db_ok, schema_ok);
            int64_t prev = atomic_exchange(&s->version, current);
            if (prev != current)
                learned_ns = woke_ns; /* the NOTIFY, kick or tick that woke this round */
            if (prev != current && prev >= 0)
                sl_info("sync", "configuration version %lld", (long long)current);
            publish(s, &db, current, learned_ns);
        } else {
            atomic_store(&s->db_ok, 0);
            if (time(NULL) - last_warn >= 10) {
                sl_warn("sync", "cannot read the configuration version: %s", err.msg);
                last_warn = time(NULL);
            }
        }

        struct pollfd pfd[2] = {{s->wake[0], POLLIN, 0}, {-1, POLLIN, 0}};
        if (ldb.conn != NULL)
            pfd[1].fd = PQsocket(ldb.conn);
        if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
            break;
        woke_ns = mono_ns();
        if (pfd[0].revents & POLLIN) {
            char buf[64];
            while (read(s->wake[0], buf, sizeof(buf)) > 0)
                ;
        }
        if (ldb.conn != NULL && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)))
            listen_drain(&ldb);
    }
    cp_db_close(&db);
    cp_db_close(&ldb);
    return NULL;
}

int cp_sync_start(cp_sync_t *s, sl_err_t *err)
{
    if (pthread_create(&s->thread, NULL, publisher_main, s) != 0)
        return sl_err_set(err, SL_EINTERNAL, "could not start the publisher thread");
    s->started = 1;
    return 0;
}

void cp_sync_stop(cp_sync_t *s)
{
    if (!s->started)
        return;
    atomic_store(&s->stop, 1);
    cp_sync_kick(s);
    pthread_join(s->thread, NULL);
    s->started = 0;
}
