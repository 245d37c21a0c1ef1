/* spend_test.c - tests of the pure parts of controlplane/cp_spend.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cp_spend.h"

static void test_parse_date(void **state)
{
    long d;
    assert_int_equal(cp_spend_parse_date("1970-01-01", &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(cp_spend_parse_date("2026-03-01", &d), 0);
    assert_int_equal(d, 20513);                                 /* 1772323200 / 86400 */
    assert_int_equal(cp_spend_parse_date("2024-02-29", &d), 0); /* leap day */
    assert_int_equal(cp_spend_parse_date("2000-02-29", &d), 0); /* divisible by 400 */
    assert_int_equal(cp_spend_parse_date("2100-02-29", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-02-29", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-04-31", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-12-31", &d), 0);
    assert_int_equal(cp_spend_parse_date("2026-13-01", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-00-10", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-1-01", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("2026-01-01T00", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("1969-12-31", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("20260101xx", &d), SL_EINVAL);
    assert_int_equal(cp_spend_parse_date("", &d), SL_EINVAL);
    long a, b;
    cp_spend_parse_date("2024-02-28", &a);
    cp_spend_parse_date("2024-03-01", &b);
    assert_int_equal(b - a, 2);
}

static void test_validate(void **state)
{
    Sluice__Admin__V1__GetSpendRequest q = SLUICE__ADMIN__V1__GET_SPEND_REQUEST__INIT;
    sl_err_t err = {0};
    cp_spend_by_t by;
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "tenant_id is required");
    q.tenant_id = "acme";
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "from_date is required (YYYY-MM-DD)");
    q.from_date = "2026-03-01";
    q.to_date = "2026-02-30";
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "to_date \"2026-02-30\" is not a date (YYYY-MM-DD)");
    q.to_date = "2026-02-01";
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "to_date 2026-02-01 must be after from_date 2026-03-01 (to_date is exclusive)");
    q.to_date = "2040-03-01";
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "the range from 2026-03-01 to 2040-03-01 is longer than 3660 days");
    q.to_date = "2026-04-01";
    assert_int_equal(cp_spend_validate(&q, &by, &err), 0);
    assert_int_equal(by, CP_SPEND_BY_DAY);
    q.group_by = "model";
    assert_int_equal(cp_spend_validate(&q, &by, &err), 0);
    assert_int_equal(by, CP_SPEND_BY_MODEL);
    q.group_by = "key";
    assert_int_equal(cp_spend_validate(&q, &by, &err), 0);
    assert_int_equal(by, CP_SPEND_BY_KEY);
    q.group_by = "Day";
    assert_int_equal(cp_spend_validate(&q, &by, &err), SL_EINVAL);
    assert_string_equal(err.msg, "group_by \"Day\" is not day, model or key");
}

static void test_quota_status_validate(void **state)
{
    Sluice__Admin__V1__GetQuotaStatusRequest q = SLUICE__ADMIN__V1__GET_QUOTA_STATUS_REQUEST__INIT;
    sl_err_t err = {0};
    assert_int_equal(cp_quota_status_validate(&q, &err), SL_EINVAL);
    assert_string_equal(err.msg, "exactly one of tenant_id and key_id is required");
    q.tenant_id = "t";
    assert_int_equal(cp_quota_status_validate(&q, &err), 0);
    q.key_id = "k";
    assert_int_equal(cp_quota_status_validate(&q, &err), SL_EINVAL);
    q.tenant_id = "";
    assert_int_equal(cp_quota_status_validate(&q, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_date),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_quota_status_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
