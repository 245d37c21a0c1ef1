/* sl_quota_names.c - quota enum values <-> their names. */
#include "sl_quota_names.h"

#include <stddef.h>
#include <string.h>

static const char *const metrics[] = {NULL, "cost_nano", "requests", "tokens", "concurrent"};
static const char *const windows[] = {NULL, "minute", "hour", "day", "week", "month", "total"};
static const char *const policies[] = {"default", "closed", "open"};

#define N(a) ((int)(sizeof(a) / sizeof(a[0])))

static const char *name(const char *const *tab, int n, int v)
{
    return v >= 0 && v < n ? tab[v] : NULL;
}

static int parse(const char *const *tab, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (tab[i] != NULL && strcmp(tab[i], s) == 0)
            return i;
    return 0;
}

const char *sl_quota_metric_name(int metric)
{
    return name(metrics, N(metrics), metric);
}

const char *sl_quota_window_name(int window)
{
    return name(windows, N(windows), window);
}

const char *sl_quota_on_unavailable_name(int policy)
{
    return name(policies, N(policies), policy);
}

int sl_quota_metric_parse(const char *s)
{
    return parse(metrics, N(metrics), s);
}

int sl_quota_window_parse(const char *s)
{
    return parse(windows, N(windows), s);
}

int sl_quota_on_unavailable_parse(const char *s)
{
    return parse(policies, N(policies), s);
}
