/* diff_test.c - tests of controlplane/cp_diff.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cp_diff.h"

static cp_arena_t *arena;

static int setup(void **state)
{
    arena = cp_arena_new();
    return 0;
}

static int teardown(void **state)
{
    cp_arena_free(arena);
    return 0;
}

static void test_tenant_unchanged_despite_json_order(void **state)
{
    cp_tenant_pb a = SLUICE__CONFIG__V1__TENANT__INIT, b = SLUICE__CONFIG__V1__TENANT__INIT;
    a.id = b.id = "acme";
    a.name = b.name = "ACME";
    a.metadata_json = "{\"b\": 1, \"a\": \"x\"}"; /* as jsonb prints it */
    b.metadata_json = "{\"a\":\"x\",\"b\":1}";
    b.time_zone = "UTC"; /* a leaves it empty: the same */
    cp_fields_t fa = {0}, fb = {0};
    cp_fields_tenant(&a, arena, &fa);
    cp_fields_tenant(&b, arena, &fb);
    char **lines = NULL;
    size_t n = 0;
    assert_int_equal(cp_diff_fields(&fa, &fb, arena, &lines, &n), 0);
    assert_int_equal(n, 0);
}

static void test_tenant_update_lines(void **state)
{
    cp_tenant_pb a = SLUICE__CONFIG__V1__TENANT__INIT, b = SLUICE__CONFIG__V1__TENANT__INIT;
    a.id = b.id = "acme";
    a.name = "ACME";
    b.name = "ACME Corp";
    cp_fields_t fa = {0}, fb = {0};
    cp_fields_tenant(&a, arena, &fa);
    cp_fields_tenant(&b, arena, &fb);
    char **lines = NULL;
    size_t n = 0;
    assert_int_equal(cp_diff_fields(&fa, &fb, arena, &lines, &n), 1);
    assert_int_equal(n, 1);
    assert_string_equal(lines[0], "name: \"ACME\" -> \"ACME Corp\"");
}

static void test_create_lists_fields(void **state)
{
    cp_model_pb m = SLUICE__CONFIG__V1__MODEL_PRICE__INIT;
    m.provider = "openai";
    m.model = "gpt-4o";
    m.input_micro_per_mtok = 2500000;
    m.output_micro_per_mtok = 10000000;
    cp_fields_t f = {0};
    cp_fields_model(&m, arena, &f);
    char **lines = NULL;
    size_t n = 0;
    assert_int_equal(cp_diff_fields(NULL, &f, arena, &lines, &n), 4);
    assert_string_equal(lines[0], "input_usd_per_mtok: 2.5");
    assert_string_equal(lines[1], "output_usd_per_mtok: 10");
}

static void test_quota_changes(void **state)
{
    cp_vkey_pb a = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT, b = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    a.id = b.id = "vk";
    a.tenant_id = b.tenant_id = "acme";
    cp_quota_pb cost = SLUICE__CONFIG__V1__QUOTA__INIT, rpm = SLUICE__CONFIG__V1__QUOTA__INIT;
    cost.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
    cost.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH;
    cost.limit = INT64_C(12000000000000);
    rpm.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS;
    rpm.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE;
    rpm.limit = 600;
    cp_quota_pb *qa[1] = {&cost}, *qb[1] = {&rpm};
    a.quotas = qa;
    a.n_quotas = 1;
    b.quotas = qb;
    b.n_quotas = 1;
    cp_fields_t fa = {0}, fb = {0};
    cp_fields_vkey(&a, arena, &fa);
    cp_fields_vkey(&b, arena, &fb);
    char **lines = NULL;
    size_t n = 0;
    assert_int_equal(cp_diff_fields(&fa, &fb, arena, &lines, &n), 2);
    assert_string_equal(lines[0], "quota requests/minute: (none) -> 600");
    assert_string_equal(lines[1], "quota cost_nano/month: 12000 USD -> (none)");
}

static void test_secrets_redacted(void **state)
{
    cp_provider_pb a = SLUICE__CONFIG__V1__PROVIDER__INIT, b;
    a.name = "openai";
    a.kind = "openai";
    a.base_url = "https://api.openai.com/v1";
    cp_cred_pb ca = SLUICE__CONFIG__V1__CREDENTIAL__INIT, cb;
    ca.id = "primary";
    ca.weight = 1;
    ca.secret.data = (uint8_t *)"sk-old-secret";
    ca.secret.len = 13;
    cb = ca;
    cb.secret.data = (uint8_t *)"sk-new-secret";
    cp_cred_pb *pa = &ca, *pb = &cb;
    b = a;
    a.credentials = &pa;
    a.n_credentials = 1;
    b.credentials = &pb;
    b.n_credentials = 1;
    cp_fields_t fa = {0}, fb = {0};
    cp_fields_provider(&a, arena, &fa);
    cp_fields_provider(&b, arena, &fb);
    char **lines = NULL;
    size_t n = 0;
    assert_int_equal(cp_diff_fields(&fa, &fb, arena, &lines, &n), 1);
    assert_string_equal(lines[0], "credential \"primary\" secret: changed (redacted)");
    lines = NULL;
    n = 0;
    cp_diff_fields(NULL, &fb, arena, &lines, &n);
    for (size_t i = 0; i < n; i++)
        assert_null(strstr(lines[i], "sk-new-secret"));
    /* same secret: unchanged */
    cb.secret.data = (uint8_t *)"sk-old-secret";
    fb = (cp_fields_t){0};
    cp_fields_provider(&b, arena, &fb);
    lines = NULL;
    n = 0;
    assert_int_equal(cp_diff_fields(&fa, &fb, arena, &lines, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tenant_unchanged_despite_json_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_update_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_lists_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_redacted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
