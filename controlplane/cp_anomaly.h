/*
 * cp_anomaly.h - the spend_anomaly detector: decides whether one scope's
 * (tenant's or key's) spend in the current hour is abnormally high compared
 * with what the same hour looked like in the trailing weeks.
 *
 * Pure functions: no I/O, no globals, no allocation; callable from any
 * thread. The caller (the alert evaluator) reads hourly spend from the
 * ledger, keeps the firing/not-firing state and acts on the decision.
 *
 * Money crosses this API as int64 nano-USD. The statistics inside use
 * doubles (exact for spend below 9e15 nano-USD, 9 million USD, per hour);
 * this is alerting, not accounting, and no amount computed here is billed.
 *
 * The method (docs/anomaly.md has the reasoning and measured numbers):
 *
 *   expected  weighted median of comparable past hours: the same hour of the
 *             week in each of the last K weeks (weight 2 each), and the same
 *             hour of day on each of the previous 6 days (weight 1 each),
 *             converted to this weekday by the ratio of the two weekdays'
 *             usual levels, and left out when that ratio is beyond 2 (a
 *             weekend day for a weekday). A day's level is the median of its
 *             24 hours, a weekday's usual level the median level of its days
 *             in the history.
 *   scale     noise grows with spend, so deviations are measured relative to
 *             the expectation: r = 1.4826 x the median of |actual - expected|
 *             / max(expected, min_scale) over the trailing two weeks (each
 *             hour's expectation from the hours before it), raised by one
 *             standard error of that estimate (x 1.06 with two weeks of
 *             residuals, x 1.24 with the minimum of one day); an hour's scale
 *             is r x max(expected, min_scale), but never below
 *             min_scale_fraction x expected nor min_scale.
 *   score     (spend - expected) / scale.
 *   fire      hour test: the current hour (its spend so far) scores >=
 *             sensitivity and exceeds expected by >= min_hourly; or
 *             sustained test: each of the last sustained_hours completed
 *             hours scores >= sensitivity / 2 and together they exceed
 *             expected by >= min_hourly.
 *   resolve   the last completed hour scores < sensitivity / 2 (or exceeds
 *             expected by < min_hourly / 2) and the current hour does not
 *             pass the hour test.
 *
 * A partial current hour is compared as is, without extrapolation: its
 * spend so far against the full-hour expectation and scale. Spend only grows
 * within an hour, so this never fires on a projection, and a big spike still
 * fires within the hour it starts (a 5x hour fires about 20 minutes in).
 * Resolution is judged on completed hours only. An hour is judged for
 * firing only while it is the current hour: a caller that missed the end of
 * an hour (evaluator down) may catch up by passing that hour as current with
 * current_fraction 1 and the history before it.
 */
#ifndef CP_ANOMALY_H
#define CP_ANOMALY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hours in a week; hour of week 0 is Monday 00:00-01:00 in the scope's time
 * zone (any fixed origin works as long as the caller is consistent). */
#define CP_ANOMALY_WEEK_HOURS 168
/* At most this many trailing weeks are used; older history is ignored. */
#define CP_ANOMALY_MAX_WEEKS 8
/* Least history the method can work with: one week to compare with and one
 * more day of residuals to measure normal variation. */
#define CP_ANOMALY_MIN_HISTORY_HOURS (CP_ANOMALY_WEEK_HOURS + 24)
/* Longest run of hours the sustained test may look at. */
#define CP_ANOMALY_MAX_SUSTAINED 24

typedef enum cp_anomaly_action {
    CP_ANOMALY_NO_CHANGE = 0,
    CP_ANOMALY_FIRE,
    CP_ANOMALY_RESOLVE,
} cp_anomaly_action_t;

/* Which evaluation decided the outcome. */
typedef enum cp_anomaly_basis {
    CP_ANOMALY_BASIS_NONE = 0,  /* nothing evaluated (insufficient history) */
    CP_ANOMALY_BASIS_CURRENT,   /* the current hour (spend so far) */
    CP_ANOMALY_BASIS_LAST_HOUR, /* the last completed hour */
    CP_ANOMALY_BASIS_SUSTAINED, /* the last sustained_hours completed hours */
} cp_anomaly_basis_t;

typedef struct cp_anomaly_params {
    double sensitivity;        /* score needed to fire; > 0; default 3.0 */
    int64_t min_hourly_nano;   /* absolute floor on the excess over expected; >= 0; default 1 USD */
    int min_history_hours;     /* never fire with less history; raised to CP_ANOMALY_MIN_HISTORY_HOURS */
    int sustained_hours;       /* hours in a row for the sustained test; 0 disables; <= 24; default 6 */
    double min_scale_fraction; /* scale floor as a fraction of expected; >= 0; default 0.1 */
    int64_t min_scale_nano;    /* absolute scale floor; 0 means min_hourly_nano / 10 (at least 1) */
} cp_anomaly_params_t;

/* What cp_anomaly_prepare() learned from the history of one scope for one
 * current hour. Plain data, no cleanup: an evaluator running every minute
 * prepares a model per scope when an hour starts and keeps it for that hour,
 * calling only cp_anomaly_decide() in between. Read-only for callers; the
 * numbers are nano-USD. */
typedef struct cp_anomaly_model {
    cp_anomaly_params_t params; /* a copy of the parameters prepared with */
    bool ready;                 /* false: insufficient history, reason says why */
    int hour_of_week;           /* of the current hour */
    int history_weeks;          /* weeks of history the expectation rests on */
    double rel_scale;           /* r: normal variation relative to the expectation */
    double expected, scale;     /* of the current hour */
    int recent_hours;           /* valid entries of recent[] (at least 1 when ready) */
    struct {
        double spend, expected, scale;
    } recent[CP_ANOMALY_MAX_SUSTAINED]; /* completed hours, the last one first */
    char reason[128];
} cp_anomaly_model_t;

typedef struct cp_anomaly_input {
    /* Completed hours, oldest first, the last one ending where the current
     * hour starts; missing hours as 0, negative values read as 0; borrowed
     * for the call. Hours before the scope existed must not be passed as
     * zeros (a new tenant's first spend would look anomalous). Six weeks
     * plus a day lets the last completed hour see six weeks too. */
    const int64_t *history;
    size_t history_hours;
    int64_t current_nano;     /* spend so far in the current hour */
    double current_fraction;  /* part of the current hour elapsed, in (0, 1]; 1 = the hour is complete */
    int current_hour_of_week; /* 0..167, of the current hour */
    bool firing;              /* the alert's state before this evaluation */
} cp_anomaly_input_t;

typedef struct cp_anomaly_result {
    cp_anomaly_action_t action;
    bool firing;              /* the state after this evaluation */
    cp_anomaly_basis_t basis; /* the evaluation the numbers below describe */
    /* For CURRENT and LAST_HOUR one hour's spend, expectation and scale; for
     * SUSTAINED the totals over the hours and the root of the summed squared
     * hourly scales. For NONE all zero. */
    int64_t observed_nano;
    int64_t expected_nano;
    int64_t scale_nano;
    double score;      /* (observed - expected) / scale */
    int history_weeks; /* weeks of history the expectation rests on */
    char reason[256];  /* lower case, no final period, for operators */
} cp_anomaly_result_t;

/* Fills p with the defaults above. */
void cp_anomaly_params_default(cp_anomaly_params_t *p);

/* Learns the expectation and scale of the current hour, and the last
 * completed hours, from history (completed hours, oldest first, the last
 * one ending where the current hour starts; missing hours as 0, negative
 * read as 0; borrowed for the call). Costs about 30 us of CPU for six weeks
 * of history (optimized build); cp_anomaly_decide() well under 1 us.
 * Returns 0, or SL_EINVAL for out-of-range parameters (m->reason says why).
 * With less history than the minimum it returns 0 with m->ready false. */
int cp_anomaly_prepare(const cp_anomaly_params_t *p, const int64_t *history, size_t history_hours,
                       int current_hour_of_week, cp_anomaly_model_t *m);

/* Decides on the current hour's spend so far. current_fraction in (0, 1] is
 * the part of the hour elapsed (1: the hour is complete); firing is the
 * alert's state before this call. Returns 0, or SL_EINVAL for a fraction out
 * of range (out->action is then NO_CHANGE). A model that is not ready gives
 * NO_CHANGE, also when firing, so a data gap never resolves an incident by
 * itself. */
int cp_anomaly_decide(const cp_anomaly_model_t *m, int64_t current_nano, double current_fraction, bool firing,
                      cp_anomaly_result_t *out);

/* cp_anomaly_prepare() and cp_anomaly_decide() in one call. */
int cp_anomaly_evaluate(const cp_anomaly_params_t *p, const cp_anomaly_input_t *in, cp_anomaly_result_t *out);

#endif
