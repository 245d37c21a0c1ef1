/*
 * cp_lease.c - lease arithmetic.
 */
#include "cp_lease.h"

int64_t cp_lease_reclaim_interval_ms(const cp_lease_cfg_t *cfg)
{
    int64_t v = cfg->ttl_ms / 2;
    if (v < 100)
        v = 100;
    return v > 5000 ? 5000 : v;
}

int cp_lease_cfg_validate(const cp_lease_cfg_t *cfg, sl_err_t *err)
{
    if (cfg->ttl_ms < 100 || cfg->ttl_ms > 3600000)
        return sl_err_set(err, SL_EINVAL, "--lease-ttl-ms must be between 100 and 3600000, not %lld",
                          (long long)cfg->ttl_ms);
    if (cfg->grace_ms < 0 || cfg->grace_ms > 86400000)
        return sl_err_set(err, SL_EINVAL, "--lease-reclaim-grace-ms must be between 0 and 86400000, not %lld",
                          (long long)cfg->grace_ms);
    return 0;
}

int64_t cp_lease_remaining(int64_t limit, int64_t used, int64_t outstanding)
{
    if (limit <= 0)
        return 0;
    /* used may be negative only through corruption; treat it as 0 */
    if (used < 0)
        used = 0;
    if (outstanding < 0)
        outstanding = 0;
    if (used >= limit)
        return 0;
    int64_t room = limit - used; /* > 0, no overflow: both non-negative */
    return outstanding >= room ? 0 : room - outstanding;
}

int64_t cp_lease_grant(int64_t limit, int64_t used, int64_t outstanding, int64_t mine, int64_t want)
{
    if (want <= 0)
        return 0;
    int64_t avail = cp_lease_remaining(limit, used, outstanding);
    if (avail == 0)
        return 0;
    if (mine < 0)
        mine = 0;
    int others = outstanding > mine;
    int64_t cap = others ? avail / 2 + avail % 2 : avail;
    return want < cap ? want : cap;
}
