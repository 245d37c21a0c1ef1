/* Tests for cli/ctl_yaml.c: the apply file turned into an Admin.Apply Document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl_yaml.h"
#include "sl_err.h"

#define Q(m) SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_##m
#define W(w) SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_##w

/* The seed file of the issue, verbatim. */
static const char seed[] = "virtual_keys:\n"
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
                           "  - provider: anthropic\n"
                           "    model: claude-sonnet-4-6\n"
                           "  - provider: bedrock\n"
                           "    model: anthropic.claude-sonnet-4-6\n";

static const char full[] =
    "tenants:\n"
    "- id: acme_corp\n"
    "  name: ACME Corp\n"
    "  metadata: {billing_code: \"AC-1001\", cost_center: emea, legacy_id: 1001, quoted: \"1001\", active: true,\n"
    "             ratio: .5, none: ~, tags: [a, 2], nested: {k: v}}\n"
    "  time_zone: Europe/Berlin\n"
    "  budget: {max_total_usd: \"250000.5\"}\n"
    "providers:\n"
    "- name: openai\n"
    "  kind: openai\n"
    "  base_url: https://api.openai.com/v1\n"
    "  keys:\n"
    "  - {secret_env: OPENAI_API_KEY}\n"
    "  - {id: backup, secret_env: OPENAI_API_KEY_2, weight: 3, params: {org: org-1}}\n"
    "  params: {api_version: \"2024-06-01\"}\n"
    "  connect_timeout_ms: 2000\n"
    "models:\n"
    "- {provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00,\n"
    "   cached_input_usd_per_mtok: 1.25, max_output_tokens: 16384}\n"
    "- {provider: openai, model: gpt-4o-mini, input_usd_per_mtok: 0.15, output_usd_per_mtok: \"0.60\",\n"
    "   cached_input_usd_per_mtok: 0.075}\n"
    "virtual_keys:\n"
    "- id: vk_small\n"
    "  tenant_id: acme_corp\n"
    "  budget: {max_per_day_usd: 10, max_per_week_usd: 50.25, reset_duration: weekly}\n"
    "  rate_limit: {tokens_per_minute: 100000, max_concurrent_requests: 8, requests_per_hour: 1000}\n"
    "  allowed_models: []\n"
    "  allowed_providers:\n"
    "  fallbacks: [openai/gpt-4o-mini]\n"
    "  metadata: {team: search}\n";

static const char *fake_env(const char *name, void *ud)
{
    if (strcmp(name, "OPENAI_API_KEY") == 0)
        return "sk-test-primary-value";
    if (strcmp(name, "OPENAI_API_KEY_2") == 0)
        return "sk-test-backup-value";
    if (strcmp(name, "EMPTY_VAR") == 0)
        return "";
    if (strcmp(name, "AWS_AK") == 0)
        return "AKIATESTVALUE0000001";
    if (strcmp(name, "AWS_SK") == 0)
        return "aws/\"secret\"+value";
    if (strcmp(name, "AWS_ST") == 0)
        return "session-token-value";
    if (strcmp(name, "AWS_JSON") == 0)
        return "{\"access_key_id\":\"AKIATESTVALUE0000001\",\"secret_access_key\":\"sk-json-value\"}";
    if (strcmp(name, "NOT_JSON") == 0)
        return "plain-secret-value";
    if (strcmp(name, "SA_JSON") == 0)
        return "{\"type\":\"service_account\",\"project_id\":\"p\",\"client_email\":\"a@p.iam.gserviceaccount.com\","
               "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nsa-key-value\\n-----END PRIVATE KEY-----\\n\","
               "\"token_uri\":\"https://oauth2.googleapis.com/token\"}";
    if (strcmp(name, "SA_USER") == 0)
        return "{\"type\":\"authorized_user\",\"client_secret\":\"user-secret-value\"}";
    return NULL;
}

static int add(ctl_doc_t *d, const char *src, const char *text, sl_err_t *err)
{
    return ctl_doc_add_yaml(d, src, text, strlen(text), fake_env, NULL, err);
}

static void test_seed_converts(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "seed.yaml", seed, &err), 0);
    const Sluice__Admin__V1__Document *p = d.pb;
    assert_int_equal(p->n_tenants + p->n_providers + p->n_models, 0);
    assert_int_equal(p->n_virtual_keys, 1);
    const Sluice__Config__V1__VirtualKey *k = p->virtual_keys[0];
    assert_string_equal(k->id, "vk_acme_prod");
    assert_string_equal(k->tenant_id, "acme_corp");
    assert_string_equal(k->budget_reset, "monthly");
    assert_int_equal(k->n_quotas, 2);
    assert_int_equal(k->quotas[0]->metric, Q(COST_NANO));
    assert_int_equal(k->quotas[0]->window, W(MONTH));
    assert_int_equal(k->quotas[0]->limit, INT64_C(12000000000000));
    assert_string_equal(k->quotas[0]->provider, "");
    assert_int_equal(k->quotas[1]->metric, Q(REQUESTS));
    assert_int_equal(k->quotas[1]->window, W(MINUTE));
    assert_int_equal(k->quotas[1]->limit, 600);
    assert_int_equal(k->n_allowed_providers, 3);
    assert_string_equal(k->allowed_providers[0], "openai");
    assert_string_equal(k->allowed_providers[1], "anthropic");
    assert_string_equal(k->allowed_providers[2], "bedrock");
    assert_int_equal(k->n_allowed_models, 0);
    assert_int_equal(k->n_fallbacks, 3);
    assert_string_equal(k->fallbacks[0]->provider, "openai");
    assert_string_equal(k->fallbacks[0]->model, "gpt-4o");
    assert_string_equal(k->fallbacks[1]->provider, "anthropic");
    assert_string_equal(k->fallbacks[1]->model, "claude-sonnet-4-6");
    assert_string_equal(k->fallbacks[2]->provider, "bedrock");
    assert_string_equal(k->fallbacks[2]->model, "anthropic.claude-sonnet-4-6");
    assert_string_equal(k->metadata_json, "");

    /* the built message is a valid protobuf: it packs and unpacks to the same */
    size_t n = protobuf_c_message_get_packed_size(&p->base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&p->base, buf);
    Sluice__Admin__V1__Document *u = sluice__admin__v1__document__unpack(NULL, n, buf);
    assert_non_null(u);
    assert_int_equal(u->virtual_keys[0]->quotas[0]->limit, INT64_C(12000000000000));
    assert_string_equal(u->virtual_keys[0]->fallbacks[2]->model, "anthropic.claude-sonnet-4-6");
    sluice__admin__v1__document__free_unpacked(u, NULL);
    free(buf);
    ctl_doc_free(&d);
    ctl_doc_free(&d); /* twice is harmless */
}

static void test_on_unavailable_applies_to_its_section(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "ou.yaml",
                         "virtual_keys:\n- id: vk_a\n  customer_id: acme\n"
                         "  budget: {max_per_day_usd: 1, max_per_month_usd: 20, on_unavailable: open}\n"
                         "  rate_limit: {requests_per_minute: 5, on_unavailable: closed}\n",
                         &err),
                     0);
    const Sluice__Config__V1__VirtualKey *k = d.pb->virtual_keys[0];
    assert_int_equal(k->n_quotas, 3);
    assert_int_equal(k->quotas[0]->on_unavailable, SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN);
    assert_int_equal(k->quotas[1]->on_unavailable, SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN);
    assert_int_equal(k->quotas[2]->metric, Q(REQUESTS));
    assert_int_equal(k->quotas[2]->on_unavailable, SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED);
    ctl_doc_free(&d);
    /* absent: the metric's default */
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "seed.yaml", seed, &err), 0);
    assert_int_equal(d.pb->virtual_keys[0]->quotas[0]->on_unavailable,
                     SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_DEFAULT);
    ctl_doc_free(&d);
}

static void test_all_sections_convert(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    int rc = add(&d, "full.yaml", full, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    const Sluice__Admin__V1__Document *p = d.pb;
    assert_int_equal(ctl_doc_count(&d), 5);

    const Sluice__Config__V1__Tenant *t = p->tenants[0];
    assert_string_equal(t->id, "acme_corp");
    assert_string_equal(t->name, "ACME Corp");
    assert_string_equal(t->time_zone, "Europe/Berlin");
    assert_string_equal(t->metadata_json, "{\"billing_code\":\"AC-1001\",\"cost_center\":\"emea\",\"legacy_id\":1001,"
                                          "\"quoted\":\"1001\",\"active\":true,\"ratio\":0.5,\"none\":null,"
                                          "\"tags\":[\"a\",2],\"nested\":{\"k\":\"v\"}}");
    assert_int_equal(t->n_quotas, 1);
    assert_int_equal(t->quotas[0]->window, W(TOTAL));
    assert_int_equal(t->quotas[0]->limit, INT64_C(250000500000000));

    const Sluice__Config__V1__Provider *pr = p->providers[0];
    assert_string_equal(pr->name, "openai");
    assert_string_equal(pr->kind, "openai");
    assert_string_equal(pr->base_url, "https://api.openai.com/v1");
    assert_int_equal(pr->connect_timeout_ms, 2000);
    assert_int_equal(pr->n_params, 1);
    assert_string_equal(pr->params[0]->key, "api_version");
    assert_string_equal(pr->params[0]->value, "2024-06-01");
    assert_int_equal(pr->n_credentials, 2);
    assert_string_equal(pr->credentials[0]->id, "key1"); /* default id */
    assert_int_equal(pr->credentials[0]->weight, 1);     /* default weight */
    assert_string_equal(pr->credentials[0]->secret_env, "OPENAI_API_KEY");
    assert_int_equal(pr->credentials[0]->secret.len, strlen("sk-test-primary-value"));
    assert_memory_equal(pr->credentials[0]->secret.data, "sk-test-primary-value", pr->credentials[0]->secret.len);
    assert_string_equal(pr->credentials[1]->id, "backup");
    assert_int_equal(pr->credentials[1]->weight, 3);
    assert_memory_equal(pr->credentials[1]->secret.data, "sk-test-backup-value", pr->credentials[1]->secret.len);
    assert_int_equal(pr->credentials[1]->n_params, 1);
    assert_string_equal(pr->credentials[1]->params[0]->value, "org-1");

    /* prices in micro-USD per million tokens, exact */
    assert_string_equal(p->models[0]->model, "gpt-4o");
    assert_int_equal(p->models[0]->input_micro_per_mtok, 2500000);
    assert_int_equal(p->models[0]->output_micro_per_mtok, 10000000);
    assert_int_equal(p->models[0]->cached_input_micro_per_mtok, 1250000);
    assert_int_equal(p->models[0]->max_output_tokens, 16384);
    assert_int_equal(p->models[1]->input_micro_per_mtok, 150000);
    assert_int_equal(p->models[1]->output_micro_per_mtok, 600000);
    assert_int_equal(p->models[1]->cached_input_micro_per_mtok, 75000);
    assert_int_equal(p->models[1]->max_output_tokens, 0);

    const Sluice__Config__V1__VirtualKey *k = p->virtual_keys[0];
    assert_string_equal(k->tenant_id, "acme_corp"); /* tenant_id spelling */
    assert_string_equal(k->budget_reset, "weekly");
    assert_int_equal(k->n_quotas, 5);
    assert_int_equal(k->quotas[0]->window, W(DAY));
    assert_int_equal(k->quotas[0]->limit, INT64_C(10000000000));
    assert_int_equal(k->quotas[1]->window, W(WEEK));
    assert_int_equal(k->quotas[1]->limit, INT64_C(50250000000));
    assert_int_equal(k->quotas[2]->metric, Q(REQUESTS));
    assert_int_equal(k->quotas[2]->window, W(HOUR));
    assert_int_equal(k->quotas[3]->metric, Q(TOKENS));
    assert_int_equal(k->quotas[3]->limit, 100000);
    assert_int_equal(k->quotas[4]->metric, Q(CONCURRENT));
    assert_int_equal(k->quotas[4]->window, W(TOTAL));
    assert_int_equal(k->quotas[4]->limit, 8);
    assert_int_equal(k->n_allowed_models, 0);
    assert_int_equal(k->n_allowed_providers, 0); /* null value: absent */
    assert_int_equal(k->n_fallbacks, 1);         /* short form */
    assert_string_equal(k->fallbacks[0]->provider, "openai");
    assert_string_equal(k->fallbacks[0]->model, "gpt-4o-mini");
    assert_string_equal(k->metadata_json, "{\"team\":\"search\"}");
    ctl_doc_free(&d);
}

/* One rejected input: its YAML and text its error message must hold. */
typedef struct bad_case {
    const char *yaml;
    const char *expect;
} bad_case_t;

static void expect_rejected(const bad_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ctl_doc_t d;
        sl_err_t err = {0};
        ctl_doc_init(&d);
        int rc = add(&d, "t.yaml", cases[i].yaml, &err);
        /* an expectation ending in '$' must end the message */
        size_t el = strlen(cases[i].expect), ml = strlen(err.msg);
        int anchored = el > 0 && cases[i].expect[el - 1] == '$';
        int found = anchored ? ml >= el - 1 && memcmp(err.msg + ml - (el - 1), cases[i].expect, el - 1) == 0
                             : strstr(err.msg, cases[i].expect) != NULL;
        if (rc != SL_EINVAL || !found)
            fail_msg("case %zu: rc %d, message \"%s\", expected to contain \"%s\"", i, rc, err.msg, cases[i].expect);
        assert_int_equal(ctl_doc_count(&d), 0); /* nothing half-added */
        assert_true(strncmp(err.msg, "t.yaml:", 7) == 0);
        assert_null(strchr(err.msg, '\n'));
        ctl_doc_free(&d);
    }
}

#define KEY "virtual_keys:\n- id: vk_a\n  customer_id: acme\n"

static void test_money_rejections_name_the_field(void **state)
{
    static const bad_case_t cases[] = {
        {KEY "  budget: {max_per_month_usd: abc}\n",
         "t.yaml:4: virtual_keys[0].budget.max_per_month_usd: \"abc\" is not a USD amount"},
        {KEY "  budget: {max_per_month_usd: -5}\n",
         "virtual_keys[0].budget.max_per_month_usd: \"-5\" is not a USD amount: it must not be negative"},
        {KEY "  budget: {max_per_day_usd: 1.0000000001}\n",
         "virtual_keys[0].budget.max_per_day_usd: \"1.0000000001\" is not a USD amount: at most 9 decimal places"},
        {KEY "  budget: {max_total_usd: 1e3}\n", "virtual_keys[0].budget.max_total_usd: \"1e3\" is not a USD amount"},
        {KEY "  budget: {max_total_usd: 99999999999999}\n", "is not a USD amount: too large"},
        {KEY "  budget: {max_total_usd: [1]}\n",
         "virtual_keys[0].budget.max_total_usd: expected a USD amount, got a list"},
        {KEY "  budget: {max_total_usd: \"\"}\n", "virtual_keys[0].budget.max_total_usd: \"\" is not a USD amount"},
        {KEY "  budget: {max_total_usd: 1..2}\n",
         "virtual_keys[0].budget.max_total_usd: \"1..2\" is not a USD amount$"},
        {KEY "  budget: {max_total_usd: -abc}\n", "max_total_usd: \"-abc\" is not a USD amount$"},
        {"models:\n- {provider: openai, model: m, input_usd_per_mtok: 0.0000001, output_usd_per_mtok: 1}\n",
         "t.yaml:2: models[0].input_usd_per_mtok: \"0.0000001\" is not a USD amount: at most 6 decimal places"},
        {"models:\n- {provider: openai, model: m, input_usd_per_mtok: 1, output_usd_per_mtok: $2}\n",
         "models[0].output_usd_per_mtok: \"$2\" is not a USD amount"},
        {"models:\n- provider: openai\n  model: m\n  input_usd_per_mtok: 1\n  output_usd_per_mtok: 2\n"
         "  cached_input_usd_per_mtok: 1,5\n",
         "t.yaml:6: models[0].cached_input_usd_per_mtok: \"1,5\" is not a USD amount"},
        {"models:\n- {provider: openai, model: m, input_usd_per_mtok: 1}\n",
         "models[0].output_usd_per_mtok: is required"},
    };
    expect_rejected(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_structure_rejections_name_the_path(void **state)
{
    static const bad_case_t cases[] = {
        /* unknown sections and fields: typos are never ignored */
        {"virtual_key:\n- id: x\n", "t.yaml:1: virtual_key: unknown section (did you mean \"virtual_keys\"?)"},
        {"quotas: []\n", "quotas: unknown section (expected one of: tenants, providers, models, virtual_keys, alerts)"},
        {KEY "  budgt: {max_per_month_usd: 1}\n",
         "t.yaml:4: virtual_keys[0].budgt: unknown field (did you mean \"budget\"?)"},
        {KEY "  rate_limit: {requests_per_minit: 1}\n",
         "virtual_keys[0].rate_limit.requests_per_minit: unknown field (did you mean \"requests_per_minute\"?)"},
        {KEY "  budget: {max_per_month_usd: 1, reset: monthly}\n", "virtual_keys[0].budget.reset: unknown field"},
        {"tenants:\n- id: a\n  colour: blue\n", "tenants[0].colour: unknown field (expected one of: id, name,"},
        {"providers:\n- {name: openai, kind: openai, keys: [{secret_env: OPENAI_API_KEY, secret: x}]}\n",
         "providers[0].keys[0].secret: unknown field"},
        {"models:\n- {provider: openai, model: m, input_usd_per_mtok: 1, output_usd_per_mtok: 1, price: 3}\n",
         "models[0].price: unknown field"},
        {KEY "  fallbacks: [{provider: openai, model: m, weight: 1}]\n",
         "virtual_keys[0].fallbacks[0].weight: unknown field"},
        /* wrong types */
        {"- id: x\n", "t.yaml:1: expected a mapping of sections"},
        {"virtual_keys: {id: x}\n", "virtual_keys: expected a list, got a mapping"},
        {"virtual_keys:\n- vk_a\n", "virtual_keys[0]: expected a mapping, got \"vk_a\""},
        {KEY "  allowed_providers: openai\n", "virtual_keys[0].allowed_providers: expected a list, got \"openai\""},
        {KEY "  allowed_models: [[a]]\n", "virtual_keys[0].allowed_models[0]: expected a string, got a list"},
        {"virtual_keys:\n- id: [a]\n  customer_id: acme\n", "virtual_keys[0].id: expected a string, got a list"},
        {"virtual_keys:\n- id: true\n  customer_id: acme\n",
         "virtual_keys[0].id: expected a string, got the boolean true"},
        {KEY "  rate_limit: {requests_per_minute: many}\n",
         "virtual_keys[0].rate_limit.requests_per_minute: \"many\" is not a whole number"},
        {KEY "  rate_limit: {requests_per_minute: 1.5}\n", "requests_per_minute: \"1.5\" is not a whole number"},
        {KEY "  rate_limit: {requests_per_minute: -1}\n", "requests_per_minute: -1 is out of range"},
        {KEY "  rate_limit: {tokens_per_day: 99999999999999999999}\n",
         "tokens_per_day: \"99999999999999999999\" is too large"},
        {KEY "  rate_limit: 600\n", "virtual_keys[0].rate_limit: expected a mapping, got \"600\""},
        {KEY "  metadata: [a]\n", "virtual_keys[0].metadata: expected a mapping, got a list"},
        {KEY "  metadata: {a: {b: 1, b: 2}}\n", "virtual_keys[0].metadata.a: duplicate key \"b\""},
        {"providers:\n- {name: openai, kind: openai, keys: [{secret_env: OPENAI_API_KEY, weight: 0}]}\n",
         "providers[0].keys[0].weight: 0 is out of range (1 to 1000000)"},
        {"providers:\n- {name: openai, kind: openai, connect_timeout_ms: soon}\n",
         "providers[0].connect_timeout_ms: \"soon\" is not a whole number"},
        {"providers:\n- {name: openai, kind: openai, params: [a]}\n",
         "providers[0].params: expected a mapping, got a list"},
        {"providers:\n- {name: openai, kind: openai, params: {a: {b: c}}}\n",
         "providers[0].params.a: expected a string, got a mapping"},
        /* required, empty and malformed values */
        {"virtual_keys:\n- id: vk_a\n", "t.yaml:2: virtual_keys[0].customer_id: is required"},
        {"virtual_keys:\n- customer_id: acme\n", "virtual_keys[0].id: is required"},
        {"virtual_keys:\n- id: \"\"\n  customer_id: acme\n", "virtual_keys[0].id: must not be empty"},
        {"virtual_keys:\n- id: vk a\n  customer_id: acme\n", "virtual_keys[0].id: \"vk a\" is not a valid id"},
        {KEY "  tenant_id: acme\n", "virtual_keys[0].tenant_id: give customer_id or tenant_id, not both"},
        {KEY "  allowed_providers: [OpenAI]\n",
         "virtual_keys[0].allowed_providers[0]: \"OpenAI\" is not a valid provider name"},
        {KEY "  allowed_providers: [openai, openai]\n",
         "virtual_keys[0].allowed_providers[1]: \"openai\" is listed twice"},
        {KEY "  allowed_providers: [~]\n", "virtual_keys[0].allowed_providers[0]: expected a provider name, got null"},
        {KEY "  fallbacks: [{provider: openai}]\n", "virtual_keys[0].fallbacks[0].model: is required"},
        {KEY "  fallbacks: [gpt-4o]\n", "virtual_keys[0].fallbacks[0]: \"gpt-4o\" is not provider/model"},
        {KEY "  fallbacks: [openai/gpt-4o, {provider: openai, model: gpt-4o}]\n",
         "virtual_keys[0].fallbacks[1]: openai/gpt-4o is listed twice"},
        {KEY "  budget: {max_per_month_usd: 1, reset_duration: daily}\n",
         "virtual_keys[0].budget.reset_duration: \"daily\" needs budget.max_per_day_usd"},
        {KEY "  budget: {max_per_month_usd: 1, reset_duration: yearly}\n",
         "virtual_keys[0].budget.reset_duration: \"yearly\" is not a reset period"},
        {KEY "  budget: {max_per_month_usd: 1, on_unavailable: maybe}\n",
         "virtual_keys[0].budget.on_unavailable: \"maybe\" is not a policy (expected closed or open)"},
        {"providers:\n- {name: openai, kind: openia}\n", "providers[0].kind: \"openia\" is not a provider kind"},
        {"providers:\n- {name: openai}\n", "providers[0].kind: is required"},
        {"providers:\n- {name: openai, kind: openai, base_url: api.openai.com}\n",
         "providers[0].base_url: \"api.openai.com\" is not an http:// or https:// URL"},
        {"providers:\n- {name: openai, kind: openai, keys: [{id: a, secret_env: OPENAI_API_KEY}, {id: a, secret_env: "
         "OPENAI_API_KEY}]}\n",
         "providers[0].keys[1].id: duplicate credential id \"a\""},
        {"models:\n- {provider: openai, model: \"gpt 4o\", input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n",
         "models[0].model: \"gpt 4o\" is not a valid model name"},
        /* duplicates */
        {"virtual_keys:\n- id: vk_a\n  id: vk_b\n  customer_id: acme\n",
         "t.yaml:3: virtual_keys[0].id: duplicate field (first given on line 2)"},
        {"tenants: []\ntenants: []\n", "t.yaml:2: tenants: duplicate section"},
        {KEY "- id: vk_a\n  customer_id: acme\n",
         "t.yaml:4: duplicate virtual key \"vk_a\" (also defined at t.yaml:2)"},
        {"tenants:\n- id: a\n- id: a\n", "t.yaml:3: duplicate tenant \"a\" (also defined at t.yaml:2)"},
        {"providers:\n- {name: p, kind: openai}\n- {name: p, kind: anthropic}\n", "duplicate provider \"p\""},
        {"models:\n- {provider: p, model: m, input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n"
         "- {provider: p, model: m, input_usd_per_mtok: 2, output_usd_per_mtok: 2}\n",
         "t.yaml:3: duplicate model \"p/m\" (also defined at t.yaml:2)"},
        /* not YAML at all */
        {"virtual_keys:\n- id: a\n  customer_id: [b\n", "invalid YAML"},
        {"virtual_keys:\n\t- id: a\n", "t.yaml:2:"},
    };
    expect_rejected(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_provider_limits_scope_quotas_to_a_provider(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "pl.yaml",
                         "virtual_keys:\n- id: vk_a\n  customer_id: acme\n"
                         "  budget: {max_per_month_usd: 100}\n"
                         "  provider_limits:\n"
                         "    anthropic: {budget: {max_per_day_usd: 2.5}, rate_limit: {requests_per_minute: 10}}\n",
                         &err),
                     0);
    const Sluice__Config__V1__VirtualKey *k = d.pb->virtual_keys[0];
    assert_int_equal(k->n_quotas, 3);
    assert_string_equal(k->quotas[0]->provider, "");
    assert_int_equal(k->quotas[1]->metric, Q(COST_NANO));
    assert_int_equal(k->quotas[1]->window, W(DAY));
    assert_int_equal(k->quotas[1]->limit, INT64_C(2500000000));
    assert_string_equal(k->quotas[1]->provider, "anthropic");
    assert_int_equal(k->quotas[2]->metric, Q(REQUESTS));
    assert_string_equal(k->quotas[2]->provider, "anthropic");
    ctl_doc_free(&d);
    static const bad_case_t cases[] = {
        {KEY "  provider_limits: {Anthropic: {budget: {max_per_day_usd: 1}}}\n",
         "virtual_keys[0].provider_limits.Anthropic: \"Anthropic\" is not a valid provider name"},
        {KEY "  provider_limits: {anthropic: {}}\n",
         "virtual_keys[0].provider_limits.anthropic: gives no budget or rate limit"},
        {KEY "  provider_limits: {anthropic: {budgte: {}}}\n",
         "virtual_keys[0].provider_limits.anthropic.budgte: unknown field"},
        {KEY "  provider_limits: [anthropic]\n", "virtual_keys[0].provider_limits: expected a mapping"},
    };
    expect_rejected(cases, sizeof(cases) / sizeof(cases[0]));
}


static void test_secret_env_resolution(void **state)
{
    static const bad_case_t cases[] = {
        {"providers:\n- name: openai\n  kind: openai\n  keys:\n  - secret_env: MISSING_VAR\n",
         "t.yaml:5: providers[0].keys[0].secret_env: environment variable MISSING_VAR is not set"},
        {"providers:\n- {name: openai, kind: openai, keys: [{secret_env: EMPTY_VAR}]}\n",
         "providers[0].keys[0].secret_env: environment variable EMPTY_VAR is empty"},
        {"providers:\n- {name: openai, kind: openai, keys: [{secret_env: \"$OPENAI_API_KEY\"}]}\n",
         "providers[0].keys[0].secret_env: \"$OPENAI_API_KEY\" is not an environment variable name"},
        {"providers:\n- {name: openai, kind: openai, keys: [{id: k}]}\n",
         "providers[0].keys[0].secret_env: is required"},
        /* the first key resolves, the second fails: no value may leak into the message */
        {"providers:\n- {name: openai, kind: openai, keys: [{secret_env: OPENAI_API_KEY}, {secret_env: NOPE}]}\n",
         "environment variable NOPE is not set"},
    };
    expect_rejected(cases, sizeof(cases) / sizeof(cases[0]));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_doc_t d;
        sl_err_t err = {0};
        ctl_doc_init(&d);
        add(&d, "t.yaml", cases[i].yaml, &err);
        assert_null(strstr(err.msg, "sk-test"));
        ctl_doc_free(&d);
    }

    /* getenv-backed callback (the real one) */
    setenv("SLUICE_TEST_SECRET", "from-the-environment", 1);
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    const char *y = "providers:\n- {name: p, kind: openai_compatible, keys: [{secret_env: SLUICE_TEST_SECRET}]}\n";
    assert_int_equal(ctl_doc_add_yaml(&d, "e.yaml", y, strlen(y), ctl_env_getenv, NULL, &err), 0);
    assert_memory_equal(d.pb->providers[0]->credentials[0]->secret.data, "from-the-environment", 20);
    ctl_doc_free(&d);
    unsetenv("SLUICE_TEST_SECRET");
}

/* Bedrock keys assembled from several variables; vertex keys from a
 * service-account file or variable; kind-specific defaults. */
static const Sluice__Config__V1__Provider *one_provider(ctl_doc_t *d, const char *yaml)
{
    sl_err_t err = {0};
    ctl_doc_init(d);
    if (add(d, "t.yaml", yaml, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(d->pb->n_providers, 1);
    return d->pb->providers[0];
}

static void assert_secret(const Sluice__Config__V1__Credential *c, const char *want)
{
    if (c->secret.len != strlen(want) || memcmp(c->secret.data, want, c->secret.len) != 0)
        fail_msg("secret %.*s, want %s", (int)c->secret.len, (const char *)c->secret.data, want);
}

static void test_cloud_credentials(void **state)
{
    ctl_doc_t d;
    const Sluice__Config__V1__Provider *p =
        one_provider(&d, "providers:\n- name: bedrock\n  kind: bedrock\n  params: {region: us-west-2}\n  keys:\n"
                         "  - {id: main, access_key_id_env: AWS_AK, secret_access_key_env: AWS_SK, session_token_env: "
                         "AWS_ST}\n  - {secret_access_key_env: AWS_SK, access_key_id_env: AWS_AK, weight: 2}\n"
                         "  - {secret_env: AWS_JSON}\n");
    assert_string_equal(p->base_url, "https://bedrock-runtime.us-west-2.amazonaws.com");
    assert_int_equal(p->n_credentials, 3);
    assert_secret(p->credentials[0], "{\"access_key_id\":\"AKIATESTVALUE0000001\",\"secret_access_key\":"
                                     "\"aws/\\\"secret\\\"+value\",\"session_token\":\"session-token-value\"}");
    assert_string_equal(p->credentials[0]->secret_env, "AWS_AK,AWS_SK,AWS_ST");
    assert_secret(p->credentials[1],
                  "{\"access_key_id\":\"AKIATESTVALUE0000001\",\"secret_access_key\":\"aws/\\\"secret\\\"+value\"}");
    assert_string_equal(p->credentials[1]->secret_env, "AWS_AK,AWS_SK");
    assert_int_equal(p->credentials[1]->weight, 2);
    assert_string_equal(p->credentials[1]->id, "key2");
    assert_secret(p->credentials[2], "{\"access_key_id\":\"AKIATESTVALUE0000001\",\"secret_access_key\":"
                                     "\"sk-json-value\"}");
    assert_string_equal(p->credentials[2]->secret_env, "AWS_JSON");
    ctl_doc_free(&d);

    /* an explicit base_url (a test endpoint) is kept; a per-key region is enough */
    p = one_provider(&d,
                     "providers:\n- name: b\n  kind: bedrock\n  base_url: http://127.0.0.1:9000\n  keys:\n"
                     "  - {access_key_id_env: AWS_AK, secret_access_key_env: AWS_SK, params: {region: eu-west-1}}\n");
    assert_string_equal(p->base_url, "http://127.0.0.1:9000");
    ctl_doc_free(&d);

    /* vertex: the key file, relative to the YAML file's directory */
    char dir[] = "/tmp/ctl_yaml_saXXXXXX";
    assert_non_null(mkdtemp(dir));
    char sa[128], yml[128], bad[128];
    snprintf(sa, sizeof(sa), "%s/sa.json", dir);
    snprintf(bad, sizeof(bad), "%s/bad.json", dir);
    snprintf(yml, sizeof(yml), "%s/vertex.yaml", dir);
    const char *sa_text = fake_env("SA_JSON", NULL);
    FILE *f = fopen(sa, "w");
    fputs(sa_text, f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("{\"type\":\"service_account\",\"client_email\":\"a@b\",\"token_uri\":\"https://t\"}", f);
    fclose(f);
    f = fopen(yml, "w");
    fputs("providers:\n- name: vertex\n  kind: vertex\n  params: {project: p, location: us-central1}\n  keys:\n"
          "  - {id: file, service_account_file: sa.json}\n  - {id: env, service_account_env: SA_JSON}\n"
          "- name: vglobal\n  kind: vertex\n  params: {project: p, location: global}\n  keys:\n"
          "  - {secret_env: SA_JSON}\n",
          f);
    fclose(f);
    sl_err_t err = {0};
    ctl_doc_init(&d);
    if (ctl_doc_add_file(&d, yml, fake_env, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    p = d.pb->providers[0];
    assert_string_equal(p->base_url, "https://us-central1-aiplatform.googleapis.com");
    assert_secret(p->credentials[0], sa_text);
    assert_string_equal(p->credentials[0]->secret_env, "");
    assert_secret(p->credentials[1], sa_text);
    assert_string_equal(p->credentials[1]->secret_env, "SA_JSON");
    assert_string_equal(d.pb->providers[1]->base_url, "https://aiplatform.googleapis.com");
    ctl_doc_free(&d);

    /* file problems name the field and the path, never the content */
    char y[512];
    snprintf(y, sizeof(y),
             "providers:\n- name: v\n  kind: vertex\n  base_url: https://x.example\n  keys:\n"
             "  - {service_account_file: %s}\n",
             bad);
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "t.yaml", y, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "providers[0].keys[0].service_account_file: \""));
    assert_non_null(strstr(err.msg, "bad.json\" has no private_key"));
    ctl_doc_free(&d);
    snprintf(y, sizeof(y),
             "providers:\n- name: v\n  kind: vertex\n  base_url: https://x.example\n  keys:\n"
             "  - {service_account_file: %s/missing.json}\n",
             dir);
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "t.yaml", y, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "providers[0].keys[0].service_account_file: could not open \""));
    assert_non_null(strstr(err.msg, "No such file or directory"));
    ctl_doc_free(&d);
    unlink(sa);
    unlink(bad);
    unlink(yml);
    rmdir(dir);

    static const bad_case_t cases[] = {
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{access_key_id_env: AWS_AK}]}\n",
         "t.yaml:2: providers[0].keys[0].secret_access_key_env: is required"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{secret_access_key_env: "
         "AWS_SK}]}\n",
         "providers[0].keys[0].access_key_id_env: is required"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{access_key_id_env: AWS_AK, "
         "secret_access_key_env: AWS_SK, session_token_env: NO_SUCH_VAR}]}\n",
         "providers[0].keys[0].session_token_env: environment variable NO_SUCH_VAR is not set"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{access_key_id_env: EMPTY_VAR, "
         "secret_access_key_env: AWS_SK}]}\n",
         "providers[0].keys[0].access_key_id_env: environment variable EMPTY_VAR is empty"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{secret_env: AWS_JSON, "
         "access_key_id_env: AWS_AK, secret_access_key_env: AWS_SK}]}\n",
         "providers[0].keys[0]: give one secret source, not both secret_env and access_key_id_env"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{secret_env: NOT_JSON}]}\n",
         "providers[0].keys[0].secret_env: the value of NOT_JSON is not a JSON object"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: us-east-1}, keys: [{id: k}]}\n",
         "providers[0].keys[0]: a bedrock key needs access_key_id_env and secret_access_key_env"},
        {"providers:\n- {name: b, kind: bedrock, keys: [{access_key_id_env: AWS_AK, secret_access_key_env: AWS_SK}]}\n",
         "providers[0].params.region: is required for kind bedrock"},
        {"providers:\n- {name: b, kind: bedrock, params: {region: \"us east\"}, keys: []}\n",
         "providers[0].params.region: \"us east\" is not an AWS region name"},
        {"providers:\n- {name: o, kind: openai, keys: [{access_key_id_env: AWS_AK}]}\n",
         "providers[0].keys[0].access_key_id_env: is only for providers of kind bedrock"},
        {"providers:\n- {name: o, kind: bedrock, params: {region: us-east-1}, keys: [{service_account_env: "
         "SA_JSON}]}\n",
         "providers[0].keys[0].service_account_env: is only for providers of kind vertex"},
        {"providers:\n- {name: v, kind: vertex, params: {location: us-central1}, keys: [{service_account_env: "
         "SA_USER}]}\n",
         "providers[0].keys[0].service_account_env: the value of SA_USER is not a service-account key"},
        {"providers:\n- {name: v, kind: vertex, params: {location: us-central1}, keys: [{service_account_env: "
         "NOPE}]}\n",
         "providers[0].keys[0].service_account_env: environment variable NOPE is not set"},
        {"providers:\n- {name: v, kind: vertex, params: {location: us-central1}, keys: [{service_account_env: "
         "SA_JSON, service_account_file: x.json}]}\n",
         "providers[0].keys[0]: give one secret source, not both service_account_file and service_account_env"},
        {"providers:\n- {name: v, kind: vertex, params: {location: us-central1}, keys: [{id: k}]}\n",
         "a vertex key needs service_account_file or service_account_env"},
        {"providers:\n- {name: v, kind: vertex, params: {location: \"Mars/1\"}, keys: [{service_account_env: "
         "SA_JSON}]}\n",
         "providers[0].base_url: is required: params.location is not a location name"},
    };
    expect_rejected(cases, sizeof(cases) / sizeof(cases[0]));
    static const char *const secrets[] = {"AKIATESTVALUE0000001", "\"secret\"+value",   "session-token-value",
                                          "sk-json-value",        "plain-secret-value", "sa-key-value",
                                          "user-secret-value"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_doc_init(&d);
        add(&d, "t.yaml", cases[i].yaml, &err);
        for (size_t j = 0; j < sizeof(secrets) / sizeof(secrets[0]); j++)
            if (strstr(err.msg, secrets[j]) != NULL)
                fail_msg("case %zu leaks a secret: %s", i, err.msg);
        ctl_doc_free(&d);
    }
}

static void test_files_merge(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "keys.yaml", seed, &err), 0);
    const char *prov =
        "providers:\n- {name: openai, kind: openai, keys: [{secret_env: OPENAI_API_KEY}]}\n"
        "models:\n- {provider: openai, model: gpt-4o, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10}\n";
    assert_int_equal(add(&d, "providers.yaml", prov, &err), 0);
    assert_int_equal(d.pb->n_virtual_keys, 1);
    assert_int_equal(d.pb->n_providers, 1);
    assert_int_equal(d.pb->n_models, 1);

    /* the same provider or key again in a later file is an error naming both
     * places, and the document stays as it was */
    assert_int_equal(add(&d, "again.yaml", "tenants: [{id: t}]\nproviders:\n- {name: openai, kind: openai}\n", &err),
                     SL_EINVAL);
    assert_string_equal(err.msg, "again.yaml:3: duplicate provider \"openai\" (also defined at providers.yaml:2)");
    assert_int_equal(add(&d, "again.yaml", seed, &err), SL_EINVAL);
    assert_string_equal(err.msg, "again.yaml:2: duplicate virtual key \"vk_acme_prod\" (also defined at keys.yaml:2)");
    assert_int_equal(ctl_doc_count(&d), 3);
    assert_int_equal(d.pb->n_tenants, 0);

    /* several documents in one file merge too; empty ones add nothing */
    assert_int_equal(add(&d, "multi.yaml", "---\ntenants: [{id: t1}]\n---\n---\ntenants: [{id: t2}]\n", &err), 0);
    assert_int_equal(d.pb->n_tenants, 2);
    assert_int_equal(add(&d, "multi.yaml", "---\ntenants: [{id: t3}]\n---\ntenants: [{id: t1}]\n", &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate tenant \"t1\" (also defined at multi.yaml:2)"));
    assert_int_equal(add(&d, "empty.yaml", "", &err), 0);
    assert_int_equal(add(&d, "comments.yaml", "# nothing here\n", &err), 0);
    assert_int_equal(ctl_doc_count(&d), 5);
    ctl_doc_free(&d);
}

static void test_files_are_read(void **state)
{
    char path[] = "/tmp/ctl_yaml_testXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, seed, strlen(seed)), (ssize_t)strlen(seed));
    close(fd);
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(ctl_doc_add_file(&d, path, fake_env, NULL, &err), 0);
    assert_int_equal(d.pb->n_virtual_keys, 1);
    char at[64];
    snprintf(at, sizeof(at), "%s:2", path);
    assert_string_equal(d.key_at[0], at);
    unlink(path);
    assert_int_equal(ctl_doc_add_file(&d, path, fake_env, NULL, &err), SL_EIO);
    assert_non_null(strstr(err.msg, "could not open \"/tmp/ctl_yaml_test"));
    ctl_doc_free(&d);
}

static void test_quota_fields_map_back(void **state)
{
    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    assert_int_equal(add(&d, "full.yaml", full, &err), 0);
    const char *section, *field;
    const Sluice__Config__V1__VirtualKey *k = d.pb->virtual_keys[0];
    static const char *const want[] = {"max_per_day_usd", "max_per_week_usd", "requests_per_hour", "tokens_per_minute",
                                       "max_concurrent_requests"};
    for (size_t i = 0; i < k->n_quotas; i++) {
        assert_int_equal(ctl_quota_field(k->quotas[i], &section, &field), 1);
        assert_string_equal(field, want[i]);
        assert_string_equal(section, i < 2 ? "budget" : "rate_limit");
    }
    Sluice__Config__V1__Quota q = SLUICE__CONFIG__V1__QUOTA__INIT;
    q.metric = Q(COST_NANO);
    q.window = W(HOUR);
    assert_int_equal(ctl_quota_field(&q, &section, &field), 0);
    q.window = W(MONTH);
    q.provider = "openai";
    assert_int_equal(ctl_quota_field(&q, &section, &field), 0);
    ctl_doc_free(&d);
}

/* examples/sluice.yaml holds the seed verbatim and the list prices; with
 * examples/providers-openai.yaml it makes one document */
static void test_examples_parse(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/examples/sluice.yaml", SLUICE_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, seed));

    ctl_doc_t d;
    sl_err_t err = {0};
    ctl_doc_init(&d);
    if (ctl_doc_add_file(&d, path, fake_env, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    snprintf(path, sizeof(path), "%s/examples/providers-openai.yaml", SLUICE_SOURCE_DIR);
    if (ctl_doc_add_file(&d, path, fake_env, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    const Sluice__Admin__V1__Document *p = d.pb;
    assert_int_equal(p->n_tenants, 1);
    assert_string_equal(p->tenants[0]->metadata_json, "{\"billing_code\":\"AC-1001\",\"cost_center\":\"emea\"}");
    assert_int_equal(p->n_providers, 1);
    assert_string_equal(p->providers[0]->base_url, "https://api.openai.com/v1");
    assert_int_equal(p->n_virtual_keys, 1);
    static const struct {
        const char *provider, *model;
        int64_t in, out, cached;
    } prices[] = {
        {"openai", "gpt-4o", 2500000, 10000000, 1250000},
        {"openai", "gpt-4o-mini", 150000, 600000, 75000},
        {"anthropic", "claude-sonnet-4-6", 3000000, 15000000, 0},
        {"bedrock", "anthropic.claude-sonnet-4-6", 3000000, 15000000, 0},
    };
    assert_int_equal(p->n_models, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(p->models[i]->provider, prices[i].provider);
        assert_string_equal(p->models[i]->model, prices[i].model);
        assert_int_equal(p->models[i]->input_micro_per_mtok, prices[i].in);
        assert_int_equal(p->models[i]->output_micro_per_mtok, prices[i].out);
        assert_int_equal(p->models[i]->cached_input_micro_per_mtok, prices[i].cached);
    }
    ctl_doc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_converts),
        cmocka_unit_test(test_on_unavailable_applies_to_its_section),
        cmocka_unit_test(test_provider_limits_scope_quotas_to_a_provider),
        cmocka_unit_test(test_all_sections_convert),
        cmocka_unit_test(test_money_rejections_name_the_field),
        cmocka_unit_test(test_structure_rejections_name_the_path),
        cmocka_unit_test(test_secret_env_resolution),
        cmocka_unit_test(test_cloud_credentials),
        cmocka_unit_test(test_files_merge),
        cmocka_unit_test(test_files_are_read),
        cmocka_unit_test(test_quota_fields_map_back),
        cmocka_unit_test(test_examples_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
