/* lease_test.c - tests of controlplane/cp_lease.c: grant arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cp_lease.h"

static void test_remaining(void **state)
{
    assert_int_equal(cp_lease_remaining(1000, 0, 0), 1000);
    assert_int_equal(cp_lease_remaining(1000, 300, 200), 500);
    assert_int_equal(cp_lease_remaining(1000, 800, 200), 0);
    assert_int_equal(cp_lease_remaining(1000, 1300, 0), 0); /* an overrun */
    assert_int_equal(cp_lease_remaining(500, 0, 600), 0);   /* a lowered limit */
    assert_int_equal(cp_lease_remaining(0, 0, 0), 0);
    assert_true(cp_lease_remaining(INT64_MAX, 0, 0) == INT64_MAX);
    assert_true(cp_lease_remaining(INT64_MAX, INT64_MAX, INT64_MAX) == 0);
    assert_true(cp_lease_remaining(INT64_MAX, -5, INT64_MIN) == INT64_MAX); /* corrupt inputs clamp */
}

static void test_grant_alone_takes_what_it_wants(void **state)
{
    /* nobody else holds the window: up to everything that is left */
    assert_int_equal(cp_lease_grant(1000, 0, 0, 0, 400), 400);
    assert_int_equal(cp_lease_grant(1000, 0, 0, 0, 5000), 1000);
    assert_int_equal(cp_lease_grant(1000, 100, 300, 300, 5000), 600); /* the outstanding is all mine */
    assert_int_equal(cp_lease_grant(1000, 0, 0, 0, 0), 0);
    assert_int_equal(cp_lease_grant(1000, 0, 0, 0, -7), 0);
}

static void test_grant_shares_when_others_hold_leases(void **state)
{
    /* others hold 200: at most half the room (rounded up) per request */
    assert_int_equal(cp_lease_grant(1000, 0, 200, 0, 100), 100);
    assert_int_equal(cp_lease_grant(1000, 0, 200, 0, 5000), 400);
    assert_int_equal(cp_lease_grant(1000, 0, 201, 0, 5000), 400); /* room 799 -> 400 */
    assert_int_equal(cp_lease_grant(1000, 0, 999, 0, 5), 1);      /* the last unit can still be granted */
    assert_int_equal(cp_lease_grant(1000, 0, 1000, 0, 5), 0);
    assert_int_equal(cp_lease_grant(1000, 500, 300, 100, 5000), 100);
}

static void test_grant_never_exceeds_the_limit(void **state)
{
    /* repeated grants of racing nodes sum to at most the room */
    int64_t limit = 12345, used = 345, outstanding = 0, mine[3] = {0};
    for (int round = 0; round < 200; round++) {
        int n = round % 3;
        int64_t g = cp_lease_grant(limit, used, outstanding, mine[n], 1000 + round);
        assert_true(g >= 0);
        outstanding += g;
        mine[n] += g;
        assert_true(used + outstanding <= limit);
    }
    assert_true(used + outstanding == limit); /* and the whole budget can be handed out */
    assert_int_equal(cp_lease_grant(limit, used, outstanding, mine[0], 1), 0);
    /* extreme values saturate instead of overflowing */
    assert_true(cp_lease_grant(INT64_MAX, 0, 0, 0, INT64_MAX) == INT64_MAX);
    assert_true(cp_lease_grant(INT64_MAX, INT64_MAX - 1, 0, 0, INT64_MAX) == 1);
    assert_int_equal(cp_lease_grant(-1, 0, 0, 0, 10), 0);
}

static void test_cfg(void **state)
{
    sl_err_t err = {0};
    cp_lease_cfg_t c = {CP_LEASE_TTL_MS_DEFAULT, CP_LEASE_GRACE_MS_DEFAULT};
    assert_int_equal(cp_lease_cfg_validate(&c, &err), 0);
    assert_int_equal(cp_lease_reclaim_interval_ms(&c), 5000);
    c.ttl_ms = 400;
    assert_int_equal(cp_lease_reclaim_interval_ms(&c), 200);
    c.ttl_ms = 100;
    assert_int_equal(cp_lease_reclaim_interval_ms(&c), 100);
    c.ttl_ms = 99;
    assert_int_equal(cp_lease_cfg_validate(&c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--lease-ttl-ms must be between 100 and 3600000, not 99");
    c.ttl_ms = 1000;
    c.grace_ms = -1;
    assert_int_equal(cp_lease_cfg_validate(&c, &err), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remaining),
        cmocka_unit_test(test_grant_alone_takes_what_it_wants),
        cmocka_unit_test(test_grant_shares_when_others_hold_leases),
        cmocka_unit_test(test_grant_never_exceeds_the_limit),
        cmocka_unit_test(test_cfg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
