/* sl_money.c - integer money parsing, formatting and pricing. */
#include "sl_money.h"
#include "sl_err.h"

#include <stdio.h>
#include <string.h>

int sl_usd_parse(const char *s, size_t len, int scale_digits, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    int frac_digits = 0;
    size_t i = 0;
    int seen_digit = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, s[i] - '0', &whole))
            return SL_EINVAL;
        seen_digit = 1;
        i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (frac_digits == scale_digits) {
                if (s[i] != '0')    /* more precision than we keep: refuse rather than round money */
                    return SL_EINVAL;
            } else {
                frac = frac * 10 + (s[i] - '0');
                frac_digits++;
            }
            seen_digit = 1;
            i++;
        }
    }
    if (!seen_digit || i != len)
        return SL_EINVAL;
    for (; frac_digits < scale_digits; frac_digits++)
        frac *= 10;
    int64_t scale = 1;
    for (int k = 0; k < scale_digits; k++)
        scale *= 10;
    int64_t v;
    if (__builtin_mul_overflow(whole, scale, &v) || __builtin_add_overflow(v, frac, &v))
        return SL_EINVAL;
    *out = v;
    return 0;
}

size_t sl_usd_format(int64_t amount, int scale_digits, char *buf, size_t cap)
{
    uint64_t scale = 1, mag;
    int neg = amount < 0;
    for (int k = 0; k < scale_digits; k++)
        scale *= 10;
    mag = neg ? (uint64_t)(-(amount + 1)) + 1 : (uint64_t)amount;
    uint64_t whole = mag / scale, frac = mag % scale;
    int n;
    if (frac == 0) {
        n = snprintf(buf, cap, "%s%llu", neg ? "-" : "", (unsigned long long)whole);
    } else {
        int digits = scale_digits;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        n = snprintf(buf, cap, "%s%llu.%0*llu", neg ? "-" : "", (unsigned long long)whole, digits,
                     (unsigned long long)frac);
    }
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

int64_t sl_cost_nano(int64_t tokens, int64_t price_micro_per_mtok)
{
    if (tokens <= 0 || price_micro_per_mtok <= 0)
        return 0;
    __int128 v = (__int128)tokens * price_micro_per_mtok;
    v = (v + 500) / 1000;
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}
