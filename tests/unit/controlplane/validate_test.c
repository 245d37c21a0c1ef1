/* validate_test.c - tests of controlplane/cp_validate.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_validate.h"

static void test_ids(void **state)
{
    assert_true(cp_valid_id("vk_acme_prod"));
    assert_true(cp_valid_id("A1.b:c-d"));
    assert_false(cp_valid_id(""));
    assert_false(cp_valid_id("_x"));
    assert_false(cp_valid_id("a b"));
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    assert_false(cp_valid_id(long_id));
    long_id[128] = '\0';
    assert_true(cp_valid_id(long_id));
    assert_true(cp_valid_provider_name("openai"));
    assert_true(cp_valid_provider_name("my-llm.v2"));
    assert_false(cp_valid_provider_name("OpenAI"));
    assert_false(cp_valid_provider_name("a/b"));
    assert_true(cp_valid_provider_kind("azure_openai"));
    assert_false(cp_valid_provider_kind("cohere"));
}

static void test_base_url(void **state)
{
    cp_url_t u;
    sl_err_t err = {0};
    assert_int_equal(cp_parse_base_url("https://api.openai.com/v1", &u, &err), 0);
    assert_true(u.https);
    assert_string_equal(u.host, "api.openai.com");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/v1");
    assert_int_equal(cp_parse_base_url("http://127.0.0.1:8080", &u, &err), 0);
    assert_false(u.https);
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.path, "");
    assert_int_equal(cp_parse_base_url("HTTP://[::1]:9/x/y", &u, &err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9);

    const char *bad[] = {"ftp://x", "https://", "https://a:0", "https://a:65536", "https://a:x", "https://u@a",
                         "https://a/b?c=1", "https://a#f", "https://a b", "https://[zz]", "api.openai.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = (sl_err_t){0};
        assert_int_equal(cp_parse_base_url(bad[i], &u, &err), SL_EINVAL);
        assert_non_null(strstr(err.msg, bad[i]));
    }
}

static void test_json_canon(void **state)
{
    sl_err_t err = {0};
    char *c = cp_json_canon_object("{\"b\": 1, \"a\": \"x\"}", "metadata", &err);
    assert_string_equal(c, "{\"a\":\"x\",\"b\":1}");
    free(c);
    c = cp_json_canon_object("", "metadata", &err);
    assert_string_equal(c, "{}");
    free(c);
    assert_null(cp_json_canon_object("[1]", "tenant \"t\": metadata", &err));
    assert_string_equal(err.msg, "tenant \"t\": metadata must be a JSON object");
    assert_null(cp_json_canon_object("{\"a\":1,\"a\":2}", "m", &err));
    assert_null(cp_json_canon_object("{", "m", &err));
}

static void test_vkey(void **state)
{
    sl_err_t err = {0};
    cp_vkey_pb k = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    k.id = "vk";
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_string_equal(err.msg, "virtual key \"vk\": tenant_id is required");
    k.tenant_id = "acme";
    assert_int_equal(cp_validate_vkey(&k, &err), 0);

    cp_quota_pb q1 = SLUICE__CONFIG__V1__QUOTA__INIT, q2 = SLUICE__CONFIG__V1__QUOTA__INIT;
    cp_quota_pb *qs[2] = {&q1, &q2};
    k.quotas = qs;
    k.n_quotas = 1;
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_string_equal(err.msg, "virtual key \"vk\": quota has no metric");
    q1.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS;
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_string_equal(err.msg, "virtual key \"vk\": requests quota has no window");
    q1.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE;
    q1.limit = 600;
    assert_int_equal(cp_validate_vkey(&k, &err), 0);
    q2 = q1;
    k.n_quotas = 2;
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_string_equal(err.msg, "virtual key \"vk\": quota \"requests/minute\" is listed twice");
    q2.limit = -1;
    q2.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_HOUR;
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "must not be negative"));
    k.n_quotas = 0;

    cp_target_pb t = SLUICE__CONFIG__V1__TARGET__INIT;
    cp_target_pb *tp = &t;
    t.provider = "Bad";
    t.model = "m";
    k.fallbacks = &tp;
    k.n_fallbacks = 1;
    assert_int_equal(cp_validate_vkey(&k, &err), SL_EINVAL);
    assert_string_equal(err.msg, "virtual key \"vk\": fallback 1 has invalid provider \"Bad\"");
}

static void test_provider(void **state)
{
    sl_err_t err = {0};
    cp_provider_pb p = SLUICE__CONFIG__V1__PROVIDER__INIT;
    p.name = "openai";
    p.kind = "openai";
    p.base_url = "https://api.openai.com/v1";
    assert_int_equal(cp_validate_provider(&p, &err), 0);
    p.kind = "nope";
    assert_int_equal(cp_validate_provider(&p, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "kind \"nope\" is unknown"));
    p.kind = "openai";
    cp_cred_pb c = SLUICE__CONFIG__V1__CREDENTIAL__INIT;
    cp_cred_pb *cp = &c;
    p.credentials = &cp;
    p.n_credentials = 1;
    c.secret.data = (uint8_t *)"s";
    c.secret.len = 1;
    assert_int_equal(cp_validate_provider(&p, &err), SL_EINVAL);
    assert_string_equal(err.msg, "provider \"openai\": credential 1 weight must be greater than 0");
    c.weight = 2;
    assert_int_equal(cp_validate_provider(&p, &err), 0);
    c.secret.len = 0;
    assert_int_equal(cp_validate_provider(&p, &err), SL_EINVAL);
    assert_string_equal(err.msg, "provider \"openai\": credential 1 has an empty secret");
}

static void test_model(void **state)
{
    sl_err_t err = {0};
    cp_model_pb m = SLUICE__CONFIG__V1__MODEL_PRICE__INIT;
    m.provider = "openai";
    m.model = "gpt-4o";
    assert_int_equal(cp_validate_model(&m, &err), 0);
    m.output_micro_per_mtok = -5;
    assert_int_equal(cp_validate_model(&m, &err), SL_EINVAL);
    assert_string_equal(err.msg, "model \"openai/gpt-4o\": prices must not be negative");
}

static void test_document_duplicates(void **state)
{
    sl_err_t err = {0};
    cp_doc_pb d = SLUICE__ADMIN__V1__DOCUMENT__INIT;
    cp_tenant_pb t1 = SLUICE__CONFIG__V1__TENANT__INIT, t2 = SLUICE__CONFIG__V1__TENANT__INIT;
    t1.id = t2.id = "acme";
    cp_tenant_pb *ts[2] = {&t1, &t2};
    d.tenants = ts;
    d.n_tenants = 1;
    assert_int_equal(cp_validate_document(&d, &err), 0);
    d.n_tenants = 2;
    assert_int_equal(cp_validate_document(&d, &err), SL_EINVAL);
    assert_string_equal(err.msg, "tenant \"acme\" is listed twice");
    t2.id = "other";
    t2.time_zone = "Europe/Berlin";
    assert_int_equal(cp_validate_document(&d, &err), 0);
    t2.time_zone = "bad zone";
    assert_int_equal(cp_validate_document(&d, &err), SL_EINVAL);
}

static void test_defaults(void **state)
{
    char buf[32];
    cp_cred_id("", 0, buf, sizeof(buf));
    assert_string_equal(buf, "key1");
    cp_cred_id("primary", 4, buf, sizeof(buf));
    assert_string_equal(buf, "primary");
    assert_string_equal(cp_tenant_time_zone(""), "UTC");
    assert_string_equal(cp_tenant_time_zone("Asia/Tokyo"), "Asia/Tokyo");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),          cmocka_unit_test(test_base_url), cmocka_unit_test(test_json_canon),
        cmocka_unit_test(test_vkey),         cmocka_unit_test(test_provider), cmocka_unit_test(test_model),
        cmocka_unit_test(test_document_duplicates), cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
