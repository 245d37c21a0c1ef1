/* journal_test.c - the crash-safe usage journal (dataplane/dp_journal.c) and
 * its use by the usage reporter (dataplane/dp_usage.c). A "crash" is
 * closing the journal without removing its files: its records are in a
 * shared mapping, so the files hold what a killed process leaves behind. */
#include <dirent.h>
#include <fcntl.h>
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

#include "dp_journal.h"
#include "dp_usage.h"
#include "sl_err.h"

/* ---- helpers ---------------------------------------------------------- */

static char g_dir[64];

static int setup(void **state)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/journal_test_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    DIR *d = opendir(g_dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", g_dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static int count_files(const char *suffix)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *de;
    size_t sl = strlen(suffix);
    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void touch(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
}

/* What a replay callback saw. */
typedef struct seen {
    int calls;
    int fail;
    char node[64], boot[64];
    int64_t next_seq;
    size_t n;
    int64_t requests, errors, input, cached, output, cost;
    int64_t first_input; /* input tokens of the first record (records carry their index there) */
    int64_t last_input;
} seen_t;

static int capture(const dp_journal_lost_t *lost, void *ctx)
{
    seen_t *s = ctx;
    s->calls++;
    snprintf(s->node, sizeof(s->node), "%s", lost->node_id);
    snprintf(s->boot, sizeof(s->boot), "%s", lost->boot_id);
    s->next_seq = lost->next_seq;
    s->n = lost->n;
    s->requests = s->errors = s->input = s->cached = s->output = s->cost = 0;
    for (size_t i = 0; i < lost->n; i++) {
        const dp_usage_rec_t *r = &lost->recs[i];
        s->requests++;
        s->errors += r->error;
        s->input += r->input_tokens;
        s->cached += r->cached_input_tokens;
        s->output += r->output_tokens;
        s->cost += r->cost_nano;
        assert_string_equal(r->tenant_id, "acme");
        assert_string_equal(r->provider, "openai");
        assert_int_equal(r->unix_sec % 60, 0);
    }
    s->first_input = lost->n > 0 ? lost->recs[0].input_tokens : -1;
    s->last_input = lost->n > 0 ? lost->recs[lost->n - 1].input_tokens : -1;
    return s->fail ? SL_EIO : 0;
}

/* Appends requests numbered from..to (input tokens = the number). */
static uint64_t append_n(dp_journal_t *j, int w, const char *key, int from, int to)
{
    dp_jtuple_t *t = dp_journal_tuple(j, w, key, "acme", "openai", "gpt-4o");
    assert_non_null(t);
    uint64_t last = 0;
    for (int i = from; i <= to; i++) {
        dp_usage_rec_t r = {key, "acme", "openai", "gpt-4o", 1700000040, i, 1, 10, 1000 * i, i % 7 == 0};
        last = dp_journal_append(j, w, t, 1700000040, &r);
    }
    return last;
}

static int64_t sum_range(int from, int to)
{
    return (int64_t)(from + to) * (to - from + 1) / 2;
}

/* ---- dp_journal ------------------------------------------------------- */

static void test_append_and_recover(void **state)
{
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "node-7", "bootA", 2, &j), 0);
    assert_int_equal(append_n(j, 0, "vk_1", 1, 100), 100);
    assert_int_equal(append_n(j, 1, "vk_2", 1, 50), 50);
    /* a long tuple spans several slots */
    char longkey[700];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(append_n(j, 0, longkey, 101, 110), 110);
    /* a live process's journal is not touched */
    seen_t s = {0};
    assert_int_equal(dp_journal_recover(g_dir, "other", capture, &s), 0);
    assert_int_equal(s.calls, 0);
    dp_journal_close(j, 0); /* crash */

    assert_int_equal(dp_journal_recover(g_dir, "bootB", capture, &s), 1);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.node, "node-7");
    assert_string_equal(s.boot, "bootA");
    assert_int_equal(s.next_seq, 1);
    assert_int_equal(s.requests, 160);
    assert_int_equal(s.input, sum_range(1, 110) + sum_range(1, 50));
    assert_int_equal(s.output, 1600);
    assert_int_equal(s.cost, 1000 * (sum_range(1, 110) + sum_range(1, 50)));
    assert_int_equal(count_files(".idx"), 0);
    assert_int_equal(count_files(".jnl"), 0);
}

static void test_covered_records_not_replayed(void **state)
{
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "n", "bootA", 2, &j), 0);
    append_n(j, 0, "vk", 1, 10);
    append_n(j, 1, "vk", 1, 4);
    uint64_t cov1[2] = {5, 4};
    dp_journal_intent(j, 1, cov1); /* report 1 frozen: its spool file exists */
    touch("bootA-1.pb");
    uint64_t cov2[2] = {8, 4};
    dp_journal_intent(j, 2, cov2); /* report 2: crash before its spool file */
    dp_journal_close(j, 0);

    seen_t s = {0};
    assert_int_equal(dp_journal_recover(g_dir, "bootB", capture, &s), 1);
    assert_int_equal(s.requests, 5); /* 6..10 of worker 0: report 2 never existed */
    assert_int_equal(s.input, sum_range(6, 10));
    assert_int_equal(s.next_seq, 3); /* never a number an intent used */
}

static void test_frozen_by_ack_or_unspooled(void **state)
{
    /* report 2 acknowledged and its file removed: covered */
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "n", "bootA", 1, &j), 0);
    append_n(j, 0, "vk", 1, 10);
    uint64_t c1 = 3, c2 = 8;
    dp_journal_intent(j, 1, &c1);
    dp_journal_intent(j, 2, &c2);
    dp_journal_acked(j, 2);
    dp_journal_close(j, 0);
    seen_t s = {0};
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &s), 1);
    assert_int_equal(s.requests, 2);
    assert_int_equal(s.first_input, 9);

    /* report 2 sent without a spool file: counted as frozen (never twice) */
    assert_int_equal(dp_journal_open(g_dir, "n", "bootC", 1, &j), 0);
    append_n(j, 0, "vk", 1, 10);
    dp_journal_intent(j, 1, &c1);
    dp_journal_intent(j, 2, &c2);
    dp_journal_unspooled(j, 2);
    dp_journal_close(j, 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &s), 1);
    assert_int_equal(s.requests, 2);
    assert_int_equal(s.next_seq, 3);

    /* a torn intent (checksum) is not trusted: the one before it is */
    assert_int_equal(dp_journal_open(g_dir, "n", "bootD", 1, &j), 0);
    append_n(j, 0, "vk", 1, 10);
    dp_journal_intent(j, 1, &c1);
    touch("bootD-1.pb");
    dp_journal_intent(j, 2, &c2); /* torn below: its spool file was never written */
    dp_journal_close(j, 0);
    char p[512];
    snprintf(p, sizeof(p), "%s/journal-bootD.idx", g_dir);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    /* slot 2 starts at 576 + 2 * 64; its cov[0] is at +16 */
    uint64_t bad = 9;
    assert_int_equal(pwrite(fd, &bad, sizeof(bad), 576 + 2 * 64 + 16), (ssize_t)sizeof(bad));
    close(fd);
    memset(&s, 0, sizeof(s));
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &s), 1);
    assert_int_equal(s.requests, 7); /* above report 1's coverage */
    assert_int_equal(s.next_seq, 2);
}

static void test_torn_record(void **state)
{
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "n", "bootA", 1, &j), 0);
    append_n(j, 0, "vk", 1, 20);
    dp_journal_close(j, 0);
    /* slot 0: segment header, slot 1: the tuple, slots 2..21: requests 1..20.
     * Tear request 15 (slot 16) as a kill in the middle of its write would */
    char p[512];
    snprintf(p, sizeof(p), "%s/journal-bootA-0.jnl", g_dir);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    int64_t junk = 12345;
    assert_int_equal(pwrite(fd, &junk, sizeof(junk), 16 * 64 + 40), (ssize_t)sizeof(junk));
    close(fd);
    seen_t s = {0};
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &s), 1);
    assert_int_equal(s.requests, 14);
    assert_int_equal(s.input, sum_range(1, 14));
}

static void test_ring_full(void **state)
{
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "n", "bootA", 1, &j), 0);
    dp_jtuple_t *t = dp_journal_tuple(j, 0, "vk", "acme", "openai", "gpt-4o");
    dp_usage_rec_t r = {"vk", "acme", "openai", "gpt-4o", 1700000040, 1, 0, 1, 1, 0};
    /* each segment holds its header, the tuple and 4094 requests */
    const uint64_t per_seg = DP_JOURNAL_SEG_RECS - 2;
    uint64_t seq = 0, n = 0;
    while ((seq = dp_journal_append(j, 0, t, 1700000040, &r)) != 0) {
        n++;
        assert_int_equal(seq, n);
        if (n == per_seg * (DP_JOURNAL_SEGS - 2))
            assert_int_equal(dp_journal_pressure(j, 0), 0);
        if (n == per_seg * (DP_JOURNAL_SEGS - 1) + 1)
            assert_int_equal(dp_journal_pressure(j, 0), 1); /* entered the last free segment */
    }
    assert_int_equal(n, per_seg * DP_JOURNAL_SEGS);
    assert_int_equal(dp_journal_skipped(j), 1);
    assert_int_equal(dp_journal_append(j, 0, t, 1700000040, &r), 0); /* never overwrites */
    assert_int_equal(dp_journal_skipped(j), 2);

    /* a frozen report covers the first 1.5 segments: one segment is free */
    uint64_t cov = per_seg + per_seg / 2;
    dp_journal_intent(j, 1, &cov);
    touch("bootA-1.pb");
    dp_journal_reclaim(j, &cov);
    for (uint64_t i = 0; i < per_seg; i++)
        assert_int_equal(dp_journal_append(j, 0, t, 1700000040, &r), n + 1 + i);
    n += per_seg;
    assert_int_equal(dp_journal_append(j, 0, t, 1700000040, &r), 0);
    assert_int_equal(dp_journal_pressure(j, 0), 1);
    dp_journal_close(j, 0);

    /* recovery after the wrap: everything above the frozen report, once */
    seen_t s = {0};
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &s), 1);
    assert_int_equal(s.requests, (int64_t)(n - cov));
    assert_int_equal(s.next_seq, 2);
}

static void test_recovery_retried_after_failure(void **state)
{
    dp_journal_t *j = NULL;
    assert_int_equal(dp_journal_open(g_dir, "n", "bootA", 2, &j), 0);
    append_n(j, 0, "vk", 1, 30);
    append_n(j, 1, "vk", 1, 30);
    uint64_t c[2] = {10, 20};
    dp_journal_intent(j, 1, c);
    touch("bootA-1.pb");
    dp_journal_close(j, 0);

    seen_t a = {.fail = 1};
    assert_int_equal(dp_journal_recover(g_dir, "x", capture, &a), 0); /* kept for the next start */
    assert_int_equal(count_files(".jnl"), 2);
    seen_t b = {0};
    assert_int_equal(dp_journal_recover(g_dir, "y", capture, &b), 1);
    assert_int_equal(a.next_seq, b.next_seq);
    assert_int_equal(a.requests, b.requests);
    assert_int_equal(a.input, b.input);
    assert_int_equal(a.cost, b.cost);
    assert_int_equal(b.requests, 30);
    seen_t c2 = {0};
    assert_int_equal(dp_journal_recover(g_dir, "z", capture, &c2), 0); /* nothing left */
    assert_int_equal(c2.calls, 0);
}

/* ---- through dp_usage: a control plane that dedupes like the real one -- */

#define MAX_APPLIED 1024

static struct {
    char applied[MAX_APPLIED][80]; /* "boot/seq" applied */
    size_t napplied;
    int64_t requests, errors, input, output, cost;
    int fail;
} CP;

static int cp_send(const Sluice__Sync__V1__UsageReport *r, void *ctx)
{
    if (CP.fail)
        return SL_EUNAVAIL;
    char id[80];
    snprintf(id, sizeof(id), "%s/%lld", r->boot_id, (long long)r->seq);
    for (size_t i = 0; i < CP.napplied; i++)
        if (strcmp(CP.applied[i], id) == 0)
            return 0; /* duplicate: acknowledged, not applied again */
    assert_true(CP.napplied < MAX_APPLIED);
    snprintf(CP.applied[CP.napplied++], sizeof(CP.applied[0]), "%s", id);
    for (size_t i = 0; i < r->n_entries; i++) {
        CP.requests += r->entries[i]->requests;
        CP.errors += r->entries[i]->errors;
        CP.input += r->entries[i]->input_tokens;
        CP.output += r->entries[i]->output_tokens;
        CP.cost += r->entries[i]->cost_nano;
    }
    return 0;
}

static int64_t g_recorded, g_recorded_input;

static void record(int w, int i)
{
    char key[16];
    snprintf(key, sizeof(key), "vk_%d", i % 5);
    dp_usage_rec_t r = {key, "acme", "openai", i % 2 ? "gpt-4o" : "gpt-4o-mini", 1700000000 + i, i, 0, 2, 100 + i, 0};
    dp_usage_record(w, &r);
    g_recorded++;
    g_recorded_input += i;
}

static void start(const char *boot, const char *dir)
{
    assert_int_equal(dp_usage_init(2), 0);
    assert_int_equal(dp_usage_reporter_start("node-1", boot, dir), 0);
    dp_usage_set_sender(cp_send, NULL);
}

static void send_all(void)
{
    for (int k = 0; k < 50 && dp_usage_pending_reports() > 0; k++) {
        dp_usage_set_clock(NULL);
        dp_usage_send_due(1000);
        if (dp_usage_pending_reports() > 0)
            usleep(300 * 1000); /* retry backoff */
    }
    assert_int_equal(dp_usage_pending_reports(), 0);
}

static void test_kill_loses_nothing(void **state)
{
    memset(&CP, 0, sizeof(CP));
    g_recorded = g_recorded_input = 0;
    /* boot A: some reports acknowledged, some frozen and spooled while the
     * control plane is down, and some usage recorded but never handed off */
    start("bootA", g_dir);
    for (int i = 0; i < 300; i++)
        record(i % 2, i);
    dp_usage_flush_worker(0);
    dp_usage_flush_worker(1);
    dp_usage_collect(1);
    assert_int_equal(dp_usage_send_due(10), 1);
    CP.fail = 1;
    for (int i = 300; i < 500; i++)
        record(i % 2, i);
    dp_usage_flush_worker(0);
    dp_usage_flush_worker(1);
    dp_usage_collect(1);
    dp_usage_send_due(10); /* frozen and spooled, not acknowledged */
    for (int i = 500; i < 800; i++)
        record(i % 2, i); /* only in memory (and the journal) */
    dp_usage_flush_worker(0);
    dp_usage_collect(1); /* worker 0's part sealed, not frozen */
    dp_usage_shutdown(); /* kill -9 */
    CP.fail = 0;

    /* what a crashed recovery would have left: copy the directory, recover
     * in the copy, keep its report files but not its commit */
    char copy[128];
    snprintf(copy, sizeof(copy), "%s/copy", g_dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp %s/*.pb %s/*.idx %s/*.jnl %s/", copy, g_dir, g_dir, g_dir, copy);
    assert_int_equal(system(cmd), 0);

    start("bootB", g_dir);
    assert_true(dp_usage_pending_reports() >= 2);
    send_all();
    assert_int_equal(CP.requests, g_recorded);
    assert_int_equal(CP.input, g_recorded_input);
    dp_usage_shutdown();
    assert_int_equal(count_files(".jnl"), 2); /* bootB's own, crashed too */

    /* the same recovery again (as after a crash before its commit): every
     * report it writes has a name and usage already applied */
    snprintf(cmd, sizeof(cmd), "cp %s/bootA-*.pb %s/ 2>/dev/null; rm -f %s/*.jnl %s/*.idx && cp %s/* %s/ && rm -rf %s",
             g_dir, copy, g_dir, g_dir, copy, g_dir, copy);
    assert_int_equal(system(cmd), 0);
    start("bootC", g_dir);
    send_all();
    assert_int_equal(CP.requests, g_recorded);
    assert_int_equal(CP.input, g_recorded_input);
    dp_usage_set_clock(NULL);
    assert_int_equal(dp_usage_drain(500), 0);
    dp_usage_shutdown();
    assert_int_equal(count_files(".jnl"), 0); /* clean stop: journal removed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_covered_records_not_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frozen_by_ack_or_unspooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_retried_after_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_loses_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
