/* ctl_spend_test.c - tests of cli/ctl_spend.c: request checks and the
 * table, JSON and CSV renderings of spend and quota status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "ctl_spend.h"

static void test_spend_request(void **state)
{
    Sluice__Admin__V1__GetSpendRequest q;
    sl_err_t err = {0};
    assert_int_equal(ctl_spend_request(NULL, "2026-03-01", "2026-04-01", NULL, &q, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--tenant is required");
    assert_int_equal(ctl_spend_request("t", "2026-03-01", NULL, NULL, &q, &err), SL_EINVAL);
    assert_int_equal(ctl_spend_request("t", "2026-3-01", "2026-04-01", NULL, &q, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--from \"2026-3-01\" is not a date (YYYY-MM-DD)");
    assert_int_equal(ctl_spend_request("t", "2026-03-01", "2026-13-01", NULL, &q, &err), SL_EINVAL);
    assert_int_equal(ctl_spend_request("t", "2026-03-01", "2026-03-01", NULL, &q, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--to 2026-03-01 must be after --from 2026-03-01 (--to is exclusive)");
    assert_int_equal(ctl_spend_request("t", "2026-03-01", "2026-04-01", "week", &q, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--by \"week\" is not day, model or key");
    assert_int_equal(ctl_spend_request("t", "2026-03-01", "2026-04-01", NULL, &q, &err), 0);
    assert_string_equal(q.group_by, "day");
    assert_string_equal(q.tenant_id, "t");
    assert_int_equal(ctl_spend_request("t", "2026-03-01", "2026-04-01", "model", &q, &err), 0);
    assert_string_equal(q.group_by, "model");

    Sluice__Admin__V1__GetQuotaStatusRequest s;
    assert_int_equal(ctl_quotas_request(NULL, NULL, &s, &err), SL_EINVAL);
    assert_string_equal(err.msg, "give exactly one of --tenant T and --key K");
    assert_int_equal(ctl_quotas_request("t", "k", &s, &err), SL_EINVAL);
    assert_int_equal(ctl_quotas_request(NULL, "k", &s, &err), 0);
    assert_string_equal(s.key_id, "k");
    assert_string_equal(s.tenant_id, "");
}

static void test_csv_field(void **state)
{
    sl_buf_t b = {0};
    ctl_csv_field(&b, "plain");
    ctl_csv_field(&b, "|a,b|");
    ctl_csv_field(&b, "say \"hi\"");
    ctl_csv_field(&b, "line\nbreak");
    ctl_csv_field(&b, NULL);
    assert_string_equal(b.data, "plain\"|a,b|\"\"say \"\"hi\"\"\"\"line\nbreak\"");
    sl_buf_free(&b);
}

/* A request and its response with two days and a total. */
typedef struct spend {
    Sluice__Admin__V1__GetSpendRequest q;
    Sluice__Admin__V1__GetSpendResponse r;
    Sluice__Admin__V1__SpendRow rows[3], *ptrs[2];
} spend_t;

static void spend_fixture(spend_t *x)
{
    Sluice__Admin__V1__GetSpendRequest *q = &x->q;
    Sluice__Admin__V1__GetSpendResponse *r = &x->r;
    Sluice__Admin__V1__SpendRow *rows = x->rows, **ptrs = x->ptrs;
    sl_err_t err = {0};
    assert_int_equal(ctl_spend_request("acme", "2026-02-28", "2026-03-02", NULL, q, &err), 0);
    for (int i = 0; i < 3; i++)
        rows[i] = (Sluice__Admin__V1__SpendRow)SLUICE__ADMIN__V1__SPEND_ROW__INIT;
    rows[0].group = "2026-02-28";
    rows[0].requests = 3;
    rows[0].input_tokens = 30;
    rows[0].output_tokens = 9;
    rows[0].cost_nano = 165000;
    rows[1].group = "2026-03-01";
    rows[1].requests = 1;
    rows[1].cost_nano = INT64_C(12000000000001);
    rows[2].group = "total";
    rows[2].requests = 4;
    rows[2].input_tokens = 30;
    rows[2].output_tokens = 9;
    rows[2].cost_nano = INT64_C(12000000165001);
    ptrs[0] = &rows[0];
    ptrs[1] = &rows[1];
    *r = (Sluice__Admin__V1__GetSpendResponse)SLUICE__ADMIN__V1__GET_SPEND_RESPONSE__INIT;
    r->rows = ptrs;
    r->n_rows = 2;
    r->total = &rows[2];
}

/* Renders the fixture in format f and compares the whole text with want. */
static void assert_spend_text(ctl_spend_fmt_t f, const char *want)
{
    spend_t x;
    spend_fixture(&x);
    sl_buf_t b = {0};
    ctl_out_spend(&b, f, &x.q, &x.r);
    assert_string_equal(b.data, want);
    sl_buf_free(&b);
}

static void test_spend_csv(void **state)
{
    assert_spend_text(CTL_SPEND_CSV,
                      "day,requests,errors,input_tokens,cached_input_tokens,output_tokens,cost_usd,cost_nano\n"
                      "2026-02-28,3,0,30,0,9,0.000165,165000\n"
                      "2026-03-01,1,0,0,0,0,12000.000000001,12000000000001\n");
}

static void test_spend_json(void **state)
{
    spend_t x;
    spend_fixture(&x);
    sl_buf_t b = {0};
    ctl_out_spend(&b, CTL_SPEND_JSON, &x.q, &x.r);
    json_error_t je;
    json_t *j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "group_by")), "day");
    json_t *rows_j = json_object_get(j, "rows");
    assert_int_equal(json_array_size(rows_j), 2);
    json_t *second = json_array_get(rows_j, 1);
    assert_string_equal(json_string_value(json_object_get(second, "group")), "2026-03-01");
    assert_true(json_integer_value(json_object_get(second, "cost_nano")) == INT64_C(12000000000001));
    assert_string_equal(json_string_value(json_object_get(second, "cost_usd")), "12000.000000001");
    json_t *total = json_object_get(j, "total");
    assert_string_equal(json_string_value(json_object_get(total, "cost_usd")), "12000.000165001");
    assert_int_equal(json_integer_value(json_object_get(total, "requests")), 4);
    json_decref(j);
    sl_buf_free(&b);
    /* no rows still gives a total */
    x.r.n_rows = 0;
    x.r.total = NULL;
    ctl_out_spend(&b, CTL_SPEND_JSON, &x.q, &x.r);
    j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "total"), "cost_usd")), "0");
    json_decref(j);
    sl_buf_free(&b);
}

static void test_spend_table(void **state)
{
    assert_spend_text(CTL_SPEND_TABLE,
                      "DAY         REQUESTS  ERRORS  INPUT TOKENS  CACHED INPUT  OUTPUT TOKENS         COST USD\n"
                      "2026-02-28         3       0            30             0              9         0.000165\n"
                      "2026-03-01         1       0             0             0              0  12000.000000001\n"
                      "TOTAL              4       0            30             0              9  12000.000165001\n");
}

static void test_quotas(void **state)
{
    Sluice__Config__V1__Quota q1 = SLUICE__CONFIG__V1__QUOTA__INIT, q2 = SLUICE__CONFIG__V1__QUOTA__INIT;
    q1.id = "7";
    q1.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
    q1.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH;
    q1.limit = INT64_C(12000000000000);
    q2.id = "8";
    q2.metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS;
    q2.window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE;
    q2.limit = 600;
    q2.provider = "openai";
    Sluice__Admin__V1__QuotaStatus s1 = SLUICE__ADMIN__V1__QUOTA_STATUS__INIT,
                                   s2 = SLUICE__ADMIN__V1__QUOTA_STATUS__INIT;
    s1.quota = &q1;
    s1.scope_kind = "tenant";
    s1.scope_id = "acme";
    s1.window_start_unix = 1772341200; /* 2026-03-01T05:00Z */
    s1.window_end_unix = 1775016000;   /* 2026-04-01T04:00Z */
    s1.used = 1500000000;
    s1.outstanding = 500000000;
    s1.remaining = INT64_C(11998000000000);
    s2.quota = &q2;
    s2.scope_kind = "virtual_key";
    s2.scope_id = "vk,1";
    s2.window_start_unix = 1772341200;
    s2.window_end_unix = 1772341260;
    s2.used = 10;
    s2.outstanding = 20;
    s2.remaining = 570;
    Sluice__Admin__V1__QuotaStatus *sp[2] = {&s1, &s2};
    Sluice__Admin__V1__GetQuotaStatusResponse r = SLUICE__ADMIN__V1__GET_QUOTA_STATUS_RESPONSE__INIT;
    r.quotas = sp;
    r.n_quotas = 2;
    sl_buf_t b = {0};
    ctl_out_quotas(&b, CTL_SPEND_CSV, &r);
    assert_string_equal(b.data,
                        "scope_kind,scope_id,quota_id,provider,metric,window,window_start,window_end,limit,used,"
                        "outstanding,remaining\n"
                        "tenant,acme,7,,cost,month,2026-03-01T05:00:00Z,2026-04-01T04:00:00Z,12000,1.5,0.5,"
                        "11998\n"
                        "virtual_key,\"vk,1\",8,openai,requests,minute,2026-03-01T05:00:00Z,"
                        "2026-03-01T05:01:00Z,600,10,20,570\n");
    sl_buf_free(&b);
    ctl_out_quotas(&b, CTL_SPEND_JSON, &r);
    json_error_t je;
    json_t *j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    json_t *first = json_array_get(json_object_get(j, "quotas"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "remaining_usd")), "11998");
    assert_string_equal(json_string_value(json_object_get(first, "used_usd")), "1.5");
    assert_true(json_integer_value(json_object_get(first, "limit")) == INT64_C(12000000000000));
    json_t *second = json_array_get(json_object_get(j, "quotas"), 1);
    assert_null(json_object_get(second, "limit_usd"));
    assert_string_equal(json_string_value(json_object_get(second, "provider")), "openai");
    json_decref(j);
    sl_buf_free(&b);
    ctl_out_quotas(&b, CTL_SPEND_TABLE, &r);
    assert_non_null(strstr(b.data, "tenant acme"));
    assert_non_null(strstr(b.data, "openai:requests"));
    assert_non_null(strstr(b.data, "12000"));
    sl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spend_request), cmocka_unit_test(test_csv_field),   cmocka_unit_test(test_spend_csv),
        cmocka_unit_test(test_spend_json),    cmocka_unit_test(test_spend_table), cmocka_unit_test(test_quotas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
