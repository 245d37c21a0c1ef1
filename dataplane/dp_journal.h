/*
 * dp_journal.h - a crash-safe journal of recorded usage (see dp_journal.c
 * for the format and the recovery rules).
 *
 * With a spool directory, every request a worker records is also appended
 * to that worker's memory-mapped journal file: a plain memory write, no
 * system call. A killed process leaves its journal in the page cache; the
 * next process on the same spool directory turns whatever no frozen report
 * covered into reports of the dead process, so `kill -9` loses only the
 * requests in flight. A machine crash or power loss may lose the journal
 * (nothing is fsynced on the hot path).
 *
 * Threads: dp_journal_tuple/append/pressure from worker w only (each worker
 * its own w); dp_journal_intent/unspooled/reclaim/acked from the reporter
 * only; open/close/recover when no worker runs.
 */
#ifndef DP_JOURNAL_H
#define DP_JOURNAL_H

#include <stdint.h>

#include "dp_usage.h"

typedef struct dp_journal dp_journal_t;
typedef struct dp_jtuple dp_jtuple_t; /* an interned (key, tenant, provider, model) */

/* Records per segment and segments per worker journal. */
#define DP_JOURNAL_SEG_RECS 4096
#define DP_JOURNAL_SEGS 8

/* Creates this process's journal in dir: an index file (held locked while
 * the process lives) and one file per worker. Returns 0 or SL_E*; *out is
 * owned by the caller, free with dp_journal_close. */
int dp_journal_open(const char *dir, const char *node_id, const char *boot_id, int nworkers, dp_journal_t **out);
/* Unmaps and closes; remove_files also deletes the files (only when every
 * journaled record is covered by a spooled or acknowledged report). */
void dp_journal_close(dp_journal_t *j, int remove_files);

/* Worker w: the interned tuple for these strings (owned by the journal;
 * valid until dp_journal_close), NULL when out of memory. */
dp_jtuple_t *dp_journal_tuple(dp_journal_t *j, int w, const char *key_id, const char *tenant_id, const char *provider,
                              const char *model);
/* Worker w: appends one request. Returns its sequence number in w's journal
 * (1, 2, ...), or 0 when it could not be journaled (the journal is full of
 * records no frozen report covers yet: the request is still reported, it
 * just is not crash-safe; counted in dp_journal_skipped). */
uint64_t dp_journal_append(dp_journal_t *j, int w, dp_jtuple_t *t, int64_t minute, const dp_usage_rec_t *r);
/* Worker w: 1 while w's journal is close to full: hand usage off now, the
 * reporter must freeze reports to free journal space. */
int dp_journal_pressure(dp_journal_t *j, int w);
/* Requests not journaled because a journal was full (any thread). */
uint64_t dp_journal_skipped(dp_journal_t *j);

/* Reporter: report seq is being frozen and covers, for every worker w,
 * the records with sequence <= cov[w]. Call before writing its spool file;
 * call dp_journal_unspooled when that write failed (before the first send). */
void dp_journal_intent(dp_journal_t *j, int64_t seq, const uint64_t *cov);
void dp_journal_unspooled(dp_journal_t *j, int64_t seq);
/* Reporter: records up to cov[w] are covered by frozen reports; their
 * journal space may be reused. */
void dp_journal_reclaim(dp_journal_t *j, const uint64_t *cov);
/* Reporter: report seq was acknowledged (before its spool file goes). */
void dp_journal_acked(dp_journal_t *j, int64_t seq);

/* What recovery found of one dead process: the requests no frozen report
 * of it covers. Strings point into recovery's memory, valid during the
 * call. The caller turns them into reports (node_id, boot_id, seq) with
 * seq = next_seq, next_seq + 1, ... and writes them to the spool directory
 * (overwriting files of the same names), returning 0 once they are all
 * written, else a negative SL_E* (the journal is then kept). The output
 * must depend only on the input, so that running it twice (a crash during
 * recovery) writes the same reports under the same names. */
typedef struct dp_journal_lost {
    const char *node_id;
    const char *boot_id;
    int64_t next_seq;
    const dp_usage_rec_t *recs;
    size_t n;
} dp_journal_lost_t;
typedef int (*dp_journal_replay_fn)(const dp_journal_lost_t *lost, void *ctx);

/* Recovers the journals in dir of processes that are gone (not own_boot,
 * index not locked), calling replay once per such process, then deletes
 * their journals. Returns the number of processes recovered. */
int dp_journal_recover(const char *dir, const char *own_boot, dp_journal_replay_fn replay, void *ctx);

#endif
