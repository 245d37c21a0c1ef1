/* metrics_test.c - the control plane's push latency and database pool
 * metrics (controlplane/cp_metrics.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_metrics.h"

static char *render(void)
{
    sl_buf_t b = {0};
    cp_gauges_t g = {2, 17, 1};
    cp_metrics_render(&g, &b);
    return b.data;
}

static void test_push_histogram(void **state)
{
    cp_metrics_observe_push(0.0003);
    cp_metrics_observe_push(0.004);
    cp_metrics_observe_push(-1); /* a clock step never goes negative */
    cp_metrics_observe_push(30);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE sluice_controlplane_push_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_bucket{le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_sum 30.004300\n"));
    assert_non_null(strstr(t, "sluice_controlplane_push_duration_seconds_count 4\n"));
    free(t);
}

static void test_db_pool_gauges(void **state)
{
    cp_metrics_db_conns(3, 0, 0);
    cp_metrics_db_conns(0, 2, 1);
    cp_metrics_db_conns(0, 0, -1);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE sluice_controlplane_db_connections_max gauge\n"
                              "sluice_controlplane_db_connections_max 3\n"));
    assert_non_null(strstr(t, "sluice_controlplane_db_connections_open 2\n"));
    assert_non_null(strstr(t, "sluice_controlplane_db_connections_in_use 0\n"));
    assert_non_null(strstr(t, "sluice_controlplane_connected_dataplanes 2\n"));
    free(t);
}

static void test_every_family_has_help_and_type(void **state)
{
    char *t = render();
    for (char *p = t; *p != '\0';) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (strncmp(p, "sluice_", 7) == 0) {
            /* a sample: its family (name without a histogram suffix) has a TYPE line */
            size_t n = strcspn(p, "{ ");
            char name[128];
            assert_true(n < sizeof(name));
            memcpy(name, p, n);
            name[n] = '\0';
            char want[160];
            snprintf(want, sizeof(want), "# TYPE %s ", name);
            if (strstr(t, want) == NULL) {
                char *suf = strrchr(name, '_');
                assert_non_null(suf);
                *suf = '\0';
                snprintf(want, sizeof(want), "# TYPE %s histogram", name);
                assert_non_null(strstr(t, want));
            }
            snprintf(want, sizeof(want), "# HELP %s ", name);
            assert_non_null(strstr(t, want));
        }
        p = nl + 1;
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_histogram),
        cmocka_unit_test(test_db_pool_gauges),
        cmocka_unit_test(test_every_family_has_help_and_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
