/*
 * anomaly_test.c - tests of controlplane/cp_anomaly.c, and the measurement
 * of the spend_anomaly detector on synthetic spend series.
 *
 * The series are generated deterministically (splitmix64, fixed seeds): a
 * business-hours daily cycle on weekdays, a lower and flatter weekend, noise
 * of +-15% per hour, and a few one-hour spikes of 5-10x in the history.
 * test_measured_table replays them the way the alert evaluator will call the
 * detector (every 10 minutes, spend accumulating through the hour, the last
 * six weeks as history), prints detection and resolution delays and false
 * alarms for several sensitivities, and asserts bounds at sensitivity 3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_anomaly.h"
#include "sl_err.h"

#define WEEK CP_ANOMALY_WEEK_HOURS
#define NANO 1000000000.0
#define HIST_HOURS (6 * WEEK) /* history the evaluator passes */
#define TEST_WEEKS 4          /* normal weeks replayed per seed */
#define SERIES_HOURS (HIST_HOURS + TEST_WEEKS * WEEK + 48)
#define SERIES_HOW0 37 /* series start Tuesday 13:00: days do not align with index 0 */

/* ---- deterministic synthetic spend ---- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Approximately standard normal (sum of 12 uniforms), bounded at +-6. */
static double rng_gauss(rng_t *r)
{
    double s = 0;
    for (int k = 0; k < 12; k++)
        s += rng_unit(r);
    return s - 6;
}

typedef enum noise {
    NOISE_UNIFORM, /* hourly x U(0.85, 1.15) */
    NOISE_HEAVY,   /* hourly x N(1, 0.15), and each day x U(0.9, 1.1) */
} noise_t;

/* Normal spend in USD for an hour of the week (0 = Monday 00:00). */
static double profile_usd(int how)
{
    int day = how / 24, hod = how % 24;
    if (day >= 5) /* weekend: lower and flatter */
        return hod < 9 ? 0.8 : hod < 21 ? 2.5 : 1.2;
    if (hod < 7)
        return 1.0;
    if (hod < 9)
        return 3.0;
    if (hod < 18)
        return 10.0;
    return hod < 21 ? 5.0 : 2.0;
}

typedef struct series {
    int64_t x[SERIES_HOURS];
    double normal[SERIES_HOURS]; /* the noisy normal value, before any injection */
} series_t;

static int how_at(size_t i)
{
    return (int)((SERIES_HOW0 + i) % WEEK);
}

/* A normal series scaled by level (1 = business hours at 10 USD), with
 * past_spikes one-hour spikes of 5-10x placed in the history. */
static void generate(series_t *s, uint64_t seed, noise_t kind, double level, int past_spikes)
{
    rng_t r = {seed};
    double day = 1;
    for (size_t i = 0; i < SERIES_HOURS; i++) {
        if (i == 0 || how_at(i) % 24 == 0)
            day = kind == NOISE_HEAVY ? 0.9 + 0.2 * rng_unit(&r) : 1;
        double m = kind == NOISE_UNIFORM ? 0.85 + 0.3 * rng_unit(&r) : (1 + 0.15 * rng_gauss(&r)) * day;
        if (m < 0)
            m = 0;
        s->normal[i] = profile_usd(how_at(i)) * level * m * NANO;
        s->x[i] = (int64_t)s->normal[i];
    }
    for (int k = 0; k < past_spikes; k++) {
        size_t i = (size_t)(rng_unit(&r) * HIST_HOURS);
        s->x[i] = (int64_t)(s->normal[i] * (5 + 5 * rng_unit(&r)));
    }
}

/* ---- replaying a series through the detector ---- */

typedef struct event {
    double t; /* hours since series start, at the evaluation */
    cp_anomaly_action_t action;
} event_t;

typedef struct replay {
    const int64_t *x;
    const cp_anomaly_params_t *p;
    size_t window; /* history hours passed */
    int steps;     /* evaluations per hour, the last at the end of the hour */
    bool firing;
    int evaluations;
} replay_t;

static cp_anomaly_action_t eval_at(replay_t *rp, size_t t, double f, cp_anomaly_result_t *res)
{
    cp_anomaly_input_t in = {
        .history = rp->x + t - rp->window,
        .history_hours = rp->window,
        .current_nano = (int64_t)((double)rp->x[t] * f),
        .current_fraction = f,
        .current_hour_of_week = how_at(t),
        .firing = rp->firing,
    };
    assert_int_equal(cp_anomaly_evaluate(rp->p, &in, res), 0);
    rp->firing = res->firing;
    rp->evaluations++;
    return res->action;
}

/* Replays hours [from, to) as the evaluator does: a model prepared when an
 * hour starts, decisions on the spend so far every 60 / steps minutes.
 * Records up to cap events and stops early at the first event whose action
 * is stop_at (NO_CHANGE = never). Returns the number of events recorded. */
static int replay(replay_t *rp, size_t from, size_t to, event_t *ev, int cap, cp_anomaly_action_t stop_at)
{
    int n = 0;
    for (size_t t = from; t < to; t++) {
        cp_anomaly_model_t m;
        assert_int_equal(cp_anomaly_prepare(rp->p, rp->x + t - rp->window, rp->window, how_at(t), &m), 0);
        for (int k = 1; k <= rp->steps; k++) {
            cp_anomaly_result_t res;
            double f = (double)k / rp->steps;
            assert_int_equal(cp_anomaly_decide(&m, (int64_t)((double)rp->x[t] * f), f, rp->firing, &res), 0);
            rp->firing = res.firing;
            rp->evaluations++;
            cp_anomaly_action_t a = res.action;
            if (a == CP_ANOMALY_NO_CHANGE)
                continue;
            if (n < cap)
                ev[n++] = (event_t){(double)t + (double)k / rp->steps, a};
            if (a == stop_at)
                return n;
        }
    }
    return n;
}

/* ---- unit tests of single evaluations ---- */

static int64_t hist[SERIES_HOURS];

static void fill_profile(int64_t *x, size_t n, int how_of_first, double level)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (int64_t)(profile_usd((int)((how_of_first + i) % WEEK)) * level * NANO);
}

static cp_anomaly_result_t eval1(const cp_anomaly_params_t *p, size_t hours, double current_usd, double f, int how,
                                 bool firing)
{
    cp_anomaly_input_t in = {hist, hours, (int64_t)(current_usd * NANO), f, how, firing};
    cp_anomaly_result_t res;
    assert_int_equal(cp_anomaly_evaluate(p, &in, &res), 0);
    return res;
}

static void test_invalid_input_rejected(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    cp_anomaly_input_t in = {hist, 500, 0, 1, 10, false};
    cp_anomaly_result_t res;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), 0);
    in.current_hour_of_week = 168;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
    assert_string_equal(res.reason, "current_hour_of_week must be in 0..167");
    in.current_hour_of_week = 10;
    in.current_fraction = 0;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
    in.current_fraction = 1.5;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
    in.current_fraction = 1;
    in.history = NULL;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
    in.history = hist;
    p.sensitivity = 0;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    p.sensitivity = 3;
    p.sustained_hours = 25;
    assert_int_equal(cp_anomaly_evaluate(&p, &in, &res), SL_EINVAL);
}

static void test_insufficient_history_never_fires(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    fill_profile(hist, WEEK, 0, 1);
    /* one week: not enough, however large the spend */
    cp_anomaly_result_t res = eval1(&p, WEEK, 1000, 1, 10, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_false(res.firing);
    assert_int_equal(res.basis, CP_ANOMALY_BASIS_NONE);
    assert_string_equal(res.reason, "insufficient history: 168 of 192 hours needed");
    /* nor does it resolve by itself */
    res = eval1(&p, WEEK, 0, 1, 10, true);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_true(res.firing);
    /* a larger configured minimum applies */
    p.min_history_hours = 2 * WEEK;
    fill_profile(hist, 2 * WEEK, 0, 1);
    res = eval1(&p, 300, 1000, 1, 300 % WEEK, false);
    assert_string_equal(res.reason, "insufficient history: 300 of 336 hours needed");
    res = eval1(&p, 2 * WEEK, 1000, 1, 0, false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
}

/* The model holds for the whole hour: deciding on it gives what the one
 * call gives, and a model without enough history decides nothing. */
static void test_model_prepared_once_per_hour(void **state)
{
    static series_t s;
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    generate(&s, 3, NOISE_UNIFORM, 1, 4);
    size_t t = HIST_HOURS + 30;
    cp_anomaly_model_t m;
    assert_int_equal(cp_anomaly_prepare(&p, s.x + t - HIST_HOURS, HIST_HOURS, how_at(t), &m), 0);
    assert_true(m.ready);
    assert_int_equal(m.history_weeks, 6);
    assert_int_equal(m.recent_hours, CP_ANOMALY_MAX_SUSTAINED);
    assert_true(m.recent[0].spend == (double)s.x[t - 1]);
    for (int k = 1; k <= 4; k++) {
        for (int firing = 0; firing <= 1; firing++) {
            double spend = (double)s.x[t] * k; /* normal up to 4x */
            cp_anomaly_input_t in = {s.x + t - HIST_HOURS, HIST_HOURS, (int64_t)spend, k / 4.0, how_at(t), firing};
            cp_anomaly_result_t one, two;
            assert_int_equal(cp_anomaly_evaluate(&p, &in, &one), 0);
            assert_int_equal(cp_anomaly_decide(&m, in.current_nano, in.current_fraction, firing, &two), 0);
            assert_memory_equal(&one, &two, sizeof(one));
        }
    }
    cp_anomaly_result_t res;
    assert_int_equal(cp_anomaly_decide(&m, 0, 0, false, &res), SL_EINVAL);
    assert_int_equal(cp_anomaly_prepare(&p, s.x, 100, 100, &m), 0);
    assert_false(m.ready);
    assert_int_equal(cp_anomaly_decide(&m, INT64_C(1000000000000), 1, false, &res), 0);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_string_equal(res.reason, "insufficient history: 100 of 192 hours needed");
}

/* The expectation follows the hour of the day and the day of the week: 10
 * USD is normal at 11:00 on a weekday, anomalous at 03:00 and on Saturday. */
static void test_baseline_follows_time_of_day_and_day_of_week(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    static const struct {
        int how;
        int64_t expected_usd;
        cp_anomaly_action_t action;
    } cases[] = {
        {0 * 24 + 11, 10, CP_ANOMALY_NO_CHANGE}, /* Monday 11:00 */
        {3 * 24 + 11, 10, CP_ANOMALY_NO_CHANGE}, /* Thursday 11:00 */
        {3 * 24 + 3, 1, CP_ANOMALY_FIRE},        /* Thursday 03:00 */
        {5 * 24 + 11, 2, CP_ANOMALY_FIRE},       /* Saturday 11:00 expects 2.5 */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        fill_profile(hist, 6 * WEEK, cases[k].how, 1); /* six whole weeks ending where the current hour starts */
        cp_anomaly_result_t res = eval1(&p, 6 * WEEK, 10, 1, cases[k].how, false);
        assert_int_equal(res.action, cases[k].action);
        assert_int_equal(res.expected_nano / (int64_t)NANO, cases[k].expected_usd);
        assert_int_equal(res.history_weeks, 6);
    }
}

/* Six hours in a row at twice the normal variation, none of them enough on
 * its own, fire the sustained test. */
static void test_sustained_excess_fires(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    size_t n = 6 * WEEK;
    int how = 17; /* Monday 17:00; 11:00-16:00 are business hours at 10 USD, scale 1 USD */
    fill_profile(hist, n, how, 1);
    for (size_t k = 1; k <= 6; k++)
        hist[n - k] = 12 * (int64_t)NANO;
    cp_anomaly_result_t res = eval1(&p, n, 1, 0.1, how, false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
    assert_int_equal(res.basis, CP_ANOMALY_BASIS_SUSTAINED);
    assert_int_equal(res.observed_nano, 72 * (int64_t)NANO);
    assert_int_equal(res.expected_nano, 60 * (int64_t)NANO);
    assert_string_equal(res.reason,
                        "spend has run above expected for 6 hours in a row: 72 USD against 60 USD expected");
    hist[n - 4] = 11 * (int64_t)NANO; /* one hour at score 1 breaks the run */
    res = eval1(&p, n, 1, 0.1, how, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    p.sustained_hours = 0;
    hist[n - 4] = 12 * (int64_t)NANO;
    res = eval1(&p, n, 1, 0.1, how, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
}

/* A lasting change of level becomes the new normal: 1.5x spend fires while
 * it is new; four weeks later it is expected, and full sensitivity is back
 * (a 2x hour fires again). In between the scale absorbs the change. */
static void test_level_shift_becomes_normal(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    size_t n = 6 * WEEK;
    int how = 3 * 24 + 11; /* Thursday 11:00, 10 USD before the change */
    for (size_t days = 3; days <= 28; days += 25) {
        fill_profile(hist, n, how, 1);
        for (size_t i = n - days * 24; i < n; i++)
            hist[i] = hist[i] * 3 / 2;
        cp_anomaly_result_t res = eval1(&p, n, 15, 1, how, false);
        if (days == 3) {
            assert_int_equal(res.action, CP_ANOMALY_FIRE);
            assert_int_equal(res.expected_nano, 10 * (int64_t)NANO);
        } else {
            assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
            assert_int_equal(res.expected_nano, 15 * (int64_t)NANO);
            assert_int_equal(res.scale_nano, 1500000000);
            res = eval1(&p, n, 30, 1, how, false);
            assert_int_equal(res.action, CP_ANOMALY_FIRE);
        }
    }
}

/* A perfectly regular history has no variation; the scale floor (10% of
 * expected) keeps the score finite and meaningful. */
static void test_flat_history_uses_scale_floor(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    p.min_hourly_nano = 500000000; /* 0.5 USD */
    for (size_t i = 0; i < 4 * WEEK; i++)
        hist[i] = 2 * (int64_t)NANO;
    cp_anomaly_result_t res = eval1(&p, 4 * WEEK, 2.5, 1, 5, false);
    assert_int_equal(res.expected_nano, 2 * (int64_t)NANO);
    assert_int_equal(res.scale_nano, 200000000);
    assert_true(res.score > 2.49 && res.score < 2.51);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    res = eval1(&p, 4 * WEEK, 2.7, 1, 5, false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
    assert_int_equal(res.basis, CP_ANOMALY_BASIS_CURRENT);
    assert_string_equal(res.reason, "spend of 2.7 USD in the hour just completed is 0.7 USD above the expected "
                                    "2 USD, 3.5 times the normal variation of 0.2 USD");
}

/* No spend at all for weeks: expected 0, the scale is the absolute minimum,
 * and only spend above the floor fires. */
static void test_zero_history(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    memset(hist, 0, sizeof(hist));
    cp_anomaly_result_t res = eval1(&p, 6 * WEEK, 0, 1, 50, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_int_equal(res.expected_nano, 0);
    assert_int_equal(res.scale_nano, 100000000); /* min_hourly / 10 */
    assert_true(res.score == 0);
    res = eval1(&p, 6 * WEEK, 0.9, 1, 50, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_string_equal(res.reason, "spend of 0.9 USD in the hour just completed is 9.0 times the normal "
                                    "variation above the expected 0 USD, but the excess is under the 1 USD floor");
    res = eval1(&p, 6 * WEEK, 5, 0.5, 50, false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
}

/* Missing hours are zeros: a key used only at 10:00 on weekdays is normal
 * at 10:00 and anomalous at 03:00. */
static void test_sparse_history_with_missing_hours(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    memset(hist, 0, sizeof(hist));
    for (size_t i = 0; i < 5 * WEEK; i++) /* index 0 is Monday 00:00 */
        if (i % WEEK < 5 * 24 && i % 24 == 10)
            hist[i] = 3 * (int64_t)NANO;
    size_t n = 4 * WEEK + 24 + 10; /* the current hour is Tuesday 10:00 */
    cp_anomaly_result_t res = eval1(&p, n, 3, 1, (int)(n % WEEK), false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_int_equal(res.expected_nano, 3 * (int64_t)NANO);
    n = 4 * WEEK + 24 + 3; /* Tuesday 03:00 */
    res = eval1(&p, n, 3, 1, (int)(n % WEEK), false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
    assert_int_equal(res.expected_nano, 0);
}

/* A partial hour is compared as is: 2 USD after 6 minutes would project to
 * 20 USD (2x), but fires only once the spend itself is anomalous. */
static void test_partial_hour_is_not_extrapolated(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    size_t n = 6 * WEEK;
    int how = 10; /* the current hour is Monday 10:00, so is the first of the six weeks */
    fill_profile(hist, n, how, 1);
    cp_anomaly_result_t res = eval1(&p, n, 2, 0.1, how, false);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_int_equal(res.expected_nano, 10 * (int64_t)NANO);
    res = eval1(&p, n, 15, 0.5, how, false);
    assert_int_equal(res.action, CP_ANOMALY_FIRE);
    assert_string_equal(res.reason, "spend of 15 USD in the first 30 min of this hour is 5 USD above the "
                                    "expected 10 USD, 5.0 times the normal variation of 1 USD");
}

/* Firing resolves only when the last completed hour is below half the
 * sensitivity; in between the alert stays. */
static void test_resolve_has_hysteresis(void **state)
{
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    size_t n = 6 * WEEK;
    int how = 12; /* the current hour; the last completed hour is 11:00, expected 10 USD, scale 1 USD */
    fill_profile(hist, n, (int)((how - (long)n % WEEK + WEEK) % WEEK), 1);
    hist[n - 1] = 12 * (int64_t)NANO; /* score 2: between 1.5 and 3 */
    cp_anomaly_result_t res = eval1(&p, n, 1, 0.1, how, true);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_true(res.firing);
    assert_int_equal(res.basis, CP_ANOMALY_BASIS_LAST_HOUR);
    res = eval1(&p, n, 1, 0.1, how, false); /* and does not fire either */
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    hist[n - 1] = (int64_t)(11.4 * NANO); /* score 1.4 */
    res = eval1(&p, n, 1, 0.1, how, true);
    assert_int_equal(res.action, CP_ANOMALY_RESOLVE);
    assert_false(res.firing);
    assert_string_equal(res.reason,
                        "spend is back to normal: 11.4 USD in the last hour against 10 USD expected (score 1.4)");
    /* the current hour anomalous again: stays firing */
    res = eval1(&p, n, 30, 0.5, how, true);
    assert_int_equal(res.action, CP_ANOMALY_NO_CHANGE);
    assert_true(res.firing);
}

/* (f) Spikes at the same hour of the week in two of the six past weeks, and
 * on the day before, do not raise the expectation enough to hide a new 5x
 * spike. */
static void test_past_spikes_do_not_mask_new_spike(void **state)
{
    static series_t s;
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        generate(&s, 100 + seed, NOISE_UNIFORM, 1, 4);
        size_t t = HIST_HOURS + 24 * 2 + 11 - SERIES_HOW0 % 24 + 24; /* a weekday 11:00 in the test week */
        assert_int_equal(how_at(t) % 24, 11);
        s.x[t - WEEK] = (int64_t)(s.normal[t - WEEK] * 5);
        s.x[t - 3 * WEEK] = (int64_t)(s.normal[t - 3 * WEEK] * 6);
        s.x[t - 24] = (int64_t)(s.normal[t - 24] * 10);
        s.x[t] = (int64_t)(s.normal[t] * 5);
        replay_t rp = {s.x, &p, HIST_HOURS, 6, false, 0};
        cp_anomaly_result_t res = {0};
        for (int k = 1; k <= 6 && !rp.firing; k++)
            eval_at(&rp, t, k / 6.0, &res);
        assert_true(rp.firing);
        assert_int_equal(res.basis, CP_ANOMALY_BASIS_CURRENT);
        assert_true(res.expected_nano < 11.5 * NANO && res.expected_nano > 8.5 * NANO);
    }
}

/* (d) A tenant spending cents an hour (at most 0.06 USD): a 10x spike is
 * still under the 1 USD floor and never fires, while the same series twenty
 * times larger does. */
static void test_spikes_under_floor_do_not_fire(void **state)
{
    static series_t s;
    static event_t ev[8];
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    int fired_small = 0, fired_large = 0;
    for (double level = 0.005; level < 0.2; level *= 20) {
        generate(&s, 7, NOISE_UNIFORM, level, 4);
        for (size_t t = HIST_HOURS; t < HIST_HOURS + WEEK; t += 7) {
            int64_t keep = s.x[t];
            s.x[t] = (int64_t)(s.normal[t] * 10);
            replay_t rp = {s.x, &p, HIST_HOURS, 3, false, 0};
            int n = replay(&rp, t, t + 1, ev, 8, CP_ANOMALY_FIRE);
            if (level < 0.01)
                fired_small += n;
            else
                fired_large += n;
            s.x[t] = keep;
        }
    }
    assert_int_equal(fired_small, 0);
    assert_true(fired_large > 0); /* hours whose 10x excess passes 1 USD */
}

/* ---- the measurement ---- */

typedef struct stat {
    int n, missed;
    double sum, max;
} stat_t;

static void stat_add(stat_t *st, double v)
{
    if (v < 0) {
        st->missed++;
        return;
    }
    if (st->n == 0 || v > st->max)
        st->max = v;
    st->n++;
    st->sum += v;
}

static void stat_cell(const stat_t *st, char *buf, size_t cap)
{
    if (st->n == 0)
        snprintf(buf, cap, "missed %d", st->missed);
    else if (st->missed > 0)
        snprintf(buf, cap, "%.2f / %.2f (%d missed)", st->sum / st->n, st->max, st->missed);
    else
        snprintf(buf, cap, "%.2f / %.2f", st->sum / st->n, st->max);
}

#define FA_SEEDS 10  /* series replayed for false alarms, TEST_WEEKS normal weeks each */
#define SEEDS 5      /* series with injections */
#define POSITIONS 12 /* injection hours per seed, spread over times of day and days of the week */

typedef struct row {
    double sens;
    int sustained_hours;
    int weeks, false_alarms;
    stat_t spike[3]; /* 3x, 5x, 10x one-hour spikes: detection delay */
    stat_t ramp[4];  /* +10%/h compounding, linear to 4x in 24h, linear to 2x in 24h, a step to 1.3x */
    stat_t resolve1; /* after a 5x one-hour spike */
    stat_t resolve3; /* after a 5x three-hour spike */
    int early;       /* fired before the injection started */
} row_t;

static size_t position(int k)
{
    return HIST_HOURS + (size_t)k * 13 + 5; /* 13 hours apart: every time of day comes up */
}

/* Detection delay in hours from `start`, or -1 when nothing fired by `end`. */
static double detect(replay_t *rp, size_t start, size_t end, int *early)
{
    event_t ev[4];
    rp->firing = false;
    int n = replay(rp, start - 2, end, ev, 4, CP_ANOMALY_FIRE);
    if (n == 0 || ev[n - 1].action != CP_ANOMALY_FIRE)
        return -1;
    if (ev[n - 1].t <= (double)start) {
        (*early)++;
        return -1;
    }
    return ev[n - 1].t - (double)start;
}

static void measure_row(row_t *row, noise_t kind, size_t window)
{
    static series_t s, work;
    static event_t ev[64];
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    p.sensitivity = row->sens;
    p.sustained_hours = row->sustained_hours;
    static const double mult[3] = {3, 5, 10};

    for (uint64_t seed = 1; seed <= FA_SEEDS; seed++) {
        generate(&s, seed * 7919, kind, 1, 4);
        /* (a) normal weeks. Within an hour spend only grows and the hour
         * test is monotone in it, so one evaluation at the end of each hour
         * sees every alarm a finer replay would. */
        replay_t rp = {s.x, &p, window, 1, false, 0};
        int n = replay(&rp, HIST_HOURS, HIST_HOURS + TEST_WEEKS * WEEK, ev, 64, CP_ANOMALY_NO_CHANGE);
        for (int k = 0; k < n; k++)
            row->false_alarms += ev[k].action == CP_ANOMALY_FIRE;
        row->weeks += TEST_WEEKS;
        if (seed > SEEDS)
            continue;

        for (int k = 0; k < POSITIONS; k++) {
            size_t t = position(k);
            replay_t r6 = {work.x, &p, window, 6, false, 0}; /* every 10 minutes */
            replay_t r1 = {work.x, &p, window, 1, false, 0}; /* resolution happens at the end of an hour */
            /* (b) one-hour spikes */
            for (int m = 0; m < 3; m++) {
                work = s;
                work.x[t] = (int64_t)(s.normal[t] * mult[m]);
                stat_add(&row->spike[m], detect(&r6, t, t + 3, &row->early));
            }
            /* (c) ramps (capped at 10x, the linear ones level off after a
             * day) and a moderate step that no single hour shows */
            for (int m = 0; m < 4; m++) {
                work = s;
                for (size_t h = 0; h < 48; h++) {
                    double f = 1.3, step = (double)(h < 24 ? h + 1 : 24);
                    if (m == 0) {
                        f = 1;
                        for (size_t e = 0; e <= h; e++)
                            f *= 1.1;
                        if (f > 10)
                            f = 10;
                    }
                    if (m == 1)
                        f = 1 + 3 * step / 24;
                    if (m == 2)
                        f = 1 + step / 24;
                    work.x[t + h] = (int64_t)(s.normal[t + h] * f);
                }
                stat_add(&row->ramp[m], detect(&r6, t, t + 30, &row->early));
            }
            /* (e) resolution after 5x spikes of one and three hours */
            for (int len = 1; len <= 3; len += 2) {
                work = s;
                for (int h = 0; h < len; h++)
                    work.x[t + (size_t)h] = (int64_t)(s.normal[t + (size_t)h] * 5);
                r1.firing = false;
                int ne = replay(&r1, t, t + (size_t)len + 24, ev, 64, CP_ANOMALY_RESOLVE);
                double d = -1;
                if (ne > 0 && ev[ne - 1].action == CP_ANOMALY_RESOLVE)
                    d = ev[ne - 1].t - (double)(t + (size_t)len);
                stat_add(len == 1 ? &row->resolve1 : &row->resolve3, d);
            }
        }
    }
}

/* False alarms over FA_SEEDS x TEST_WEEKS normal weeks with window hours of
 * history. */
static int false_alarms(noise_t kind, size_t window, double sens)
{
    static series_t s;
    static event_t ev[64];
    cp_anomaly_params_t p;
    cp_anomaly_params_default(&p);
    p.sensitivity = sens;
    int fired = 0;
    for (uint64_t seed = 1; seed <= FA_SEEDS; seed++) {
        generate(&s, seed * 7919, kind, 1, 4);
        replay_t rp = {s.x, &p, window, 1, false, 0};
        int n = replay(&rp, HIST_HOURS, HIST_HOURS + TEST_WEEKS * WEEK, ev, 64, CP_ANOMALY_NO_CHANGE);
        for (int k = 0; k < n; k++)
            fired += ev[k].action == CP_ANOMALY_FIRE;
    }
    return fired;
}

static void print_rows(const char *title, row_t *rows, int nrows)
{
    char c[8][40];
    printf("\n%s\n", title);
    printf("| sensitivity | false alarms / week | 3x spike | 5x spike | 10x spike | +10%%/h ramp | to 4x in 24h | "
           "to 2x in 24h | step to 1.3x | resolve, 1h spike | resolve, 3h spike |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nrows; i++) {
        row_t *r = &rows[i];
        stat_cell(&r->spike[0], c[0], 40);
        stat_cell(&r->spike[1], c[1], 40);
        stat_cell(&r->spike[2], c[2], 40);
        stat_cell(&r->ramp[0], c[3], 40);
        stat_cell(&r->ramp[1], c[4], 40);
        stat_cell(&r->ramp[2], c[5], 40);
        stat_cell(&r->ramp[3], c[6], 40);
        stat_cell(&r->resolve1, c[7], 40);
        char r3[40];
        stat_cell(&r->resolve3, r3, 40);
        printf("| %.1f%s | %.2f (%d in %d weeks) | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->sens,
               r->sustained_hours ? "" : ", no sustained test", (double)r->false_alarms / r->weeks, r->false_alarms,
               r->weeks, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], r3);
    }
    fflush(stdout);
}

static void test_measured_table(void **state)
{
    static const double sens[] = {2.5, 3.0, 4.0, 5.0, 3.0};
    enum { NS = sizeof(sens) / sizeof(sens[0]) };
    row_t a[NS], b[NS];
    for (int i = 0; i < NS; i++) {
        int sustained = i < NS - 1 ? 6 : 0; /* the last row shows what the sustained test adds */
        a[i] = (row_t){.sens = sens[i], .sustained_hours = sustained};
        b[i] = (row_t){.sens = sens[i], .sustained_hours = sustained};
        measure_row(&a[i], NOISE_UNIFORM, HIST_HOURS);
        measure_row(&b[i], NOISE_HEAVY, HIST_HOURS);
    }
    printf("\ndelays in hours from the start of the injection (resolve: from its end), mean / max over %d "
           "positions x %d seeds, evaluated every 10 minutes; false alarms over %d normal weeks",
           POSITIONS, SEEDS, FA_SEEDS * TEST_WEEKS);
    print_rows("noise: hourly x U(0.85, 1.15)", a, NS);
    print_rows("noise: hourly x N(1, 0.15) and daily x U(0.9, 1.1)", b, NS);

    static const size_t hist_hours[] = {8 * 24, 14 * 24, 28 * 24};
    printf("\nfalse alarms per week by length of history (%d normal weeks each)\n", FA_SEEDS * TEST_WEEKS);
    printf("| history | sensitivity 3, U(0.85, 1.15) | sensitivity 3, N(1, 0.15) x daily | sensitivity 4, N(1, "
           "0.15) x daily |\n|---|---|---|---|\n");
    int short_fa = 0;
    for (size_t h = 0; h < sizeof(hist_hours) / sizeof(hist_hours[0]); h++) {
        int u3 = false_alarms(NOISE_UNIFORM, hist_hours[h], 3), g3 = false_alarms(NOISE_HEAVY, hist_hours[h], 3),
            g4 = false_alarms(NOISE_HEAVY, hist_hours[h], 4);
        double w = FA_SEEDS * TEST_WEEKS;
        printf("| %zu days | %.2f | %.2f | %.2f |\n", hist_hours[h] / 24, u3 / w, g3 / w, g4 / w);
        short_fa += u3;
    }
    fflush(stdout);

    row_t *r = &a[1]; /* sensitivity 3, +-15% noise */
    assert_true(r->sens == 3.0);
    assert_int_equal(r->false_alarms, 0);
    assert_true(short_fa * 10 <= 3 * FA_SEEDS * TEST_WEEKS); /* short histories: rare (< 0.1 per week each) */
    assert_int_equal(r->early, 0);
    for (int m = 0; m < 3; m++)
        assert_int_equal(r->spike[m].missed, 0);
    assert_true(r->spike[1].max <= 1.0); /* 5x: within the hour it starts */
    assert_true(r->spike[2].max <= 1.0);
    assert_true(r->spike[0].max <= 2.0);
    for (int m = 0; m < 4; m++)
        assert_int_equal(r->ramp[m].missed, 0);
    assert_true(r->ramp[0].max <= 10); /* at night the 1 USD floor, not the score, decides */
    assert_true(r->ramp[1].max <= 10);
    assert_true(r->ramp[2].max <= 24);
    assert_int_equal(r->resolve1.missed, 0);
    assert_true(r->resolve1.max <= 2.0);
    assert_int_equal(r->resolve3.missed, 0);
    assert_true(r->resolve3.max <= 2.0);
    /* heavier, Gaussian noise with day-to-day swings: a 3-sigma test has
     * Gaussian tails (about 0.23 per week in theory), at 4 they are rare */
    assert_true(b[1].false_alarms <= b[1].weeks);
    assert_true(b[2].false_alarms * 10 <= b[2].weeks);
    assert_true(b[1].spike[1].max <= 1.0);
    assert_true(b[2].spike[1].max <= 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_input_rejected),
        cmocka_unit_test(test_insufficient_history_never_fires),
        cmocka_unit_test(test_model_prepared_once_per_hour),
        cmocka_unit_test(test_baseline_follows_time_of_day_and_day_of_week),
        cmocka_unit_test(test_sustained_excess_fires),
        cmocka_unit_test(test_level_shift_becomes_normal),
        cmocka_unit_test(test_flat_history_uses_scale_floor),
        cmocka_unit_test(test_zero_history),
        cmocka_unit_test(test_sparse_history_with_missing_hours),
        cmocka_unit_test(test_partial_hour_is_not_extrapolated),
        cmocka_unit_test(test_resolve_has_hysteresis),
        cmocka_unit_test(test_past_spikes_do_not_mask_new_spike),
        cmocka_unit_test(test_spikes_under_floor_do_not_fire),
        cmocka_unit_test(test_measured_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
