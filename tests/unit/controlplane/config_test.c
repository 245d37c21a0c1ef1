/* config_test.c - tests of controlplane/cp_config.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_config.h"

static void clear_env(void)
{
    const char *v[] = {"SLUICE_DATABASE_URL", "SLUICE_GRPC_LISTEN", "SLUICE_HTTP_LISTEN", "SLUICE_ADMIN_TOKEN_FILE",
                       "SLUICE_MASTER_KEY_FILE", "SLUICE_NODE_TOKEN_FILE", "SLUICE_PORT_FILE", "SLUICE_WORKERS",
                       "SLUICE_ALERT_INTERVAL", "SLUICE_ALERT_RESEND_INTERVAL"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        unsetenv(v[i]);
}

static void test_migrate(void **state)
{
    clear_env();
    cp_config_t c;
    sl_err_t err = {0};
    char *argv[] = {"cp", "migrate", "--database-url", "postgresql://x/y", NULL};
    assert_int_equal(cp_config_parse(4, argv, &c, &err), 0);
    assert_int_equal(c.command, CP_CMD_MIGRATE);
    assert_string_equal(c.database_url, "postgresql://x/y");
    char *argv2[] = {"cp", "migrate", NULL};
    assert_int_equal(cp_config_parse(2, argv2, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "missing --database-url (or SLUICE_DATABASE_URL)");
    char *argv3[] = {"cp", "migrate", "--grpc-listen", "x", NULL};
    assert_int_equal(cp_config_parse(4, argv3, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "unknown flag \"--grpc-listen\" for \"migrate\"");
}

static void test_serve_flags_and_env(void **state)
{
    clear_env();
    setenv("SLUICE_DATABASE_URL", "postgresql://env/db", 1);
    setenv("SLUICE_GRPC_LISTEN", "127.0.0.1:0", 1);
    setenv("SLUICE_ADMIN_TOKEN_FILE", "/a", 1);
    setenv("SLUICE_MASTER_KEY_FILE", "/m", 1);
    setenv("SLUICE_NODE_TOKEN_FILE", "/n", 1);
    cp_config_t c;
    sl_err_t err = {0};
    char *argv[] = {"cp", "serve", "--http-listen=127.0.0.1:0", "--database-url", "postgresql://flag/db",
                    "--workers", "3", NULL};
    assert_int_equal(cp_config_parse(7, argv, &c, &err), 0);
    assert_string_equal(c.database_url, "postgresql://flag/db"); /* flag wins */
    assert_string_equal(c.grpc_listen, "127.0.0.1:0");
    assert_string_equal(c.http_listen, "127.0.0.1:0");
    assert_null(c.port_file);
    assert_int_equal(c.workers, 3);
    char *argv2[] = {"cp", "serve", "--workers", "0", "--http-listen", "x", NULL};
    assert_int_equal(cp_config_parse(6, argv2, &c, &err), SL_EINVAL);
    unsetenv("SLUICE_NODE_TOKEN_FILE");
    char *argv3[] = {"cp", "serve", "--http-listen", "x", NULL};
    assert_int_equal(cp_config_parse(4, argv3, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "missing --node-token-file (or SLUICE_NODE_TOKEN_FILE)");
    clear_env();
}

static void test_lease_flags(void **state)
{
    clear_env();
    cp_config_t c;
    sl_err_t err = {0};
    char *argv[] = {"cp", "serve", "--database-url", "d", "--grpc-listen", "g", "--http-listen", "h",
                    "--admin-token-file", "a", "--master-key-file", "m", "--node-token-file", "n", NULL};
    assert_int_equal(cp_config_parse(14, argv, &c, &err), 0);
    assert_int_equal(c.lease_ttl_ms, 30000);
    assert_int_equal(c.lease_grace_ms, 600000);
    char *argv2[] = {"cp", "serve", "--database-url", "d", "--grpc-listen", "g", "--http-listen", "h",
                     "--admin-token-file", "a", "--master-key-file", "m", "--node-token-file", "n",
                     "--lease-ttl-ms", "500", "--lease-reclaim-grace-ms=250", NULL};
    assert_int_equal(cp_config_parse(17, argv2, &c, &err), 0);
    assert_int_equal(c.lease_ttl_ms, 500);
    assert_int_equal(c.lease_grace_ms, 250);
    argv2[15] = "5x";
    assert_int_equal(cp_config_parse(17, argv2, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--lease-ttl-ms must be a whole number of milliseconds, not \"5x\"");
    argv2[15] = "50";
    assert_int_equal(cp_config_parse(17, argv2, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--lease-ttl-ms must be between 100 and 3600000, not 50");
    setenv("SLUICE_LEASE_RECLAIM_GRACE_MS", "1234", 1);
    assert_int_equal(cp_config_parse(14, argv, &c, &err), 0);
    assert_int_equal(c.lease_grace_ms, 1234);
    unsetenv("SLUICE_LEASE_RECLAIM_GRACE_MS");
    char *argv3[] = {"cp", "migrate", "--database-url", "d", "--lease-ttl-ms", "500", NULL};
    assert_int_equal(cp_config_parse(6, argv3, &c, &err), SL_EINVAL); /* serve only */
}

static void test_alert_durations(void **state)
{
    clear_env();
    cp_config_t c;
    sl_err_t err = {0};
    char *argv[] = {"cp", "serve", "--database-url", "d", "--grpc-listen", "g", "--http-listen", "h",
                    "--admin-token-file", "a", "--master-key-file", "m", "--node-token-file", "n",
                    "--alert-resend-interval", "2s", NULL};
    assert_int_equal(cp_config_parse(14, argv, &c, &err), 0);
    assert_int_equal(c.alert_interval_ms, 60000); /* defaults */
    assert_int_equal(c.alert_resend_ms, 60000);
    setenv("SLUICE_ALERT_INTERVAL", "500ms", 1);
    assert_int_equal(cp_config_parse(16, argv, &c, &err), 0);
    assert_int_equal(c.alert_interval_ms, 500);
    assert_int_equal(c.alert_resend_ms, 2000);
    argv[15] = "soon";
    assert_int_equal(cp_config_parse(16, argv, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "--alert-resend-interval must be a duration such as 500ms, 2s or 1m, not \"soon\"");
    argv[15] = "0s";
    assert_int_equal(cp_config_parse(16, argv, &c, &err), SL_EINVAL);
    unsetenv("SLUICE_ALERT_INTERVAL");
}

static void test_bad_command(void **state)
{
    cp_config_t c;
    sl_err_t err = {0};
    char *argv[] = {"cp", "launch", NULL};
    assert_int_equal(cp_config_parse(2, argv, &c, &err), SL_EINVAL);
    assert_string_equal(err.msg, "unknown command \"launch\"");
    char *argv2[] = {"cp", "migrate", "--database-url", NULL};
    assert_int_equal(cp_config_parse(3, argv2, &c, &err), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_migrate), cmocka_unit_test(test_serve_flags_and_env),
                                       cmocka_unit_test(test_bad_command), cmocka_unit_test(test_lease_flags),
                                       cmocka_unit_test(test_alert_durations)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
