/*
 * cp_alert_logic.h - the decisions of the alert evaluator, apart from the
 * database: when a budget threshold is crossed, when an error rate or an
 * open circuit fires and resolves, severities, dedup keys, retry backoff.
 *
 * Ratios are integers in millionths (0.8 -> 800000) and money nano-USD, so
 * "crossed" is exact: spend * 10^6 >= threshold * limit in 128-bit
 * arithmetic. Pure functions; callable from any thread.
 */
#ifndef CP_ALERT_LOGIC_H
#define CP_ALERT_LOGIC_H

#include <stddef.h>
#include <stdint.h>

#include "sl_buf.h"

typedef enum { CP_ALERT_KEEP = 0, CP_ALERT_FIRE, CP_ALERT_RESOLVE } cp_alert_action_t;

/* Defaults of rule parameters left at 0. */
#define CP_ALERT_ERROR_WINDOW_S 300    /* error_rate window */
#define CP_ALERT_ERROR_MIN_REQUESTS 10 /* error_rate: fewer requests decide nothing */
#define CP_ALERT_CIRCUIT_WINDOW_S 120  /* circuit_open: reports older than this are stale */
/* Delivery retries: 1 s, 2 s, 4 s, ... at most 10 minutes apart; a delivery
 * still failing 3 days after its event gives up. */
#define CP_ALERT_BACKOFF_MAX_MS (10 * 60 * 1000)
#define CP_ALERT_GIVE_UP_S (3 * 86400)

/* Whether spend has reached threshold_micro (a fraction in millionths) of
 * limit: spend * 10^6 >= threshold * limit. A limit <= 0 is never crossed. */
int cp_alert_budget_crossed(int64_t spend_nano, int64_t limit_nano, int64_t threshold_micro);

/* error_rate: fires when requests >= min_requests and errors / requests >
 * threshold; resolves when firing and the rate is <= threshold, or when the
 * window saw no request at all; otherwise keeps the state. */
cp_alert_action_t cp_alert_error_rate_decide(int64_t requests, int64_t errors, int64_t threshold_micro,
                                             int64_t min_requests, int firing);

/* circuit_open: fires while any circuit of the provider is open, resolves
 * when none is. */
cp_alert_action_t cp_alert_circuit_decide(int64_t open_circuits, int firing);

/* The severity of an event when the rule sets none: budget_threshold info
 * below 80 %, warning from 80 %, critical from 100 %; spend_anomaly warning;
 * error_rate and circuit_open error. */
const char *cp_alert_default_severity(const char *rule_kind, int64_t threshold_micro);

/* "sluice/<rule>/<scope>[/<instance>]": stable per rule x scope x instance. */
void cp_alert_dedup_key(const char *rule, const char *scope, const char *instance, sl_buf_t *out);

/* The instance of a budget threshold: "[<provider>:]<window>/<start>/<threshold>",
 * e.g. "month/2026-03-01T00:00:00Z/0.8". */
void cp_alert_budget_instance(const char *provider, const char *window, int64_t window_start_unix,
                              int64_t threshold_micro, sl_buf_t *out);

/* A fraction in millionths as a decimal ("0.5", "1", "0.333333"). */
void cp_alert_fraction(int64_t micro, char buf[32]);
/* The same as a percentage ("50%", "33.3333%"). */
void cp_alert_percent(int64_t micro, char buf[32]);

/* Delay before the next delivery attempt after `attempts` failed ones
 * (attempts >= 1): 1 s * 2^(attempts - 1), capped at CP_ALERT_BACKOFF_MAX_MS. */
int64_t cp_alert_backoff_ms(int attempts);

/* Whether an HTTP status from a receiver is final (no retry): 2xx is
 * success, other 4xx except 408 and 429 are final failures (the receiver
 * rejects the payload and will keep doing so); everything else, and no
 * answer at all (status 0), is retried. 1: delivered, -1: failed for good,
 * 0: retry. */
int cp_alert_http_outcome(long status);

#endif
