/*
 * sl_money.h - integer money.
 *
 * Prices are micro-USD per million tokens, costs/spend/budgets nano-USD, both
 * int64. USD decimals exist only at the edges (YAML, CLI, SQL views), parsed
 * and printed here without floating point.
 *
 *   cost_nano = tokens * price_micro_per_mtok / 1000
 *
 * which is exact whenever the price is a whole multiple of 0.001 USD per
 * million tokens (every published price is); finer prices round half up.
 */
#ifndef SL_MONEY_H
#define SL_MONEY_H

#include <stddef.h>
#include <stdint.h>

#define SL_NANO_PER_USD INT64_C(1000000000)
#define SL_MICRO_PER_USD INT64_C(1000000)

/* Parses a non-negative decimal USD amount ("12000", "0.15", "2.50") into
 * units of 10^-scale_digits USD (9 for nano, 6 for micro). Rejects signs,
 * exponents, garbage, more fraction digits than the scale holds, and values
 * that overflow int64. Returns 0 or SL_EINVAL. */
int sl_usd_parse(const char *s, size_t len, int scale_digits, int64_t *out);

static inline int sl_usd_parse_nano(const char *s, size_t len, int64_t *out) { return sl_usd_parse(s, len, 9, out); }
static inline int sl_usd_parse_micro(const char *s, size_t len, int64_t *out) { return sl_usd_parse(s, len, 6, out); }

/* Formats an amount in 10^-scale_digits USD as a decimal string with
 * trailing fraction zeros trimmed ("12000", "0.0025", "-1.5"). Returns the
 * length written (buf always terminated; 32 bytes always suffice). */
size_t sl_usd_format(int64_t amount, int scale_digits, char *buf, size_t cap);

/* Cost in nano-USD of tokens at a price in micro-USD per million tokens.
 * Saturates at INT64_MAX instead of overflowing; negative inputs give 0. */
int64_t sl_cost_nano(int64_t tokens, int64_t price_micro_per_mtok);

/* a + b saturating at INT64_MAX (both non-negative). */
static inline int64_t sl_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

#endif
