/* dp_retry.c - retry backoff (see dp_retry.h). */
#include "dp_retry.h"

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
