/*
 * ctl_alerts.c - alert rule, state and history renderings.
 */
#include "ctl_alerts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_output.h"
#include "sl_money.h"

typedef Sluice__Config__V1__AlertRule rule_t;
typedef Sluice__Config__V1__AlertSink sink_t;

/* A time as ctl_time_text() writes it, "-" for none. */
static void when(int64_t t, char buf[32])
{
    if (ctl_time_text(t, buf, 32)[0] == '\0')
        snprintf(buf, 32, "-");
}

static void fraction(int64_t micro, char buf[40])
{
    sl_usd_format(micro, 6, buf, 40);
}

static const char *scope_of(const rule_t *r, char *buf, size_t cap)
{
    const Sluice__Config__V1__AlertScope *s = r->scope;
    if (s == NULL)
        snprintf(buf, cap, "-");
    else if (s->virtual_key[0])
        snprintf(buf, cap, "virtual_key/%s", s->virtual_key);
    else if (s->tenant[0])
        snprintf(buf, cap, "tenant/%s", s->tenant);
    else if (s->provider[0])
        snprintf(buf, cap, "provider/%s", s->provider);
    else
        snprintf(buf, cap, "all_tenants");
    return buf;
}

/* The rule's parameters in the words of the YAML file. */
static void params_of(const rule_t *r, sl_buf_t *b)
{
    char x[40];
    if (r->n_thresholds_micro > 0) {
        sl_buf_puts(b, "thresholds [");
        for (size_t i = 0; i < r->n_thresholds_micro; i++) {
            fraction(r->thresholds_micro[i], x);
            sl_buf_printf(b, "%s%s", i ? ", " : "", x);
        }
        sl_buf_puts(b, "]");
    }
    if (r->sensitivity_micro > 0) {
        fraction(r->sensitivity_micro, x);
        sl_buf_printf(b, "%ssensitivity %s", b->len ? ", " : "", x);
    }
    if (r->min_hourly_nano > 0) {
        sl_usd_format(r->min_hourly_nano, 9, x, sizeof(x));
        sl_buf_printf(b, "%smin_hourly_usd %s", b->len ? ", " : "", x);
    }
    if (r->threshold_micro > 0) {
        fraction(r->threshold_micro, x);
        sl_buf_printf(b, "%sthreshold %s", b->len ? ", " : "", x);
    }
    if (r->window_seconds > 0)
        sl_buf_printf(b, "%swindow %llds", b->len ? ", " : "", (long long)r->window_seconds);
    if (r->min_requests > 0)
        sl_buf_printf(b, "%smin_requests %lld", b->len ? ", " : "", (long long)r->min_requests);
    if (r->severity[0])
        sl_buf_printf(b, "%sseverity %s", b->len ? ", " : "", r->severity);
}

static void dump(sl_buf_t *out, json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(v);
    if (s == NULL)
        abort();
    sl_buf_puts(out, s);
    sl_buf_puts(out, "\n");
    free(s);
}

static json_t *raw_json(const char *s)
{
    json_t *v = s != NULL && s[0] ? json_loads(s, 0, NULL) : NULL;
    return v != NULL ? v : json_object();
}

static json_t *rule_json(const rule_t *r)
{
    char scope[300], x[40];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(r->name));
    json_object_set_new(o, "kind", json_string(r->kind));
    json_object_set_new(o, "scope", json_string(scope_of(r, scope, sizeof(scope))));
    if (r->n_thresholds_micro > 0) {
        json_t *t = json_array();
        for (size_t i = 0; i < r->n_thresholds_micro; i++) {
            fraction(r->thresholds_micro[i], x);
            json_array_append_new(t, json_string(x));
        }
        json_object_set_new(o, "thresholds", t);
    }
    if (r->sensitivity_micro > 0) {
        fraction(r->sensitivity_micro, x);
        json_object_set_new(o, "sensitivity", json_string(x));
    }
    if (r->min_hourly_nano > 0) {
        sl_usd_format(r->min_hourly_nano, 9, x, sizeof(x));
        json_object_set_new(o, "min_hourly_usd", json_string(x));
    }
    if (r->threshold_micro > 0) {
        fraction(r->threshold_micro, x);
        json_object_set_new(o, "threshold", json_string(x));
    }
    if (r->window_seconds > 0)
        json_object_set_new(o, "window_seconds", json_integer(r->window_seconds));
    if (r->min_requests > 0)
        json_object_set_new(o, "min_requests", json_integer(r->min_requests));
    if (r->severity[0])
        json_object_set_new(o, "severity", json_string(r->severity));
    json_t *s = json_array();
    for (size_t i = 0; i < r->n_sinks; i++)
        json_array_append_new(s, json_string(r->sinks[i]));
    json_object_set_new(o, "sinks", s);
    return o;
}

void ctl_out_alerts(sl_buf_t *out, int json, const Sluice__Admin__V1__ListAlertsResponse *r)
{
    char a[32], b[32], scope[300];
    if (json) {
        json_t *root = json_object(), *rules = json_array(), *sinks = json_array();
        for (size_t i = 0; i < r->n_rules; i++) {
            const Sluice__Admin__V1__AlertRuleStatus *st = r->rules[i];
            json_t *o = rule_json(st->rule);
            json_t *states = json_array();
            for (size_t j = 0; j < st->n_states; j++) {
                const Sluice__Admin__V1__AlertState *s = st->states[j];
                when(s->fired_unix, a);
                when(s->resolved_unix, b);
                json_t *x = json_object();
                json_object_set_new(x, "scope", json_string(s->scope));
                json_object_set_new(x, "instance", json_string(s->instance));
                json_object_set_new(x, "status", json_string(s->status));
                json_object_set_new(x, "fired_at", json_string(a));
                json_object_set_new(x, "resolved_at", s->resolved_unix > 0 ? json_string(b) : json_null());
                json_object_set_new(x, "last_values", raw_json(s->last_values_json));
                json_array_append_new(states, x);
            }
            json_object_set_new(o, "states", states);
            json_array_append_new(rules, o);
        }
        for (size_t i = 0; i < r->n_sinks; i++) {
            const sink_t *s = r->sinks[i];
            json_array_append_new(sinks, json_pack("{s:s, s:s, s:s, s:s}", "name", s->name, "kind", s->kind, "url",
                                                   s->url, "secret_env", s->secret_env));
        }
        json_object_set_new(root, "rules", rules);
        json_object_set_new(root, "sinks", sinks);
        dump(out, root);
        return;
    }
    if (r->n_rules == 0) {
        sl_buf_puts(out, "no alert rules\n");
    } else {
        size_t wn = 4, wk = 4, ws = 5;
        for (size_t i = 0; i < r->n_rules; i++) {
            const rule_t *x = r->rules[i]->rule;
            size_t n = strlen(x->name), k = strlen(x->kind), s = strlen(scope_of(x, scope, sizeof(scope)));
            wn = n > wn ? n : wn;
            wk = k > wk ? k : wk;
            ws = s > ws ? s : ws;
        }
        sl_buf_printf(out, "%-*s  %-*s  %-*s  %-8s  %s\n", (int)wn, "RULE", (int)wk, "KIND", (int)ws, "SCOPE", "FIRING",
                      "SINKS / PARAMETERS");
        for (size_t i = 0; i < r->n_rules; i++) {
            const Sluice__Admin__V1__AlertRuleStatus *st = r->rules[i];
            const rule_t *x = st->rule;
            size_t firing = 0;
            for (size_t j = 0; j < st->n_states; j++)
                firing += strcmp(st->states[j]->status, "firing") == 0;
            sl_buf_t p = {0};
            for (size_t j = 0; j < x->n_sinks; j++)
                sl_buf_printf(&p, "%s%s", j ? "," : "", x->sinks[j]);
            if (x->n_sinks == 0)
                sl_buf_puts(&p, "-");
            sl_buf_puts(&p, " / ");
            size_t before = p.len;
            params_of(x, &p);
            if (p.len == before)
                sl_buf_puts(&p, "defaults");
            sl_buf_printf(out, "%-*s  %-*s  %-*s  %-8zu  %s\n", (int)wn, x->name, (int)wk, x->kind, (int)ws,
                          scope_of(x, scope, sizeof(scope)), firing, p.data);
            sl_buf_free(&p);
            for (size_t j = 0; j < st->n_states; j++) {
                const Sluice__Admin__V1__AlertState *s = st->states[j];
                when(s->fired_unix, a);
                when(s->resolved_unix, b);
                sl_buf_printf(out, "    %-8s %s%s%s  fired %s", s->status, s->scope, s->instance[0] ? " " : "",
                              s->instance, a);
                if (s->resolved_unix > 0)
                    sl_buf_printf(out, ", resolved %s", b);
                sl_buf_puts(out, "\n");
            }
        }
    }
    if (r->n_sinks > 0) {
        sl_buf_puts(out, "\nSINK  KIND  ENDPOINT\n");
        for (size_t i = 0; i < r->n_sinks; i++) {
            const sink_t *s = r->sinks[i];
            sl_buf_printf(out, "%s  %s  %s", s->name, s->kind,
                          s->url[0]                       ? s->url
                          : strcmp(s->kind, "slack") == 0 ? "(webhook URL from the secret)"
                                                          : "(default)");
            if (s->secret_env[0])
                sl_buf_printf(out, "  (secret from %s)", s->secret_env);
            sl_buf_puts(out, "\n");
        }
    }
}

void ctl_out_alert_history(sl_buf_t *out, int json, const Sluice__Admin__V1__AlertHistoryResponse *r)
{
    char t[32], d[32];
    if (json) {
        json_t *events = json_array();
        for (size_t i = 0; i < r->n_events; i++) {
            const Sluice__Admin__V1__AlertEvent *e = r->events[i];
            when(e->created_unix, t);
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(e->id));
            json_object_set_new(o, "uid", json_string(e->uid));
            json_object_set_new(o, "created_at", json_string(t));
            json_object_set_new(o, "rule", json_string(e->rule));
            json_object_set_new(o, "rule_kind", json_string(e->rule_kind));
            json_object_set_new(o, "event", json_string(e->kind));
            json_object_set_new(o, "severity", json_string(e->severity));
            json_object_set_new(o, "scope", json_string(e->scope));
            json_object_set_new(o, "instance", json_string(e->instance));
            json_object_set_new(o, "summary", json_string(e->summary));
            json_object_set_new(o, "dedup_key", json_string(e->dedup_key));
            json_object_set_new(o, "details", raw_json(e->details_json));
            json_t *ds = json_array();
            for (size_t j = 0; j < e->n_deliveries; j++) {
                const Sluice__Admin__V1__AlertDelivery *x = e->deliveries[j];
                when(x->delivered_unix, d);
                json_t *dl = json_object();
                json_object_set_new(dl, "sink", json_string(x->sink));
                json_object_set_new(dl, "status", json_string(x->status));
                json_object_set_new(dl, "attempts", json_integer(x->attempts));
                json_object_set_new(dl, "delivered_at", x->delivered_unix > 0 ? json_string(d) : json_null());
                json_object_set_new(dl, "last_error", json_string(x->last_error));
                json_array_append_new(ds, dl);
            }
            json_object_set_new(o, "deliveries", ds);
            json_array_append_new(events, o);
        }
        json_t *root = json_object();
        json_object_set_new(root, "events", events);
        dump(out, root);
        return;
    }
    if (r->n_events == 0) {
        sl_buf_puts(out, "no alert events\n");
        return;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        const Sluice__Admin__V1__AlertEvent *e = r->events[i];
        when(e->created_unix, t);
        sl_buf_printf(out, "#%lld  %s  %-7s  %-8s  %s  %s%s%s\n    %s\n", (long long)e->id, t, e->kind, e->severity,
                      e->rule, e->scope, e->instance[0] ? " " : "", e->instance, e->summary);
        for (size_t j = 0; j < e->n_deliveries; j++) {
            const Sluice__Admin__V1__AlertDelivery *x = e->deliveries[j];
            sl_buf_printf(out, "    -> %s: %s after %d attempt%s", x->sink, x->status, x->attempts,
                          x->attempts == 1 ? "" : "s");
            if (x->delivered_unix > 0) {
                when(x->delivered_unix, d);
                sl_buf_printf(out, " at %s", d);
            } else if (strcmp(x->status, "pending") == 0) {
                when(x->next_attempt_unix, d);
                sl_buf_printf(out, ", next attempt %s", d);
            }
            if (x->last_error[0] && x->delivered_unix == 0)
                sl_buf_printf(out, " (last error: %s)", x->last_error);
            sl_buf_puts(out, "\n");
        }
    }
}
