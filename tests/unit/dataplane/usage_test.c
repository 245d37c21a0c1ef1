/* usage_test.c - per-worker usage aggregation, hand-off and the report queue
 * (dataplane/dp_usage.c). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dp_usage.h"
#include "sl_err.h"

/* ---- fake clock and sender ------------------------------------------------ */

static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

#define MAX_SENT 4096

typedef struct sent {
    char boot[64];
    int64_t seq;
    int64_t requests, errors, input, cached, output, cost;
    size_t n_entries;
    int acked;
} sent_t;

static struct {
    sent_t attempts[MAX_SENT];
    size_t n;
    int fail_next; /* fail this many attempts */
    int fail_all;
    int64_t acked_requests, acked_input, acked_cost;
    size_t acked;
    Sluice__Sync__V1__UsageReport *last; /* copy of the last attempt */
} S;

static int stub_send(const Sluice__Sync__V1__UsageReport *r, void *ctx)
{
    sent_t *a = &S.attempts[S.n < MAX_SENT ? S.n : MAX_SENT - 1];
    if (S.n < MAX_SENT)
        S.n++;
    memset(a, 0, sizeof(*a));
    snprintf(a->boot, sizeof(a->boot), "%s", r->boot_id);
    a->seq = r->seq;
    a->n_entries = r->n_entries;
    for (size_t i = 0; i < r->n_entries; i++) {
        a->requests += r->entries[i]->requests;
        a->errors += r->entries[i]->errors;
        a->input += r->entries[i]->input_tokens;
        a->cached += r->entries[i]->cached_input_tokens;
        a->output += r->entries[i]->output_tokens;
        a->cost += r->entries[i]->cost_nano;
    }
    if (S.last != NULL)
        sluice__sync__v1__usage_report__free_unpacked(S.last, NULL);
    size_t len = sluice__sync__v1__usage_report__get_packed_size(r);
    uint8_t *buf = malloc(len + 1);
    sluice__sync__v1__usage_report__pack(r, buf);
    S.last = sluice__sync__v1__usage_report__unpack(NULL, len, buf);
    free(buf);
    if (S.fail_all || S.fail_next > 0) {
        if (S.fail_next > 0)
            S.fail_next--;
        return SL_EUNAVAIL;
    }
    a->acked = 1;
    S.acked++;
    S.acked_requests += a->requests;
    S.acked_input += a->input;
    S.acked_cost += a->cost;
    return 0;
}

static int setup(void **state)
{
    memset(&S, 0, sizeof(S));
    fake_now = 1000000;
    dp_usage_set_clock(fake_clock);
    assert_int_equal(dp_usage_init(2), 0);
    assert_int_equal(dp_usage_reporter_start("node-1", "boot-a", NULL), 0);
    dp_usage_set_sender(stub_send, NULL);
    return 0;
}

static int teardown(void **state)
{
    dp_usage_shutdown();
    dp_usage_set_clock(NULL);
    if (S.last != NULL)
        sluice__sync__v1__usage_report__free_unpacked(S.last, NULL);
    S.last = NULL;
    return 0;
}

static void rec(int worker, const char *key, const char *provider, const char *model, int64_t t, int64_t in,
                int64_t out, int64_t cost, int error)
{
    dp_usage_rec_t r = {key, "tenant", provider, model, t, in, in / 2, out, cost, error};
    dp_usage_record(worker, &r);
}

static const Sluice__Sync__V1__UsageEntry *find_entry(const Sluice__Sync__V1__UsageReport *r, const char *key,
                                                      const char *model, int64_t minute)
{
    for (size_t i = 0; i < r->n_entries; i++) {
        const Sluice__Sync__V1__UsageEntry *e = r->entries[i];
        if (strcmp(e->key_id, key) == 0 && strcmp(e->model, model) == 0 && e->minute_unix == minute)
            return e;
    }
    return NULL;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_aggregation(void **state)
{
    /* minute 1700000040 covers 1700000040..1700000099 */
    rec(0, "vk_a", "openai", "gpt-4o", 1700000040, 10, 5, 100, 0);
    rec(0, "vk_a", "openai", "gpt-4o", 1700000099, 20, 6, 200, 1);
    rec(0, "vk_a", "openai", "gpt-4o", 1700000100, 1, 1, 1, 0); /* next minute */
    rec(0, "vk_a", "openai", "gpt-4o-mini", 1700000050, 3, 3, 3, 0);
    rec(0, "vk_b", "openai", "gpt-4o", 1700000050, 4, 4, 4, 0);
    rec(1, "vk_a", "openai", "gpt-4o", 1700000041, 30, 7, 300, 0); /* other worker, same entry */
    dp_usage_flush_worker(0);
    dp_usage_flush_worker(1);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 1);
    assert_int_equal(dp_usage_send_due(10), 1);
    assert_int_equal(dp_usage_pending_reports(), 0);

    const Sluice__Sync__V1__UsageReport *r = S.last;
    assert_non_null(r);
    assert_string_equal(r->node_id, "node-1");
    assert_string_equal(r->boot_id, "boot-a");
    assert_int_equal(r->seq, 1);
    assert_int_equal(r->n_entries, 4);
    const Sluice__Sync__V1__UsageEntry *e = find_entry(r, "vk_a", "gpt-4o", 1700000040);
    assert_non_null(e);
    assert_string_equal(e->provider, "openai");
    assert_string_equal(e->tenant_id, "tenant");
    assert_int_equal(e->requests, 3);
    assert_int_equal(e->errors, 1);
    assert_int_equal(e->input_tokens, 60);
    assert_int_equal(e->cached_input_tokens, 5 + 10 + 15);
    assert_int_equal(e->output_tokens, 18);
    assert_int_equal(e->cost_nano, 600);
    e = find_entry(r, "vk_a", "gpt-4o", 1700000100);
    assert_non_null(e);
    assert_int_equal(e->requests, 1);
    assert_non_null(find_entry(r, "vk_a", "gpt-4o-mini", 1700000040));
    assert_non_null(find_entry(r, "vk_b", "gpt-4o", 1700000040));
}

static void test_handoff_at_1000_requests(void **state)
{
    for (int i = 0; i < 999; i++)
        rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_tick(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 0); /* still in the worker */
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_tick(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 1);
    assert_int_equal(dp_usage_send_due(10), 1);
    assert_int_equal(S.attempts[0].requests, 1000);
    /* the counter restarted */
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_tick(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 0);
}

static void test_handoff_after_1s(void **state)
{
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    fake_now += 999;
    dp_usage_tick(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 0);
    fake_now += 1;
    dp_usage_tick(0);
    dp_usage_tick(1); /* nothing recorded there: nothing to hand off */
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 1);
    /* after an idle period the next request goes at the next tick */
    fake_now += 5000;
    rec(1, "vk_b", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_tick(1);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 2);
}

static void test_seal_interval_and_seq(void **state)
{
    /* collected usage is sealed at most every 500 ms unless forced */
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(0);
    assert_int_equal(dp_usage_pending_reports(), 0);
    fake_now += 500;
    dp_usage_collect(0);
    assert_int_equal(dp_usage_pending_reports(), 1);
    for (int i = 0; i < 3; i++) {
        rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
        dp_usage_flush_worker(0);
        fake_now += 500;
        dp_usage_collect(0);
    }
    assert_int_equal(dp_usage_pending_reports(), 4);
    assert_int_equal(dp_usage_send_due(2), 2);
    assert_int_equal(dp_usage_send_due(10), 2);
    assert_int_equal(S.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(S.attempts[i].seq, i + 1);
        assert_int_equal(S.attempts[i].requests, 1);
    }
    /* nothing to send: no call */
    dp_usage_collect(1);
    assert_int_equal(dp_usage_send_due(10), 0);
    assert_int_equal(S.n, 4);
}

static void test_retry_keeps_seq(void **state)
{
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 7, 1, 70, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(1);
    S.fail_next = 3;
    assert_int_equal(dp_usage_send_due(10), 0);
    assert_int_equal(S.n, 1);
    assert_int_equal(dp_usage_send_due(10), 0); /* backoff: not due yet */
    assert_int_equal(S.n, 1);
    /* more usage arrives meanwhile: it goes into a new report */
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 100, 1, 1000, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_pending_reports(), 2);
    for (int i = 0; i < 10 && S.acked == 0; i++) {
        fake_now += 10000;
        dp_usage_send_due(1);
    }
    assert_int_equal(S.n, 4);
    for (size_t i = 0; i < S.n; i++) {
        assert_int_equal(S.attempts[i].seq, 1);
        assert_int_equal(S.attempts[i].input, 7); /* content unchanged */
    }
    assert_int_equal(dp_usage_send_due(10), 1);
    assert_int_equal(S.attempts[4].seq, 2);
    assert_int_equal(S.attempts[4].input, 100);
    assert_int_equal(dp_usage_pending_reports(), 0);
}

static void test_backoff_grows(void **state)
{
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(1);
    S.fail_all = 1;
    /* count attempts over 60 s of fake time, stepping 50 ms */
    for (int i = 0; i < 1200; i++) {
        dp_usage_send_due(10);
        fake_now += 50;
    }
    /* 250, 500, 1000, 2000, 4000, then 5000 ms (+-20%): about 16 attempts */
    assert_true(S.n >= 12 && S.n <= 22);
    S.fail_all = 0;
    fake_now += 6000;
    assert_int_equal(dp_usage_send_due(10), 1);
}

static void test_nothing_lost(void **state)
{
    int64_t want_requests = 0, want_input = 0, want_cost = 0;
    S.fail_all = 1;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 5; i++) {
            int w = i % 2;
            char key[16];
            snprintf(key, sizeof(key), "vk_%d", (round + i) % 7);
            rec(w, key, "openai", i % 2 ? "gpt-4o" : "gpt-4o-mini", 1700000000 + round * 13, i + 1, 2, 10 * i + 1, 0);
            want_requests++;
            want_input += i + 1;
            want_cost += 10 * i + 1;
        }
        fake_now += 300;
        dp_usage_tick(0);
        dp_usage_tick(1);
        dp_usage_collect(0);
        dp_usage_send_due(10);
    }
    assert_int_equal(S.acked, 0);
    assert_true(dp_usage_pending_reports() > 20);
    S.fail_all = 0;
    for (int i = 0; i < 400 && dp_usage_pending_reports() > 0; i++) {
        fake_now += 1000;
        dp_usage_flush_worker(0);
        dp_usage_flush_worker(1);
        dp_usage_collect(1);
        dp_usage_send_due(1000);
    }
    assert_int_equal(dp_usage_pending_reports(), 0);
    assert_int_equal(S.acked_requests, want_requests);
    assert_int_equal(S.acked_input, want_input);
    assert_int_equal(S.acked_cost, want_cost);
    /* acked sequence numbers are 1..n, each once */
    int64_t next = 1;
    for (size_t i = 0; i + 1 < S.n && i + 1 < MAX_SENT; i++)
        if (S.attempts[i].acked)
            assert_int_equal(S.attempts[i].seq, next++);
}

static void test_queue_cap_merges(void **state)
{
    /* past 10000 queued reports, new usage joins the newest unsent one */
    S.fail_all = 1;
    int64_t want = 0;
    for (int i = 0; i < 10050; i++) {
        rec(0, "vk_a", "openai", "gpt-4o", 1700000000 + (i % 600) * 60, 1, 1, 1, 0);
        want++;
        dp_usage_flush_worker(0);
        dp_usage_collect(1);
    }
    assert_int_equal(dp_usage_pending_reports(), 10000);
    S.fail_all = 0;
    for (int i = 0; i < 100 && dp_usage_pending_reports() > 0; i++) {
        fake_now += 10000;
        dp_usage_send_due(100000);
    }
    assert_int_equal(dp_usage_pending_reports(), 0);
    assert_int_equal(S.acked_requests, want);
    assert_int_equal(S.acked, 10000);
}

static void test_drain_without_spool(void **state)
{
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_flush_worker(0);
    dp_usage_set_clock(NULL); /* drain sleeps on the real clock */
    assert_int_equal(dp_usage_drain(1000), 0);
    assert_int_equal(S.acked_requests, 1);
    rec(1, "vk_a", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_flush_worker(1);
    S.fail_all = 1;
    assert_int_equal(dp_usage_drain(300), 1); /* lost: no spool directory */
    assert_true(S.n >= 2);
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_spool(void **state)
{
    char dir[] = "/tmp/usage_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s/old-9.pb.tmp", dir);
    FILE *f = fopen(tmp, "w");
    fputs("partial", f);
    fclose(f);
    snprintf(tmp, sizeof(tmp), "%s/junk-1.pb", dir);
    f = fopen(tmp, "w");
    fputs("\xff\xff\xff", f);
    fclose(f);

    /* a process that could not deliver: first report fails, drain spools */
    dp_usage_shutdown();
    assert_int_equal(dp_usage_init(1), 0);
    assert_int_equal(dp_usage_reporter_start("node-1", "boot-a", dir), 0);
    assert_int_equal(count_files(dir, ".pb.tmp"), 0); /* leftovers removed */
    dp_usage_set_sender(stub_send, NULL);
    S.fail_all = 1;
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 5, 1, 50, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(1);
    dp_usage_send_due(10); /* fails: spooled before the first send */
    snprintf(tmp, sizeof(tmp), "%s/boot-a-1.pb", dir);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    rec(0, "vk_a", "openai", "gpt-4o", 1700000000, 6, 1, 60, 0);
    rec(0, "vk_b", "openai", "gpt-4o", 1700000000, 7, 1, 70, 0);
    dp_usage_flush_worker(0);
    dp_usage_set_clock(NULL);
    assert_int_equal(dp_usage_drain(200), 0);     /* nothing lost: spooled */
    assert_int_equal(count_files(dir, ".pb"), 3); /* boot-a-1, boot-a-2, junk */
    dp_usage_shutdown();

    /* the next process sends them with their original identity */
    if (S.last != NULL)
        sluice__sync__v1__usage_report__free_unpacked(S.last, NULL);
    memset(&S, 0, sizeof(S));
    dp_usage_set_clock(fake_clock);
    assert_int_equal(dp_usage_init(1), 0);
    assert_int_equal(dp_usage_reporter_start("node-1", "boot-b", dir), 0);
    dp_usage_set_sender(stub_send, NULL);
    assert_int_equal(dp_usage_pending_reports(), 2);
    rec(0, "vk_c", "openai", "gpt-4o", 1700000000, 1, 1, 1, 0);
    dp_usage_flush_worker(0);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_send_due(10), 3);
    assert_string_equal(S.attempts[0].boot, "boot-a");
    assert_int_equal(S.attempts[0].seq, 1);
    assert_int_equal(S.attempts[0].input, 5);
    assert_string_equal(S.attempts[1].boot, "boot-a");
    assert_int_equal(S.attempts[1].seq, 2);
    assert_int_equal(S.attempts[1].input, 13);
    assert_string_equal(S.attempts[2].boot, "boot-b");
    assert_int_equal(S.attempts[2].seq, 1);
    assert_int_equal(count_files(dir, ".pb"), 1); /* only the unreadable one */
    unlink(tmp);
    snprintf(tmp, sizeof(tmp), "%s/junk-1.pb", dir);
    unlink(tmp);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_aggregation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_at_1000_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_after_1s, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_interval_and_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_keeps_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_cap_merges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_without_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
