/* dp_retry.c - retry backoff (see dp_retry.h). */
#include "dp_retry.h"

#include <string.h>
#include <time.h>

#include <h2o.h>

uint32_t dp_retry_backoff_ms(uint32_t k, uint64_t r, uint32_t base_ms, uint32_t cap_ms)
{
    if (k == 0 || base_ms == 0)
        return 0;
    uint64_t b = base_ms;
    for (uint32_t i = 1; i < k && b < cap_ms; i++)
        b *= 2;
    if (b > cap_ms)
        b = cap_ms;
    uint64_t half = b / 2;
    return (uint32_t)(half + (b - half == 0 ? 0 : r % (b - half + 1)));
}

static int64_t cap_wait(int64_t ms)
{
    return ms < 0 ? 0 : ms > DP_RETRY_AFTER_MAX_MS ? DP_RETRY_AFTER_MAX_MS : ms;
}

/* Digits of v[*i..len) as a number (at most 12 of them); -1 if none. */
static int64_t digits(const char *v, size_t len, size_t *i, size_t *n)
{
    int64_t x = 0;
    size_t start = *i;
    while (*i < len && v[*i] >= '0' && v[*i] <= '9' && *i - start < 12)
        x = x * 10 + (v[(*i)++] - '0');
    *n = *i - start;
    return *n > 0 ? x : -1;
}

/* IMF-fixdate, the form RFC 9110 requires senders to use:
 * "Sun, 06 Nov 1994 08:49:37 GMT". Unix milliseconds, or -1. */
static int64_t http_date_ms(const char *v, size_t len)
{
    struct tm tm = {0};
    if (len != H2O_TIMESTR_RFC1123_LEN || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' ||
        v[16] != ' ' || v[19] != ':' || v[22] != ':' || memcmp(v + 25, " GMT", 4) != 0 ||
        h2o_time_parse_rfc1123(v, len, &tm) != 0)
        return -1;
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    return (int64_t)timegm(&tm) * 1000;
}

int64_t dp_retry_after_ms(const char *v, size_t len, int ms, int64_t now_unix_ms)
{
    while (len > 0 && (v[0] == ' ' || v[0] == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    size_t i = 0, n;
    int64_t whole = digits(v, len, &i, &n);
    if (whole >= 0) {
        int64_t frac_ms = 0;
        if (!ms && i < len && v[i] == '.') {
            i++;
            int64_t scale = 100;
            for (; i < len && v[i] >= '0' && v[i] <= '9'; i++, scale /= 10)
                frac_ms += (v[i] - '0') * scale;
        }
        if (i != len)
            return -1;
        return cap_wait(ms ? whole : whole * 1000 + frac_ms);
    }
    if (ms)
        return -1;
    int64_t at = http_date_ms(v, len);
    return at < 0 ? -1 : cap_wait(at - now_unix_ms);
}
