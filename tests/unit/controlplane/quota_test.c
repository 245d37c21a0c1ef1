/* quota_test.c - tests of controlplane/cp_quota.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_quota.h"

static void test_key_and_value(void **state)
{
    cp_quota_pb q = SLUICE__CONFIG__V1__QUOTA__INIT;
    q.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
    q.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY;
    q.limit = INT64_C(1500000000);
    char buf[100];
    cp_quota_key(&q, buf, sizeof(buf));
    assert_string_equal(buf, "cost_nano/day");
    cp_quota_value(&q, buf, sizeof(buf));
    assert_string_equal(buf, "1.5 USD");
    q.provider = "openai";
    q.on_unavailable = SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED;
    cp_quota_key(&q, buf, sizeof(buf));
    assert_string_equal(buf, "openai:cost_nano/day");
    cp_quota_value(&q, buf, sizeof(buf));
    assert_string_equal(buf, "1.5 USD (closed when unavailable)");
}

static void test_validate(void **state)
{
    sl_err_t err = {0};
    cp_quota_pb q = SLUICE__CONFIG__V1__QUOTA__INIT;
    q.metric = 2;
    q.window = 7;
    assert_int_equal(cp_quota_validate(&q, "k", &err), SL_EINVAL);
    assert_string_equal(err.msg, "k: quota window 7 is unknown");
    q.window = 1;
    q.limit = 0;
    assert_int_equal(cp_quota_validate(&q, "k", &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_key_and_value), cmocka_unit_test(test_validate)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
