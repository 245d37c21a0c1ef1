/* alert_store_test.c - tests of the validation in controlplane/cp_alert_store.c
 * (the database parts run end to end in tests/e2e/test_alerts.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cp_alert_store.h"

static cp_sink_pb sink(const char *name, const char *kind, const char *url, const char *secret)
{
    cp_sink_pb s = SLUICE__CONFIG__V1__ALERT_SINK__INIT;
    s.name = (char *)name;
    s.kind = (char *)kind;
    s.url = (char *)url;
    if (secret != NULL) {
        s.secret.data = (uint8_t *)secret;
        s.secret.len = strlen(secret);
    }
    return s;
}

static void test_sinks(void **state)
{
    sl_err_t e = {0};
    cp_sink_pb s = sink("ops", "webhook", "https://ops.example.com/hook", "whsec");
    assert_int_equal(cp_alert_validate_sink(&s, &e), 0);
    s = sink("ops", "webhook", "https://ops.example.com/hook", NULL); /* unsigned webhook */
    assert_int_equal(cp_alert_validate_sink(&s, &e), 0);
    s = sink("ops", "webhook", "", "whsec");
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    assert_non_null(strstr(e.msg, "needs a url"));
    s = sink("ops", "webhook", "ftp://x/y", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    s = sink("chat", "slack", "", "https://hooks.slack.com/services/T/B/X");
    assert_int_equal(cp_alert_validate_sink(&s, &e), 0);
    s = sink("chat", "slack", "https://hooks.slack.com/services/T/B/X", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    assert_non_null(strstr(e.msg, "url_env"));
    s = sink("chat", "slack", "", "not a url");
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    assert_null(strstr(e.msg, "not a url")); /* the secret is never shown */
    s = sink("pager", "pagerduty", "", "R0UTING");
    assert_int_equal(cp_alert_validate_sink(&s, &e), 0);
    s = sink("pager", "pagerduty", "", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    s = sink("am", "alertmanager", "http://am:9093", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), 0);
    s = sink("am", "alertmanager", "http://am:9093", "x");
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    s = sink("bad name", "webhook", "https://x", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
    s = sink("mail", "email", "https://x", NULL);
    assert_int_equal(cp_alert_validate_sink(&s, &e), SL_EINVAL);
}

static int64_t th[] = {500000, 800000, 1000000};
static char *sinks[] = {"ops", "pager"};

static cp_rule_pb rule(const char *kind, cp_scope_pb *scope)
{
    cp_rule_pb r = SLUICE__CONFIG__V1__ALERT_RULE__INIT;
    r.name = "r1";
    r.kind = (char *)kind;
    r.scope = scope;
    r.sinks = sinks;
    r.n_sinks = 2;
    return r;
}

static void test_rules(void **state)
{
    sl_err_t e = {0};
    cp_scope_pb key = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT, all = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT,
                prov = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT, two = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT;
    key.virtual_key = "vk_acme_prod";
    all.all_tenants = 1;
    prov.provider = "anthropic";
    two.tenant = "acme";
    two.provider = "openai";

    cp_rule_pb r = rule("budget_threshold", &key);
    r.thresholds_micro = th;
    r.n_thresholds_micro = 3;
    assert_int_equal(cp_alert_validate_rule(&r, &e), 0);
    r.n_thresholds_micro = 0;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL); /* thresholds required */
    r.n_thresholds_micro = 3;
    r.scope = &prov;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL); /* budgets are not per provider */
    r.scope = &two;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.scope = NULL;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.scope = &key;
    int64_t dup[] = {500000, 500000};
    r.thresholds_micro = dup;
    r.n_thresholds_micro = 2;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    char *twice[] = {"ops", "ops"};
    r.thresholds_micro = th;
    r.n_thresholds_micro = 3;
    r.sinks = twice;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);

    r = rule("spend_anomaly", &all);
    r.sensitivity_micro = 3000000;
    r.min_hourly_nano = 5000000000;
    assert_int_equal(cp_alert_validate_rule(&r, &e), 0);
    r.threshold_micro = 200000; /* an error_rate field */
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);

    r = rule("error_rate", &prov);
    r.threshold_micro = 200000;
    r.window_seconds = 300;
    assert_int_equal(cp_alert_validate_rule(&r, &e), 0);
    r.window_seconds = 30;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL); /* below the ledger's minute */
    r.window_seconds = 300;
    r.threshold_micro = 1000000;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.threshold_micro = 0;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.threshold_micro = 200000;
    r.scope = &key;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.scope = &prov;
    r.severity = "page-me";
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r.severity = "critical";
    assert_int_equal(cp_alert_validate_rule(&r, &e), 0);

    r = rule("circuit_open", &prov);
    assert_int_equal(cp_alert_validate_rule(&r, &e), 0);
    r.thresholds_micro = th;
    r.n_thresholds_micro = 1;
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
    r = rule("disk_full", &prov);
    assert_int_equal(cp_alert_validate_rule(&r, &e), SL_EINVAL);
}

static void test_document_duplicates(void **state)
{
    sl_err_t e = {0};
    cp_sink_pb a = sink("ops", "webhook", "https://x/y", NULL), b = sink("ops", "webhook", "https://x/z", NULL);
    cp_sink_pb *list[] = {&a, &b};
    cp_doc_pb d = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    d.alert_sinks = list;
    d.n_alert_sinks = 2;
    assert_int_equal(cp_alert_validate_document(&d, &e), SL_EINVAL);
    assert_non_null(strstr(e.msg, "listed twice"));
    d.n_alert_sinks = 1;
    assert_int_equal(cp_alert_validate_document(&d, &e), 0);
}

static void test_scope_strings(void **state)
{
    cp_arena_t *a = cp_arena_new();
    cp_scope_pb s = SLUICE__CONFIG__V1__ALERT_SCOPE__INIT;
    s.tenant = "acme";
    assert_string_equal(cp_alert_scope_str(&s, a), "tenant/acme");
    s.tenant = "";
    s.all_tenants = 1;
    assert_string_equal(cp_alert_scope_str(&s, a), "all_tenants");
    cp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sinks),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_document_duplicates),
        cmocka_unit_test(test_scope_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
