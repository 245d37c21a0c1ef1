/* Tests for common/sl_money.c: USD parsing/formatting and exact pricing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sl_money.h"

static int64_t parse(const char *s, int scale, int *rc)
{
    int64_t v = -1;
    *rc = sl_usd_parse(s, strlen(s), scale, &v);
    return v;
}

static void test_parse_budget_and_prices(void **state)
{
    int rc;
    assert_int_equal(parse("12000", 9, &rc), INT64_C(12000000000000));
    assert_int_equal(rc, 0);
    assert_int_equal(parse("0.15", 6, &rc), 150000);
    assert_int_equal(parse("2.50", 6, &rc), 2500000);
    assert_int_equal(parse(".5", 9, &rc), 500000000);
    assert_int_equal(parse("1.000000000000", 6, &rc), 1000000); /* trailing zeros beyond scale are fine */
    assert_int_equal(rc, 0);
}

static void test_parse_rejects_bad_input(void **state)
{
    const char *bad[] = {"", "-1", "+1", "1e3", "abc", "1.2.3", "1.0000001", "99999999999999999999", ".", " 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc;
        parse(bad[i], 6, &rc);
        assert_int_not_equal(rc, 0);
    }
    int rc;
    parse("9223372036854775807", 9, &rc); /* overflows once scaled to nano */
    assert_int_not_equal(rc, 0);
}

static void test_format_trims_zeros(void **state)
{
    char buf[32];
    sl_usd_format(INT64_C(12000000000000), 9, buf, sizeof(buf));
    assert_string_equal(buf, "12000");
    sl_usd_format(2500, 9, buf, sizeof(buf));
    assert_string_equal(buf, "0.0000025");
    sl_usd_format(2500000, 6, buf, sizeof(buf));
    assert_string_equal(buf, "2.5");
    sl_usd_format(-1500000000, 9, buf, sizeof(buf));
    assert_string_equal(buf, "-1.5");
    sl_usd_format(0, 9, buf, sizeof(buf));
    assert_string_equal(buf, "0");
    sl_usd_format(INT64_MIN, 9, buf, sizeof(buf));
    assert_string_equal(buf, "-9223372036.854775808");
}

static void test_cost_is_exact(void **state)
{
    /* gpt-4o input at $2.50 per million tokens: one token costs 2500 nano-USD */
    assert_int_equal(sl_cost_nano(1, 2500000), 2500);
    assert_int_equal(sl_cost_nano(1000000, 2500000), INT64_C(2500000000));
    assert_int_equal(sl_cost_nano(123, 10000000), 1230000);
    /* a price finer than 0.001 USD/Mtok rounds half up */
    assert_int_equal(sl_cost_nano(1, 1500), 2);
    assert_int_equal(sl_cost_nano(1, 1499), 1);
    assert_int_equal(sl_cost_nano(0, 2500000), 0);
    assert_int_equal(sl_cost_nano(-5, 2500000), 0);
    assert_int_equal(sl_cost_nano(INT64_MAX, INT64_MAX), INT64_MAX);
    assert_int_equal(sl_add_sat(INT64_MAX - 1, 5), INT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_budget_and_prices),
        cmocka_unit_test(test_parse_rejects_bad_input),
        cmocka_unit_test(test_format_trims_zeros),
        cmocka_unit_test(test_cost_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
