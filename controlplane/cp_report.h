/*
 * cp_report.h - Sync.Report: usage applied to the ledger exactly once.
 *
 * One transaction per report. Its first statement inserts (node_id,
 * boot_id, seq) into usage_reports with ON CONFLICT DO NOTHING; when no row
 * was inserted the report was applied before, and the transaction commits
 * with nothing else changed (duplicate). Otherwise the monthly partitions the
 * entries need are ensured and every entry is added to usage_minute by one
 * set-based statement, aggregated per (minute, key, provider, model).
 */
#ifndef CP_REPORT_H
#define CP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cp_db.h"
#include "cp_pb.h"
#include "sl_err.h"

#define CP_REPORT_MAX_ENTRIES 100000

/* Pure checks: node_id, boot_id, seq > 0, entries well formed and not
 * negative. */
int cp_report_validate(const cp_report_pb *r, sl_err_t *err);

/* Distinct UTC month starts (unix seconds, ascending) of the entries'
 * minutes, into out (cap entries); returns how many. Pure. */
size_t cp_report_months(const cp_report_pb *r, int64_t *out, size_t cap);

/* The entries as the JSON array the ledger statement reads (malloc'd). */
char *cp_report_entries_json(const cp_report_pb *r);

/* Applies r. *duplicate tells whether it had been applied before. */
int cp_report_apply(cp_db_t *db, const cp_report_pb *r, int *duplicate, sl_err_t *err);

#endif
