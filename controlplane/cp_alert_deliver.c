/*
 * cp_alert_deliver.c - the outbox sender.
 */
#include "cp_alert_deliver.h"
#include "cp_alert_logic.h"
#include "cp_alert_payload.h"
#include "cp_alert_store.h"
#include "cp_arena.h"
#include "cp_metrics.h"
#include "sl_buf.h"
#include "sl_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#define MAX_RESPONSE 4096

struct cp_alert_sender {
    CURL *curl;
    int64_t timeout_ms;
};

cp_alert_sender_t *cp_alert_sender_new(int64_t timeout_ms)
{
    cp_alert_sender_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->curl = curl_easy_init();
    if (s->curl == NULL)
        abort();
    s->timeout_ms = timeout_ms;
    return s;
}

void cp_alert_sender_free(cp_alert_sender_t *s)
{
    if (s == NULL)
        return;
    curl_easy_cleanup(s->curl);
    free(s);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sl_buf_t *b = ud;
    size_t len = size * n;
    if (b->len < MAX_RESPONSE)
        sl_buf_append(b, p, len < MAX_RESPONSE - b->len ? len : MAX_RESPONSE - b->len);
    return len;
}

/* Posts body to url. Returns the HTTP status, or 0 with *why set when no
 * answer came (connect error, timeout). resp gets the start of the body. */
static long post(cp_alert_sender_t *s, const char *url, const sl_buf_t *body, const char *signature,
                 const char *event_uid, sl_buf_t *resp, const char **why)
{
    CURL *c = s->curl;
    curl_easy_reset(c);
    struct curl_slist *h = NULL;
    char line[160];
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "User-Agent: sluice-controlplane/" SLUICE_VERSION);
    h = curl_slist_append(h, "Expect:");
    snprintf(line, sizeof(line), "X-Sluice-Event-Id: %s", event_uid);
    h = curl_slist_append(h, line);
    if (signature != NULL) {
        snprintf(line, sizeof(line), "X-Sluice-Signature: %s", signature);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    long status = 0;
    if (rc != CURLE_OK) {
        *why = curl_easy_strerror(rc);
        return 0;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Printable start of a receiver's answer, for last_error. */
static void tidy(const sl_buf_t *resp, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < resp->len && o + 1 < cap && o < 200; i++) {
        unsigned char ch = (unsigned char)resp->data[i];
        out[o++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[o] = '\0';
}

typedef struct head {
    int64_t event_id;
    const char *sink;
} head_t;

static const char HEADS_SQL[] =
    "SELECT h.event_id, h.sink FROM (SELECT DISTINCT ON (sink) event_id, sink, next_attempt_at"
    "   FROM alert_deliveries WHERE status = 'pending' ORDER BY sink, event_id) h"
    " WHERE h.next_attempt_at <= now() ORDER BY h.event_id LIMIT 100";

static const char CLAIM_SQL[] = "UPDATE alert_deliveries SET attempts = attempts + 1,"
                                " next_attempt_at = now() + $3::bigint * interval '1 millisecond'"
                                " WHERE event_id = $1 AND sink = $2 AND status = 'pending' AND next_attempt_at <= now()"
                                " RETURNING attempts";

static const char EVENT_SQL[] =
    "SELECT e.uid::text, e.rule, e.rule_kind, e.scope, e.instance, e.kind, e.severity, e.summary, e.dedup_key,"
    " e.details::text, extract(epoch FROM e.fired_at)::bigint, extract(epoch FROM e.created_at)::bigint,"
    " e.created_at < now() - $2::bigint * interval '1 second'"
    " FROM alert_events e WHERE e.id = $1";

static const char DONE_SQL[] =
    "UPDATE alert_deliveries SET status = $3, delivered_at = CASE WHEN $3 = 'delivered' THEN now() END,"
    " last_error = $4 WHERE event_id = $1 AND sink = $2";

static const char RETRY_SQL[] =
    "UPDATE alert_deliveries SET next_attempt_at = now() + $3::bigint * interval '1 millisecond', last_error = $4"
    " WHERE event_id = $1 AND sink = $2 AND status = 'pending'";

/* Builds the request of one delivery; 0, or SL_EINVAL with why set. */
static int build(const cp_sink_pb *sink, const cp_alert_event_t *ev, sl_buf_t *url, sl_buf_t *body, char *sig,
                 int *signed_, const char **why)
{
    const char *secret = (const char *)sink->secret.data;
    size_t slen = sink->secret.len;
    *signed_ = 0;
    if (cp_alert_sink_endpoint(sink->kind, sink->url, secret, slen, url) != 0) {
        *why = "the sink has no usable URL";
        return SL_EINVAL;
    }
    int rc;
    if (strcmp(sink->kind, "webhook") == 0) {
        rc = cp_alert_payload_webhook(ev, body);
        if (rc == 0 && slen > 0) {
            cp_alert_signature(secret, slen, body->data, body->len, sig);
            *signed_ = 1;
        }
    } else if (strcmp(sink->kind, "slack") == 0) {
        rc = cp_alert_payload_slack(ev, body);
    } else if (strcmp(sink->kind, "pagerduty") == 0) {
        char *key = strndup(secret != NULL ? secret : "", slen);
        if (key == NULL)
            abort();
        rc = cp_alert_payload_pagerduty(ev, key, body);
        OPENSSL_cleanse(key, slen);
        free(key);
    } else {
        rc = cp_alert_payload_alertmanager(ev, body);
    }
    if (rc != 0)
        *why = "the event's details are not a JSON object";
    return rc;
}

/* One claimed delivery: send and record the outcome. */
static int deliver(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, const head_t *h, int attempts,
                   cp_arena_t *a, sl_err_t *err)
{
    char eid[24], giveup[24];
    const char *ep[2] = {cp_db_fmt_i64(h->event_id, eid), cp_db_fmt_i64(CP_ALERT_GIVE_UP_S, giveup)};
    PGresult *r = cp_db_query(db, EVENT_SQL, 2, ep, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0; /* the event was deleted meanwhile (its delivery with it) */
    }
    cp_alert_event_t ev = {
        .uid = cp_arena_strdup(a, cp_db_str(r, 0, 0)),
        .rule = cp_arena_strdup(a, cp_db_str(r, 0, 1)),
        .rule_kind = cp_arena_strdup(a, cp_db_str(r, 0, 2)),
        .scope = cp_arena_strdup(a, cp_db_str(r, 0, 3)),
        .instance = cp_arena_strdup(a, cp_db_str(r, 0, 4)),
        .kind = cp_arena_strdup(a, cp_db_str(r, 0, 5)),
        .severity = cp_arena_strdup(a, cp_db_str(r, 0, 6)),
        .summary = cp_arena_strdup(a, cp_db_str(r, 0, 7)),
        .dedup_key = cp_arena_strdup(a, cp_db_str(r, 0, 8)),
        .details_json = cp_arena_strdup(a, cp_db_str(r, 0, 9)),
        .fired_unix = cp_db_i64(r, 0, 10),
        .created_unix = cp_db_i64(r, 0, 11),
    };
    int too_old = cp_db_bool(r, 0, 12);
    PQclear(r);

    char *names = cp_store_json_strings(&h->sink, 1);
    cp_sink_pb **sinks = NULL;
    size_t nsinks = 0;
    int rc = cp_alert_store_sinks(db, names, keys, a, &sinks, &nsinks, err);
    free(names);
    if (rc != 0)
        return rc;

    const char *why = NULL;
    char errbuf[320];
    int outcome = 0; /* 1 delivered, -1 failed for good, 0 retry */
    long status = 0;
    if (nsinks == 0) {
        why = "the sink is not configured";
        outcome = -1;
    } else {
        sl_buf_t url = {0}, body = {0}, resp = {0};
        char sig[CP_ALERT_SIG_LEN];
        int signed_ = 0;
        if (build(sinks[0], &ev, &url, &body, sig, &signed_, &why) != 0) {
            outcome = -1;
        } else {
            status = post(s, url.data, &body, signed_ ? sig : NULL, ev.uid, &resp, &why);
            outcome = cp_alert_http_outcome(status);
            if (status != 0 && outcome != 1) {
                char tail[210];
                tidy(&resp, tail, sizeof(tail));
                snprintf(errbuf, sizeof(errbuf), "HTTP %ld%s%s", status, tail[0] ? ": " : "", tail);
                why = errbuf;
            }
        }
        if (url.data != NULL)
            OPENSSL_cleanse(url.data, url.len); /* a Slack URL is a secret */
        sl_buf_free(&url);
        sl_buf_free(&body);
        sl_buf_free(&resp);
        OPENSSL_cleanse(sinks[0]->secret.data, sinks[0]->secret.len);
    }
    if (outcome == 0 && too_old)
        outcome = -1;

    char delay[24];
    const char *dp[4] = {eid, h->sink, NULL, why != NULL ? why : ""};
    if (outcome == 1) {
        dp[2] = "delivered";
        rc = cp_db_exec(db, DONE_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES, 1);
        sl_info("alert", "delivered %s event %s of rule \"%s\" to sink \"%s\" (attempt %d)", ev.kind, ev.uid, ev.rule,
                h->sink, attempts);
    } else if (outcome < 0) {
        dp[2] = "failed";
        rc = cp_db_exec(db, DONE_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES_FAILED, 1);
        sl_error("alert", "gave up delivering %s event %s of rule \"%s\" to sink \"%s\" after %d attempt(s): %s",
                 ev.kind, ev.uid, ev.rule, h->sink, attempts, why != NULL ? why : "failed");
    } else {
        dp[2] = cp_db_fmt_i64(cp_alert_backoff_ms(attempts), delay);
        rc = cp_db_exec(db, RETRY_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES_FAILED, 1);
        sl_warn("alert", "delivering %s event %s to sink \"%s\" failed (attempt %d, retrying in %s ms): %s", ev.kind,
                ev.uid, h->sink, attempts, delay, why != NULL ? why : "failed");
    }
    return rc;
}

int cp_alert_deliver_once(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, int max, int *sent, sl_err_t *err)
{
    int n = 0, rc = 0;
    if (sent != NULL)
        *sent = 0;
    while (n < max && rc == 0) {
        PGresult *r = cp_db_query(db, HEADS_SQL, 0, NULL, err);
        if (r == NULL)
            return err->code;
        int rows = PQntuples(r);
        if (rows == 0) {
            PQclear(r);
            break;
        }
        cp_arena_t *a = cp_arena_new();
        int progressed = 0;
        for (int i = 0; i < rows && n < max && rc == 0; i++) {
            head_t h = {cp_db_i64(r, i, 0), cp_arena_strdup(a, cp_db_str(r, i, 1))};
            char eid[24], claim[24];
            const char *cp[3] = {cp_db_fmt_i64(h.event_id, eid), h.sink, cp_db_fmt_i64(s->timeout_ms + 5000, claim)};
            PGresult *c = cp_db_query(db, CLAIM_SQL, 3, cp, err);
            if (c == NULL) {
                rc = err->code;
                break;
            }
            int claimed = PQntuples(c) == 1;
            int attempts = claimed ? (int)cp_db_i64(c, 0, 0) : 0;
            PQclear(c);
            if (!claimed)
                continue; /* another evaluator took it */
            n++;
            progressed = 1;
            rc = deliver(s, db, keys, &h, attempts, a, err);
        }
        cp_arena_free(a);
        PQclear(r);
        if (!progressed)
            break;
    }
    if (sent != NULL)
        *sent = n;
    return rc;
}
