/* report_test.c - tests of the pure parts of controlplane/cp_report.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "cp_report.h"

static cp_usage_pb entry(int64_t minute)
{
    cp_usage_pb e = SLUICE__SYNC__V1__USAGE_ENTRY__INIT;
    e.key_id = "vk";
    e.provider = "openai";
    e.model = "gpt-4o";
    e.minute_unix = minute;
    e.requests = 1;
    return e;
}

static void test_validate(void **state)
{
    sl_err_t err = {0};
    cp_report_pb r = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "report node_id must be 1 to 128 printable characters");
    r.node_id = "n1";
    r.boot_id = "b1";
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "report seq must be greater than 0, not 0");
    r.seq = 1;
    assert_int_equal(cp_report_validate(&r, &err), 0);

    cp_usage_pb e = entry(1767225600), *ep = &e;
    r.entries = &ep;
    r.n_entries = 1;
    assert_int_equal(cp_report_validate(&r, &err), 0);
    e.output_tokens = -1;
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "report entry 1: counts must not be negative");
    e.output_tokens = 0;
    e.minute_unix = INT64_C(1767225600000); /* milliseconds by mistake */
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    e.minute_unix = 1767225600;
    e.key_id = "";
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
}

static void test_months(void **state)
{
    /* 2025-12-31T23:59, 2026-01-01T00:00, 2026-01-15, 2025-12-01 */
    cp_usage_pb a = entry(1767225540), b = entry(1767225600), c = entry(1768435200), d = entry(1764547200);
    cp_usage_pb *v[4] = {&a, &b, &c, &d};
    cp_report_pb r = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    r.entries = v;
    r.n_entries = 4;
    int64_t m[8];
    size_t n = cp_report_months(&r, m, 8);
    assert_int_equal(n, 2);
    assert_int_equal(m[0], 1764547200); /* 2025-12-01 */
    assert_int_equal(m[1], 1767225600); /* 2026-01-01 */
}

static void test_entries_json_truncates_to_minute(void **state)
{
    cp_usage_pb a = entry(1767225659);
    a.cost_nano = INT64_C(9000000000000000000);
    cp_usage_pb *v[1] = {&a};
    cp_report_pb r = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    r.entries = v;
    r.n_entries = 1;
    char *s = cp_report_entries_json(&r);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    json_t *e = json_array_get(j, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "minute")), 1767225600);
    assert_true(json_integer_value(json_object_get(e, "cost_nano")) == INT64_C(9000000000000000000));
    assert_string_equal(json_string_value(json_object_get(e, "key_id")), "vk");
    json_decref(j);
    free(s);
}

static void test_validate_leases(void **state)
{
    sl_err_t err = {0};
    cp_report_pb r = SLUICE__SYNC__V1__USAGE_REPORT__INIT;
    r.node_id = "n1";
    r.boot_id = "b1";
    r.seq = 1;
    Sluice__Sync__V1__LeaseRequest q = SLUICE__SYNC__V1__LEASE_REQUEST__INIT, *qp = &q;
    Sluice__Sync__V1__LeaseState s = SLUICE__SYNC__V1__LEASE_STATE__INIT, *sp = &s;
    r.lease_requests = &qp;
    r.n_lease_requests = 1;
    q.quota_id = "42";
    q.want = 100;
    assert_int_equal(cp_report_validate(&r, &err), 0);
    q.quota_id = "042";
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "lease request 1: quota_id \"042\" is not a quota id");
    q.quota_id = "42";
    q.want = -1;
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "lease request 1: want must not be negative");
    q.want = 0;
    q.window_start_unix = -60;
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    q.window_start_unix = 1772323200;
    assert_int_equal(cp_report_validate(&r, &err), 0);
    r.leases = &sp;
    r.n_leases = 1;
    s.quota_id = "";
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    assert_string_equal(err.msg, "lease 1: quota_id \"\" is not a quota id");
    s.quota_id = "7";
    s.reserved = -1;
    assert_int_equal(cp_report_validate(&r, &err), SL_EINVAL);
    s.reserved = 5;
    s.unreserved = 9;
    assert_int_equal(cp_report_validate(&r, &err), 0);
}

static void test_quota_id(void **state)
{
    assert_true(cp_report_quota_id_ok("1"));
    assert_true(cp_report_quota_id_ok("999999999999999999"));
    assert_false(cp_report_quota_id_ok("1000000000000000000")); /* 19 digits */
    assert_false(cp_report_quota_id_ok("0"));
    assert_false(cp_report_quota_id_ok("-1"));
    assert_false(cp_report_quota_id_ok("1 "));
    assert_false(cp_report_quota_id_ok(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_validate), cmocka_unit_test(test_months),
                                       cmocka_unit_test(test_entries_json_truncates_to_minute),
                                       cmocka_unit_test(test_validate_leases), cmocka_unit_test(test_quota_id)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
