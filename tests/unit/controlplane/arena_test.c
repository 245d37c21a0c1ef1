/* arena_test.c - tests of controlplane/cp_arena.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cp_arena.h"
#include "cp_pb.h"

static void test_alloc(void **state)
{
    cp_arena_t *a = cp_arena_new();
    char *s = cp_arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    assert_string_equal(cp_arena_printf(a, "%d-%s", 7, "x"), "7-x");
    assert_string_equal(cp_arena_strndup(a, "abcdef", 3), "abc");
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = cp_arena_alloc(a, (size_t)i * 7 + 1);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (int j = 0; j < i * 7 + 1; j++)
            assert_int_equal(p[j], 0);
        memset(p, 0xab, (size_t)i * 7 + 1);
    }
    void *big = cp_arena_alloc(a, 1 << 20);
    assert_non_null(big);
    assert_string_equal(s, "hello"); /* earlier blocks untouched */
    cp_tenant_pb *t = cp_arena_msg(a, CP_DESC(tenant));
    assert_string_equal(t->id, "");
    cp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_alloc)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
