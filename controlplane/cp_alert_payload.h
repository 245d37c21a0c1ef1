/*
 * cp_alert_payload.h - the bodies alert sinks receive, one builder per
 * receiver, each in the shape that receiver documents:
 *
 *   webhook       POST <url>, the event as JSON (below), header
 *                 X-Sluice-Signature: sha256=<hex HMAC-SHA-256(secret, body)>
 *   slack         POST <incoming webhook URL>, {"text": ..., "blocks": [...]}
 *   pagerduty     POST <url>/v2/enqueue (Events API v2): {"routing_key",
 *                 "event_action": "trigger"|"resolve", "dedup_key", "client",
 *                 "payload": {"summary", "source", "severity", "timestamp",
 *                 "component", "group", "class", "custom_details"}} (a resolve
 *                 carries no payload)
 *   alertmanager  POST <url>/api/v2/alerts: [{"labels", "annotations",
 *                 "startsAt", "endsAt"}]; a resolve ends at its resolution,
 *                 a fire (sent again while it lasts) at valid_until_unix
 *
 * The generic event (the webhook body), keys in this order:
 *   {"id": uid, "source": "sluice", "event": "fire"|"resolve",
 *    "status": "firing"|"resolved", "rule", "rule_kind", "severity",
 *    "scope": {"kind", "id"}, "instance", "summary", "dedup_key",
 *    "fired_at", "created_at", ["resolved_at" on resolve,] "details": {...}}
 * Times are RFC 3339 UTC ("2026-03-01T12:00:00Z").
 *
 * Pure functions: no I/O; outputs go to the caller's sl_buf_t.
 */
#ifndef CP_ALERT_PAYLOAD_H
#define CP_ALERT_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "sl_buf.h"

/* One alert event as stored in the outbox; strings borrowed. */
typedef struct cp_alert_event {
    const char *uid; /* uuid, the receivers' idempotency key */
    const char *rule;
    const char *rule_kind; /* budget_threshold, spend_anomaly, error_rate, circuit_open */
    const char *scope;     /* "virtual_key/<id>", "tenant/<id>", "provider/<name>" */
    const char *instance;  /* "" or the budget period and threshold */
    const char *kind;      /* "fire" or "resolve" */
    const char *severity;  /* critical, error, warning, info */
    const char *summary;
    const char *dedup_key;
    const char *details_json; /* a JSON object ("" reads as {}) */
    int64_t fired_unix;       /* when the incident started */
    int64_t created_unix;     /* when this event was recorded (for a resolve: the resolution) */
    int64_t valid_until_unix; /* alertmanager: a fire's endsAt, the end of its lease (0: none) */
} cp_alert_event_t;

/* Length of "sha256=" + 64 hex digits + NUL. */
#define CP_ALERT_SIG_LEN (7 + 64 + 1)

/* Builders. Each appends to out and returns 0, or SL_EINVAL when the
 * event's details are not a JSON object. */
int cp_alert_payload_webhook(const cp_alert_event_t *ev, sl_buf_t *out);
int cp_alert_payload_slack(const cp_alert_event_t *ev, sl_buf_t *out);
int cp_alert_payload_pagerduty(const cp_alert_event_t *ev, const char *routing_key, sl_buf_t *out);
int cp_alert_payload_alertmanager(const cp_alert_event_t *ev, sl_buf_t *out);

/* "sha256=<hex HMAC-SHA-256(secret, body)>" into out. */
void cp_alert_signature(const void *secret, size_t secret_len, const void *body, size_t body_len,
                        char out[CP_ALERT_SIG_LEN]);

/* Where a sink posts: webhook its url; slack the secret (the webhook URL);
 * pagerduty url (default https://events.pagerduty.com) + "/v2/enqueue";
 * alertmanager url + "/api/v2/alerts". A path already present is not
 * appended twice; a trailing '/' of the base is dropped. Appends to out;
 * returns 0, or SL_EINVAL for an unknown kind or a missing URL. */
int cp_alert_sink_endpoint(const char *kind, const char *url, const char *secret, size_t secret_len, sl_buf_t *out);

/* Formats unix time t as RFC 3339 UTC into buf (21 bytes suffice). */
void cp_alert_time(int64_t t, char buf[32]);

#endif
