/*
 * cp_quota.c - quota enum mapping and formatting.
 */
#include "cp_quota.h"
#include "sl_money.h"

#include <stdio.h>
#include <string.h>

static const char *metrics[] = {NULL, "cost_nano", "requests", "tokens", "concurrent"};
static const char *windows[] = {NULL, "minute", "hour", "day", "week", "month", "total"};
static const char *policies[] = {"default", "closed", "open"};

#define N(a) ((int)(sizeof(a) / sizeof(a[0])))

const char *cp_quota_metric_str(int m)
{
    return m > 0 && m < N(metrics) ? metrics[m] : NULL;
}

const char *cp_quota_window_str(int w)
{
    return w > 0 && w < N(windows) ? windows[w] : NULL;
}

const char *cp_quota_on_unavailable_str(int p)
{
    return p >= 0 && p < N(policies) ? policies[p] : NULL;
}

static int lookup(const char **tab, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (tab[i] != NULL && strcmp(tab[i], s) == 0)
            return i;
    return 0;
}

int cp_quota_metric_parse(const char *s)
{
    return lookup(metrics, N(metrics), s);
}

int cp_quota_window_parse(const char *s)
{
    return lookup(windows, N(windows), s);
}

int cp_quota_on_unavailable_parse(const char *s)
{
    return lookup(policies, N(policies), s);
}

int cp_quota_validate(const cp_quota_pb *q, const char *what, sl_err_t *err)
{
    if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_UNSPECIFIED)
        return sl_err_set(err, SL_EINVAL, "%s: quota has no metric", what);
    if (cp_quota_metric_str(q->metric) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota metric %d is unknown", what, (int)q->metric);
    if (q->window == SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_UNSPECIFIED)
        return sl_err_set(err, SL_EINVAL, "%s: %s quota has no window", what, cp_quota_metric_str(q->metric));
    if (cp_quota_window_str(q->window) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota window %d is unknown", what, (int)q->window);
    if (cp_quota_on_unavailable_str(q->on_unavailable) == NULL)
        return sl_err_set(err, SL_EINVAL, "%s: quota on_unavailable %d is unknown", what, (int)q->on_unavailable);
    if (q->limit < 0)
        return sl_err_set(err, SL_EINVAL, "%s: %s/%s quota limit must not be negative", what,
                          cp_quota_metric_str(q->metric), cp_quota_window_str(q->window));
    return 0;
}

void cp_quota_key(const cp_quota_pb *q, char *buf, size_t cap)
{
    const char *m = cp_quota_metric_str(q->metric), *w = cp_quota_window_str(q->window);
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
    if (q->on_unavailable != 0 && cp_quota_on_unavailable_str(q->on_unavailable) != NULL)
        snprintf(buf, cap, "%s (%s when unavailable)", num, cp_quota_on_unavailable_str(q->on_unavailable));
    else
        snprintf(buf, cap, "%s", num);
}
