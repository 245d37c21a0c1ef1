/*
 * cp_reclaim.h - the lease reclaimer: returns the outstanding grant of
 * leases nobody renewed (a dead or partitioned data plane) to their quota
 * windows once reclaim_at has passed.
 *
 * Every replica runs one; a transaction-level advisory lock taken with
 * pg_try_advisory_xact_lock makes one of them do each pass while the others
 * skip it. Windows are locked in (quota_id, window_start) order before
 * their leases, the order reports use, so the two never deadlock.
 *
 * Threads: cp_reclaim_start/stop from the main thread; the reclaimer runs
 * on its own thread with its own database connection.
 */
#ifndef CP_RECLAIM_H
#define CP_RECLAIM_H

#include <stdint.h>

#include "cp_db.h"
#include "cp_lease.h"
#include "sl_err.h"

typedef struct cp_reclaim cp_reclaim_t;

/* One pass on db (its own transaction): *n (may be NULL) gets the number of
 * leases reclaimed, 0 when another replica holds the lock. */
int cp_reclaim_once(cp_db_t *db, int64_t *n, sl_err_t *err);

/* Starts the thread (a pass every cp_lease_reclaim_interval_ms). */
cp_reclaim_t *cp_reclaim_start(const char *database_url, const cp_lease_cfg_t *cfg);
/* Stops and joins the thread, frees r. NULL is ignored. */
void cp_reclaim_stop(cp_reclaim_t *r);

#endif
