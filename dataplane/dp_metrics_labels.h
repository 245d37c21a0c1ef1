/*
 * dp_metrics_labels.h - the data plane's metrics labelled by provider and
 * model (and, when enabled, tenant):
 *
 *   sluice_tokens_total{provider,model,direction[,tenant]}      counter
 *   sluice_cost_usd_total{provider,model[,tenant]}              counter
 *   sluice_time_to_first_token_seconds{provider,model}          histogram
 *
 * Cardinality is bounded by construction. Label values come from the
 * snapshot: provider is a configured provider, model is the catalog entry
 * the request was priced with; a served model that is not in the catalog
 * (clients may name any model) is counted as model "_other". There are no
 * per-key labels. The tenant label is off by default (a million keys in a
 * thousand tenants must not become a thousand times more series); with it
 * on, each worker keeps at most DP_MLABELS_TENANT_SERIES_MAX series and
 * folds the rest into tenant "_other".
 *
 * Money stays integer: costs are summed in nano-USD and printed as decimal
 * USD (exactly, nine fractional digits) at scrape time.
 *
 * Threads: like dp_metrics.h. Each worker owns its table and is its only
 * writer (relaxed stores, no locked instructions); the scraper sums the
 * workers with relaxed loads. A series is published with a release store
 * once its label values are written, and never removed.
 */
#ifndef DP_METRICS_LABELS_H
#define DP_METRICS_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "sl_buf.h"

#define DP_MLABELS_SERIES_MAX 1024         /* per worker, without the tenant label */
#define DP_MLABELS_TENANT_SERIES_MAX 16384 /* per worker, with it */

/* Main thread, before dp_mlabels_init: adds the tenant label to tokens and
 * cost (--metrics-tenant-label). */
void dp_mlabels_set_tenant_label(int on);
int dp_mlabels_tenant_label(void);

/* Main thread, once, before the workers start (again: starts afresh, for
 * tests). 0 or SL_ENOMEM. */
int dp_mlabels_init(int nworkers);

/* One finished request that reached an upstream. Strings are borrowed for
 * the call (NUL-terminated); model is the catalog's name, NULL when the
 * served model is not in the catalog. ttft_ns: 0 when no content was
 * streamed (non-streamed answers and failures have no first token). */
typedef struct dp_mlabels_rec {
    const char *provider;
    const char *model;
    const char *tenant;
    int64_t input_tokens, cached_input_tokens, output_tokens;
    int64_t cost_nano;
    uint64_t ttft_ns;
} dp_mlabels_rec_t;

/* Worker thread `worker`: accounts one request. */
void dp_mlabels_record(int worker, const dp_mlabels_rec_t *r);

/* Scraper thread: appends the three families (HELP and TYPE always, even
 * before the first request). */
void dp_mlabels_render(sl_buf_t *out);

#endif
