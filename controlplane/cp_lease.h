/*
 * cp_lease.h - quota lease arithmetic and settings (DESIGN 5).
 *
 * The database is the authority for every number here (quota_windows,
 * quota_leases); these are the pure rules the report transaction applies
 * to rows it has locked, kept apart so they can be tested alone.
 */
#ifndef CP_LEASE_H
#define CP_LEASE_H

#include <stdint.h>

#include "sl_err.h"

/* Lease timing. A lease a node keeps listing in its reports is renewed to
 * expire ttl_ms after the report; one nobody renews is reclaimed (its
 * outstanding returned to the window) grace_ms after it expired, the
 * longest a request admitted just before expiry may still run. */
typedef struct cp_lease_cfg {
    int64_t ttl_ms;
    int64_t grace_ms;
} cp_lease_cfg_t;

#define CP_LEASE_TTL_MS_DEFAULT 30000
#define CP_LEASE_GRACE_MS_DEFAULT 600000

/* How often the reclaimer looks for leases past reclaim_at: often enough for
 * short test TTLs, at most every 5 s. */
int64_t cp_lease_reclaim_interval_ms(const cp_lease_cfg_t *cfg);

/* Checks ttl (100 ms .. 1 h) and grace (0 .. 24 h). */
int cp_lease_cfg_validate(const cp_lease_cfg_t *cfg, sl_err_t *err);

/* The grant for one lease request on one quota window.
 *
 *   limit        the quota's limit now (a lowered limit applies at once)
 *   used         settled usage of the window (= the ledger's sum)
 *   outstanding  grants of every node not consumed or reclaimed yet
 *   mine         the part of outstanding this node's lease holds
 *   want         what the node asks for in addition
 *
 * Never more than available = limit - used - outstanding (0 when that is
 * not positive) and never more than want. When other nodes hold part of the
 * window, at most half the room (rounded up, so the last unit can still be
 * granted) goes to one request, so one node cannot take the last of a
 * budget while the others starve; a node alone on the window may take all
 * of it. Saturating: any int64 inputs give a result in [0, want]. */
int64_t cp_lease_grant(int64_t limit, int64_t used, int64_t outstanding, int64_t mine, int64_t want);

/* limit - used - outstanding, at least 0, without overflow. */
int64_t cp_lease_remaining(int64_t limit, int64_t used, int64_t outstanding);

#endif
