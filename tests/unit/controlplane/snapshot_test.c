/* snapshot_test.c - tests of the full/delta decision in controlplane/cp_snapshot.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_snapshot.h"

static void test_mode(void **state)
{
    /* a data plane with nothing always gets a full snapshot, even of version 0 */
    assert_int_equal(cp_snapshot_mode(0, 0, 0), CP_SNAP_FULL);
    assert_int_equal(cp_snapshot_mode(0, 7, 1), CP_SNAP_FULL);
    /* up to date: nothing */
    assert_int_equal(cp_snapshot_mode(7, 7, 1), CP_SNAP_NONE);
    /* ahead of the database (restored backup): full */
    assert_int_equal(cp_snapshot_mode(9, 7, 1), CP_SNAP_FULL);
    /* behind, log covers it: delta */
    assert_int_equal(cp_snapshot_mode(3, 7, 1), CP_SNAP_DELTA);
    assert_int_equal(cp_snapshot_mode(4, 7, 5), CP_SNAP_DELTA);
    /* log pruned past have: full */
    assert_int_equal(cp_snapshot_mode(3, 7, 5), CP_SNAP_FULL);
    /* empty log but versions moved: full */
    assert_int_equal(cp_snapshot_mode(3, 7, 0), CP_SNAP_FULL);
    assert_int_equal(cp_snapshot_mode(-1, 7, 1), CP_SNAP_FULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_mode)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
