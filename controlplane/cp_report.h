/*
 * cp_report.h - Sync.Report: usage applied to the ledger exactly once, and
 * the quota leases that ride on the same report (DESIGN 5-6).
 *
 * One transaction per report, a handful of set-based statements:
 *
 *   1. insert (node_id, boot_id, seq) into usage_reports; when it was there
 *      already the report is a duplicate: the stored ack is returned again
 *      (the same grants) and nothing changes;
 *   2. every quota window the report touches is created when missing (used
 *      = the ledger's sum for it, before this report's rows) and locked, in
 *      (quota_id, window_start) order so replicas never deadlock;
 *   3. the entries are added to usage_minute, aggregated per (minute, key,
 *      provider, model);
 *   4. consumption: every window of every quota an entry counts in gets
 *      used += amount (cost_nano, requests, or input+output tokens, in the
 *      window that contains the entry's admission minute), and the
 *      reporting node's lease on it gives back d = min(amount, its
 *      outstanding): lease.outstanding -= d, window.outstanding -= d;
 *   5. lease states: listed leases are renewed (expires_at = now + ttl,
 *      reclaim_at = expires_at + grace); this process's leases it no longer
 *      lists, and leases of earlier processes of the same node that have
 *      expired, are released (their outstanding returns to the window);
 *   6. lease requests: grant = cp_lease_grant(limit, used, outstanding,
 *      mine, want) on the locked window; outstanding and the node's lease
 *      grow by it;
 *   7. the ack (grants for every request and every listed lease) is stored
 *      with the report and returned.
 *
 * Invariant: for every quota window, used == sluice_quota_ledger_sum(), in
 * whatever order and however often reports arrive.
 */
#ifndef CP_REPORT_H
#define CP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cp_arena.h"
#include "cp_db.h"
#include "cp_lease.h"
#include "cp_pb.h"
#include "sl_err.h"

#define CP_REPORT_MAX_ENTRIES 100000
#define CP_REPORT_MAX_LEASES 100000

typedef Sluice__Sync__V1__ReportAck cp_ack_pb;
typedef Sluice__Sync__V1__LeaseGrant cp_grant_pb;

/* Pure checks: node_id, boot_id, seq > 0, entries well formed and not
 * negative, lease requests and states naming a quota id (decimal) with
 * non-negative numbers. */
int cp_report_validate(const cp_report_pb *r, sl_err_t *err);

/* Whether s is a quota id as the control plane issues them: 1 to 18
 * decimal digits, no leading zero. */
int cp_report_quota_id_ok(const char *s);

/* Distinct UTC month starts (unix seconds, ascending) of the entries'
 * minutes, into out (cap entries); returns how many. Pure. */
size_t cp_report_months(const cp_report_pb *r, int64_t *out, size_t cap);

/* The entries as the JSON array the ledger statement reads (malloc'd). */
char *cp_report_entries_json(const cp_report_pb *r);

/* Applies r (see above). On success *ack (in a) is the acknowledgement:
 * duplicate set when r had been applied before, with the original grants. */
int cp_report_apply(cp_db_t *db, const cp_report_pb *r, const cp_lease_cfg_t *cfg, cp_arena_t *a, cp_ack_pb **ack,
                    sl_err_t *err);

#endif
