/*
 * cp_alert_payload.c - receiver payloads for alert events.
 */
#include "cp_alert_payload.h"
#include "sl_crypto.h"
#include "sl_err.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define PD_DEFAULT_URL "https://events.pagerduty.com"
#define PD_SUMMARY_MAX 1024
#define SLACK_HEADER_MAX 150

void cp_alert_time(int64_t t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int is_fire(const cp_alert_event_t *ev)
{
    return strcmp(ev->kind, "fire") == 0;
}

static json_t *details(const cp_alert_event_t *ev)
{
    if (ev->details_json == NULL || ev->details_json[0] == '\0')
        return json_object();
    json_t *d = json_loads(ev->details_json, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        return NULL;
    }
    return d;
}

/* Splits "kind/id" (an id may itself contain '/'). */
static void split_scope(const char *scope, char *kind, size_t cap, const char **id)
{
    const char *slash = strchr(scope, '/');
    size_t n = slash != NULL ? (size_t)(slash - scope) : strlen(scope);
    if (n >= cap)
        n = cap - 1;
    memcpy(kind, scope, n);
    kind[n] = '\0';
    *id = slash != NULL ? slash + 1 : "";
}

static int dump(json_t *v, sl_buf_t *out)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    if (s == NULL)
        abort();
    sl_buf_puts(out, s);
    free(s);
    return 0;
}

/* s cut to at most max bytes without splitting a UTF-8 sequence, with "..."
 * when cut; caller frees. */
static char *cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return strdup(s);
    size_t keep = max - 3;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
        keep--;
    char *r = malloc(keep + 4);
    if (r == NULL)
        abort();
    memcpy(r, s, keep);
    memcpy(r + keep, "...", 4);
    return r;
}

int cp_alert_payload_webhook(const cp_alert_event_t *ev, sl_buf_t *out)
{
    json_t *d = details(ev);
    if (d == NULL)
        return SL_EINVAL;
    char kind[64], fired[32], created[32];
    const char *id;
    split_scope(ev->scope, kind, sizeof(kind), &id);
    cp_alert_time(ev->fired_unix, fired);
    cp_alert_time(ev->created_unix, created);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(ev->uid));
    json_object_set_new(o, "source", json_string("sluice"));
    json_object_set_new(o, "event", json_string(ev->kind));
    json_object_set_new(o, "status", json_string(is_fire(ev) ? "firing" : "resolved"));
    json_object_set_new(o, "rule", json_string(ev->rule));
    json_object_set_new(o, "rule_kind", json_string(ev->rule_kind));
    json_object_set_new(o, "severity", json_string(ev->severity));
    json_object_set_new(o, "scope", json_pack("{s:s, s:s}", "kind", kind, "id", id));
    json_object_set_new(o, "instance", json_string(ev->instance));
    json_object_set_new(o, "summary", json_string(ev->summary));
    json_object_set_new(o, "dedup_key", json_string(ev->dedup_key));
    json_object_set_new(o, "fired_at", json_string(fired));
    json_object_set_new(o, "created_at", json_string(created));
    if (!is_fire(ev))
        json_object_set_new(o, "resolved_at", json_string(created));
    json_object_set_new(o, "details", d);
    return dump(o, out);
}

/* Slack mrkdwn wants &, < and > escaped; everything else is literal. */
static char *mrkdwn(const char *s)
{
    sl_buf_t b = {0};
    sl_buf_reserve(&b, strlen(s) + 1);
    for (; *s != '\0'; s++) {
        if (*s == '&')
            sl_buf_puts(&b, "&amp;");
        else if (*s == '<')
            sl_buf_puts(&b, "&lt;");
        else if (*s == '>')
            sl_buf_puts(&b, "&gt;");
        else
            sl_buf_append(&b, s, 1);
    }
    if (b.data == NULL || b.len == 0) {
        sl_buf_free(&b);
        char *e = strdup("");
        if (e == NULL)
            abort();
        return e;
    }
    return b.data;
}

static json_t *mrkdwn_field(const char *title, const char *value)
{
    char *v = mrkdwn(value);
    size_t n = strlen(title) + strlen(v) + 8;
    char *t = malloc(n);
    if (t == NULL)
        abort();
    snprintf(t, n, "*%s*\n%s", title, v);
    json_t *f = json_pack("{s:s, s:s}", "type", "mrkdwn", "text", t);
    free(t);
    free(v);
    return f;
}

int cp_alert_payload_slack(const cp_alert_event_t *ev, sl_buf_t *out)
{
    json_t *d = details(ev);
    if (d == NULL)
        return SL_EINVAL;
    json_decref(d);
    int fire = is_fire(ev);
    char when[32];
    cp_alert_time(ev->created_unix, when);
    sl_buf_t text = {0};
    sl_buf_printf(&text, "[%s] %s", fire ? "FIRING" : "RESOLVED", ev->summary);
    sl_buf_t head = {0};
    sl_buf_printf(&head, "%s: %s", fire ? "Firing" : "Resolved", ev->rule);
    char *header = cut(head.data, SLACK_HEADER_MAX);
    char *body = mrkdwn(ev->summary);
    char *section = cut(body, 3000);

    json_t *fields = json_array();
    json_array_append_new(fields, mrkdwn_field("Severity", ev->severity));
    json_array_append_new(fields, mrkdwn_field("Scope", ev->scope));
    json_array_append_new(fields, mrkdwn_field("Rule kind", ev->rule_kind));
    if (ev->instance[0] != '\0')
        json_array_append_new(fields, mrkdwn_field("Period", ev->instance));
    sl_buf_t ctx = {0};
    sl_buf_printf(&ctx, "sluice · event %s · %s", ev->uid, when);

    json_t *blocks = json_array();
    json_array_append_new(
        blocks, json_pack("{s:s, s:{s:s, s:s}}", "type", "header", "text", "type", "plain_text", "text", header));
    json_array_append_new(blocks, json_pack("{s:s, s:{s:s, s:s}, s:o}", "type", "section", "text", "type", "mrkdwn",
                                            "text", section, "fields", fields));
    json_array_append_new(
        blocks, json_pack("{s:s, s:[{s:s, s:s}]}", "type", "context", "elements", "type", "mrkdwn", "text", ctx.data));
    json_t *o = json_pack("{s:s, s:o}", "text", text.data, "blocks", blocks);
    sl_buf_free(&text);
    sl_buf_free(&head);
    sl_buf_free(&ctx);
    free(header);
    free(body);
    free(section);
    return dump(o, out);
}

int cp_alert_payload_pagerduty(const cp_alert_event_t *ev, const char *routing_key, sl_buf_t *out)
{
    json_t *d = details(ev);
    if (d == NULL)
        return SL_EINVAL;
    json_t *o = json_object();
    json_object_set_new(o, "routing_key", json_string(routing_key));
    json_object_set_new(o, "event_action", json_string(is_fire(ev) ? "trigger" : "resolve"));
    json_object_set_new(o, "dedup_key", json_string(ev->dedup_key));
    if (!is_fire(ev)) {
        json_decref(d);
        return dump(o, out);
    }
    char when[32];
    cp_alert_time(ev->created_unix, when);
    char *summary = cut(ev->summary, PD_SUMMARY_MAX);
    json_object_set_new(o, "client", json_string("Sluice"));
    /* custom_details: the rule's numbers, then where the event came from */
    json_object_set_new(d, "rule", json_string(ev->rule));
    json_object_set_new(d, "scope", json_string(ev->scope));
    if (ev->instance[0] != '\0')
        json_object_set_new(d, "period", json_string(ev->instance));
    json_object_set_new(d, "event_id", json_string(ev->uid));
    json_t *p = json_object();
    json_object_set_new(p, "summary", json_string(summary));
    json_object_set_new(p, "source", json_string("sluice"));
    json_object_set_new(p, "severity", json_string(ev->severity));
    json_object_set_new(p, "timestamp", json_string(when));
    json_object_set_new(p, "component", json_string(ev->scope));
    json_object_set_new(p, "group", json_string(ev->rule));
    json_object_set_new(p, "class", json_string(ev->rule_kind));
    json_object_set_new(p, "custom_details", d);
    json_object_set_new(o, "payload", p);
    free(summary);
    return dump(o, out);
}

int cp_alert_payload_alertmanager(const cp_alert_event_t *ev, sl_buf_t *out)
{
    json_t *d = details(ev);
    if (d == NULL)
        return SL_EINVAL;
    char *desc = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(d);
    if (desc == NULL)
        abort();
    char kind[64], fired[32], created[32];
    const char *id;
    split_scope(ev->scope, kind, sizeof(kind), &id);
    cp_alert_time(ev->fired_unix, fired);
    cp_alert_time(ev->created_unix, created);
    /* labels identify the alert: the same for a fire and its resolve */
    json_t *labels = json_object();
    json_object_set_new(labels, "alertname", json_string(ev->rule));
    json_object_set_new(labels, "severity", json_string(ev->severity));
    json_object_set_new(labels, "source", json_string("sluice"));
    json_object_set_new(labels, "rule_kind", json_string(ev->rule_kind));
    json_object_set_new(labels, "scope_kind", json_string(kind));
    json_object_set_new(labels, "scope_id", json_string(id));
    if (ev->instance[0] != '\0')
        json_object_set_new(labels, "period", json_string(ev->instance));
    json_t *ann = json_object();
    json_object_set_new(ann, "summary", json_string(ev->summary));
    json_object_set_new(ann, "description", json_string(desc));
    json_object_set_new(ann, "event_id", json_string(ev->uid));
    json_object_set_new(ann, "dedup_key", json_string(ev->dedup_key));
    json_t *a = json_object();
    json_object_set_new(a, "labels", labels);
    json_object_set_new(a, "annotations", ann);
    json_object_set_new(a, "startsAt", json_string(fired));
    if (!is_fire(ev)) {
        json_object_set_new(a, "endsAt", json_string(created));
    } else if (ev->valid_until_unix > 0) {
        char until[32];
        cp_alert_time(ev->valid_until_unix, until);
        json_object_set_new(a, "endsAt", json_string(until));
    }
    free(desc);
    json_t *arr = json_array();
    json_array_append_new(arr, a);
    return dump(arr, out);
}

void cp_alert_signature(const void *secret, size_t secret_len, const void *body, size_t body_len,
                        char out[CP_ALERT_SIG_LEN])
{
    uint8_t mac[SL_HASH_LEN];
    sl_hmac_sha256(secret, secret_len, body, body_len, mac);
    memcpy(out, "sha256=", 7);
    sl_hex_encode(mac, sizeof(mac), out + 7);
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int base_plus(const char *base, const char *path, sl_buf_t *out)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    if (n == 0)
        return SL_EINVAL;
    sl_buf_append(out, base, n);
    if (!ends_with(base, n, path))
        sl_buf_puts(out, path);
    return 0;
}

int cp_alert_sink_endpoint(const char *kind, const char *url, const char *secret, size_t secret_len, sl_buf_t *out)
{
    if (strcmp(kind, "webhook") == 0) {
        if (url == NULL || url[0] == '\0')
            return SL_EINVAL;
        sl_buf_puts(out, url);
        return 0;
    }
    if (strcmp(kind, "slack") == 0) {
        if (secret == NULL || secret_len == 0 || memchr(secret, '\0', secret_len) != NULL)
            return SL_EINVAL;
        sl_buf_append(out, secret, secret_len);
        return 0;
    }
    if (strcmp(kind, "pagerduty") == 0)
        return base_plus(url != NULL && url[0] != '\0' ? url : PD_DEFAULT_URL, "/v2/enqueue", out);
    if (strcmp(kind, "alertmanager") == 0)
        return base_plus(url != NULL ? url : "", "/api/v2/alerts", out);
    return SL_EINVAL;
}
