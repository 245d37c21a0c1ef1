/*
 * cp_alert_logic.c - pure decisions of the alert evaluator.
 */
#include "cp_alert_logic.h"
#include "cp_alert_payload.h"
#include "sl_money.h"

#include <stdio.h>
#include <string.h>

int cp_alert_budget_crossed(int64_t spend_nano, int64_t limit_nano, int64_t threshold_micro)
{
    if (limit_nano <= 0 || threshold_micro <= 0)
        return 0;
    return (__int128)spend_nano * 1000000 >= (__int128)threshold_micro * limit_nano;
}

cp_alert_action_t cp_alert_error_rate_decide(int64_t requests, int64_t errors, int64_t threshold_micro,
                                             int64_t min_requests, int firing)
{
    if (requests <= 0)
        return firing ? CP_ALERT_RESOLVE : CP_ALERT_KEEP;
    if (min_requests <= 0)
        min_requests = CP_ALERT_ERROR_MIN_REQUESTS;
    int above = (__int128)errors * 1000000 > (__int128)threshold_micro * requests;
    if (!firing)
        return above && requests >= min_requests ? CP_ALERT_FIRE : CP_ALERT_KEEP;
    return above ? CP_ALERT_KEEP : CP_ALERT_RESOLVE;
}

cp_alert_action_t cp_alert_circuit_decide(int64_t open_circuits, int firing)
{
    if (open_circuits > 0)
        return firing ? CP_ALERT_KEEP : CP_ALERT_FIRE;
    return firing ? CP_ALERT_RESOLVE : CP_ALERT_KEEP;
}

const char *cp_alert_default_severity(const char *rule_kind, int64_t threshold_micro)
{
    if (strcmp(rule_kind, "budget_threshold") == 0)
        return threshold_micro >= 1000000 ? "critical" : threshold_micro >= 800000 ? "warning" : "info";
    if (strcmp(rule_kind, "spend_anomaly") == 0)
        return "warning";
    return "error";
}

void cp_alert_dedup_key(const char *rule, const char *scope, const char *instance, sl_buf_t *out)
{
    sl_buf_printf(out, "sluice/%s/%s", rule, scope);
    if (instance != NULL && instance[0] != '\0')
        sl_buf_printf(out, "/%s", instance);
}

void cp_alert_fraction(int64_t micro, char buf[32])
{
    sl_usd_format(micro, 6, buf, 32);
}

void cp_alert_percent(int64_t micro, char buf[32])
{
    size_t n = sl_usd_format(micro, 4, buf, 30); /* millionths = hundredths of a percent x 100 */
    buf[n] = '%';
    buf[n + 1] = '\0';
}

void cp_alert_budget_instance(const char *provider, const char *window, int64_t window_start_unix,
                              int64_t threshold_micro, sl_buf_t *out)
{
    char ws[32], t[32];
    cp_alert_time(window_start_unix, ws);
    cp_alert_fraction(threshold_micro, t);
    if (provider != NULL && provider[0] != '\0')
        sl_buf_printf(out, "%s:", provider);
    sl_buf_printf(out, "%s/%s/%s", window, ws, t);
}

int64_t cp_alert_backoff_ms(int attempts)
{
    if (attempts < 1)
        attempts = 1;
    if (attempts > 20)
        return CP_ALERT_BACKOFF_MAX_MS;
    int64_t ms = (int64_t)1000 << (attempts - 1);
    return ms > CP_ALERT_BACKOFF_MAX_MS ? CP_ALERT_BACKOFF_MAX_MS : ms;
}

int cp_alert_http_outcome(long status)
{
    if (status >= 200 && status < 300)
        return 1;
    if (status >= 400 && status < 500 && status != 408 && status != 429)
        return -1;
    return 0;
}
