/*
 * sl_duration.h - durations written the way operators write them: "500ms",
 * "2s", "5m", "1h", or several parts in decreasing units ("1m30s").
 *
 * A bare number is rejected (seconds or milliseconds would be a guess).
 * Pure; thread-safe.
 */
#ifndef SL_DURATION_H
#define SL_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses s (len bytes, need not be NUL-terminated) into milliseconds.
 * Units: ms, s, m, h, d. The total must be at least 1 ms and at most 366
 * days. Returns 0 or SL_EINVAL. */
int sl_duration_parse_ms(const char *s, size_t len, int64_t *ms);

/* Formats ms in the largest units that represent it exactly ("5m",
 * "1m30s", "500ms", "0s"); buf of 32 bytes always suffices. */
void sl_duration_format(int64_t ms, char *buf, size_t cap);

#endif
