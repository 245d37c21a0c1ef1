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
 * Threads: a sender belongs to one thread (the alert thread).
 */
#ifndef CP_ALERT_DELIVER_H
#define CP_ALERT_DELIVER_H

#include <stdint.h>

#include "cp_db.h"
#include "cp_store.h"
#include "sl_err.h"

typedef struct cp_alert_sender cp_alert_sender_t;

/* curl_global_init must have run (cp_alert_start does it). timeout_ms
 * bounds each HTTP request (connect included). Free with
 * cp_alert_sender_free(). */
cp_alert_sender_t *cp_alert_sender_new(int64_t timeout_ms);
void cp_alert_sender_free(cp_alert_sender_t *s);

/* Delivers due deliveries until none is due or max sends were made.
 * *sent (may be NULL) counts the attempts made. Returns 0, or an SL_E* code
 * when the database failed (err set). */
int cp_alert_deliver_once(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, int max, int *sent, sl_err_t *err);

#endif
