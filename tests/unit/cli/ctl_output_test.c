/* Tests for cli/ctl_output.c: tables, JSON and YAML of Admin API results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ctl_output.h"
#include "ctl_yaml.h"

#define Q(m) SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_##m
#define W(w) SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_##w

/* ---- fixtures: a sample key, tenant and apply response (stack-built) ---- */

typedef struct sample {
    Sluice__Config__V1__Quota q[3];
    Sluice__Config__V1__Quota *qp[3];
    Sluice__Config__V1__Target t[2];
    Sluice__Config__V1__Target *tp[2];
    char *providers[3];
    Sluice__Config__V1__VirtualKey key;
    Sluice__Config__V1__VirtualKey key2;
    Sluice__Config__V1__VirtualKey *keys[2];
    Sluice__Config__V1__Tenant tenant;
    Sluice__Config__V1__Tenant *tenants[1];
} sample_t;

static void sample_init(sample_t *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 3; i++) {
        s->q[i] = (Sluice__Config__V1__Quota)SLUICE__CONFIG__V1__QUOTA__INIT;
        s->qp[i] = &s->q[i];
    }
    s->q[0].metric = Q(COST_NANO);
    s->q[0].window = W(MONTH);
    s->q[0].limit = INT64_C(12000000000000);
    s->q[1].metric = Q(REQUESTS);
    s->q[1].window = W(MINUTE);
    s->q[1].limit = 600;
    s->q[2].metric = Q(COST_NANO); /* a key x provider budget: no YAML form */
    s->q[2].window = W(DAY);
    s->q[2].limit = 2500000000;
    s->q[2].provider = "openai";
    s->t[0] = (Sluice__Config__V1__Target)SLUICE__CONFIG__V1__TARGET__INIT;
    s->t[0].provider = "openai";
    s->t[0].model = "gpt-4o";
    s->t[1] = (Sluice__Config__V1__Target)SLUICE__CONFIG__V1__TARGET__INIT;
    s->t[1].provider = "bedrock";
    s->t[1].model = "anthropic.claude-sonnet-4-6";
    s->tp[0] = &s->t[0];
    s->tp[1] = &s->t[1];
    s->providers[0] = "openai";
    s->providers[1] = "anthropic";
    s->providers[2] = "bedrock";

    Sluice__Config__V1__VirtualKey *k = &s->key;
    *k = (Sluice__Config__V1__VirtualKey)SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    k->id = "vk_acme_prod";
    k->tenant_id = "acme_corp";
    k->key_prefix = "sk-sluice-AbCd";
    k->created_unix = 1767225600; /* 2026-01-01T00:00:00Z */
    k->n_quotas = 2;
    k->quotas = s->qp;
    k->budget_reset = "monthly";
    k->n_allowed_providers = 3;
    k->allowed_providers = s->providers;
    k->n_fallbacks = 2;
    k->fallbacks = s->tp;
    k->metadata_json = "{\"billing_code\":\"1001\",\"seats\":12,\"ratio\":0.25}";

    Sluice__Config__V1__VirtualKey *k2 = &s->key2;
    *k2 = (Sluice__Config__V1__VirtualKey)SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    k2->id = "vk_beta";
    k2->tenant_id = "beta_industries";
    k2->key_prefix = "sk-sluice-Zz9_";
    k2->revoked = 1;
    k2->revoked_unix = 1767312000;
    k2->created_unix = 1767225660;
    s->keys[0] = k;
    s->keys[1] = k2;

    Sluice__Config__V1__Tenant *t = &s->tenant;
    *t = (Sluice__Config__V1__Tenant)SLUICE__CONFIG__V1__TENANT__INIT;
    t->id = "acme_corp";
    t->name = "ACME Corp";
    t->metadata_json = "{\"billing_code\":\"AC-1001\",\"cost_center\":\"emea\"}";
    t->time_zone = "UTC";
    t->n_quotas = 1;
    t->quotas = s->qp;
    t->created_unix = 1767225600;
    s->tenants[0] = t;
}

typedef struct apply_sample {
    Sluice__Admin__V1__Change c[3];
    Sluice__Admin__V1__Change *cp[3];
    char *d0[1], *d1[2];
    char *warnings[1];
    Sluice__Admin__V1__CreatedSecret s;
    Sluice__Admin__V1__CreatedSecret *sp[1];
    Sluice__Admin__V1__ApplyResponse r;
} apply_sample_t;

static void apply_init(apply_sample_t *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < 3; i++) {
        a->c[i] = (Sluice__Admin__V1__Change)SLUICE__ADMIN__V1__CHANGE__INIT;
        a->cp[i] = &a->c[i];
    }
    a->c[0].kind = "tenant";
    a->c[0].id = "acme_corp";
    a->c[0].action = "unchanged";
    a->c[1].kind = "virtual_key";
    a->c[1].id = "vk_acme_prod";
    a->c[1].action = "create";
    a->d0[0] = "budget: 12000 USD/month";
    a->c[1].n_details = 1;
    a->c[1].details = a->d0;
    a->c[2].kind = "provider";
    a->c[2].id = "openai";
    a->c[2].action = "update";
    a->d1[0] = "base_url: \"https://a.example\" -> \"https://b.example\"";
    a->d1[1] = "credentials: key1 changed";
    a->c[2].n_details = 2;
    a->c[2].details = a->d1;
    a->warnings[0] = "virtual key vk_acme_prod: fallback provider \"bedrock\" is not configured";
    a->s = (Sluice__Admin__V1__CreatedSecret)SLUICE__ADMIN__V1__CREATED_SECRET__INIT;
    a->s.key_id = "vk_acme_prod";
    a->s.secret = "sk-sluice-TESTSECRET";
    a->sp[0] = &a->s;
    a->r = (Sluice__Admin__V1__ApplyResponse)SLUICE__ADMIN__V1__APPLY_RESPONSE__INIT;
    a->r.n_changes = 3;
    a->r.changes = a->cp;
    a->r.n_warnings = 1;
    a->r.warnings = a->warnings;
    a->r.n_secrets = 1;
    a->r.secrets = a->sp;
    a->r.version = 7;
    a->r.changed = 1;
}

/* ---- apply ---- */

static void test_apply_table(void **state)
{
    apply_sample_t a;
    apply_init(&a);
    sl_buf_t out = {0}, err = {0};
    ctl_out_apply(&out, &err, CTL_OUT_TABLE, &a.r, 0, 0);
    assert_string_equal(out.data, "+ create virtual_key vk_acme_prod\n"
                                  "~ update provider openai\n"
                                  "    base_url: \"https://a.example\" -> \"https://b.example\"\n"
                                  "    credentials: key1 changed\n"
                                  "created virtual key vk_acme_prod: sk-sluice-TESTSECRET\n"
                                  "applied: 1 created, 1 updated, 1 unchanged (config version 7)\n");
    assert_string_equal(err.data,
                        "warning: virtual key vk_acme_prod: fallback provider \"bedrock\" is not configured\n");
    sl_buf_free(&out);
    sl_buf_free(&err);

    /* -v lists unchanged entities and what a create sets too */
    ctl_out_apply(&out, &err, CTL_OUT_TABLE, &a.r, 0, 1);
    assert_true(strncmp(out.data,
                        "= unchanged tenant acme_corp\n"
                        "+ create virtual_key vk_acme_prod\n"
                        "    budget: 12000 USD/month\n"
                        "~ update provider openai\n",
                        116) == 0);
    sl_buf_free(&out);
    sl_buf_free(&err);

    /* a dry run says nothing was applied and shows no secrets */
    a.r.n_secrets = 0;
    ctl_out_apply(&out, &err, CTL_OUT_TABLE, &a.r, 1, 0);
    assert_non_null(strstr(out.data, "\ndry run: 1 to create, 1 to update, 1 unchanged; nothing was applied\n"));
    assert_null(strstr(out.data, "sk-sluice"));
    sl_buf_free(&out);
    sl_buf_free(&err);

    /* nothing changed */
    a.r.n_changes = 1;
    a.r.n_warnings = 0;
    a.r.changed = 0;
    ctl_out_apply(&out, &err, CTL_OUT_TABLE, &a.r, 0, 0);
    assert_string_equal(out.data, "no changes (config version 7)\n");
    assert_null(err.data);
    sl_buf_free(&out);
    ctl_out_apply(&out, &err, CTL_OUT_TABLE, &a.r, 0, 1);
    assert_string_equal(out.data, "= unchanged tenant acme_corp\nno changes (config version 7)\n");
    sl_buf_free(&out);
}

static void test_apply_json_and_yaml(void **state)
{
    apply_sample_t a;
    apply_init(&a);
    a.c[1].n_details = 0;
    a.c[2].n_details = 1;
    sl_buf_t out = {0}, err = {0};
    ctl_out_apply(&out, &err, CTL_OUT_JSON, &a.r, 0, 0);
    assert_string_equal(out.data, "{\n"
                                  "  \"dry_run\": false,\n"
                                  "  \"changed\": true,\n"
                                  "  \"version\": 7,\n"
                                  "  \"changes\": [\n"
                                  "    {\n"
                                  "      \"kind\": \"tenant\",\n"
                                  "      \"id\": \"acme_corp\",\n"
                                  "      \"action\": \"unchanged\",\n"
                                  "      \"details\": []\n"
                                  "    },\n"
                                  "    {\n"
                                  "      \"kind\": \"virtual_key\",\n"
                                  "      \"id\": \"vk_acme_prod\",\n"
                                  "      \"action\": \"create\",\n"
                                  "      \"details\": []\n"
                                  "    },\n"
                                  "    {\n"
                                  "      \"kind\": \"provider\",\n"
                                  "      \"id\": \"openai\",\n"
                                  "      \"action\": \"update\",\n"
                                  "      \"details\": [\n"
                                  "        \"base_url: \\\"https://a.example\\\" -> \\\"https://b.example\\\"\"\n"
                                  "      ]\n"
                                  "    }\n"
                                  "  ],\n"
                                  "  \"warnings\": [\n"
                                  "    \"virtual key vk_acme_prod: fallback provider \\\"bedrock\\\" is not "
                                  "configured\"\n"
                                  "  ],\n"
                                  "  \"secrets\": [\n"
                                  "    {\n"
                                  "      \"key_id\": \"vk_acme_prod\",\n"
                                  "      \"secret\": \"sk-sluice-TESTSECRET\"\n"
                                  "    }\n"
                                  "  ]\n"
                                  "}\n");
    assert_non_null(strstr(err.data, "warning: virtual key vk_acme_prod"));
    sl_buf_free(&out);
    sl_buf_free(&err);

    ctl_out_apply(&out, &err, CTL_OUT_YAML, &a.r, 1, 0);
    assert_string_equal(out.data,
                        "dry_run: true\n"
                        "changed: true\n"
                        "version: 7\n"
                        "changes:\n"
                        "- kind: tenant\n"
                        "  id: acme_corp\n"
                        "  action: unchanged\n"
                        "  details: []\n"
                        "- kind: virtual_key\n"
                        "  id: vk_acme_prod\n"
                        "  action: create\n"
                        "  details: []\n"
                        "- kind: provider\n"
                        "  id: openai\n"
                        "  action: update\n"
                        "  details:\n"
                        "  - \"base_url: \\\"https://a.example\\\" -> \\\"https://b.example\\\"\"\n"
                        "warnings:\n"
                        "- \"virtual key vk_acme_prod: fallback provider \\\"bedrock\\\" is not configured\"\n"
                        "secrets:\n"
                        "- key_id: vk_acme_prod\n"
                        "  secret: sk-sluice-TESTSECRET\n");
    sl_buf_free(&out);
    sl_buf_free(&err);
}

/* ---- keys ---- */

static void test_keys_table(void **state)
{
    sample_t s;
    sample_init(&s);
    sl_buf_t out = {0};
    ctl_out_keys(&out, CTL_OUT_TABLE, s.keys, 2, 1767312000);
    assert_string_equal(
        out.data, "ID            TENANT           PREFIX          STATUS   LIMITS                        CREATED\n"
                  "vk_acme_prod  acme_corp        sk-sluice-AbCd  active   12000 USD/month, 600 req/min  "
                  "2026-01-01T00:00:00Z\n"
                  "vk_beta       beta_industries  sk-sluice-Zz9_  revoked  -                             "
                  "2026-01-01T00:01:00Z\n");
    sl_buf_free(&out);
    ctl_out_keys(&out, CTL_OUT_TABLE, NULL, 0, 0);
    assert_string_equal(out.data, "no virtual keys\n");
    sl_buf_free(&out);

    /* an expired key */
    s.key.expires_unix = 1767225700;
    ctl_out_key(&out, CTL_OUT_TABLE, &s.key, 1767312000);
    assert_non_null(strstr(out.data, "status:            expired\n"));
    assert_non_null(strstr(out.data, "limits:            12000 USD/month, 600 req/min\n"));
    assert_non_null(strstr(out.data, "allowed providers: openai, anthropic, bedrock\n"));
    assert_non_null(strstr(out.data, "allowed models:    all\n"));
    assert_non_null(strstr(out.data, "fallbacks:         openai/gpt-4o, bedrock/anthropic.claude-sonnet-4-6\n"));
    sl_buf_free(&out);
}

static void test_key_json_has_stable_fields_and_money_twice(void **state)
{
    sample_t s;
    sample_init(&s);
    s.key.n_quotas = 3;
    sl_buf_t out = {0};
    ctl_out_key(&out, CTL_OUT_JSON, &s.key, 1767312000);
    json_error_t je;
    json_t *j = json_loads(out.data, 0, &je);
    if (j == NULL)
        fail_msg("invalid JSON: %s\n%s", je.text, out.data);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "vk_acme_prod");
    assert_string_equal(json_string_value(json_object_get(j, "tenant_id")), "acme_corp");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "active");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")), "2026-01-01T00:00:00Z");
    assert_true(json_is_null(json_object_get(j, "revoked_at")));
    json_t *q0 = json_array_get(json_object_get(j, "quotas"), 0);
    assert_string_equal(json_string_value(json_object_get(q0, "metric")), "cost_nano");
    assert_string_equal(json_string_value(json_object_get(q0, "window")), "month");
    assert_int_equal(json_integer_value(json_object_get(q0, "limit")), INT64_C(12000000000000));
    assert_string_equal(json_string_value(json_object_get(q0, "limit_usd")), "12000");
    json_t *q1 = json_array_get(json_object_get(j, "quotas"), 1);
    assert_null(json_object_get(q1, "limit_usd")); /* not money */
    json_t *q2 = json_array_get(json_object_get(j, "quotas"), 2);
    assert_string_equal(json_string_value(json_object_get(q2, "limit_usd")), "2.5");
    assert_string_equal(json_string_value(json_object_get(q2, "provider")), "openai");
    json_t *md = json_object_get(j, "metadata");
    assert_true(json_is_object(md));
    assert_string_equal(json_string_value(json_object_get(md, "billing_code")), "1001");
    assert_int_equal(json_array_size(json_object_get(j, "fallbacks")), 2);
    assert_null(json_object_get(j, "key_hash"));
    json_decref(j);
    sl_buf_free(&out);

    /* a list wraps the keys */
    ctl_out_keys(&out, CTL_OUT_JSON, s.keys, 2, 0);
    j = json_loads(out.data, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "virtual_keys")), 2);
    json_decref(j);
    sl_buf_free(&out);
}

/* keys get -o yaml writes what apply reads back to the same key */
static void test_key_yaml_round_trips_through_apply(void **state)
{
    sample_t s;
    sample_init(&s);
    s.key.n_quotas = 3; /* the provider-scoped one becomes a comment */
    sl_buf_t out = {0};
    ctl_out_key(&out, CTL_OUT_YAML, &s.key, 1767312000);
    assert_string_equal(out.data, "virtual_keys:\n"
                                  "# active, secret sk-sluice-AbCd..., created 2026-01-01T00:00:00Z\n"
                                  "# also limited to 2.5 USD/day (openai)\n"
                                  "- id: vk_acme_prod\n"
                                  "  customer_id: acme_corp\n"
                                  "  budget:\n"
                                  "    max_per_month_usd: 12000\n"
                                  "    reset_duration: monthly\n"
                                  "  rate_limit:\n"
                                  "    requests_per_minute: 600\n"
                                  "  allowed_providers:\n"
                                  "  - openai\n"
                                  "  - anthropic\n"
                                  "  - bedrock\n"
                                  "  fallbacks:\n"
                                  "  - provider: openai\n"
                                  "    model: gpt-4o\n"
                                  "  - provider: bedrock\n"
                                  "    model: anthropic.claude-sonnet-4-6\n"
                                  "  metadata:\n"
                                  "    billing_code: \"1001\"\n"
                                  "    seats: 12\n"
                                  "    ratio: 0.25\n");

    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    int rc = ctl_doc_add_yaml(&d, "out.yaml", out.data, out.len, NULL, NULL, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    const Sluice__Config__V1__VirtualKey *k = d.pb->virtual_keys[0];
    assert_string_equal(k->id, "vk_acme_prod");
    assert_string_equal(k->tenant_id, "acme_corp");
    assert_string_equal(k->budget_reset, "monthly");
    assert_int_equal(k->n_quotas, 2);
    assert_int_equal(k->quotas[0]->limit, INT64_C(12000000000000));
    assert_int_equal(k->quotas[1]->limit, 600);
    assert_int_equal(k->n_allowed_providers, 3);
    assert_int_equal(k->n_fallbacks, 2);
    assert_string_equal(k->metadata_json, "{\"billing_code\":\"1001\",\"seats\":12,\"ratio\":0.25}");
    ctl_doc_free(&d);
    sl_buf_free(&out);
}

/* ---- tenants ---- */

static void test_tenants(void **state)
{
    sample_t s;
    sample_init(&s);
    sl_buf_t out = {0};
    ctl_out_tenants(&out, CTL_OUT_TABLE, s.tenants, 1);
    assert_string_equal(out.data, "ID         NAME       TIME ZONE  LIMITS           CREATED\n"
                                  "acme_corp  ACME Corp  UTC        12000 USD/month  2026-01-01T00:00:00Z\n");
    sl_buf_free(&out);

    ctl_out_tenants(&out, CTL_OUT_JSON, s.tenants, 1);
    json_t *j = json_loads(out.data, 0, NULL);
    assert_non_null(j);
    json_t *t = json_array_get(json_object_get(j, "tenants"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "metadata"), "cost_center")), "emea");
    assert_int_equal(json_integer_value(json_object_get(t, "created_unix")), 1767225600);
    json_decref(j);
    sl_buf_free(&out);

    ctl_out_tenant(&out, CTL_OUT_YAML, &s.tenant);
    assert_string_equal(out.data, "tenants:\n"
                                  "# created 2026-01-01T00:00:00Z\n"
                                  "- id: acme_corp\n"
                                  "  name: ACME Corp\n"
                                  "  metadata:\n"
                                  "    billing_code: AC-1001\n"
                                  "    cost_center: emea\n"
                                  "  time_zone: UTC\n"
                                  "  budget:\n"
                                  "    max_per_month_usd: 12000\n");
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(ctl_doc_add_yaml(&d, "t.yaml", out.data, out.len, NULL, NULL, &err), 0);
    assert_string_equal(d.pb->tenants[0]->metadata_json, s.tenant.metadata_json);
    ctl_doc_free(&d);
    sl_buf_free(&out);

    /* awkward strings are quoted so they read back as the same text */
    s.tenant.name = "yes: \"no\" #1\n";
    s.tenant.metadata_json = "{\"true\":\"true\",\"n\":\"12\",\"e\":\"\",\"dash\":\"- x\"}";
    ctl_out_tenant(&out, CTL_OUT_YAML, &s.tenant);
    ctl_doc_init(&d);
    if (ctl_doc_add_yaml(&d, "t.yaml", out.data, out.len, NULL, NULL, &err) != 0)
        fail_msg("%s\n%s", err.msg, out.data);
    assert_string_equal(d.pb->tenants[0]->name, "yes: \"no\" #1\n");
    assert_string_equal(d.pb->tenants[0]->metadata_json, s.tenant.metadata_json);
    ctl_doc_free(&d);
    sl_buf_free(&out);
}

static void test_quota_summary_and_formats(void **state)
{
    sample_t s;
    sample_init(&s);
    sl_buf_t out = {0};
    ctl_quota_summary(&out, &s.q[2]);
    assert_string_equal(out.data, "2.5 USD/day (openai)");
    sl_buf_free(&out);
    ctl_format_t f;
    assert_int_equal(ctl_format_parse("json", &f), 0);
    assert_int_equal(f, CTL_OUT_JSON);
    assert_int_equal(ctl_format_parse("yaml", &f), 0);
    assert_int_equal(f, CTL_OUT_YAML);
    assert_int_equal(ctl_format_parse("table", &f), 0);
    assert_int_equal(f, CTL_OUT_TABLE);
    assert_int_not_equal(ctl_format_parse("xml", &f), 0);
}

static void test_created_key(void **state)
{
    sample_t s;
    sample_init(&s);
    Sluice__Admin__V1__CreateVirtualKeyResponse r = SLUICE__ADMIN__V1__CREATE_VIRTUAL_KEY_RESPONSE__INIT;
    r.key = &s.key;
    r.secret = "sk-sluice-NEWSECRET";
    sl_buf_t out = {0};
    ctl_out_created_key(&out, CTL_OUT_TABLE, &r, 0);
    assert_string_equal(out.data, "created virtual key vk_acme_prod: sk-sluice-NEWSECRET\n");
    sl_buf_free(&out);
    ctl_out_created_key(&out, CTL_OUT_JSON, &r, 0);
    json_t *j = json_loads(out.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "secret")), "sk-sluice-NEWSECRET");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "key"), "id")), "vk_acme_prod");
    json_decref(j);
    sl_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_table),
        cmocka_unit_test(test_apply_json_and_yaml),
        cmocka_unit_test(test_keys_table),
        cmocka_unit_test(test_key_json_has_stable_fields_and_money_twice),
        cmocka_unit_test(test_key_yaml_round_trips_through_apply),
        cmocka_unit_test(test_tenants),
        cmocka_unit_test(test_quota_summary_and_formats),
        cmocka_unit_test(test_created_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
