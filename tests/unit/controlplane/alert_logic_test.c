/* alert_logic_test.c - tests of controlplane/cp_alert_logic.c (threshold
 * crossing, error-rate and circuit decisions, severities, keys, backoff)
 * and of the duration syntax of --alert-interval and rule windows
 * (common/sl_duration.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cp_alert_logic.h"
#include "sl_duration.h"
#include "sl_err.h"

#define USD 1000000000LL

static void test_budget_crossed_exactly_at_the_threshold(void **state)
{
    int64_t limit = 12000 * USD;
    assert_false(cp_alert_budget_crossed(6000 * USD - 1, limit, 500000));
    assert_true(cp_alert_budget_crossed(6000 * USD, limit, 500000));
    assert_true(cp_alert_budget_crossed(9600 * USD, limit, 800000));
    assert_false(cp_alert_budget_crossed(9600 * USD - 1, limit, 800000));
    assert_true(cp_alert_budget_crossed(12000 * USD, limit, 1000000));
    /* thirds: 1/3 of 3 nano is 1 nano */
    assert_true(cp_alert_budget_crossed(1, 3, 333333));
    assert_false(cp_alert_budget_crossed(0, 3, 333333));
    /* no limit, no threshold: never */
    assert_false(cp_alert_budget_crossed(INT64_MAX, 0, 500000));
    assert_false(cp_alert_budget_crossed(INT64_MAX, 100, 0));
}

static void test_budget_crossing_does_not_overflow(void **state)
{
    /* spend x 10^6 and threshold x limit both overflow int64 */
    assert_true(cp_alert_budget_crossed(INT64_MAX, INT64_MAX, 1000000));
    assert_false(cp_alert_budget_crossed(INT64_MAX / 2, INT64_MAX, 600000));
    assert_false(cp_alert_budget_crossed(INT64_MAX / 2, INT64_MAX, 500000)); /* half of an odd limit, rounded down */
    assert_true(cp_alert_budget_crossed(INT64_MAX / 2 + 1, INT64_MAX, 500000));
    assert_true(cp_alert_budget_crossed(INT64_MAX, INT64_MAX / 10, 10000000));
}

static void test_error_rate_fires_above_and_resolves_at_or_below(void **state)
{
    /* 20 % threshold, default minimum of 10 requests */
    assert_int_equal(cp_alert_error_rate_decide(100, 20, 200000, 0, 0), CP_ALERT_KEEP); /* exactly 20 %: not above */
    assert_int_equal(cp_alert_error_rate_decide(100, 21, 200000, 0, 0), CP_ALERT_FIRE);
    assert_int_equal(cp_alert_error_rate_decide(9, 9, 200000, 0, 0), CP_ALERT_KEEP);    /* too few requests */
    assert_int_equal(cp_alert_error_rate_decide(3, 3, 200000, 3, 0), CP_ALERT_FIRE);    /* min_requests 3 */
    assert_int_equal(cp_alert_error_rate_decide(100, 50, 200000, 0, 1), CP_ALERT_KEEP); /* firing, still high */
    assert_int_equal(cp_alert_error_rate_decide(100, 20, 200000, 0, 1), CP_ALERT_RESOLVE);
    assert_int_equal(cp_alert_error_rate_decide(5, 0, 200000, 0, 1), CP_ALERT_RESOLVE); /* few but clean */
    assert_int_equal(cp_alert_error_rate_decide(0, 0, 200000, 0, 1), CP_ALERT_RESOLVE); /* no traffic */
    assert_int_equal(cp_alert_error_rate_decide(0, 0, 200000, 0, 0), CP_ALERT_KEEP);
}

static void test_circuit(void **state)
{
    assert_int_equal(cp_alert_circuit_decide(1, 0), CP_ALERT_FIRE);
    assert_int_equal(cp_alert_circuit_decide(2, 1), CP_ALERT_KEEP);
    assert_int_equal(cp_alert_circuit_decide(0, 1), CP_ALERT_RESOLVE);
    assert_int_equal(cp_alert_circuit_decide(0, 0), CP_ALERT_KEEP);
}

static void test_default_severities(void **state)
{
    assert_string_equal(cp_alert_default_severity("budget_threshold", 500000), "info");
    assert_string_equal(cp_alert_default_severity("budget_threshold", 800000), "warning");
    assert_string_equal(cp_alert_default_severity("budget_threshold", 1000000), "critical");
    assert_string_equal(cp_alert_default_severity("budget_threshold", 1500000), "critical");
    assert_string_equal(cp_alert_default_severity("spend_anomaly", 0), "warning");
    assert_string_equal(cp_alert_default_severity("error_rate", 0), "error");
    assert_string_equal(cp_alert_default_severity("circuit_open", 0), "error");
}

static void test_keys_and_instances(void **state)
{
    sl_buf_t b = {0};
    cp_alert_dedup_key("runaway", "tenant/acme", "", &b);
    assert_string_equal(b.data, "sluice/runaway/tenant/acme");
    b.len = 0;
    cp_alert_budget_instance("", "month", 1772323200, 800000, &b);
    assert_string_equal(b.data, "month/2026-03-01T00:00:00Z/0.8");
    b.len = 0;
    cp_alert_budget_instance("openai", "day", 1772323200, 1000000, &b);
    assert_string_equal(b.data, "openai:day/2026-03-01T00:00:00Z/1");
    b.len = 0;
    cp_alert_dedup_key("b", "virtual_key/k", "month/2026-03-01T00:00:00Z/1", &b);
    assert_string_equal(b.data, "sluice/b/virtual_key/k/month/2026-03-01T00:00:00Z/1");
    sl_buf_free(&b);
    char f[32];
    cp_alert_fraction(500000, f);
    assert_string_equal(f, "0.5");
    cp_alert_percent(500000, f);
    assert_string_equal(f, "50%");
    cp_alert_percent(333333, f);
    assert_string_equal(f, "33.3333%");
    cp_alert_percent(1500000, f);
    assert_string_equal(f, "150%");
}

static void test_backoff_doubles_to_a_cap(void **state)
{
    assert_int_equal(cp_alert_backoff_ms(1), 1000);
    assert_int_equal(cp_alert_backoff_ms(2), 2000);
    assert_int_equal(cp_alert_backoff_ms(3), 4000);
    assert_int_equal(cp_alert_backoff_ms(10), 512000);
    assert_int_equal(cp_alert_backoff_ms(11), CP_ALERT_BACKOFF_MAX_MS);
    assert_int_equal(cp_alert_backoff_ms(1000), CP_ALERT_BACKOFF_MAX_MS);
    assert_int_equal(cp_alert_backoff_ms(0), 1000);
}

static void test_http_outcomes(void **state)
{
    assert_int_equal(cp_alert_http_outcome(200), 1);
    assert_int_equal(cp_alert_http_outcome(202), 1);
    assert_int_equal(cp_alert_http_outcome(400), -1);
    assert_int_equal(cp_alert_http_outcome(404), -1);
    assert_int_equal(cp_alert_http_outcome(408), 0);
    assert_int_equal(cp_alert_http_outcome(429), 0);
    assert_int_equal(cp_alert_http_outcome(500), 0);
    assert_int_equal(cp_alert_http_outcome(503), 0);
    assert_int_equal(cp_alert_http_outcome(0), 0);   /* no answer */
    assert_int_equal(cp_alert_http_outcome(301), 0); /* redirects are not followed */
}

static int64_t dur(const char *s)
{
    int64_t ms = -1;
    return sl_duration_parse_ms(s, strlen(s), &ms) == 0 ? ms : -1;
}

static void test_durations(void **state)
{
    assert_int_equal(dur("2s"), 2000);
    assert_int_equal(dur("500ms"), 500);
    assert_int_equal(dur("1m"), 60000);
    assert_int_equal(dur("60s"), 60000);
    assert_int_equal(dur("5m"), 300000);
    assert_int_equal(dur("1h"), 3600000);
    assert_int_equal(dur("1m30s"), 90000);
    assert_int_equal(dur("1h1m1s1ms"), 3661001);
    assert_int_equal(dur("1d"), 86400000);
    assert_int_equal(dur("366d"), 366LL * 86400000);
    /* rejected: no unit, unknown unit, zero, signs, spaces, units out of order or repeated, too long */
    const char *bad[] = {"",      "60",  "1x",   "0s",   "0ms", "-1s",  "+1s",  " 1s",
                         "1s ",   "1 s", "1s1m", "1s1s", "s",   "1.5s", "367d", "9999999999999999999s",
                         "1ms1s", "1mss"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 42;
        assert_int_equal(sl_duration_parse_ms(bad[i], strlen(bad[i]), &ms), SL_EINVAL);
        assert_int_equal(ms, 42);
    }
    /* length-delimited: the rest of the buffer is not read */
    int64_t ms = 0;
    assert_int_equal(sl_duration_parse_ms("5mjunk", 2, &ms), 0);
    assert_int_equal(ms, 300000);
}

static void test_duration_format_round_trips(void **state)
{
    char b[32];
    int64_t cases[] = {1, 500, 1000, 60000, 90000, 300000, 3600000, 3661001, 86400000};
    const char *want[] = {"1ms", "500ms", "1s", "1m", "1m30s", "5m", "1h", "1h1m1s1ms", "1d"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_duration_format(cases[i], b, sizeof(b));
        assert_string_equal(b, want[i]);
        assert_int_equal(dur(b), cases[i]);
    }
    sl_duration_format(0, b, sizeof(b));
    assert_string_equal(b, "0s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_crossed_exactly_at_the_threshold),
        cmocka_unit_test(test_budget_crossing_does_not_overflow),
        cmocka_unit_test(test_error_rate_fires_above_and_resolves_at_or_below),
        cmocka_unit_test(test_circuit),
        cmocka_unit_test(test_default_severities),
        cmocka_unit_test(test_keys_and_instances),
        cmocka_unit_test(test_backoff_doubles_to_a_cap),
        cmocka_unit_test(test_http_outcomes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_duration_format_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
