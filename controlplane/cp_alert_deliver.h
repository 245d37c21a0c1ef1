/*
 * cp_alert_deliver.h - delivers the outbox (alert_deliveries) to sinks
 * over HTTP with libcurl.
 *
 * At least once, in order per sink, with exponential backoff:
 *   1. per sink, the oldest pending delivery is the only candidate (a later
 *      event never overtakes an earlier one, so a resolve never arrives
 *      before its fire);
 *   2. it is claimed in its own committed statement: attempts + 1 and
 *      next_attempt_at pushed past the send timeout, so no other evaluator
 *      picks it while it is in flight;
 *   3. it is sent; a 2xx marks it delivered, a 4xx other than 408/429 (the
 *      receiver rejects the payload) or an event older than
 *      CP_ALERT_GIVE_UP_S marks it failed, anything else schedules a retry
 *      after cp_alert_backoff_ms(attempts).
 * A crash between 3's send and its mark sends the event again after the
 * claim expires: receivers get the event id (webhook "id", PagerDuty's
 * dedup_key, Alertmanager's label set) to drop the repeat.
 *
 * Alertmanager forgets an alert that is not posted again before its endsAt,
 * so a fire sent to an alertmanager sink carries endsAt = now + a lease of
 * CP_ALERT_LEASE_RESENDS resend intervals, and while the alert fires the
 * leader posts it again every resend interval (cp_alert_refresh_once). A
 * resolve is final: its endsAt is the resolution and nothing follows it.
 * When no control plane is left to re-send, Alertmanager resolves the
 * alert at the end of its lease.
 *
 * Threads: a sender belongs to one thread (the alert thread).
 */
#ifndef CP_ALERT_DELIVER_H
#define CP_ALERT_DELIVER_H

#include <stdint.h>

#include "cp_db.h"
#include "cp_store.h"
#include "sl_err.h"

/* How often a firing alert is posted to Alertmanager again (the default of
 * --alert-resend-interval, Prometheus' resend delay), and how many of those
 * intervals its endsAt lies ahead. */
#define CP_ALERT_RESEND_MS_DEFAULT 60000
#define CP_ALERT_LEASE_RESENDS 4

typedef struct cp_alert_sender cp_alert_sender_t;

/* curl_global_init must have run (cp_alert_start does it). timeout_ms
 * bounds each HTTP request (connect included); resend_ms is the
 * Alertmanager resend interval (<= 0: the default). Free with
 * cp_alert_sender_free(). */
cp_alert_sender_t *cp_alert_sender_new(int64_t timeout_ms, int64_t resend_ms);
void cp_alert_sender_free(cp_alert_sender_t *s);

/* Delivers due deliveries until none is due or max sends were made.
 * *sent (may be NULL) counts the attempts made. Returns 0, or an SL_E* code
 * when the database failed (err set). */
int cp_alert_deliver_once(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, int max, int *sent, sl_err_t *err);

/* Posts firing alerts that are due again to their alertmanager sinks, at
 * most max. *sent (may be NULL) counts the posts claimed. A failed post is
 * logged and tried again a resend interval later. Returns 0, or an SL_E*
 * code when the database failed (err set). */
int cp_alert_refresh_once(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, int max, int *sent, sl_err_t *err);

#endif
