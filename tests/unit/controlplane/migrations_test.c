/* migrations_test.c - tests of the migration list in controlplane/cp_migrate.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_migrations.h"

static void test_version_parse(void **state)
{
    assert_int_equal(cp_migration_version("0001_init.sql"), 1);
    assert_int_equal(cp_migration_version("0042_more.sql"), 42);
    assert_int_equal(cp_migration_version("init.sql"), -1);
    assert_int_equal(cp_migration_version("0000_zero.sql"), -1);
    assert_int_equal(cp_migration_version("12"), -1);
}

static void test_embedded_list_is_ordered(void **state)
{
    sl_err_t err = {0};
    assert_true(cp_migrations_count >= 1);
    assert_int_equal(cp_migrations_check_list(cp_migrations, cp_migrations_count, &err), 0);
    assert_string_equal(cp_migrations[0].name, "0001_init.sql");
    assert_non_null(strstr(cp_migrations[0].sql, "CREATE TABLE config_state"));
    assert_int_equal(cp_migrations_latest(), cp_migration_version(cp_migrations[cp_migrations_count - 1].name));
}

static void test_bad_lists(void **state)
{
    sl_err_t err = {0};
    cp_migration_t dup[] = {{"0001_a.sql", ""}, {"0001_b.sql", ""}};
    assert_int_equal(cp_migrations_check_list(dup, 2, &err), SL_EINVAL);
    cp_migration_t bad[] = {{"a.sql", ""}};
    assert_int_equal(cp_migrations_check_list(bad, 1, &err), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_version_parse), cmocka_unit_test(test_embedded_list_is_ordered),
                                       cmocka_unit_test(test_bad_lists)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
