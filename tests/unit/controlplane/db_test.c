/* db_test.c - tests of controlplane/cp_db.c that need no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_db.h"

static void test_sqlstate_mapping(void **state)
{
    assert_int_equal(cp_db_sqlstate_to_err("23505"), SL_EEXISTS);
    assert_int_equal(cp_db_sqlstate_to_err("23503"), SL_ENOTFOUND);
    assert_int_equal(cp_db_sqlstate_to_err("23514"), SL_EINVAL);
    assert_int_equal(cp_db_sqlstate_to_err("22P02"), SL_EINVAL);
    assert_int_equal(cp_db_sqlstate_to_err("40001"), SL_ECONFLICT);
    assert_int_equal(cp_db_sqlstate_to_err("40P01"), SL_ECONFLICT);
    assert_int_equal(cp_db_sqlstate_to_err("08006"), SL_EUNAVAIL);
    assert_int_equal(cp_db_sqlstate_to_err("57P01"), SL_EUNAVAIL);
    assert_int_equal(cp_db_sqlstate_to_err("53300"), SL_EUNAVAIL);
    assert_int_equal(cp_db_sqlstate_to_err("42P01"), SL_EUNAVAIL);
    assert_int_equal(cp_db_sqlstate_to_err("42601"), SL_EINTERNAL);
    assert_int_equal(cp_db_sqlstate_to_err(NULL), SL_EUNAVAIL);
    assert_int_equal(cp_db_sqlstate_to_err("bad"), SL_EUNAVAIL);
}

static void test_unreachable_is_unavailable(void **state)
{
    cp_db_t db;
    sl_err_t err = {0};
    cp_db_init(&db, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1");
    assert_null(cp_db_query(&db, "SELECT 1", 0, NULL, &err));
    assert_int_equal(err.code, SL_EUNAVAIL);
    assert_non_null(strstr(err.msg, "could not connect to the database"));
    assert_null(strchr(err.msg, '\n'));
    cp_db_close(&db);
}

static void test_fmt(void **state)
{
    char b[24];
    assert_string_equal(cp_db_fmt_i64(INT64_MIN, b), "-9223372036854775808");
    assert_string_equal(cp_db_fmt_i64(42, b), "42");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sqlstate_mapping),
                                       cmocka_unit_test(test_unreachable_is_unavailable), cmocka_unit_test(test_fmt)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
