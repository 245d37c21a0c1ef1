/*
 * cp_quota.c - quota checks and formatting.
 */
#include "cp_quota.h"
#include "sl_money.h"
#include "sl_quota_names.h"

#include <stdio.h>
#include <string.h>

int cp_quota_validate(const cp_quota_pb *q, const char *what, sl_err_t *err)
{
    if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_UNSPECIFIED)
        return sl_err_set(err, SL_EINVAL, "%s: quota has no metric", what);
    if (sl_quota_metric_name(q->metric) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota metric %d is unknown", what, (int)q->metric);
    if (q->window == SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_UNSPECIFIED)
        return sl_err_set(err, SL_EINVAL, "%s: %s quota has no window", what, sl_quota_metric_name(q->metric));
    if (sl_quota_window_name(q->window) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota window %d is unknown", what, (int)q->window);
    if (sl_quota_on_unavailable_name(q->on_unavailable) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota on_unavailable %d is unknown", what, (int)q->on_unavailable);
    if (q->limit < 0)
        return sl_err_set(err, SL_EINVAL, "%s: %s/%s quota limit must not be negative", what,
                          sl_quota_metric_name(q->metric), sl_quota_window_name(q->window));
    return 0;
}

void cp_quota_key(const cp_quota_pb *q, char *buf, size_t cap)
{
    const char *m = sl_quota_metric_name(q->metric), *w = sl_quota_window_name(q->window);
    const char *p = q->provider != NULL ? q->provider : "";
    snprintf(buf, cap, "%s%s%s/%s", p, *p ? ":" : "", m ? m : "?", w ? w : "?");
}

void cp_quota_value(const cp_quota_pb *q, char *buf, size_t cap)
{
    char num[40];
    if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO) {
        size_t n = sl_usd_format(q->limit, 9, num, sizeof(num) - 4);
        snprintf(num + n, sizeof(num) - n, " USD");
    } else {
        snprintf(num, sizeof(num), "%lld", (long long)q->limit);
    }
    if (q->on_unavailable != 0 && sl_quota_on_unavailable_name(q->on_unavailable) != NULL)
        snprintf(buf, cap, "%s (%s when unavailable)", num, sl_quota_on_unavailable_name(q->on_unavailable));
    else
        snprintf(buf, cap, "%s", num);
}
