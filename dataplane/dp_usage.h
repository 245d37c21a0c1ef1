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

#include <stdint.h>

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

/* Reports not yet acknowledged (for /metrics). */
int64_t dp_usage_pending_reports(void);

#endif
