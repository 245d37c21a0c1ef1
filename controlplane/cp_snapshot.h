/*
 * cp_snapshot.h - building the Sync messages data planes receive.
 *
 * A data plane at have_version gets:
 *   - nothing, when have_version is the current version;
 *   - a full snapshot (every tenant, key, provider with decrypted
 *     credentials, model price, and the key pepper) when have_version is 0,
 *     newer than the current version (the database was restored or
 *     replaced), or older than the change log can serve;
 *   - else a delta from have_version: the current state of every entity
 *     changed since, and Removed entries for those that no longer exist.
 * Everything is read in one REPEATABLE READ transaction, so a message is
 * one consistent version.
 */
#ifndef CP_SNAPSHOT_H
#define CP_SNAPSHOT_H

#include <stdint.h>

#include "cp_arena.h"
#include "cp_db.h"
#include "cp_pb.h"
#include "cp_store.h"
#include "sl_err.h"

typedef enum { CP_SNAP_NONE, CP_SNAP_FULL, CP_SNAP_DELTA } cp_snap_mode_t;

/* The decision above. oldest_change is the lowest version in the change
 * log (0: the log is empty); a delta from have needs every version after
 * have, so have must be >= oldest_change - 1. */
cp_snap_mode_t cp_snapshot_mode(int64_t have, int64_t current, int64_t oldest_change);

/* Builds the message for a data plane at have. *out is NULL when there is
 * nothing to send; else arena memory. */
int cp_snapshot_build(cp_db_t *db, const cp_keys_t *keys, int64_t have, cp_arena_t *a, cp_snapshot_pb **out,
                      sl_err_t *err);

#endif
