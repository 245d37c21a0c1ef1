/* dp_quota.c - quota reservation and settlement; admits everything until
 * lease-based enforcement lands (the call sites already sit where DESIGN §7
 * puts them). */
#include "dp_quota.h"

int dp_quota_reserve(int worker, const dp_key_t *key, const char *provider, const dp_quota_estimate_t *est,
                     dp_quota_hold_t *hold, const char **code, int *retry_after_sec)
{
    hold->held = 1;
    hold->est = *est;
    return 0;
}

void dp_quota_settle(int worker, const dp_key_t *key, dp_quota_hold_t *hold, const dp_quota_actual_t *actual)
{
    hold->held = 0;
}
