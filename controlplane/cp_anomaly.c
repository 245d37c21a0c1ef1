/*
 * cp_anomaly.c - the spend_anomaly detector (method in cp_anomaly.h).
 *
 * Everything lives on the stack: the history used is bounded by
 * CP_ANOMALY_MAX_WEEKS plus the two residual weeks, so one evaluation costs
 * a few hundred small sorts and no allocation. It needs nothing from libm (the
 * control plane does not link it): the little arithmetic below is local.
 */
#include "cp_anomaly.h"
#include "sl_err.h"
#include "sl_money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY 24
#define WEEK CP_ANOMALY_WEEK_HOURS
#define RECENT_DAYS 6
#define WEEK_WEIGHT 2
#define DAY_WEIGHT 1
#define LEVEL_RATIO 2.0
#define MAD_TO_SIGMA 1.4826
#define MAD_SE 1.166 /* standard error of a MAD-based sigma, times sqrt(n) */
#define RESIDUAL_HOURS (2 * WEEK)
/* Every hour of the residual window can see CP_ANOMALY_MAX_WEEKS weeks back. */
#define MAX_HOURS (CP_ANOMALY_MAX_WEEKS * WEEK + RESIDUAL_HOURS)
#define MAX_DAYS (MAX_HOURS / DAY)
#define MAX_SAMPLES (CP_ANOMALY_MAX_WEEKS + RECENT_DAYS)

typedef struct series {
    const int64_t *x;       /* the used tail of the history, borrowed */
    long n;                 /* hours in x; the current hour has index n */
    int how0;               /* hour of week of x[0] */
    long day0;              /* index of the first hour that starts a day */
    long ndays;             /* complete days from day0; the current hour is in day ndays */
    double level[MAX_DAYS]; /* median hourly spend of each complete day */
    /* usual[d][r]: seen from day d, the usual level of the weekday of day
     * d - r: the median level of the days d - r, d - r - 7, ... (r = 0:
     * d - 7, d - 14, ..., day d itself is not complete), -1 without one. */
    double usual[MAX_DAYS + 1][RECENT_DAYS + 1];
} series_t;

typedef struct sample {
    double v;
    int w;
} sample_t;

/* One hour's comparison with its expectation. */
typedef struct hour_eval {
    double obs, expected, scale, score;
    bool full; /* passes the hour test */
    bool half; /* passes it at half the sensitivity and half the floor */
} hour_eval_t;

/* Spend of hour i (< n), negative read as 0. */
static double val(const series_t *s, long i)
{
    int64_t v = s->x[i];
    return v > 0 ? (double)v : 0.0;
}

static double absd(double v)
{
    return v < 0 ? -v : v;
}

static bool is_finite(double v)
{
    return v == v && v - v == 0;
}

/* Nearest integer, halves away from zero; |v| < 9e18. */
static int64_t round_i64(double v)
{
    return (int64_t)(v < 0 ? v - 0.5 : v + 0.5);
}

/* Square root by Newton's method from above; v >= 0. */
static double root(double v)
{
    if (!(v > 0))
        return 0;
    double r = v > 1 ? v : 1;
    for (int k = 0; k < 200; k++) {
        double next = (r + v / r) / 2;
        if (next >= r)
            break;
        r = next;
    }
    return r;
}

/* Sorts v[0..n) ascending; n is small (at most a few dozen). */
static void sort_small(double *v, size_t n)
{
    for (size_t k = 1; k < n; k++) {
        double x = v[k];
        size_t j = k;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* The k-th smallest of v[0..n) (k < n), by quickselect; reorders v. */
static double select_kth(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

/* Median of v[0..n), n > 0; reorders v. */
static double median(double *v, size_t n)
{
    if (n <= 32) {
        sort_small(v, n);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    double hi = select_kth(v, n, n / 2);
    if (n % 2)
        return hi;
    double lo = v[0]; /* the largest of the lower half, which select_kth left below n / 2 */
    for (size_t k = 1; k < n / 2; k++)
        if (v[k] > lo)
            lo = v[k];
    return (lo + hi) / 2;
}

/* Weighted median of a[0..n), n > 0: the value where half the total weight
 * lies on each side, midway between two values when it falls between. */
static double weighted_median(sample_t *a, size_t n)
{
    int total = 0, cum = 0;
    double lo = 0, hi = 0;
    bool have_lo = false;
    for (size_t k = 1; k < n; k++) {
        sample_t x = a[k];
        size_t j = k;
        for (; j > 0 && a[j - 1].v > x.v; j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
    for (size_t k = 0; k < n; k++)
        total += a[k].w;
    for (size_t k = 0; k < n; k++) {
        cum += a[k].w;
        if (!have_lo && 2 * cum >= total) {
            lo = a[k].v;
            have_lo = true;
        }
        if (2 * cum > total) {
            hi = a[k].v;
            break;
        }
    }
    return (lo + hi) / 2;
}

static int how_of(const series_t *s, long i)
{
    return (int)((s->how0 + i) % WEEK);
}

static void series_init(series_t *s, const int64_t *history, size_t history_hours, int current_hour_of_week)
{
    s->x = history;
    if (history_hours > MAX_HOURS) {
        s->x += history_hours - MAX_HOURS;
        history_hours = MAX_HOURS;
    }
    long n = s->n = (long)history_hours;
    s->how0 = (int)(((current_hour_of_week - n) % WEEK + WEEK) % WEEK);
    s->day0 = (DAY - s->how0 % DAY) % DAY;
    s->ndays = n > s->day0 ? (n - s->day0) / DAY : 0;
    for (long d = 0; d < s->ndays; d++) {
        double h[DAY];
        for (int k = 0; k < DAY; k++)
            h[k] = val(s, s->day0 + d * DAY + k);
        s->level[d] = median(h, DAY);
    }
    for (long d = 0; d <= s->ndays; d++) {
        for (long r = 0; r <= RECENT_DAYS; r++) {
            double lv[CP_ANOMALY_MAX_WEEKS];
            size_t nl = 0;
            for (long e = r > 0 ? d - r : d - 7; e >= 0 && nl < CP_ANOMALY_MAX_WEEKS; e -= 7)
                lv[nl++] = s->level[e];
            s->usual[d][r] = nl > 0 ? median(lv, nl) : -1;
        }
    }
}

/* Expected spend of hour i from the hours before it. Returns the number of
 * weeks it rests on; 0 (and no expectation) when there is no earlier week. */
static int expected_at(const series_t *s, long i, double *out)
{
    long weeks = i / WEEK;
    if (weeks > CP_ANOMALY_MAX_WEEKS)
        weeks = CP_ANOMALY_MAX_WEEKS;
    if (weeks == 0)
        return 0;

    sample_t smp[MAX_SAMPLES];
    size_t ns = 0;
    for (long k = 1; k <= weeks; k++)
        smp[ns++] = (sample_t){val(s, i - k * WEEK), WEEK_WEIGHT};

    /* The same hour of the previous days, converted to this weekday by the
     * ratio of the two weekdays' usual levels; the recent level stays. */
    long ds = i - how_of(s, i) % DAY;
    const double *usual = ds >= s->day0 ? s->usual[(ds - s->day0) / DAY] : NULL;
    double target = usual != NULL ? usual[0] : -1;
    if (target >= 0) {
        for (long j = 1; j <= RECENT_DAYS; j++) {
            double l = usual[j];
            double ratio;
            if (l < 0)
                continue;
            if (l == 0 && target == 0)
                ratio = 1;
            else if (l == 0 || target == 0)
                continue;
            else
                ratio = target / l;
            if (ratio > LEVEL_RATIO || ratio < 1 / LEVEL_RATIO)
                continue; /* a different kind of day (weekend against weekday) */
            smp[ns++] = (sample_t){val(s, i - j * DAY) * ratio, DAY_WEIGHT};
        }
    }
    *out = weighted_median(smp, ns);
    return (int)weeks;
}

static double min_scale_of(const cp_anomaly_params_t *p)
{
    double m = (double)(p->min_scale_nano > 0 ? p->min_scale_nano : p->min_hourly_nano / 10);
    return m < 1 ? 1 : m;
}

static double scale_for(const cp_anomaly_params_t *p, double rel, double expected)
{
    double min_scale = min_scale_of(p);
    double sc = rel * (expected > min_scale ? expected : min_scale);
    double f = p->min_scale_fraction * expected;
    if (sc < f)
        sc = f;
    if (sc < min_scale)
        sc = min_scale;
    return sc;
}

static hour_eval_t judge(const cp_anomaly_params_t *p, double obs, double expected, double scale)
{
    hour_eval_t h = {.obs = obs, .expected = expected, .scale = scale};
    double excess = obs - expected, floor_ = (double)p->min_hourly_nano;
    h.score = excess / scale;
    h.full = h.score >= p->sensitivity && excess >= floor_;
    h.half = h.score >= p->sensitivity / 2 && excess >= floor_ / 2;
    return h;
}

static int64_t to_nano(double v)
{
    if (!(v > -9e18))
        return v < 0 ? INT64_MIN : 0;
    if (v > 9e18)
        return INT64_MAX;
    return round_i64(v);
}

/* "12.35" (cents from 1 USD up) or "0.0123": readable, not exact. */
static const char *usd(char *buf, size_t cap, double nano)
{
    int64_t v = to_nano(nano);
    int64_t mag = v < 0 ? -v : v;
    int64_t unit = mag >= SL_NANO_PER_USD ? INT64_C(10000000) : INT64_C(100000);
    int64_t q = (mag + unit / 2) / unit;
    sl_usd_format(v < 0 ? -q : q, unit == INT64_C(10000000) ? 2 : 4, buf, cap);
    return buf;
}

static void set_numbers(cp_anomaly_result_t *out, const hour_eval_t *h, cp_anomaly_basis_t basis)
{
    out->basis = basis;
    out->observed_nano = to_nano(h->obs);
    out->expected_nano = to_nano(h->expected);
    out->scale_nano = to_nano(h->scale);
    out->score = h->score;
}

static int invalid(char *reason, size_t cap, const char *msg)
{
    snprintf(reason, cap, "%s", msg);
    return SL_EINVAL;
}

void cp_anomaly_params_default(cp_anomaly_params_t *p)
{
    *p = (cp_anomaly_params_t){
        .sensitivity = 3.0,
        .min_hourly_nano = SL_NANO_PER_USD,
        .min_history_hours = CP_ANOMALY_MIN_HISTORY_HOURS,
        .sustained_hours = 6,
        .min_scale_fraction = 0.1,
        .min_scale_nano = 0,
    };
}

int cp_anomaly_prepare(const cp_anomaly_params_t *p, const int64_t *history, size_t history_hours,
                       int current_hour_of_week, cp_anomaly_model_t *m)
{
    memset(m, 0, sizeof(*m));
    char *why = m->reason;
    size_t cap = sizeof(m->reason);
    if (p == NULL)
        return invalid(why, cap, "parameters are required");
    if (!(p->sensitivity > 0) || !is_finite(p->sensitivity))
        return invalid(why, cap, "sensitivity must be a positive number");
    if (p->min_hourly_nano < 0 || p->min_scale_nano < 0)
        return invalid(why, cap, "spend floors must not be negative");
    if (!(p->min_scale_fraction >= 0) || !is_finite(p->min_scale_fraction))
        return invalid(why, cap, "min_scale_fraction must not be negative");
    if (p->sustained_hours < 0 || p->sustained_hours > CP_ANOMALY_MAX_SUSTAINED)
        return invalid(why, cap, "sustained_hours must be between 0 and 24");
    if (history == NULL && history_hours > 0)
        return invalid(why, cap, "history is missing");
    if (current_hour_of_week < 0 || current_hour_of_week >= WEEK)
        return invalid(why, cap, "current_hour_of_week must be in 0..167");
    m->params = *p;
    m->hour_of_week = current_hour_of_week;

    long need =
        p->min_history_hours > CP_ANOMALY_MIN_HISTORY_HOURS ? p->min_history_hours : CP_ANOMALY_MIN_HISTORY_HOURS;
    if (history_hours < (size_t)need) {
        snprintf(why, cap, "insufficient history: %zu of %ld hours needed", history_hours, need);
        return 0;
    }

    series_t s;
    series_init(&s, history, history_hours, current_hour_of_week);
    double min_scale = min_scale_of(p);

    /* Residuals of the trailing two weeks give the relative scale; the
     * current hour is never among them. */
    double exp_w[RESIDUAL_HOURS], q[RESIDUAL_HOURS];
    bool have_w[RESIDUAL_HOURS];
    size_t nq = 0;
    long w0 = s.n - RESIDUAL_HOURS;
    for (long k = 0; k < RESIDUAL_HOURS; k++) {
        long i = w0 + k;
        have_w[k] = i >= 0 && expected_at(&s, i, &exp_w[k]) > 0;
        if (have_w[k])
            q[nq++] = absd(val(&s, i) - exp_w[k]) / (exp_w[k] > min_scale ? exp_w[k] : min_scale);
    }
    if (nq < DAY) {
        snprintf(why, cap, "insufficient history: too few comparable hours");
        return 0;
    }
    /* Raised by one standard error of the estimate (1.166 r / sqrt(n) for
     * normal residuals): with little history the detector is more cautious,
     * not jumpier. */
    m->rel_scale = MAD_TO_SIGMA * median(q, nq) * (1 + MAD_SE / root((double)nq));

    m->history_weeks = expected_at(&s, s.n, &m->expected);
    m->scale = scale_for(p, m->rel_scale, m->expected);
    for (long k = RESIDUAL_HOURS - 1; k >= 0 && have_w[k] && m->recent_hours < CP_ANOMALY_MAX_SUSTAINED; k--) {
        m->recent[m->recent_hours].spend = val(&s, w0 + k);
        m->recent[m->recent_hours].expected = exp_w[k];
        m->recent[m->recent_hours].scale = scale_for(p, m->rel_scale, exp_w[k]);
        m->recent_hours++;
    }
    m->ready = true;
    return 0;
}

int cp_anomaly_decide(const cp_anomaly_model_t *m, int64_t current_nano, double current_fraction, bool firing,
                      cp_anomaly_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->firing = firing;
    if (!(current_fraction > 0 && current_fraction <= 1))
        return invalid(out->reason, sizeof(out->reason), "current_fraction must be in (0, 1]");
    if (!m->ready) {
        snprintf(out->reason, sizeof(out->reason), "%s", m->reason);
        return 0;
    }
    const cp_anomaly_params_t *p = &m->params;
    out->history_weeks = m->history_weeks;
    bool complete = current_fraction >= 1;
    hour_eval_t cur = judge(p, current_nano > 0 ? (double)current_nano : 0, m->expected, m->scale);
    hour_eval_t last = cur;
    cp_anomaly_basis_t last_basis = CP_ANOMALY_BASIS_CURRENT;
    if (!complete) {
        last = judge(p, m->recent[0].spend, m->recent[0].expected, m->recent[0].scale);
        last_basis = CP_ANOMALY_BASIS_LAST_HOUR;
    }

    /* The sustained test over the completed hours ending with `last`. */
    int R = p->sustained_hours;
    bool sustained = R > 0 && R - (complete ? 1 : 0) <= m->recent_hours;
    hour_eval_t sum = {0};
    double var = 0;
    for (int k = 0; k < R && sustained; k++) {
        hour_eval_t h = last;
        if (k > 0) {
            int idx = k - (complete ? 1 : 0);
            h = judge(p, m->recent[idx].spend, m->recent[idx].expected, m->recent[idx].scale);
        }
        sustained = h.score >= p->sensitivity / 2;
        sum.obs += h.obs;
        sum.expected += h.expected;
        var += h.scale * h.scale;
    }
    if (sustained) {
        sum.scale = root(var);
        sum.score = (sum.obs - sum.expected) / sum.scale;
        sustained = sum.obs - sum.expected >= (double)p->min_hourly_nano;
    }

    char a[32], b[32], when[48];
    if (complete)
        snprintf(when, sizeof(when), "in the hour just completed");
    else
        snprintf(when, sizeof(when), "in the first %d min of this hour", (int)round_i64(current_fraction * 60));
    if (!firing) {
        if (cur.full) {
            char d[32], e[32];
            out->action = CP_ANOMALY_FIRE;
            out->firing = true;
            set_numbers(out, &cur, CP_ANOMALY_BASIS_CURRENT);
            snprintf(out->reason, sizeof(out->reason),
                     "spend of %s USD %s is %s USD above the expected %s USD, %.1f times the normal variation of "
                     "%s USD",
                     usd(a, sizeof(a), cur.obs), when, usd(b, sizeof(b), cur.obs - cur.expected),
                     usd(d, sizeof(d), cur.expected), cur.score, usd(e, sizeof(e), cur.scale));
            return 0;
        }
        if (sustained) {
            out->action = CP_ANOMALY_FIRE;
            out->firing = true;
            set_numbers(out, &sum, CP_ANOMALY_BASIS_SUSTAINED);
            snprintf(out->reason, sizeof(out->reason),
                     "spend has run above expected for %d hours in a row: %s USD against %s USD expected", R,
                     usd(a, sizeof(a), sum.obs), usd(b, sizeof(b), sum.expected));
            return 0;
        }
        set_numbers(out, &cur, CP_ANOMALY_BASIS_CURRENT);
        if (cur.score >= p->sensitivity) {
            char d[32];
            snprintf(out->reason, sizeof(out->reason),
                     "spend of %s USD %s is %.1f times the normal variation above the expected %s USD, but the "
                     "excess is under the %s USD floor",
                     usd(a, sizeof(a), cur.obs), when, cur.score, usd(b, sizeof(b), cur.expected),
                     usd(d, sizeof(d), (double)p->min_hourly_nano));
        } else {
            snprintf(out->reason, sizeof(out->reason),
                     "spend of %s USD %s is within normal variation of the expected %s USD (score %.1f)",
                     usd(a, sizeof(a), cur.obs), when, usd(b, sizeof(b), cur.expected), cur.score);
        }
        return 0;
    }

    if (!complete && cur.full) {
        set_numbers(out, &cur, CP_ANOMALY_BASIS_CURRENT);
        snprintf(out->reason, sizeof(out->reason),
                 "still anomalous: %s USD so far this hour against %s USD expected (score %.1f)",
                 usd(a, sizeof(a), cur.obs), usd(b, sizeof(b), cur.expected), cur.score);
        return 0;
    }
    set_numbers(out, &last, last_basis);
    if (last.half) {
        snprintf(out->reason, sizeof(out->reason),
                 "not yet back to normal: %s USD in the last hour against %s USD expected (score %.1f)",
                 usd(a, sizeof(a), last.obs), usd(b, sizeof(b), last.expected), last.score);
        return 0;
    }
    out->action = CP_ANOMALY_RESOLVE;
    out->firing = false;
    snprintf(out->reason, sizeof(out->reason),
             "spend is back to normal: %s USD in the last hour against %s USD expected (score %.1f)",
             usd(a, sizeof(a), last.obs), usd(b, sizeof(b), last.expected), last.score);
    return 0;
}

int cp_anomaly_evaluate(const cp_anomaly_params_t *p, const cp_anomaly_input_t *in, cp_anomaly_result_t *out)
{
    cp_anomaly_model_t m;
    if (in == NULL) {
        memset(out, 0, sizeof(*out));
        return invalid(out->reason, sizeof(out->reason), "input is required");
    }
    int rc = cp_anomaly_prepare(p, in->history, in->history_hours, in->current_hour_of_week, &m);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->firing = in->firing;
        snprintf(out->reason, sizeof(out->reason), "%s", m.reason);
        return rc;
    }
    return cp_anomaly_decide(&m, in->current_nano, in->current_fraction, in->firing, out);
}
