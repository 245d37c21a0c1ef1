/*
 * dp_sync.h - the data plane's link to the control plane.
 *
 * One thread owns the gRPC channel: it keeps a Watch stream open (with
 * backoff on failure), applies every snapshot or delta it receives, writes
 * the snapshot cache after each change, sends usage reports collected by
 * dp_usage, and reclaims retired snapshots.
 */
#ifndef DP_SYNC_H
#define DP_SYNC_H

#include <stdint.h>

#include "sl_err.h"

typedef struct dp_sync_config {
    const char *controlplane;     /* host:port */
    const char *node_token;
    const char *node_id;
    const char *boot_id;
    const char *snapshot_cache;   /* NULL: none */
    const char *spool_dir;        /* NULL: none */
} dp_sync_config_t;

/* Loads the snapshot cache when present (so the node can serve before the
 * control plane answers), then starts the sync thread. */
int dp_sync_start(const dp_sync_config_t *cfg, sl_err_t *err);
/* Any thread: wakes the sync thread now (quota leases need a report). */
void dp_sync_kick(void);
/* Whether the Watch stream is currently connected. */
int dp_sync_connected(void);
/* Unix ms of the last snapshot received or loaded (0: none). */
int64_t dp_sync_last_update_ms(void);
/* Sends every pending report (waiting up to timeout_ms for acks), then
 * stops the thread. Workers must have flushed (dp_usage_flush_worker). */
void dp_sync_stop(int timeout_ms);

#endif
