/*
 * cp_sync.h - the Watch side of the Sync service: who is watching, and the
 * publisher that pushes new versions to them.
 *
 * Threads:
 *   - the publisher thread owns two database connections: one LISTENs on
 *     sluice_config (so writes by any replica wake it), the other builds
 *     snapshots. It wakes on a notification, on cp_sync_kick (a local
 *     commit, a new watcher, a watcher that finished a send while behind)
 *     and once a second as a safety net. Each round it reads the current
 *     version and, for every idle watcher behind it, builds the message once
 *     per distinct base version and starts one SEND_MESSAGE per watcher
 *     sharing the packed bytes.
 *   - cp_sync_watch, cp_sync_on_sent and cp_sync_on_closed run on the gRPC
 *     completion-queue thread and never block.
 * One mutex guards the watcher list; at most one send is in flight per
 * watcher (busy flag), and a busy watcher catches up when its send
 * completes, with a delta from the version it was last sent.
 */
#ifndef CP_SYNC_H
#define CP_SYNC_H

#include <stdint.h>

#include "cp_pb.h"
#include "cp_rpc.h"
#include "cp_store.h"
#include "sl_err.h"

typedef struct cp_sync cp_sync_t;

/* keys is copied. Caller owns the hub: cp_sync_free() after the gRPC
 * server has finished. */
cp_sync_t *cp_sync_new(const char *database_url, const cp_keys_t *keys);
int cp_sync_start(cp_sync_t *s, sl_err_t *err);
/* Stops and joins the publisher; watchers still registered are released
 * by their closed hook. */
void cp_sync_stop(cp_sync_t *s);
void cp_sync_free(cp_sync_t *s);

/* Any thread: something may have changed; run a publishing round soon. */
void cp_sync_kick(cp_sync_t *s);

/* Completion-queue thread (cp_rpc stream hooks). */
int cp_sync_watch(cp_sync_t *s, cp_call_t *call, const cp_watch_req_pb *req, sl_err_t *err);
void cp_sync_on_sent(cp_sync_t *s, cp_call_t *call, int ok);
void cp_sync_on_closed(cp_sync_t *s, cp_call_t *call);

/* For metrics and readiness (any thread). */
int cp_sync_watchers(const cp_sync_t *s);
int64_t cp_sync_version(const cp_sync_t *s);
int cp_sync_db_ok(const cp_sync_t *s);

/* Checks a WatchRequest (pure). */
int cp_sync_validate_watch(const cp_watch_req_pb *req, sl_err_t *err);

#endif
