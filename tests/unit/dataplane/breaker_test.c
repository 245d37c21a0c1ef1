/* breaker_test.c - the circuit breaker state machine (dataplane/dp_breaker.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dp_breaker.h"

static dp_breaker_cfg_t cfg(void)
{
    dp_breaker_cfg_t c;
    dp_breaker_cfg_default(&c);
    c.failures = 3;
    c.min_requests = 10;
    c.ratio_pct = 50;
    c.window_ms = 10000;
    c.cooldown_ms = 1000;
    c.max_cooldown_ms = 3000;
    c.auth_cooldown_ms = 60000;
    c.probe_timeout_ms = 500;
    return c;
}

static void fresh(dp_breaker_t *b)
{
    memset(b, 0, sizeof(*b));
    dp_breaker_reset(b);
}

static void test_defaults_suit_llm_traffic(void **state)
{
    dp_breaker_cfg_t c;
    dp_breaker_cfg_default(&c);
    assert_int_equal(c.failures, 5);
    assert_true(c.cooldown_ms >= 10000 && c.cooldown_ms <= c.max_cooldown_ms);
    assert_true(c.auth_cooldown_ms > c.cooldown_ms);
}

static void test_consecutive_failures_open(void **state)
{
    dp_breaker_t b;
    dp_breaker_cfg_t c = cfg();
    fresh(&b);
    int64_t t = 100000;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(dp_breaker_allow(&b, t), DP_BREAKER_ALLOW);
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    }
    /* a success resets the run */
    dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t, NULL);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_CLOSED);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_allow(&b, t + 999), DP_BREAKER_DENY);
    assert_false(dp_breaker_available(&b, t + 999));
    assert_int_equal((int)b.opened_total, 1);
    /* late reports from requests started before it opened change nothing */
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t + 10, NULL);
    dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t + 10, NULL);
    assert_int_equal(dp_breaker_state(&b, t + 10), DP_BREAKER_OPEN);
    assert_int_equal((int)b.opened_total, 1);
}

static void test_half_open_probe_closes_or_reopens_with_doubled_cooldown(void **state)
{
    dp_breaker_t b;
    dp_breaker_cfg_t c = cfg();
    fresh(&b);
    int64_t t = 5000;
    for (int i = 0; i < 3; i++)
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    /* cooldown over: exactly one probe goes through */
    t += 1000;
    assert_true(dp_breaker_available(&b, t));
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_HALF_OPEN);
    assert_int_equal(dp_breaker_allow(&b, t), DP_BREAKER_PROBE);
    assert_int_equal(dp_breaker_allow(&b, t), DP_BREAKER_DENY);
    assert_false(dp_breaker_available(&b, t + 1));
    /* the probe fails: open again, twice as long */
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 1, t, NULL);
    assert_int_equal(dp_breaker_allow(&b, t + 1999), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, t + 2000), DP_BREAKER_PROBE);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 1, t + 2000, NULL);
    /* capped at max_cooldown_ms */
    t += 2000;
    assert_int_equal(dp_breaker_allow(&b, t + 2999), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, t + 3000), DP_BREAKER_PROBE);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 1, t + 3000, NULL);
    t += 3000;
    assert_int_equal(dp_breaker_allow(&b, t + 2999), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, t + 3000), DP_BREAKER_PROBE);
    /* the probe succeeds: closed, and the next opening starts from the base cooldown */
    dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 1, t + 3000, NULL);
    assert_int_equal(dp_breaker_state(&b, t + 3000), DP_BREAKER_CLOSED);
    assert_int_equal(dp_breaker_allow(&b, t + 3000), DP_BREAKER_ALLOW);
    t += 3000;
    for (int i = 0; i < 3; i++)
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    assert_int_equal(dp_breaker_allow(&b, t + 999), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, t + 1000), DP_BREAKER_PROBE);
}

static void test_silent_probe_frees_half_open_after_its_timeout(void **state)
{
    dp_breaker_t b;
    dp_breaker_cfg_t c = cfg();
    fresh(&b);
    for (int i = 0; i < 3; i++)
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, 0, NULL);
    assert_int_equal(dp_breaker_allow(&b, 1000), DP_BREAKER_PROBE);
    /* the probe's client went away: no report */
    assert_int_equal(dp_breaker_allow(&b, 1499), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, 1500), DP_BREAKER_PROBE);
}

static void test_failure_ratio_opens(void **state)
{
    dp_breaker_t b;
    dp_breaker_cfg_t c = cfg();
    fresh(&b);
    int64_t t = 50000;
    /* alternate: never 3 failures in a row, but half of the window fails */
    for (int i = 0; i < 4; i++) {
        dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t, NULL);
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    }
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_CLOSED); /* 8 outcomes: below min_requests */
    dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t, NULL);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_OPEN);

    /* a new window forgets old outcomes */
    fresh(&b);
    for (int i = 0; i < 4; i++) {
        dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t, NULL);
        dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    }
    t += c.window_ms;
    dp_breaker_record(&b, &c, DP_OUTCOME_SUCCESS, 0, t, NULL);
    dp_breaker_record(&b, &c, DP_OUTCOME_FAILURE, 0, t, NULL);
    assert_int_equal(dp_breaker_state(&b, t), DP_BREAKER_CLOSED);
}

static void test_auth_failure_opens_at_once_for_long(void **state)
{
    dp_breaker_t b;
    dp_breaker_cfg_t c = cfg();
    fresh(&b);
    dp_breaker_record(&b, &c, DP_OUTCOME_AUTH, 0, 0, NULL);
    assert_int_equal(dp_breaker_state(&b, 0), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_allow(&b, 59999), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(&b, 60000), DP_BREAKER_PROBE);
}

static void test_breaker_per_credential_and_fresh_for_a_new_secret(void **state)
{
    dp_breaker_cfg_t c = cfg();
    dp_provider_t p = {.name = "prov"};
    dp_credential_t a = {.id = "a", .secret = "s1", .secret_len = 2};
    dp_credential_t a2 = {.id = "a", .secret = "s2", .secret_len = 2};
    dp_credential_t other = {.id = "b", .secret = "s1", .secret_len = 2};
    dp_breaker_t *ba = dp_breaker_get(&p, &a);
    assert_non_null(ba);
    assert_ptr_equal(dp_breaker_get(&p, &a), ba);
    assert_ptr_not_equal(dp_breaker_get(&p, &other), ba);
    assert_string_equal(ba->provider, "prov");
    assert_string_equal(ba->credential, "a");
    int64_t now = dp_breaker_now_ms();
    dp_breaker_record(ba, &c, DP_OUTCOME_AUTH, 0, now, &a);
    assert_int_equal(dp_breaker_allow(dp_breaker_get(&p, &a), now), DP_BREAKER_DENY);
    assert_int_equal(dp_breaker_allow(dp_breaker_get(&p, &other), now), DP_BREAKER_ALLOW);
    /* the same credential id with a rotated secret starts closed */
    assert_ptr_equal(dp_breaker_get(&p, &a2), ba);
    assert_int_equal(dp_breaker_allow(ba, now), DP_BREAKER_ALLOW);
}

static void test_throttle_skips_a_credential_until_retry_after_ends(void **state)
{
    dp_breaker_t b;
    fresh(&b);
    assert_int_equal(dp_breaker_throttled_until(&b, 1000), 0);
    dp_breaker_throttle(&b, 6000);
    assert_int_equal(dp_breaker_throttled_until(&b, 1000), 6000);
    dp_breaker_throttle(&b, 3000); /* a shorter wait does not shorten it */
    assert_int_equal(dp_breaker_throttled_until(&b, 1000), 6000);
    dp_breaker_throttle(&b, 9000);
    assert_int_equal(dp_breaker_throttled_until(&b, 1000), 9000);
    assert_int_equal(dp_breaker_throttled_until(&b, 9000), 0); /* over */
    /* throttling is not a breaker state */
    assert_int_equal(dp_breaker_state(&b, 1000), DP_BREAKER_CLOSED);
    assert_int_equal(dp_breaker_allow(&b, 1000), DP_BREAKER_ALLOW);
    dp_breaker_throttle(&b, 20000);
    dp_breaker_reset(&b); /* a rotated secret starts over */
    assert_int_equal(dp_breaker_throttled_until(&b, 1000), 0);
}

static void test_params_override_defaults(void **state)
{
    Sluice__Config__V1__Provider pb = SLUICE__CONFIG__V1__PROVIDER__INIT;
    Sluice__Config__V1__Provider__ParamsEntry e1 = SLUICE__CONFIG__V1__PROVIDER__PARAMS_ENTRY__INIT,
                                              e2 = SLUICE__CONFIG__V1__PROVIDER__PARAMS_ENTRY__INIT,
                                              e3 = SLUICE__CONFIG__V1__PROVIDER__PARAMS_ENTRY__INIT;
    e1.key = "breaker_failures";
    e1.value = "2";
    e2.key = "breaker_cooldown_ms";
    e2.value = "not a number";
    e3.key = "region";
    e3.value = "us-east-1";
    Sluice__Config__V1__Provider__ParamsEntry *params[] = {&e1, &e2, &e3};
    pb.params = params;
    pb.n_params = 3;
    dp_provider_t p = {.name = "x", .pb = &pb};
    dp_breaker_cfg_t c, d;
    dp_breaker_cfg_for(&p, &c);
    dp_breaker_cfg_default(&d);
    assert_int_equal(c.failures, 2);
    assert_int_equal(c.cooldown_ms, d.cooldown_ms);
    assert_int_equal(c.auth_cooldown_ms, d.auth_cooldown_ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_suit_llm_traffic),
        cmocka_unit_test(test_consecutive_failures_open),
        cmocka_unit_test(test_half_open_probe_closes_or_reopens_with_doubled_cooldown),
        cmocka_unit_test(test_silent_probe_frees_half_open_after_its_timeout),
        cmocka_unit_test(test_failure_ratio_opens),
        cmocka_unit_test(test_auth_failure_opens_at_once_for_long),
        cmocka_unit_test(test_breaker_per_credential_and_fresh_for_a_new_secret),
        cmocka_unit_test(test_params_override_defaults),
        cmocka_unit_test(test_throttle_skips_a_credential_until_retry_after_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
