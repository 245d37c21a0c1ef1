/* metrics_labels_test.c - per-(provider, model) tokens, cost and time to
 * first token (dataplane/dp_metrics_labels.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_metrics_labels.h"

static char *render(void)
{
    sl_buf_t b = {0};
    dp_mlabels_render(&b);
    return b.data;
}

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, pl) == 0)
            n++;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return n;
}

static int setup_plain(void **state)
{
    dp_mlabels_set_tenant_label(0);
    return dp_mlabels_init(2);
}

static void test_families_render_before_any_request(void **state)
{
    char *t = render();
    assert_non_null(strstr(t, "# HELP sluice_tokens_total "));
    assert_non_null(strstr(t, "# TYPE sluice_tokens_total counter\n"));
    assert_non_null(strstr(t, "# TYPE sluice_cost_usd_total counter\n"));
    assert_non_null(strstr(t, "# TYPE sluice_time_to_first_token_seconds histogram\n"));
    assert_int_equal(count_lines(t, "sluice_"), 0);
    free(t);
}

static void test_workers_are_summed_and_cost_is_exact(void **state)
{
    dp_mlabels_rec_t a = {"openai", "gpt-4o", "acme", 100, 40, 7, 1500, 0};
    dp_mlabels_rec_t b = {"openai", "gpt-4o", "globex", 1, 0, 2, 1000000001, 250000000};
    dp_mlabels_record(0, &a);
    dp_mlabels_record(1, &b);
    dp_mlabels_record(1, &b);
    char *t = render();
    assert_non_null(strstr(t, "sluice_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"input\"} 102\n"));
    assert_non_null(
        strstr(t, "sluice_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"cached_input\"} 40\n"));
    assert_non_null(strstr(t, "sluice_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"output\"} 11\n"));
    /* 1500 + 2 * 1000000001 nano-USD */
    assert_non_null(strstr(t, "sluice_cost_usd_total{provider=\"openai\",model=\"gpt-4o\"} 2.000001502\n"));
    /* the tenant label is off: one series, never a tenant */
    assert_null(strstr(t, "tenant="));
    assert_non_null(
        strstr(t, "sluice_time_to_first_token_seconds_bucket{provider=\"openai\",model=\"gpt-4o\",le=\"0.25\"} 2\n"));
    assert_non_null(
        strstr(t, "sluice_time_to_first_token_seconds_bucket{provider=\"openai\",model=\"gpt-4o\",le=\"0.1\"} 0\n"));
    assert_non_null(
        strstr(t, "sluice_time_to_first_token_seconds_bucket{provider=\"openai\",model=\"gpt-4o\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t, "sluice_time_to_first_token_seconds_sum{provider=\"openai\",model=\"gpt-4o\"} "
                              "0.500000000\n"));
    assert_non_null(strstr(t, "sluice_time_to_first_token_seconds_count{provider=\"openai\",model=\"gpt-4o\"} 2\n"));
    free(t);
}

static void test_unpriced_models_and_overflow_fold_into_other(void **state)
{
    assert_int_equal(dp_mlabels_init(1), 0);
    dp_mlabels_rec_t r = {"openai", NULL, "acme", 5, 0, 5, 0, 0};
    dp_mlabels_record(0, &r);
    char *t = render();
    assert_non_null(strstr(t, "sluice_tokens_total{provider=\"openai\",model=\"_other\",direction=\"input\"} 5\n"));
    free(t);
    char model[32];
    for (int i = 0; i < 3 * DP_MLABELS_SERIES_MAX; i++) {
        snprintf(model, sizeof(model), "m%d", i);
        dp_mlabels_rec_t x = {"openai", model, "acme", 1, 0, 1, 10, 0};
        dp_mlabels_record(0, &x);
    }
    t = render();
    int series = count_lines(t, "sluice_cost_usd_total{");
    assert_true(series <= DP_MLABELS_SERIES_MAX);
    assert_true(series >= DP_MLABELS_SERIES_MAX - 64);
    /* nothing is lost: the folded requests are counted under _other */
    long long total = 0;
    for (const char *p = strstr(t, "sluice_tokens_total{"); p != NULL; p = strstr(p + 1, "sluice_tokens_total{"))
        if (strstr(p, "direction=\"input\"}") != NULL && strstr(p, "direction=\"input\"}") < strchr(p, '\n'))
            total += strtoll(strchr(p, '}') + 2, NULL, 10);
    assert_int_equal(total, 5 + 3 * DP_MLABELS_SERIES_MAX);
    free(t);
}

static void test_label_values_are_escaped(void **state)
{
    assert_int_equal(dp_mlabels_init(1), 0);
    dp_mlabels_rec_t r = {"p\"q", "a\\b\nc", NULL, 1, 0, 0, 0, 0};
    dp_mlabels_record(0, &r);
    char *t = render();
    assert_non_null(strstr(t, "{provider=\"p\\\"q\",model=\"a\\\\b\\nc\",direction=\"input\"} 1\n"));
    free(t);
}

static void test_tenant_label_when_enabled(void **state)
{
    dp_mlabels_set_tenant_label(1);
    assert_int_equal(dp_mlabels_init(2), 0);
    assert_int_equal(dp_mlabels_tenant_label(), 1);
    dp_mlabels_rec_t a = {"openai", "gpt-4o", "acme", 10, 0, 1, 100, 1000000};
    dp_mlabels_rec_t b = {"openai", "gpt-4o", "globex", 20, 0, 2, 200, 3000000};
    dp_mlabels_record(0, &a);
    dp_mlabels_record(1, &b);
    dp_mlabels_record(1, &a);
    char *t = render();
    assert_non_null(strstr(
        t, "sluice_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"input\",tenant=\"acme\"} 20\n"));
    assert_non_null(strstr(
        t, "sluice_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"input\",tenant=\"globex\"} 20\n"));
    assert_non_null(
        strstr(t, "sluice_cost_usd_total{provider=\"openai\",model=\"gpt-4o\",tenant=\"acme\"} 0.000000200\n"));
    /* the histogram stays per (provider, model): tenants are summed */
    assert_non_null(strstr(t, "sluice_time_to_first_token_seconds_count{provider=\"openai\",model=\"gpt-4o\"} 3\n"));
    assert_int_equal(count_lines(t, "sluice_time_to_first_token_seconds_count{"), 1);
    free(t);
    dp_mlabels_set_tenant_label(0);
    assert_int_equal(dp_mlabels_init(1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_families_render_before_any_request, setup_plain),
        cmocka_unit_test_setup(test_workers_are_summed_and_cost_is_exact, setup_plain),
        cmocka_unit_test_setup(test_unpriced_models_and_overflow_fold_into_other, setup_plain),
        cmocka_unit_test_setup(test_label_values_are_escaped, setup_plain),
        cmocka_unit_test(test_tenant_label_when_enabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
