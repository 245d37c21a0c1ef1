/*
 * cp_spend.h - Admin.GetSpend and Admin.GetQuotaStatus: spend from the
 * ledger and the state of quota windows, the same numbers as the report.*
 * SQL views (0003_report_views.sql).
 *
 * Days are the tenant's calendar days (tenants.time_zone, UTC by default):
 * from_date 2026-03-01 for a tenant in America/New_York starts at
 * 2026-03-01T05:00Z. The pure parts (request checks, dates) are exposed for
 * tests.
 */
#ifndef CP_SPEND_H
#define CP_SPEND_H

#include "cp_pb.h"
#include "sl_err.h"

typedef enum { CP_SPEND_BY_DAY, CP_SPEND_BY_MODEL, CP_SPEND_BY_KEY } cp_spend_by_t;

/* The longest range GetSpend accepts, in days. */
#define CP_SPEND_MAX_DAYS 3660

/* Parses a calendar date "YYYY-MM-DD" (years 1970..9998, real days, leap
 * years included) into days since 1970-01-01. Returns 0 or SL_EINVAL. */
int cp_spend_parse_date(const char *s, long *days);

/* Checks a GetSpend request: tenant_id set, both dates valid, from before
 * to (to is exclusive), at most CP_SPEND_MAX_DAYS apart, group_by empty
 * (day), "day", "model" or "key". */
int cp_spend_validate(const Sluice__Admin__V1__GetSpendRequest *q, cp_spend_by_t *by, sl_err_t *err);

/* Checks a GetQuotaStatus request: exactly one of tenant_id and key_id. */
int cp_quota_status_validate(const Sluice__Admin__V1__GetQuotaStatusRequest *q, sl_err_t *err);

#endif
