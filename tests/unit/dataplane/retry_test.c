/* retry_test.c - retry backoff bounds (dataplane/dp_retry.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include <cmocka.h>

#include "dp_retry.h"

static void test_backoff_is_jittered_within_exponential_bounds(void **state)
{
    for (uint32_t k = 1; k <= 10; k++) {
        uint64_t b = 250;
        for (uint32_t i = 1; i < k; i++)
            b = b * 2 > 4000 ? 4000 : b * 2;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (uint64_t r = 0; r < 20000; r++) {
            uint32_t d = dp_retry_backoff_ms(k, r * 0x9E3779B97F4A7C15ull, 250, 4000);
            assert_true(d >= b / 2 && d <= b);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* the jitter spreads over the whole upper half */
        assert_true(lo <= b / 2 + b / 50);
        assert_true(hi >= b - b / 50);
    }
}

static void test_backoff_edges(void **state)
{
    assert_int_equal(dp_retry_backoff_ms(0, 123, 250, 4000), 0);
    assert_int_equal(dp_retry_backoff_ms(3, 123, 0, 4000), 0);
    /* huge exponents do not overflow: the cap holds */
    assert_true(dp_retry_backoff_ms(200, 77, 250, 4000) <= 4000);
    assert_true(dp_retry_backoff_ms(UINT32_MAX, 77, 250, 4000) >= 2000);
    /* the defaults keep a whole retry sequence well inside the time budget */
    uint64_t worst = 0;
    for (uint32_t k = 1; k < DP_RETRY_MAX_ATTEMPTS; k++)
        worst += dp_retry_backoff_ms(k, UINT64_MAX, DP_RETRY_BASE_MS, DP_RETRY_CAP_MS);
    assert_true(worst < DP_RETRY_BUDGET_MS / 10);
}

static void test_retry_after_values(void **state)
{
    assert_int_equal(dp_retry_after_ms("20", 2, 0, 0), 20000);
    assert_int_equal(dp_retry_after_ms(" 1.5 ", 5, 0, 0), 1500);
    assert_int_equal(dp_retry_after_ms("0", 1, 0, 0), 0);
    assert_int_equal(dp_retry_after_ms("99999", 5, 0, 0), DP_RETRY_AFTER_MAX_MS);
    assert_int_equal(dp_retry_after_ms("250", 3, 1, 0), 250); /* retry-after-ms */
    assert_int_equal(dp_retry_after_ms("1.5", 3, 1, 0), -1);
    assert_int_equal(dp_retry_after_ms("", 0, 0, 0), -1);
    assert_int_equal(dp_retry_after_ms("soon", 4, 0, 0), -1);
    assert_int_equal(dp_retry_after_ms("-5", 2, 0, 0), -1);
    assert_int_equal(dp_retry_after_ms("12s", 3, 0, 0), -1);
    /* an HTTP date: 2026-10-21 07:28:00 UTC is 1792567680 */
    const char *date = "Wed, 21 Oct 2026 07:28:00 GMT";
    assert_int_equal(dp_retry_after_ms(date, strlen(date), 0, 1792567680000LL - 30000), 30000);
    assert_int_equal(dp_retry_after_ms(date, strlen(date), 0, 1792567680000LL + 5000), 0); /* past */
    const char *leap = "Thu, 29 Feb 2024 23:59:59 GMT";                                   /* 1709251199 */
    assert_int_equal(dp_retry_after_ms(leap, strlen(leap), 0, 1709251199000LL - 1000), 1000);
    const char *bad = "Wed, 21 Okt 2026 07:28:00 GMT";
    assert_int_equal(dp_retry_after_ms(bad, strlen(bad), 0, 0), -1);
    assert_int_equal(dp_retry_after_ms(date, strlen(date), 1, 0), -1); /* not milliseconds */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_is_jittered_within_exponential_bounds),
        cmocka_unit_test(test_backoff_edges),
        cmocka_unit_test(test_retry_after_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
