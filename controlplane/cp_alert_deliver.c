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
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#define MAX_RESPONSE 4096

struct cp_alert_sender {
    CURL *curl;
    int64_t timeout_ms;
    int64_t resend_ms;
};

cp_alert_sender_t *cp_alert_sender_new(int64_t timeout_ms, int64_t resend_ms)
{
    cp_alert_sender_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->curl = curl_easy_init();
    if (s->curl == NULL)
        abort();
    s->timeout_ms = timeout_ms;
    s->resend_ms = resend_ms > 0 ? resend_ms : CP_ALERT_RESEND_MS_DEFAULT;
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

/* Loads event id into *ev (strings in a). 1: loaded, 0: gone (deleted
 * meanwhile, its deliveries with it), <0: the database failed (err set).
 * *too_old: the event is past CP_ALERT_GIVE_UP_S. */
static int load_event(cp_db_t *db, int64_t id, cp_arena_t *a, cp_alert_event_t *ev, int *too_old, sl_err_t *err)
{
    char eid[24], giveup[24];
    const char *ep[2] = {cp_db_fmt_i64(id, eid), cp_db_fmt_i64(CP_ALERT_GIVE_UP_S, giveup)};
    PGresult *r = cp_db_query(db, EVENT_SQL, 2, ep, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    *ev = (cp_alert_event_t){
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
    *too_old = cp_db_bool(r, 0, 12);
    PQclear(r);
    return 1;
}

typedef struct sent {
    int outcome; /* 1 delivered, -1 failed for good, 0 retry */
    const char *why;
    char errbuf[320];
} sent_t;

/* Sends ev to the sink named name. 0 with *out filled, or an SL_E* code
 * when the database failed (err set). */
static int send_event(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, const char *name,
                      cp_alert_event_t *ev, cp_arena_t *a, sent_t *out, sl_err_t *err)
{
    char *names = cp_store_json_strings(&name, 1);
    cp_sink_pb **sinks = NULL;
    size_t nsinks = 0;
    int rc = cp_alert_store_sinks(db, names, keys, a, &sinks, &nsinks, err);
    free(names);
    if (rc != 0)
        return rc;
    out->why = NULL;
    if (nsinks == 0) {
        out->why = "the sink is not configured";
        out->outcome = -1;
        return 0;
    }
    /* Alertmanager ends an alert that is not sent again by its endsAt: a
     * fire's lease is four resend intervals from now */
    if (strcmp(sinks[0]->kind, "alertmanager") == 0 && strcmp(ev->kind, "fire") == 0)
        ev->valid_until_unix = (int64_t)time(NULL) + (CP_ALERT_LEASE_RESENDS * s->resend_ms + 999) / 1000;
    sl_buf_t url = {0}, body = {0}, resp = {0};
    char sig[CP_ALERT_SIG_LEN];
    int signed_ = 0;
    if (build(sinks[0], ev, &url, &body, sig, &signed_, &out->why) != 0) {
        out->outcome = -1;
    } else {
        long status = post(s, url.data, &body, signed_ ? sig : NULL, ev->uid, &resp, &out->why);
        out->outcome = cp_alert_http_outcome(status);
        if (status != 0 && out->outcome != 1) {
            char tail[210];
            tidy(&resp, tail, sizeof(tail));
            snprintf(out->errbuf, sizeof(out->errbuf), "HTTP %ld%s%s", status, tail[0] ? ": " : "", tail);
            out->why = out->errbuf;
        }
    }
    if (url.data != NULL)
        OPENSSL_cleanse(url.data, url.len); /* a Slack URL is a secret */
    sl_buf_free(&url);
    sl_buf_free(&body);
    sl_buf_free(&resp);
    OPENSSL_cleanse(sinks[0]->secret.data, sinks[0]->secret.len);
    return 0;
}

/* One claimed delivery: send and record the outcome. */
static int deliver(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, const head_t *h, int attempts,
                   cp_arena_t *a, sl_err_t *err)
{
    cp_alert_event_t ev;
    int too_old = 0;
    int got = load_event(db, h->event_id, a, &ev, &too_old, err);
    if (got <= 0)
        return got < 0 ? err->code : 0;
    sent_t st;
    int rc = send_event(s, db, keys, h->sink, &ev, a, &st, err);
    if (rc != 0)
        return rc;
    if (st.outcome == 0 && too_old)
        st.outcome = -1;

    char eid[24], delay[24];
    const char *dp[4] = {cp_db_fmt_i64(h->event_id, eid), h->sink, NULL, st.why != NULL ? st.why : ""};
    if (st.outcome == 1) {
        dp[2] = "delivered";
        rc = cp_db_exec(db, DONE_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES, 1);
        sl_info("alert", "delivered %s event %s of rule \"%s\" to sink \"%s\" (attempt %d)", ev.kind, ev.uid, ev.rule,
                h->sink, attempts);
    } else if (st.outcome < 0) {
        dp[2] = "failed";
        rc = cp_db_exec(db, DONE_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES_FAILED, 1);
        sl_error("alert", "gave up delivering %s event %s of rule \"%s\" to sink \"%s\" after %d attempt(s): %s",
                 ev.kind, ev.uid, ev.rule, h->sink, attempts, st.why != NULL ? st.why : "failed");
    } else {
        dp[2] = cp_db_fmt_i64(cp_alert_backoff_ms(attempts), delay);
        rc = cp_db_exec(db, RETRY_SQL, 4, dp, err);
        cp_metrics_inc(CP_M_ALERT_DELIVERIES_FAILED, 1);
        sl_warn("alert", "delivering %s event %s to sink \"%s\" failed (attempt %d, retrying in %s ms): %s", ev.kind,
                ev.uid, h->sink, attempts, delay, st.why != NULL ? st.why : "failed");
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

/* Firing alerts whose fire reached an alertmanager sink the rule still
 * names, and whose last send is a resend interval old. The newest event of
 * the alert must be that fire: after a resolve nothing is re-sent. */
static const char REFRESH_DUE_SQL[] =
    "SELECT d.event_id, d.sink FROM alert_state s"
    " JOIN alert_rules r ON r.name = s.rule"
    " JOIN LATERAL (SELECT e.id, e.kind FROM alert_events e"
    "   WHERE e.rule = s.rule AND e.scope = s.scope AND e.instance = s.instance ORDER BY e.id DESC LIMIT 1) e"
    "   ON e.kind = 'fire'"
    " JOIN alert_deliveries d ON d.event_id = e.id AND d.status = 'delivered' AND d.sink = ANY (r.sinks)"
    " JOIN alert_sinks k ON k.name = d.sink AND k.kind = 'alertmanager'"
    " WHERE s.status = 'firing'"
    "   AND coalesce(d.refreshed_at, d.delivered_at) <= now() - $1::bigint * interval '1 millisecond'"
    " ORDER BY d.event_id, d.sink LIMIT 100";

static const char REFRESH_CLAIM_SQL[] =
    "UPDATE alert_deliveries SET refreshed_at = now() WHERE event_id = $1 AND sink = $2 AND status = 'delivered'"
    " AND coalesce(refreshed_at, delivered_at) <= now() - $3::bigint * interval '1 millisecond' RETURNING 1";

int cp_alert_refresh_once(cp_alert_sender_t *s, cp_db_t *db, const cp_keys_t *keys, int max, int *sent, sl_err_t *err)
{
    char resend[24];
    cp_db_fmt_i64(s->resend_ms, resend);
    const char *rp[1] = {resend};
    PGresult *r = cp_db_query(db, REFRESH_DUE_SQL, 1, rp, err);
    if (r == NULL)
        return err->code;
    int n = 0, rc = 0, rows = PQntuples(r);
    cp_arena_t *a = cp_arena_new();
    for (int i = 0; i < rows && n < max && rc == 0; i++) {
        head_t h = {cp_db_i64(r, i, 0), cp_arena_strdup(a, cp_db_str(r, i, 1))};
        char eid[24];
        const char *cp[3] = {cp_db_fmt_i64(h.event_id, eid), h.sink, resend};
        PGresult *c = cp_db_query(db, REFRESH_CLAIM_SQL, 3, cp, err);
        if (c == NULL) {
            rc = err->code;
            break;
        }
        int claimed = PQntuples(c) == 1;
        PQclear(c);
        if (!claimed)
            continue;
        n++;
        cp_alert_event_t ev;
        int too_old = 0, got = load_event(db, h.event_id, a, &ev, &too_old, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : 0;
            continue;
        }
        sent_t st;
        rc = send_event(s, db, keys, h.sink, &ev, a, &st, err);
        if (rc == 0 && st.outcome != 1) {
            /* the next resend tries again; the alert's lease outlasts three misses */
            cp_metrics_inc(CP_M_ALERT_DELIVERIES_FAILED, 1);
            sl_warn("alert", "re-sending firing alert %s of rule \"%s\" to sink \"%s\" failed: %s", ev.uid, ev.rule,
                    h.sink, st.why != NULL ? st.why : "failed");
        }
    }
    cp_arena_free(a);
    PQclear(r);
    if (sent != NULL)
        *sent = n;
    return rc;
}
