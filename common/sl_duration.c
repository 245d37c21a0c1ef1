/*
 * sl_duration.c - parsing and formatting of "1m30s"-style durations.
 */
#include "sl_duration.h"
#include "sl_err.h"

#include <stdio.h>
#include <string.h>

#define MAX_MS (366LL * 86400 * 1000)

static const struct {
    const char *name;
    int64_t ms;
} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
#define NUNITS (sizeof(units) / sizeof(units[0]))

int sl_duration_parse_ms(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t total = 0;
    size_t last_unit = 0; /* units must decrease: index into units + 1 */
    if (len == 0)
        return SL_EINVAL;
    while (i < len) {
        int64_t v = 0;
        size_t digits = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (v > MAX_MS)
                return SL_EINVAL;
            v = v * 10 + (s[i] - '0');
            i++, digits++;
        }
        if (digits == 0)
            return SL_EINVAL;
        size_t ulen = 0;
        while (i + ulen < len && s[i + ulen] >= 'a' && s[i + ulen] <= 'z')
            ulen++;
        size_t u;
        for (u = 0; u < NUNITS; u++)
            if (strlen(units[u].name) == ulen && memcmp(units[u].name, s + i, ulen) == 0)
                break;
        if (u == NUNITS || u + 1 <= last_unit)
            return SL_EINVAL;
        last_unit = u + 1;
        i += ulen;
        if (v > MAX_MS / units[u].ms)
            return SL_EINVAL;
        total += v * units[u].ms;
        if (total > MAX_MS)
            return SL_EINVAL;
    }
    if (total < 1)
        return SL_EINVAL;
    *ms = total;
    return 0;
}

void sl_duration_format(int64_t ms, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    if (ms <= 0) {
        snprintf(buf, cap, "0s");
        return;
    }
    for (size_t u = 0; u < NUNITS && ms > 0; u++) {
        int64_t n = ms / units[u].ms;
        if (n == 0)
            continue;
        int w = snprintf(buf + o, cap - o, "%lld%s", (long long)n, units[u].name);
        if (w < 0 || (size_t)w >= cap - o)
            return;
        o += (size_t)w;
        ms -= n * units[u].ms;
    }
}
