/* sse_test.c - tests of common/sl_sse.c: framing, fields, every split point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sl_sse.h"

/* Collects dispatched events as "event|data|truncated;" into a string. */
typedef struct {
    char out[4096];
    size_t len;
    int stop_after;
    int n;
} collect_t;

static int on_event(void *ud, const sl_sse_event_t *ev)
{
    collect_t *c = ud;
    assert_int_equal(strlen(ev->data), ev->len); /* NUL-terminated, no NUL inside in these tests */
    c->len += (size_t)snprintf(c->out + c->len, sizeof(c->out) - c->len, "%s|%s|%d;", ev->event, ev->data,
                               ev->truncated);
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after ? 7 : 0;
}

static void run(const char *in, size_t inlen, size_t split1, size_t split2, size_t cap, collect_t *c)
{
    static char buf[4096];
    sl_sse_t p;
    sl_sse_init(&p, buf, cap);
    memset(c, 0, sizeof(*c));
    assert_int_equal(sl_sse_feed(&p, in, split1, on_event, c), 0);
    assert_int_equal(sl_sse_feed(&p, in + split1, split2 - split1, on_event, c), 0);
    assert_int_equal(sl_sse_feed(&p, in + split2, inlen - split2, on_event, c), 0);
}

/* Every way of cutting `in` into three pieces gives the same events. */
static void check_all_splits(const char *in, const char *want)
{
    size_t len = strlen(in);
    collect_t c;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            run(in, len, a, b, 1024, &c);
            if (strcmp(c.out, want) != 0)
                fail_msg("split %zu/%zu of %s: got \"%s\" want \"%s\"", a, b, in, c.out, want);
        }
    }
}

static void test_openai_stream(void **state)
{
    check_all_splits("data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n",
                     "|{\"a\":1}|0;|{\"b\":2}|0;|[DONE]|0;");
}

static void test_line_endings(void **state)
{
    check_all_splits("data: x\r\n\r\ndata: y\r\rdata: z\n\n", "|x|0;|y|0;|z|0;");
    /* CR then LF across the split is one line ending, not two */
    check_all_splits("data: a\r\ndata: b\r\n\r\n", "|a\nb|0;");
}

static void test_multiline_and_fields(void **state)
{
    check_all_splits("event: usage\ndata: line1\ndata:line2\ndata\n\n", "usage|line1\nline2\n|0;");
    check_all_splits("id: 7\nretry: 100\ndata:  two spaces\n\n", "| two spaces|0;");
    /* event name resets between events */
    check_all_splits("event: e1\ndata: a\n\ndata: b\n\n", "e1|a|0;|b|0;");
}

static void test_comments_and_empty_events(void **state)
{
    check_all_splits(": keep-alive\n\n:another\ndata: x\n\n", "|x|0;");
    /* no data lines: nothing dispatched */
    check_all_splits("event: ping\n\n\n\n", "");
    /* unknown and over-long field names are ignored */
    check_all_splits("datax: no\ndata_field_long: no\ndata: yes\n\n", "|yes|0;");
}

static void test_unterminated_event_not_dispatched(void **state)
{
    collect_t c;
    const char *in = "data: a\n\ndata: partial";
    run(in, strlen(in), 3, 12, 1024, &c);
    assert_string_equal(c.out, "|a|0;");
}

static void test_truncation(void **state)
{
    collect_t c;
    const char *in = "data: 0123456789\ndata: abc\n\ndata: ok\n\n";
    run(in, strlen(in), 5, 20, 8, &c);
    assert_string_equal(c.out, "|01234567|1;|ok|0;");
}

static void test_callback_stops(void **state)
{
    static char buf[64];
    sl_sse_t p;
    collect_t c;
    memset(&c, 0, sizeof(c));
    c.stop_after = 1;
    sl_sse_init(&p, buf, sizeof(buf) - 1);
    const char *in = "data: a\n\ndata: b\n\n";
    assert_int_equal(sl_sse_feed(&p, in, strlen(in), on_event, &c), 7);
    assert_string_equal(c.out, "|a|0;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_multiline_and_fields),
        cmocka_unit_test(test_comments_and_empty_events),
        cmocka_unit_test(test_unterminated_event_not_dispatched),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
