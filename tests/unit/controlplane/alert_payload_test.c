/* alert_payload_test.c - tests of controlplane/cp_alert_payload.c: the exact
 * bodies each sink kind receives, the webhook signature and endpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cp_alert_payload.h"
#include "sl_err.h"

/* 2026-03-01T12:00:00Z and ten minutes later */
#define T0 1772366400
#define T1 (T0 + 600)

static cp_alert_event_t fire_event(void)
{
    return (cp_alert_event_t){
        .uid = "0b9c6a4e-7f1d-4a8e-9a51-3f1e2d4c5b6a",
        .rule = "acme-budget",
        .rule_kind = "budget_threshold",
        .scope = "virtual_key/vk_acme_prod",
        .instance = "month/2026-03-01T00:00:00Z/0.8",
        .kind = "fire",
        .severity = "warning",
        .summary = "virtual key vk_acme_prod has spent 9600.00 USD of its 12000.00 USD monthly budget (80%), "
                   "crossing 80%",
        .dedup_key = "sluice/acme-budget/virtual_key/vk_acme_prod/month/2026-03-01T00:00:00Z/0.8",
        .details_json = "{\"spend_usd\":\"9600\",\"limit_usd\":\"12000\"}",
        .fired_unix = T0,
        .created_unix = T0,
    };
}

static cp_alert_event_t resolve_event(void)
{
    cp_alert_event_t e = fire_event();
    e.kind = "resolve";
    e.summary = "the budget window ended";
    e.created_unix = T1;
    return e;
}

static void test_webhook_fire_exact(void **state)
{
    cp_alert_event_t e = fire_event();
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_webhook(&e, &b), 0);
    assert_string_equal(
        b.data,
        "{\"id\":\"0b9c6a4e-7f1d-4a8e-9a51-3f1e2d4c5b6a\",\"source\":\"sluice\",\"event\":\"fire\","
        "\"status\":\"firing\",\"rule\":\"acme-budget\",\"rule_kind\":\"budget_threshold\",\"severity\":\"warning\","
        "\"scope\":{\"kind\":\"virtual_key\",\"id\":\"vk_acme_prod\"},\"instance\":\"month/2026-03-01T00:00:00Z/0.8\","
        "\"summary\":\"virtual key vk_acme_prod has spent 9600.00 USD of its 12000.00 USD monthly budget (80%), "
        "crossing 80%\",\"dedup_key\":\"sluice/acme-budget/virtual_key/vk_acme_prod/month/2026-03-01T00:00:00Z/0.8\","
        "\"fired_at\":\"2026-03-01T12:00:00Z\",\"created_at\":\"2026-03-01T12:00:00Z\","
        "\"details\":{\"spend_usd\":\"9600\",\"limit_usd\":\"12000\"}}");
    sl_buf_free(&b);
}

static void test_webhook_resolve_has_resolved_at(void **state)
{
    cp_alert_event_t e = resolve_event();
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_webhook(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"event\":\"resolve\",\"status\":\"resolved\""));
    assert_non_null(strstr(b.data, "\"fired_at\":\"2026-03-01T12:00:00Z\",\"created_at\":\"2026-03-01T12:10:00Z\","
                                   "\"resolved_at\":\"2026-03-01T12:10:00Z\",\"details\""));
    sl_buf_free(&b);
}

static void test_details_must_be_an_object(void **state)
{
    cp_alert_event_t e = fire_event();
    e.details_json = "[1,2]";
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_webhook(&e, &b), SL_EINVAL);
    assert_int_equal(cp_alert_payload_slack(&e, &b), SL_EINVAL);
    assert_int_equal(cp_alert_payload_pagerduty(&e, "k", &b), SL_EINVAL);
    assert_int_equal(cp_alert_payload_alertmanager(&e, &b), SL_EINVAL);
    e.details_json = "";
    assert_int_equal(cp_alert_payload_webhook(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"details\":{}}"));
    sl_buf_free(&b);
}

static void test_signature_is_hmac_sha256_of_body(void **state)
{
    /* RFC 4231 test case 2: HMAC-SHA-256("Jefe", "what do ya want for nothing?") */
    char sig[CP_ALERT_SIG_LEN];
    const char *body = "what do ya want for nothing?";
    cp_alert_signature("Jefe", 4, body, strlen(body), sig);
    assert_string_equal(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_slack_exact(void **state)
{
    cp_alert_event_t e = fire_event();
    e.summary = "spend <b> & more";
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_slack(&e, &b), 0);
    assert_string_equal(
        b.data,
        "{\"text\":\"[FIRING] spend <b> & more\",\"blocks\":["
        "{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":\"Firing: acme-budget\"}},"
        "{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"spend &lt;b&gt; &amp; more\"},\"fields\":["
        "{\"type\":\"mrkdwn\",\"text\":\"*Severity*\\nwarning\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Scope*\\nvirtual_key/vk_acme_prod\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Rule kind*\\nbudget_threshold\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Period*\\nmonth/2026-03-01T00:00:00Z/0.8\"}]},"
        "{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":"
        "\"sluice · event 0b9c6a4e-7f1d-4a8e-9a51-3f1e2d4c5b6a · 2026-03-01T12:00:00Z\"}]}]}");
    sl_buf_free(&b);
}

static void test_slack_header_is_cut_at_150(void **state)
{
    cp_alert_event_t e = resolve_event();
    char rule[200];
    memset(rule, 'r', sizeof(rule) - 1);
    rule[sizeof(rule) - 1] = '\0';
    e.rule = rule;
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_slack(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"text\":\"[RESOLVED] the budget window ended\""));
    const char *h = strstr(b.data, "\"text\":\"Resolved: rrr");
    assert_non_null(h);
    const char *end = strstr(h + 8, "\"}");
    assert_int_equal(end - (h + 8), 150);
    assert_memory_equal(end - 3, "...", 3);
    sl_buf_free(&b);
}

static void test_pagerduty_trigger_exact(void **state)
{
    cp_alert_event_t e = fire_event();
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_pagerduty(&e, "R0UTING", &b), 0);
    assert_string_equal(
        b.data,
        "{\"routing_key\":\"R0UTING\",\"event_action\":\"trigger\","
        "\"dedup_key\":\"sluice/acme-budget/virtual_key/vk_acme_prod/month/2026-03-01T00:00:00Z/0.8\","
        "\"client\":\"Sluice\",\"payload\":{\"summary\":\"virtual key vk_acme_prod has spent 9600.00 USD of its "
        "12000.00 USD monthly budget (80%), crossing 80%\",\"source\":\"sluice\",\"severity\":\"warning\","
        "\"timestamp\":\"2026-03-01T12:00:00Z\",\"component\":\"virtual_key/vk_acme_prod\",\"group\":\"acme-budget\","
        "\"class\":\"budget_threshold\",\"custom_details\":{\"spend_usd\":\"9600\",\"limit_usd\":\"12000\","
        "\"rule\":\"acme-budget\",\"scope\":\"virtual_key/vk_acme_prod\","
        "\"period\":\"month/2026-03-01T00:00:00Z/0.8\",\"event_id\":\"0b9c6a4e-7f1d-4a8e-9a51-3f1e2d4c5b6a\"}}}");
    sl_buf_free(&b);
}

static void test_pagerduty_resolve_exact(void **state)
{
    cp_alert_event_t e = resolve_event();
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_pagerduty(&e, "R0UTING", &b), 0);
    assert_string_equal(b.data, "{\"routing_key\":\"R0UTING\",\"event_action\":\"resolve\",\"dedup_key\":"
                                "\"sluice/acme-budget/virtual_key/vk_acme_prod/month/2026-03-01T00:00:00Z/0.8\"}");
    sl_buf_free(&b);
}

static void test_pagerduty_summary_cut_at_1024(void **state)
{
    cp_alert_event_t e = fire_event();
    char s[2000];
    memset(s, 'x', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    e.summary = s;
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_pagerduty(&e, "k", &b), 0);
    const char *p = strstr(b.data, "\"summary\":\"");
    assert_non_null(p);
    const char *end = strchr(p + 11, '"');
    assert_int_equal(end - (p + 11), 1024);
    sl_buf_free(&b);
}

static void test_alertmanager_exact(void **state)
{
    cp_alert_event_t e = fire_event();
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_alertmanager(&e, &b), 0);
    assert_string_equal(
        b.data,
        "[{\"labels\":{\"alertname\":\"acme-budget\",\"severity\":\"warning\",\"source\":\"sluice\","
        "\"rule_kind\":\"budget_threshold\",\"scope_kind\":\"virtual_key\",\"scope_id\":\"vk_acme_prod\","
        "\"period\":\"month/2026-03-01T00:00:00Z/0.8\"},\"annotations\":{\"summary\":\"virtual key vk_acme_prod has "
        "spent 9600.00 USD of its 12000.00 USD monthly budget (80%), crossing 80%\",\"description\":"
        "\"{\\\"spend_usd\\\":\\\"9600\\\",\\\"limit_usd\\\":\\\"12000\\\"}\","
        "\"event_id\":\"0b9c6a4e-7f1d-4a8e-9a51-3f1e2d4c5b6a\","
        "\"dedup_key\":\"sluice/acme-budget/virtual_key/vk_acme_prod/month/2026-03-01T00:00:00Z/0.8\"},"
        "\"startsAt\":\"2026-03-01T12:00:00Z\"}]");
    sl_buf_free(&b);
}

static void test_alertmanager_fire_ends_at_its_lease(void **state)
{
    cp_alert_event_t e = fire_event();
    e.valid_until_unix = e.created_unix + 240;
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_alertmanager(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"startsAt\":\"2026-03-01T12:00:00Z\",\"endsAt\":\"2026-03-01T12:04:00Z\"}]"));
    /* only Alertmanager's payload has a lease */
    b.len = 0;
    assert_int_equal(cp_alert_payload_webhook(&e, &b), 0);
    assert_null(strstr(b.data, "12:04:00Z"));
    sl_buf_free(&b);
}

static void test_alertmanager_resolve_sets_ends_at_and_same_labels(void **state)
{
    cp_alert_event_t f = fire_event(), r = resolve_event();
    sl_buf_t bf = {0}, br = {0};
    assert_int_equal(cp_alert_payload_alertmanager(&f, &bf), 0);
    assert_int_equal(cp_alert_payload_alertmanager(&r, &br), 0);
    assert_non_null(strstr(br.data, "\"startsAt\":\"2026-03-01T12:00:00Z\",\"endsAt\":\"2026-03-01T12:10:00Z\"}]"));
    /* the label set identifies the alert: identical for its fire and resolve */
    size_t lf = (size_t)(strstr(bf.data, ",\"annotations\"") - bf.data);
    size_t lr = (size_t)(strstr(br.data, ",\"annotations\"") - br.data);
    assert_int_equal(lf, lr);
    assert_memory_equal(bf.data, br.data, lf);
    sl_buf_free(&bf);
    sl_buf_free(&br);
}

static void test_provider_scope_without_instance(void **state)
{
    cp_alert_event_t e = fire_event();
    e.scope = "provider/anthropic";
    e.instance = "";
    sl_buf_t b = {0};
    assert_int_equal(cp_alert_payload_alertmanager(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"scope_kind\":\"provider\",\"scope_id\":\"anthropic\"},"));
    assert_null(strstr(b.data, "\"period\""));
    b.len = 0;
    assert_int_equal(cp_alert_payload_webhook(&e, &b), 0);
    assert_non_null(strstr(b.data, "\"scope\":{\"kind\":\"provider\",\"id\":\"anthropic\"},\"instance\":\"\""));
    sl_buf_free(&b);
}

static void test_endpoints(void **state)
{
    sl_buf_t b = {0};
#define EP(kind, url, secret, want)                                                                                    \
    do {                                                                                                               \
        const char *s_ = (secret);                                                                                     \
        b.len = 0;                                                                                                     \
        assert_int_equal(cp_alert_sink_endpoint(kind, url, s_, s_ != NULL ? strlen(s_) : 0, &b), 0);                   \
        assert_string_equal(b.data, want);                                                                             \
    } while (0)
    EP("webhook", "https://ops.example.com/hook?x=1", NULL, "https://ops.example.com/hook?x=1");
    EP("slack", "", "https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/services/T/B/X");
    EP("pagerduty", "", "rk", "https://events.pagerduty.com/v2/enqueue");
    EP("pagerduty", "http://127.0.0.1:9/pd/", "rk", "http://127.0.0.1:9/pd/v2/enqueue");
    EP("pagerduty", "https://events.eu.pagerduty.com/v2/enqueue", "rk", "https://events.eu.pagerduty.com/v2/enqueue");
    EP("alertmanager", "http://am:9093", NULL, "http://am:9093/api/v2/alerts");
    EP("alertmanager", "http://am:9093/api/v2/alerts", NULL, "http://am:9093/api/v2/alerts");
#undef EP
    assert_int_equal(cp_alert_sink_endpoint("webhook", "", NULL, 0, &b), SL_EINVAL);
    assert_int_equal(cp_alert_sink_endpoint("slack", "", NULL, 0, &b), SL_EINVAL);
    assert_int_equal(cp_alert_sink_endpoint("alertmanager", "", NULL, 0, &b), SL_EINVAL);
    assert_int_equal(cp_alert_sink_endpoint("email", "x", NULL, 0, &b), SL_EINVAL);
    sl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook_fire_exact),
        cmocka_unit_test(test_webhook_resolve_has_resolved_at),
        cmocka_unit_test(test_details_must_be_an_object),
        cmocka_unit_test(test_signature_is_hmac_sha256_of_body),
        cmocka_unit_test(test_slack_exact),
        cmocka_unit_test(test_slack_header_is_cut_at_150),
        cmocka_unit_test(test_pagerduty_trigger_exact),
        cmocka_unit_test(test_pagerduty_resolve_exact),
        cmocka_unit_test(test_pagerduty_summary_cut_at_1024),
        cmocka_unit_test(test_alertmanager_exact),
        cmocka_unit_test(test_alertmanager_fire_ends_at_its_lease),
        cmocka_unit_test(test_alertmanager_resolve_sets_ends_at_and_same_labels),
        cmocka_unit_test(test_provider_scope_without_instance),
        cmocka_unit_test(test_endpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
