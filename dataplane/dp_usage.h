/*
 * dp_usage.h - usage accounting on the data plane.
 *
 * Workers record each finished request into a table of their own, keyed by
 * (key, provider, model, minute): no locks, no sharing. The reporter (on the
 * sync thread) collects the tables every second, or sooner when a worker has
 * recorded 1000 requests since its last hand-off, merges them into one
 * UsageReport with the next sequence number, and sends it to the control
 * plane until acknowledged. A report keeps its (node_id, boot_id, seq) on
 * every retry, so the control plane applies it exactly once.
 */
#ifndef DP_USAGE_H
#define DP_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/sync/v1/sync.pb-c.h"

typedef struct dp_usage_rec {
    const char *key_id;
    const char *tenant_id;
    const char *provider;         /* the provider that served the request */
    const char *model;            /* the model that served it */
    int64_t unix_sec;             /* end of the request */
    int64_t input_tokens;
    int64_t cached_input_tokens;
    int64_t output_tokens;
    int64_t cost_nano;
    int error;                    /* 1 when the request failed */
} dp_usage_rec_t;

/* Once at start, before workers run. */
int dp_usage_init(int nworkers);

/* Worker thread: adds one request. Strings are copied (the snapshot that
 * owns them may go away). */
void dp_usage_record(int worker, const dp_usage_rec_t *r);
/* Worker thread, once per loop iteration: hands the table off when due. */
void dp_usage_tick(int worker);
/* Worker thread, when it stops: hands off whatever it has. */
void dp_usage_flush_worker(int worker);

/* Flush tickets, a grace period shared with quota leases: after ticket =
 * dp_usage_flush_request() (any thread), dp_usage_flush_passed(ticket) is
 * true once every worker has run dp_usage_tick (or stopped) since, having
 * handed off what it recorded before. So once it passes, (1) the next
 * dp_usage_collect takes every request recorded before the ticket, and (2)
 * no worker is still inside code it entered before the ticket (what it did
 * there, and what the requester published before, is visible both ways). */
uint64_t dp_usage_flush_request(void);
int dp_usage_flush_passed(uint64_t ticket);

/* Reports not yet acknowledged (for /metrics). */
int64_t dp_usage_pending_reports(void);

/* --- sync thread only (the reporter) ----------------------------------- */

/* Sends one report and waits for its acknowledgement. Returns 0 when the
 * control plane acknowledged report->seq (applied or duplicate), else a
 * negative SL_E* code; the report is then retried later, unchanged. */
typedef int (*dp_usage_send_fn)(const Sluice__Sync__V1__UsageReport *report, void *ctx);

/* Adds quota lease requests and lease states to a report when it is
 * frozen (right before its first send, or when spooled at stop). The
 * callback sets m->lease_requests / m->leases (and counts) to memory it
 * owns until its next call. sealed_ms: monotonic time the report was
 * sealed (usage collected before it is in this report or an earlier one);
 * final: the last report of a stopping process (list no leases, so the
 * control plane releases them all once it has applied the usage). */
typedef void (*dp_usage_lease_fn)(Sluice__Sync__V1__UsageReport *m, int64_t sealed_ms, int final, void *ctx);

/* Names this process in reports and loads reports spooled by earlier
 * processes (spool_dir may be NULL: no spooling). Strings are copied. With
 * a spool directory it first turns the usage journals of processes that
 * died (dp_journal.h) into spooled reports, then journals this process's
 * requests; call after dp_usage_init and before workers record. */
int dp_usage_reporter_start(const char *node_id, const char *boot_id, const char *spool_dir);
void dp_usage_set_sender(dp_usage_send_fn fn, void *ctx);
/* Takes every worker's handed-off tables and queues them as reports (a new
 * sequence number at most every 500 ms unless force). */
void dp_usage_collect(int force);
void dp_usage_set_lease_fill(dp_usage_lease_fn fn, void *ctx);
/* The next dp_usage_collect seals a report even if no usage was recorded
 * (unless a report not yet frozen is queued already). */
void dp_usage_report_soon(void);
/* Sends queued reports, oldest first, if the retry backoff allows: at most
 * max_sends, stopping at the first failure. Returns how many were
 * acknowledged. */
int dp_usage_send_due(int max_sends);
/* At stop: collects, then sends until every report is acknowledged or
 * timeout_ms passed; what is left is spooled (when a spool directory is
 * set). Returns the number of reports neither acknowledged nor spooled. */
int64_t dp_usage_drain(int timeout_ms);
/* Frees everything (after workers and the reporter stopped). */
void dp_usage_shutdown(void);
/* Tests: replaces the monotonic millisecond clock (NULL restores it). */
void dp_usage_set_clock(int64_t (*mono_ms)(void));

#endif
