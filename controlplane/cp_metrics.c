/*
 * cp_metrics.c - counters and their Prometheus text rendering.
 *
 * Every family is one row of the table `families` below, rendered in the
 * table's order with its HELP and TYPE lines; a row without help is one more
 * sample (another label set) of the family above it. Admin request counters
 * are kept in a small table keyed by (method, code) under a mutex; it holds
 * at most methods x codes rows.
 */
#include "cp_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t counters[CP_M__COUNT];

/* ---- histograms --------------------------------------------------------------------------- */

#define MAX_BOUNDS 14

/* Cumulative buckets in seconds, as Prometheus wants them; the sum in
 * microseconds so that it stays an integer atomic. */
typedef struct histogram {
    const double *bounds;
    size_t nbounds;
    _Atomic uint64_t counts[MAX_BOUNDS + 1]; /* the last one is +Inf */
    _Atomic uint64_t sum_us;
} histogram_t;

/* Report apply and alert evaluation latency. */
static const double report_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* Push latency: sub-millisecond when the data plane is idle and close, so
 * the buckets start lower than the report buckets. */
static const double push_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

#define NBOUNDS(a) (sizeof(a) / sizeof(a[0]))
_Static_assert(NBOUNDS(report_bounds) <= MAX_BOUNDS && NBOUNDS(push_bounds) <= MAX_BOUNDS, "too many buckets");

enum { H_REPORT, H_ALERT_EVAL, H_PUSH, H__COUNT };

static histogram_t histograms[H__COUNT] = {
    [H_REPORT] = {report_bounds, NBOUNDS(report_bounds)},
    [H_ALERT_EVAL] = {report_bounds, NBOUNDS(report_bounds)},
    [H_PUSH] = {push_bounds, NBOUNDS(push_bounds)},
};

/* A negative time (a clock step) counts as zero. */
static void observe(histogram_t *h, double seconds)
{
    size_t i = 0;
    if (seconds < 0)
        seconds = 0;
    while (i < h->nbounds && seconds > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

void cp_metrics_observe_report(double seconds)
{
    observe(&histograms[H_REPORT], seconds);
}

void cp_metrics_observe_alert_eval(double seconds)
{
    observe(&histograms[H_ALERT_EVAL], seconds);
}

void cp_metrics_observe_push(double seconds)
{
    observe(&histograms[H_PUSH], seconds);
}

static void render_histogram(sl_buf_t *out, const char *name, histogram_t *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->nbounds)
            sl_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
        else
            sl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    uint64_t us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    sl_buf_printf(out, "%s_sum %llu.%06llu\n%s_count %llu\n", name, (unsigned long long)(us / 1000000),
                  (unsigned long long)(us % 1000000), name, (unsigned long long)cum);
}

/* ---- gauges ------------------------------------------------------------------------------- */

/* The first three come from the cp_gauges_t passed to cp_metrics_render();
 * the others are kept here. */
enum { G_WATCHERS, G_CONFIG_VERSION, G_DB_UP, G_DB_SLOTS, G_DB_OPEN, G_DB_IN_USE, G_ALERT_LEADER, G__COUNT };

static _Atomic int64_t gauges[G__COUNT];

void cp_metrics_set_alert_leader(int leader)
{
    atomic_store_explicit(&gauges[G_ALERT_LEADER], leader != 0, memory_order_relaxed);
}

void cp_metrics_db_conns(int slots_delta, int open_delta, int in_use_delta)
{
    if (slots_delta != 0)
        atomic_fetch_add_explicit(&gauges[G_DB_SLOTS], slots_delta, memory_order_relaxed);
    if (open_delta != 0)
        atomic_fetch_add_explicit(&gauges[G_DB_OPEN], open_delta, memory_order_relaxed);
    if (in_use_delta != 0)
        atomic_fetch_add_explicit(&gauges[G_DB_IN_USE], in_use_delta, memory_order_relaxed);
}

/* ---- counters ------------------------------------------------------------------------------ */

struct admin_row {
    char method[48];
    int code;
    uint64_t count;
};

static pthread_mutex_t admin_mu = PTHREAD_MUTEX_INITIALIZER;
static struct admin_row admin_rows[256];
static size_t admin_nrows;

void cp_metrics_inc(cp_counter_t c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

uint64_t cp_metrics_get(cp_counter_t c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

void cp_metrics_admin_request(const char *method, int grpc_code)
{
    pthread_mutex_lock(&admin_mu);
    size_t i;
    for (i = 0; i < admin_nrows; i++)
        if (admin_rows[i].code == grpc_code && strcmp(admin_rows[i].method, method) == 0)
            break;
    if (i == admin_nrows && admin_nrows < sizeof(admin_rows) / sizeof(admin_rows[0])) {
        size_t n = strlen(method);
        if (n >= sizeof(admin_rows[i].method))
            n = sizeof(admin_rows[i].method) - 1;
        memcpy(admin_rows[i].method, method, n);
        admin_rows[i].method[n] = '\0';
        admin_rows[i].code = grpc_code;
        admin_nrows++;
    }
    if (i < admin_nrows)
        admin_rows[i].count++;
    pthread_mutex_unlock(&admin_mu);
}

const char *cp_grpc_code_name(int code)
{
    static const char *names[] = {
        "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED"};
    if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
        return "UNKNOWN";
    return names[code];
}

static void render_admin_requests(sl_buf_t *out, const char *name)
{
    pthread_mutex_lock(&admin_mu);
    for (size_t i = 0; i < admin_nrows; i++)
        sl_buf_printf(out, "%s{method=\"%s\",code=\"%s\"} %llu\n", name, admin_rows[i].method,
                      cp_grpc_code_name(admin_rows[i].code), (unsigned long long)admin_rows[i].count);
    pthread_mutex_unlock(&admin_mu);
}

/* ---- the families --------------------------------------------------------------------------- */

typedef enum {
    FROM_COUNTER,   /* counters[index] */
    FROM_GAUGE,     /* the gauge index (G_*) */
    FROM_HISTOGRAM, /* histograms[index] */
    FROM_ADMIN,     /* the admin request rows, labelled by method and code */
} source_t;

typedef struct family {
    const char *name;
    source_t source;
    int index;
    const char *help;   /* NULL: one more sample of the family above */
    const char *labels; /* of a counter or gauge sample, or NULL */
} family_t;

static const family_t families[] = {
    {"sluice_controlplane_connected_dataplanes", FROM_GAUGE, G_WATCHERS, "Open Watch streams from data planes."},
    {"sluice_controlplane_config_version", FROM_GAUGE, G_CONFIG_VERSION,
     "Latest configuration version seen by this replica."},
    {"sluice_controlplane_database_up", FROM_GAUGE, G_DB_UP,
     "Whether the last database check succeeded (1) or not (0)."},
    {"sluice_controlplane_snapshots_sent_total", FROM_COUNTER, CP_M_SNAPSHOTS_FULL,
     "Snapshot messages sent to data planes.", "kind=\"full\""},
    {"sluice_controlplane_snapshots_sent_total", FROM_COUNTER, CP_M_SNAPSHOTS_DELTA, NULL, "kind=\"delta\""},
    {"sluice_controlplane_reports_applied_total", FROM_COUNTER, CP_M_REPORTS_APPLIED,
     "Usage reports applied to the ledger."},
    {"sluice_controlplane_reports_duplicate_total", FROM_COUNTER, CP_M_REPORTS_DUPLICATE,
     "Usage reports acknowledged as duplicates of reports already applied."},
    {"sluice_controlplane_usage_entries_total", FROM_COUNTER, CP_M_USAGE_ENTRIES,
     "Usage entries applied to the ledger."},
    {"sluice_controlplane_db_errors_total", FROM_COUNTER, CP_M_DB_ERRORS,
     "Failed database statements and connections."},
    {"sluice_controlplane_ledger_rows_applied_total", FROM_COUNTER, CP_M_LEDGER_ROWS,
     "Ledger rows (usage per minute, key, provider and model) inserted or updated by reports."},
    {"sluice_controlplane_lease_grants_total", FROM_COUNTER, CP_M_LEASE_GRANTS,
     "Quota lease requests answered with a grant."},
    {"sluice_controlplane_lease_denials_total", FROM_COUNTER, CP_M_LEASE_DENIALS,
     "Quota lease requests granted less than they asked for (the quota is running out)."},
    {"sluice_controlplane_leases_reclaimed_total", FROM_COUNTER, CP_M_LEASES_RECLAIMED,
     "Quota leases nobody renewed whose outstanding grant was returned to its window."},
    {"sluice_controlplane_report_apply_duration_seconds", FROM_HISTOGRAM, H_REPORT,
     "Time to apply one usage report (ledger, quota windows, leases)."},
    {"sluice_controlplane_push_duration_seconds", FROM_HISTOGRAM, H_PUSH,
     "Time from learning of a configuration version (NOTIFY or local commit) to its delivery to a data plane "
     "(SEND_MESSAGE complete)."},
    {"sluice_controlplane_db_connections_max", FROM_GAUGE, G_DB_SLOTS,
     "Database connection slots (one per thread that talks to PostgreSQL)."},
    {"sluice_controlplane_db_connections_open", FROM_GAUGE, G_DB_OPEN, "Database connections currently established."},
    {"sluice_controlplane_db_connections_in_use", FROM_GAUGE, G_DB_IN_USE,
     "Database connections running a statement or inside a transaction."},
    {"sluice_controlplane_alert_leader", FROM_GAUGE, G_ALERT_LEADER,
     "Whether this replica evaluates and delivers alerts (1) or not (0)."},
    {"sluice_controlplane_alerts_fired_total", FROM_COUNTER, CP_M_ALERTS_FIRED,
     "Alert fire events recorded in the outbox."},
    {"sluice_controlplane_alerts_resolved_total", FROM_COUNTER, CP_M_ALERTS_RESOLVED,
     "Alert resolve events recorded in the outbox."},
    {"sluice_controlplane_alert_deliveries_total", FROM_COUNTER, CP_M_ALERT_DELIVERIES,
     "Alert deliveries a receiver accepted."},
    {"sluice_controlplane_alert_deliveries_failed_total", FROM_COUNTER, CP_M_ALERT_DELIVERIES_FAILED,
     "Alert delivery attempts that failed (retried later or given up)."},
    {"sluice_controlplane_alert_evaluation_duration_seconds", FROM_HISTOGRAM, H_ALERT_EVAL,
     "Time one alert evaluation pass took."},
    {"sluice_controlplane_admin_requests_total", FROM_ADMIN, 0, "Admin API requests by method and status."},
};

static const char *type_of(source_t s)
{
    switch (s) {
    case FROM_GAUGE:
        return "gauge";
    case FROM_HISTOGRAM:
        return "histogram";
    default:
        return "counter";
    }
}

/* "name " or "name{labels} ": what comes before a sample's value. */
static void sample_name(sl_buf_t *out, const family_t *f)
{
    sl_buf_puts(out, f->name);
    if (f->labels != NULL)
        sl_buf_printf(out, "{%s}", f->labels);
    sl_buf_puts(out, " ");
}

void cp_metrics_render(const cp_gauges_t *g, sl_buf_t *out)
{
    int64_t gauge[G__COUNT];
    for (int i = 0; i < G__COUNT; i++)
        gauge[i] = atomic_load_explicit(&gauges[i], memory_order_relaxed);
    gauge[G_WATCHERS] = g->watchers;
    gauge[G_CONFIG_VERSION] = g->config_version;
    gauge[G_DB_UP] = g->db_up;

    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        const family_t *f = &families[i];
        if (f->help != NULL)
            sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_of(f->source));
        switch (f->source) {
        case FROM_COUNTER:
            sample_name(out, f);
            sl_buf_printf(out, "%llu\n", (unsigned long long)cp_metrics_get((cp_counter_t)f->index));
            break;
        case FROM_GAUGE:
            sample_name(out, f);
            sl_buf_printf(out, "%lld\n", (long long)gauge[f->index]);
            break;
        case FROM_HISTOGRAM:
            render_histogram(out, f->name, &histograms[f->index]);
            break;
        case FROM_ADMIN:
            render_admin_requests(out, f->name);
            break;
        }
    }
}
