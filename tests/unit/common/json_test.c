/* json_test.c - tests of common/sl_json.c: validation, tree shape, helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sl_err.h"
#include "sl_json.h"

#define CAP 256

static int parse(const char *s, sl_json_tok_t *t)
{
    return sl_json_parse(s, strlen(s), t, CAP, NULL);
}

static void test_valid_documents(void **state)
{
    static const char *ok[] = {
        "{}", "[]", "0", "-0", "1.5", "-1.5e10", "1E+2", "1e-2", "\"\"", "true", "false", "null", " \t\r\n{} \n",
        "{\"a\":1}", "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", "[[[[]]]]", "\"\\u00e9\\n\\t\\\"\\\\\\/\\b\\f\\r\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "123456789012345678901234567890", "[0,-0.0,0e0]",
        "{\"a\":{\"a\":{\"a\":{}}}}", "\"\\ud83d\\ude00\"",
    };
    sl_json_tok_t t[CAP];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int n = parse(ok[i], t);
        if (n < 1)
            fail_msg("rejected valid document %zu: %s", i, ok[i]);
        /* counting mode agrees */
        assert_int_equal(sl_json_parse(ok[i], strlen(ok[i]), NULL, 0, NULL), n);
    }
}

static void test_invalid_documents(void **state)
{
    static const char *bad[] = {
        "", " ", "{", "}", "[", "]", "[1,]", "{\"a\":1,}", "[,1]", "{,}", "01", "-01", "1.", ".5", "1e", "1e+", "+1",
        "-", "--1", "0x10", "NaN", "Infinity", "tru", "truex", "nul", "nulll", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"\\u12g4\"", "\"a\tb\"", "\"a\nb\"", "{\"a\" 1}", "{\"a\":}", "{1:2}", "{\"a\":1 \"b\":2}", "[1 2]",
        "[1}", "{\"a\":1]", "{} {}", "{}x", "1 2", "'a'", "\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\xe2\x82\"", "[\"a\",]", "{\"a\"}", "{\"a\":1,,\"b\":2}", "[1,,2]",
        "\"abc\\\"", "[\x01]", "\xef\xbb\xbf{}",
    };
    sl_json_tok_t t[CAP];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int n = parse(bad[i], t);
        if (n != SL_EINVAL)
            fail_msg("accepted invalid document %zu: %s (%d)", i, bad[i], n);
        assert_int_equal(sl_json_parse(bad[i], strlen(bad[i]), NULL, 0, NULL), SL_EINVAL);
    }
    /* embedded NUL inside and after */
    assert_int_equal(sl_json_parse("\"a\0b\"", 5, t, CAP, NULL), SL_EINVAL);
    assert_int_equal(sl_json_parse("{}\0", 3, t, CAP, NULL), SL_EINVAL);
}

static void test_depth_limit(void **state)
{
    char deep[SL_JSON_MAX_DEPTH * 2 + 4];
    size_t d = SL_JSON_MAX_DEPTH;
    memset(deep, '[', d);
    memset(deep + d, ']', d);
    sl_json_tok_t *t = malloc(sizeof(*t) * (d + 1));
    assert_int_equal(sl_json_parse(deep, 2 * d, t, d + 1, NULL), (int)d);
    d++;
    memset(deep, '[', d);
    memset(deep + d, ']', d);
    assert_int_equal(sl_json_parse(deep, 2 * d, t, d + 1, NULL), SL_EINVAL);
    free(t);
}

static void test_tree_shape(void **state)
{
    const char *s = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},[]],\"n\":2,\"x\":{}}";
    sl_json_tok_t t[CAP];
    int n = parse(s, t);
    assert_int_equal(n, 15);
    assert_int_equal(t[0].type, SL_JSON_OBJECT);
    assert_int_equal(t[0].size, 4);
    assert_int_equal(t[0].next, 15);
    assert_int_equal(t[0].start, 0);
    assert_int_equal(t[0].end, strlen(s));
    int m = sl_json_find(s, t, 0, "messages", 8);
    assert_int_equal(t[m].type, SL_JSON_ARRAY);
    assert_int_equal(t[m].size, 2);
    int e0 = sl_json_array_at(t, m, 0), e1 = sl_json_array_at(t, m, 1);
    assert_int_equal(t[e0].type, SL_JSON_OBJECT);
    assert_int_equal(t[e1].type, SL_JSON_ARRAY);
    assert_int_equal(t[e1].size, 0);
    assert_int_equal(sl_json_array_at(t, m, 2), -1);
    assert_true(sl_json_str_eq(s, &t[sl_json_find(s, t, e0, "content", 7)], "hi", 2));
    int model = sl_json_find(s, t, 0, "model", 5);
    assert_true(sl_json_str_eq(s, &t[model], "gpt-4o", 6));
    assert_false(sl_json_str_eq(s, &t[model], "gpt-4", 5));
    assert_int_equal(memcmp(s + t[model].start - 1, "\"gpt-4o\"", 8), 0);
    int64_t v;
    assert_int_equal(sl_json_int64(s, &t[sl_json_find(s, t, 0, "n", 1)], &v), 0);
    assert_int_equal(v, 2);
    int x = sl_json_find(s, t, 0, "x", 1);
    assert_int_equal(t[x].type, SL_JSON_OBJECT);
    assert_int_equal(t[x].size, 0);
    assert_int_equal(t[x].end - t[x].start, 2);
    assert_int_equal(sl_json_find(s, t, 0, "missing", 7), -1);
    assert_int_equal(sl_json_find(s, t, model, "x", 1), -1); /* not an object */
}

static void test_too_many_tokens(void **state)
{
    const char *s = "[1,2,3,4,5]";
    sl_json_tok_t t[6];
    assert_int_equal(sl_json_parse(s, strlen(s), t, 5, NULL), SL_ETOOBIG);
    assert_int_equal(sl_json_parse(s, strlen(s), t, 6, NULL), 6);
    /* an invalid document says so even when it would not fit */
    assert_int_equal(sl_json_parse("[1,2,3,4,5,]", 12, t, 2, NULL), SL_EINVAL);
}

static void test_escaped_strings(void **state)
{
    const char *s = "{\"mo\\u0064el\":\"gpt\\u002d4o\",\"e\":\"\\u00e9\\ud83d\\ude00\\n\",\"lone\":\"\\ud800x\"}";
    sl_json_tok_t t[CAP];
    assert_true(parse(s, t) > 0);
    int m = sl_json_find(s, t, 0, "model", 5);
    assert_true(m > 0);
    assert_true(t[m].escaped);
    assert_true(sl_json_str_eq(s, &t[m], "gpt-4o", 6));
    assert_int_equal(sl_json_str_len(s, &t[m]), 6);
    char buf[32];
    assert_int_equal(sl_json_str_copy(s, &t[m], buf, sizeof(buf)), 6);
    assert_string_equal(buf, "gpt-4o");
    assert_int_equal(sl_json_str_copy(s, &t[m], buf, 5), SIZE_MAX);
    int e = sl_json_find(s, t, 0, "e", 1);
    assert_int_equal(sl_json_str_copy(s, &t[e], buf, sizeof(buf)), 7);
    assert_memory_equal(buf, "\xc3\xa9\xf0\x9f\x98\x80\n", 7);
    int l = sl_json_find(s, t, 0, "lone", 4);
    assert_int_equal(sl_json_str_copy(s, &t[l], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "\xed\xa0\x80x", 4);
}

static void test_duplicate_member_last_wins(void **state)
{
    const char *s = "{\"stream\":false,\"stream\":true}";
    sl_json_tok_t t[CAP];
    assert_true(parse(s, t) > 0);
    int b = -1;
    assert_int_equal(sl_json_bool(&t[sl_json_find(s, t, 0, "stream", 6)], &b), 0);
    assert_int_equal(b, 1);
}

static void test_int64_and_bool(void **state)
{
    static const struct {
        const char *s;
        int ok;
        int64_t v;
    } cases[] = {
        {"0", 1, 0},
        {"-0", 1, 0},
        {"42", 1, 42},
        {"9223372036854775807", 1, INT64_MAX},
        {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"99999999999999999999", 0, 0},
        {"1.0", 0, 0},
        {"1e3", 0, 0},
        {"\"1\"", 0, 0},
    };
    sl_json_tok_t t[4];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sl_json_parse(cases[i].s, strlen(cases[i].s), t, 4, NULL), 1);
        int64_t v = -7;
        int rc = sl_json_int64(cases[i].s, &t[0], &v);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_int_equal(v, cases[i].v);
        } else {
            assert_int_equal(rc, SL_EINVAL);
        }
    }
    int b;
    assert_int_equal(sl_json_parse("null", 4, t, 4, NULL), 1);
    assert_int_equal(sl_json_bool(&t[0], &b), SL_EINVAL);
    assert_int_equal(sl_json_parse("false", 5, t, 4, NULL), 1);
    assert_int_equal(sl_json_bool(&t[0], &b), 0);
    assert_int_equal(b, 0);
}

static void test_errpos(void **state)
{
    sl_json_tok_t t[CAP];
    size_t pos = 0;
    assert_int_equal(sl_json_parse("[1,2,]", 6, t, CAP, &pos), SL_EINVAL);
    assert_int_equal(pos, 5);
}

/* Escaping: the short escapes for quote, backslash, newline, return and
 * tab, \u00XX for other control bytes, everything else as it is; the
 * result reads back as the input. */
static void test_escape(void **state)
{
    static const char raw[] = "a\"b\\c\nd\re\tf\x01g\bh\x1f/\x7f\xc3\xa9";
    static const char want[] = "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u0008h\\u001f/\x7f\xc3\xa9";
    size_t n = sizeof(raw) - 1;
    char out[6 * sizeof(raw) + 2];
    out[0] = '"';
    char *end = sl_json_escape(out + 1, raw, n);
    assert_int_equal((size_t)(end - (out + 1)), sl_json_escaped_len(raw, n));
    assert_memory_equal(out + 1, want, sizeof(want) - 1);
    assert_int_equal((size_t)(end - (out + 1)), sizeof(want) - 1);
    *end++ = '"';
    sl_json_tok_t t[CAP];
    assert_int_equal(sl_json_parse(out, (size_t)(end - out), t, CAP, NULL), 1);
    char back[sizeof(raw)];
    assert_int_equal(sl_json_str_copy(out, &t[0], back, sizeof(back)), n);
    assert_memory_equal(back, raw, n);
    assert_int_equal(sl_json_escaped_len("", 0), 0);
    assert_ptr_equal(sl_json_escape(out, "", 0), out);
}

/* Mutates a valid document many ways (bounded, deterministic) and checks the
 * parser never crashes, never reads out of bounds (run under ASan), and that
 * counting mode and token mode agree on every input. */
static void test_mutation_loop(void **state)
{
    const char *seed = "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"h\\u00e9llo \\\"w\\\"\"}],\"stream_options\":{\"include_usage\":false},\"n\":-1.5e3,"
                       "\"x\":[null,true,false,[],{}]}";
    const char alphabet[] = "{}[]\",:\\ 0123456789-+.eEtrufalsn\x01\x7f\xc3\xa9\xff";
    size_t len = strlen(seed);
    char *buf = malloc(len + 8);
    sl_json_tok_t *t = malloc(sizeof(*t) * (len + 8));
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int valid = 0;
    for (int iter = 0; iter < 200000; iter++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t n = len;
        memcpy(buf, seed, len);
        int edits = 1 + (int)(rng % 3);
        for (int k = 0; k < edits; k++) {
            uint64_t r = rng >> (k * 16);
            size_t at = (size_t)(r % n);
            char c = alphabet[(r >> 8) % (sizeof(alphabet) - 1)];
            switch ((r >> 12) % 3) {
            case 0:
                buf[at] = c;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
                break;
            }
        }
        /* truncation too */
        if ((rng >> 60) == 0)
            n = (size_t)((rng >> 20) % n);
        int a = sl_json_parse(buf, n, t, len + 8, NULL);
        int b = sl_json_parse(buf, n, NULL, 0, NULL);
        assert_int_equal(a, b);
        if (a > 0) {
            valid++;
            assert_true(t[0].next == (uint32_t)a);
            for (int i = 0; i < a; i++) {
                assert_true(t[i].end <= n);
                assert_true(t[i].next > (uint32_t)i && t[i].next <= (uint32_t)a);
                if (t[i].type == SL_JSON_STRING)
                    assert_true(sl_json_str_len(buf, &t[i]) <= t[i].end - t[i].start);
            }
        }
    }
    assert_true(valid > 0);
    free(buf);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),  cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_depth_limit),      cmocka_unit_test(test_tree_shape),
        cmocka_unit_test(test_too_many_tokens),  cmocka_unit_test(test_escaped_strings),
        cmocka_unit_test(test_duplicate_member_last_wins), cmocka_unit_test(test_int64_and_bool),
        cmocka_unit_test(test_errpos),           cmocka_unit_test(test_escape),
        cmocka_unit_test(test_mutation_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
