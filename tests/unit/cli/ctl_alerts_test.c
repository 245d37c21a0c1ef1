/* ctl_alerts_test.c - tests of the `alerts:` section of apply files
 * (cli/ctl_yaml.c) and of the renderings in cli/ctl_alerts.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "ctl_alerts.h"
#include "ctl_yaml.h"

static const char *fake_env(const char *name, void *ud)
{
    if (strcmp(name, "ALERT_HMAC_SECRET") == 0)
        return "whsec-1";
    if (strcmp(name, "PD_ROUTING_KEY") == 0)
        return "R0UTING";
    if (strcmp(name, "SLACK_URL") == 0)
        return "https://hooks.slack.com/services/T/B/X";
    if (strcmp(name, "EMPTY") == 0)
        return "";
    return NULL;
}

static int parse(ctl_doc_t *d, const char *text, sl_err_t *err)
{
    return ctl_doc_add_yaml(d, "a.yaml", text, strlen(text), fake_env, NULL, err);
}

static const char ISSUE_EXAMPLE[] =
    "alerts:\n"
    "  sinks:\n"
    "  - {name: ops, kind: webhook, url: \"https://ops.example.com/hook\", secret_env: ALERT_HMAC_SECRET}\n"
    "  - {name: pager, kind: pagerduty, routing_key_env: PD_ROUTING_KEY}\n"
    "  - {name: chat, kind: slack, url_env: SLACK_URL}\n"
    "  - {name: am, kind: alertmanager, url: \"http://am:9093\"}\n"
    "  rules:\n"
    "  - {name: acme-budget, kind: budget_threshold, scope: {virtual_key: vk_acme_prod}, thresholds: [0.5, 0.8, 1.0], "
    "sinks: [ops]}\n"
    "  - {name: runaway-spend, kind: spend_anomaly, scope: {all_tenants: true}, sensitivity: 3.0, min_hourly_usd: 5, "
    "sinks: [ops, pager]}\n"
    "  - {name: provider-errors, kind: error_rate, scope: {provider: anthropic}, threshold: 0.2, window: 5m, "
    "sinks: [ops]}\n"
    "  - {name: breaker, kind: circuit_open, scope: {provider: openai}, severity: critical, sinks: [chat, am]}\n";

static void test_issue_example_parses(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(parse(&d, ISSUE_EXAMPLE, &err), 0);
    const Sluice__Admin__V1__Document *p = d.pb;
    assert_int_equal(p->n_alert_sinks, 4);
    assert_int_equal(p->n_alert_rules, 4);
    assert_int_equal(ctl_doc_count(&d), 8);
    const Sluice__Config__V1__AlertSink *ops = p->alert_sinks[0], *pd = p->alert_sinks[1], *sl = p->alert_sinks[2];
    assert_string_equal(ops->kind, "webhook");
    assert_string_equal(ops->url, "https://ops.example.com/hook");
    assert_string_equal(ops->secret_env, "ALERT_HMAC_SECRET");
    assert_int_equal(ops->secret.len, 7);
    assert_memory_equal(ops->secret.data, "whsec-1", 7);
    assert_string_equal(pd->url, "");
    assert_memory_equal(pd->secret.data, "R0UTING", 7);
    assert_string_equal(pd->secret_env, "PD_ROUTING_KEY");
    assert_string_equal(sl->url, "");
    assert_int_equal(sl->secret.len, strlen("https://hooks.slack.com/services/T/B/X"));
    assert_string_equal(p->alert_sinks[3]->url, "http://am:9093");
    assert_int_equal(p->alert_sinks[3]->secret.len, 0);

    const Sluice__Config__V1__AlertRule *b = p->alert_rules[0], *an = p->alert_rules[1], *er = p->alert_rules[2];
    assert_string_equal(b->scope->virtual_key, "vk_acme_prod");
    assert_int_equal(b->n_thresholds_micro, 3);
    assert_int_equal(b->thresholds_micro[0], 500000);
    assert_int_equal(b->thresholds_micro[1], 800000);
    assert_int_equal(b->thresholds_micro[2], 1000000);
    assert_int_equal(b->n_sinks, 1);
    assert_true(an->scope->all_tenants);
    assert_int_equal(an->sensitivity_micro, 3000000);
    assert_int_equal(an->min_hourly_nano, 5000000000LL);
    assert_int_equal(an->n_sinks, 2);
    assert_string_equal(er->scope->provider, "anthropic");
    assert_int_equal(er->threshold_micro, 200000);
    assert_int_equal(er->window_seconds, 300);
    assert_string_equal(p->alert_rules[3]->severity, "critical");
    ctl_doc_free(&d);
}

static void expect_error(const char *yaml, const char *want)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(parse(&d, yaml, &err), SL_EINVAL);
    if (strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
    /* a failed file leaves the document untouched and never shows a secret */
    assert_int_equal(ctl_doc_count(&d), 0);
    assert_null(strstr(err.msg, "R0UTING"));
    assert_null(strstr(err.msg, "whsec-1"));
    ctl_doc_free(&d);
}

static void test_errors_name_the_field(void **state)
{
    expect_error("alerts:\n  sinks:\n  - {name: ops, kind: webhook, url: \"https://x/y\", secret_env: NOPE}\n",
                 "a.yaml:3: alerts.sinks[0].secret_env: environment variable NOPE is not set");
    expect_error("alerts:\n  sinks:\n  - {name: ops, kind: webhook, url: \"https://x/y\", secret_env: EMPTY}\n",
                 "environment variable EMPTY is empty");
    expect_error("alerts:\n  sinks:\n  - {name: ops, kind: webhook}\n", "alerts.sinks[0].url: is required");
    expect_error("alerts:\n  sinks:\n  - {name: c, kind: slack, url: \"https://hooks.slack.com/x\"}\n",
                 "a Slack webhook URL is a secret");
    expect_error("alerts:\n  sinks:\n  - {name: p, kind: pagerduty, secret_env: PD_ROUTING_KEY}\n",
                 "alerts.sinks[0].secret_env: not used by a pagerduty sink");
    expect_error("alerts:\n  sinks:\n  - {name: p, kind: pagerduty}\n", "alerts.sinks[0].routing_key_env: is required");
    expect_error("alerts:\n  sinks:\n  - {name: p, kind: email}\n", "is not a sink kind");
    expect_error("alerts:\n  sink: []\n", "alerts.sink: unknown field (did you mean \"sinks\"?)");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: budget_threshold, scope: {virtual_key: k}}\n",
                 "alerts.rules[0].thresholds: is required");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: budget_threshold, scope: {virtual_key: k}, thresholds: [0.5, "
                 "abc]}\n",
                 "alerts.rules[0].thresholds[1]: \"abc\" is not a decimal number");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: budget_threshold, scope: {virtual_key: k}, thresholds: [0]}\n",
                 "must be above 0");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: budget_threshold, scope: {virtual_key: k, tenant: t}, "
                 "thresholds: [0.5]}\n",
                 "alerts.rules[0].scope: give exactly one of");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: spend_anomaly, scope: {all_tenants: false}}\n",
                 "alerts.rules[0].scope.all_tenants: must be true");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: spend_anomaly, scope: {tenant: t}, threshold: 0.2}\n",
                 "alerts.rules[0].threshold: applies only to error_rate rules");
    expect_error(
        "alerts:\n  rules:\n  - {name: r, kind: error_rate, scope: {provider: p}, threshold: 0.2, window: 5}\n",
        "alerts.rules[0].window: \"5\" is not a duration");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: error_rate, scope: {provider: p}, threshold: 0.2, window: "
                 "30s}\n",
                 "must be at least 1m");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: error_rate, scope: {provider: p}}\n",
                 "alerts.rules[0].threshold: is required");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: circuit_open, scope: {provider: p}, sinks: [a, a]}\n",
                 "\"a\" is listed twice");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: circuit_open, scope: {provider: p}, severity: loud}\n",
                 "is not one of critical, error, warning, info");
    expect_error("alerts:\n  rules:\n  - {name: r, kind: circuit_open, scope: {provider: p}}\n"
                 "  - {name: r, kind: circuit_open, scope: {provider: q}}\n",
                 "duplicate alert rule \"r\" (also defined at a.yaml:3)");
}

static void test_documents_merge(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(parse(&d, "alerts:\n  sinks:\n  - {name: am, kind: alertmanager, url: \"http://am\"}\n", &err), 0);
    assert_int_equal(parse(&d, "alerts:\n  sinks:\n  - {name: am, kind: alertmanager, url: \"http://am2\"}\n", &err),
                     SL_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate alert sink \"am\""));
    assert_int_equal(parse(&d,
                           "---\nalerts:\n  rules:\n  - {name: c, kind: circuit_open, scope: {provider: p}, "
                           "sinks: [am]}\n",
                           &err),
                     0);
    assert_int_equal(d.pb->n_alert_sinks, 1);
    assert_int_equal(d.pb->n_alert_rules, 1);
    ctl_doc_free(&d);
}

static void test_list_rendering(void **state)
{
    Sluice__Config__V1__AlertScope scope = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT;
    scope.virtual_key = "vk_acme_prod";
    int64_t th[] = {500000, 800000};
    char *sinks[] = {"ops"};
    Sluice__Config__V1__AlertRule rule = SLUICE__CONFIG__V1__ALERT_RULE__INIT;
    rule.name = "acme-budget";
    rule.kind = "budget_threshold";
    rule.scope = &scope;
    rule.thresholds_micro = th;
    rule.n_thresholds_micro = 2;
    rule.sinks = sinks;
    rule.n_sinks = 1;
    Sluice__Admin__V1__AlertState st = SLUICE__ADMIN__V1__ALERT_STATE__INIT, *sts[] = {&st};
    st.scope = "virtual_key/vk_acme_prod";
    st.instance = "month/2026-03-01T00:00:00Z/0.5";
    st.status = "firing";
    st.fired_unix = 1772366400;
    st.last_values_json = "{\"spend_usd\":\"55\"}";
    Sluice__Admin__V1__AlertRuleStatus rs = SLUICE__ADMIN__V1__ALERT_RULE_STATUS__INIT, *rss[] = {&rs};
    rs.rule = &rule;
    rs.states = sts;
    rs.n_states = 1;
    Sluice__Config__V1__AlertSink sink = SLUICE__CONFIG__V1__ALERT_SINK__INIT, *sks[] = {&sink};
    sink.name = "ops";
    sink.kind = "webhook";
    sink.url = "https://ops.example.com/hook";
    sink.secret_env = "ALERT_HMAC_SECRET";
    Sluice__Admin__V1__ListAlertsResponse r = SLUICE__ADMIN__V1__LIST_ALERTS_RESPONSE__INIT;
    r.rules = rss;
    r.n_rules = 1;
    r.sinks = sks;
    r.n_sinks = 1;

    sl_buf_t b = {0};
    ctl_out_alerts(&b, 0, &r);
    assert_string_equal(
        b.data, "RULE         KIND              SCOPE                     FIRING    SINKS / PARAMETERS\n"
                "acme-budget  budget_threshold  virtual_key/vk_acme_prod  1         ops / thresholds [0.5, 0.8]\n"
                "    firing   virtual_key/vk_acme_prod month/2026-03-01T00:00:00Z/0.5  fired 2026-03-01T12:00:00Z\n"
                "\nSINK  KIND  ENDPOINT\n"
                "ops  webhook  https://ops.example.com/hook  (secret from ALERT_HMAC_SECRET)\n");
    b.len = 0;
    ctl_out_alerts(&b, 1, &r);
    json_t *j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    json_t *s0 = json_array_get(json_object_get(json_array_get(json_object_get(j, "rules"), 0), "states"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "status")), "firing");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s0, "last_values"), "spend_usd")), "55");
    assert_true(json_is_null(json_object_get(s0, "resolved_at")));
    json_decref(j);
    sl_buf_free(&b);
}

static void test_history_rendering(void **state)
{
    Sluice__Admin__V1__AlertDelivery d1 = SLUICE__ADMIN__V1__ALERT_DELIVERY__INIT,
                                     d2 = SLUICE__ADMIN__V1__ALERT_DELIVERY__INIT, *ds[] = {&d1, &d2};
    d1.sink = "ops";
    d1.status = "delivered";
    d1.attempts = 1;
    d1.delivered_unix = 1772366401;
    d2.sink = "pager";
    d2.status = "pending";
    d2.attempts = 3;
    d2.next_attempt_unix = 1772366410;
    d2.last_error = "HTTP 503";
    Sluice__Admin__V1__AlertEvent e = SLUICE__ADMIN__V1__ALERT_EVENT__INIT, *es[] = {&e};
    e.id = 7;
    e.kind = "fire";
    e.severity = "info";
    e.rule = "acme-budget";
    e.scope = "virtual_key/vk_acme_prod";
    e.instance = "month/2026-03-01T00:00:00Z/0.5";
    e.summary = "spent half";
    e.created_unix = 1772366400;
    e.deliveries = ds;
    e.n_deliveries = 2;
    Sluice__Admin__V1__AlertHistoryResponse r = SLUICE__ADMIN__V1__ALERT_HISTORY_RESPONSE__INIT;
    r.events = es;
    r.n_events = 1;
    sl_buf_t b = {0};
    ctl_out_alert_history(&b, 0, &r);
    assert_string_equal(b.data,
                        "#7  2026-03-01T12:00:00Z  fire     info      acme-budget  virtual_key/vk_acme_prod "
                        "month/2026-03-01T00:00:00Z/0.5\n"
                        "    spent half\n"
                        "    -> ops: delivered after 1 attempt at 2026-03-01T12:00:01Z\n"
                        "    -> pager: pending after 3 attempts, next attempt 2026-03-01T12:00:10Z (last error: HTTP "
                        "503)\n");
    sl_buf_free(&b);
    Sluice__Admin__V1__AlertHistoryResponse empty = SLUICE__ADMIN__V1__ALERT_HISTORY_RESPONSE__INIT;
    sl_buf_t c = {0};
    ctl_out_alert_history(&c, 0, &empty);
    assert_string_equal(c.data, "no alert events\n");
    sl_buf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_example_parses), cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_documents_merge),      cmocka_unit_test(test_list_rendering),
        cmocka_unit_test(test_history_rendering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
