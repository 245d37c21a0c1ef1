/*
 * cp_alert.h - the alert evaluator: a thread in every control-plane replica
 * of which exactly one leads, evaluating the rules every interval and
 * delivering the outbox.
 *
 * Leadership: session-level pg_try_advisory_lock on the evaluator's own
 * connection. The replica holding it evaluates, delivers and re-sends firing
 * alerts to Alertmanager (cp_alert_deliver.h); the others
 * retry every second and take over when the leader's session ends (process
 * exit, crash, lost connection). A leader that finds its connection was
 * replaced (libpq reconnect) knows the lock is gone and competes again.
 * Correctness does not rest on the lock alone: every state transition is a
 * conditional write and every delivery a conditional claim (see
 * 0004_alerts.sql), so even two evaluators would record each event once and
 * send it once.
 *
 * Rules (each evaluated in its own transaction; the events of a state change
 * are written with it):
 *   budget_threshold  per cost quota of the scope (a key's or tenant's
 *                     budgets; all_tenants: every tenant's): fires once per
 *                     threshold per budget window when the ledger's spend in
 *                     the window reaches threshold x limit; resolves when the
 *                     window ends.
 *   spend_anomaly     per tenant (all_tenants, tenant) or key: the hourly spend
 *                     series of the trailing six weeks from the ledger, in the
 *                     tenant's time zone, through cp_anomaly; fires and
 *                     resolves as cp_anomaly decides.
 *   error_rate        per provider: errors / requests in the ledger over the
 *                     window; fires above the threshold, resolves at or below
 *                     it (or when the window saw no request).
 *   circuit_open      per provider: fires while provider_health holds an open
 *                     circuit reported within the window, resolves when none.
 *
 * Threads: cp_alert_start/stop from the main thread; the evaluator runs on
 * its own thread with its own connection.
 */
#ifndef CP_ALERT_H
#define CP_ALERT_H

#include <stdint.h>

#include "cp_db.h"
#include "cp_store.h"
#include "sl_err.h"

#define CP_ALERT_INTERVAL_MS_DEFAULT 60000
/* Deliveries and leadership are checked this often (or every interval when
 * it is shorter). */
#define CP_ALERT_TICK_MS 1000
/* Each HTTP request to a receiver, connect included. */
#define CP_ALERT_HTTP_TIMEOUT_MS 5000

typedef struct cp_alert cp_alert_t;

typedef struct cp_alert_cfg {
    const char *database_url;
    const cp_keys_t *keys; /* borrowed; must outlive the evaluator */
    int64_t interval_ms;   /* evaluation period */
    int64_t resend_ms;     /* Alertmanager resend interval (<= 0: CP_ALERT_RESEND_MS_DEFAULT) */
} cp_alert_cfg_t;

/* An evaluation context: caches the anomaly models of the current hour. */
typedef struct cp_alert_eval cp_alert_eval_t;
cp_alert_eval_t *cp_alert_eval_new(void);
void cp_alert_eval_free(cp_alert_eval_t *e);

/* One evaluation pass of every rule on db. A rule that fails is logged and
 * skipped; returns SL_EUNAVAIL when the database went away, else 0. *events
 * (may be NULL) gets the number of events recorded. */
int cp_alert_evaluate(cp_alert_eval_t *e, cp_db_t *db, int *events, sl_err_t *err);

/* Starts the evaluator thread (curl_global_init runs here). */
cp_alert_t *cp_alert_start(const cp_alert_cfg_t *cfg);
/* Stops and joins it (releasing leadership), frees a. NULL is ignored. */
void cp_alert_stop(cp_alert_t *a);

#endif
