/*
 * sl_quota_names.h - the words of the quota vocabulary: the names of quota
 * metrics, windows and on_unavailable policies as PostgreSQL stores them
 * (quotas.metric, quotas."window", quotas.on_unavailable), the data plane's
 * usage endpoint reports them and sluicectl prints them.
 *
 * The numbers are the values of the sluice.config.v1 enums QuotaMetric,
 * QuotaWindow and OnUnavailable (common/ does not include the generated
 * protobuf headers; tests/unit/common/quota_names_test.c checks that the two
 * agree). Pure functions; the returned names are static.
 */
#ifndef SL_QUOTA_NAMES_H
#define SL_QUOTA_NAMES_H

/* "cost_nano", "requests", "tokens" or "concurrent"; NULL for unspecified (0)
 * or an unknown value. */
const char *sl_quota_metric_name(int metric);

/* "minute", "hour", "day", "week", "month" or "total"; NULL for unspecified
 * (0) or an unknown value. */
const char *sl_quota_window_name(int window);

/* "default" (0), "closed" or "open"; NULL for an unknown value. */
const char *sl_quota_on_unavailable_name(int policy);

/* The inverse mappings: the value named s, or 0 (unspecified, or the default
 * policy) when s names none. */
int sl_quota_metric_parse(const char *s);
int sl_quota_window_parse(const char *s);
int sl_quota_on_unavailable_parse(const char *s);

#endif
