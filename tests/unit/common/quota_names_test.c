/* Tests for common/sl_quota_names.c: the names agree with the proto enums
 * and parse back to the values they name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sl_quota_names.h"
#include "sluice/config/v1/config.pb-c.h"

typedef struct word {
    int value;
    const char *name;
} word_t;

static const word_t metrics[] = {
    {SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO, "cost_nano"},
    {SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS, "requests"},
    {SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS, "tokens"},
    {SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT, "concurrent"},
};

static const word_t windows[] = {
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE, "minute"},
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_HOUR, "hour"},
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY, "day"},
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_WEEK, "week"},
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH, "month"},
    {SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_TOTAL, "total"},
};

static const word_t policies[] = {
    {SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_DEFAULT, "default"},
    {SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED, "closed"},
    {SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN, "open"},
};

#define N(a) (sizeof(a) / sizeof(a[0]))

static void test_names_follow_the_proto_enums_and_parse_back(void **state)
{
    for (size_t i = 0; i < N(metrics); i++) {
        assert_string_equal(sl_quota_metric_name(metrics[i].value), metrics[i].name);
        assert_int_equal(sl_quota_metric_parse(metrics[i].name), metrics[i].value);
    }
    for (size_t i = 0; i < N(windows); i++) {
        assert_string_equal(sl_quota_window_name(windows[i].value), windows[i].name);
        assert_int_equal(sl_quota_window_parse(windows[i].name), windows[i].value);
    }
    for (size_t i = 0; i < N(policies); i++) {
        assert_string_equal(sl_quota_on_unavailable_name(policies[i].value), policies[i].name);
        assert_int_equal(sl_quota_on_unavailable_parse(policies[i].name), policies[i].value);
    }
}

static void test_unknown_values_and_names(void **state)
{
    assert_null(sl_quota_metric_name(SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_UNSPECIFIED));
    assert_null(sl_quota_metric_name(5));
    assert_null(sl_quota_window_name(SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_UNSPECIFIED));
    assert_null(sl_quota_window_name(99));
    assert_null(sl_quota_window_name(-1));
    assert_null(sl_quota_on_unavailable_name(3));
    assert_int_equal(sl_quota_metric_parse("bogus"), 0);
    assert_int_equal(sl_quota_window_parse(""), 0);
    assert_int_equal(sl_quota_on_unavailable_parse("sometimes"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_follow_the_proto_enums_and_parse_back),
        cmocka_unit_test(test_unknown_values_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
