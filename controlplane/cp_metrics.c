/*
 * cp_metrics.c - counters and their Prometheus text rendering. Admin request
 * counters are kept in a small table keyed by (method, code) under a mutex;
 * it holds at most methods x codes rows.
 */
#include "cp_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t counters[CP_M__COUNT];

struct admin_row {
    char method[48];
    int code;
    uint64_t count;
};

/* Report apply latency: cumulative buckets in seconds, as Prometheus wants
 * them; the sum in microseconds so it stays an integer atomic. */
static const double report_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof(report_buckets) / sizeof(report_buckets[0]))
static _Atomic uint64_t report_hist[NBUCKETS + 1]; /* the last one is +Inf */
static _Atomic uint64_t report_sum_us;

void cp_metrics_observe_report(double seconds)
{
    size_t i = 0;
    while (i < NBUCKETS && seconds > report_buckets[i])
        i++;
    atomic_fetch_add_explicit(&report_hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&report_sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

static void render_report_hist(sl_buf_t *out)
{
    const char *name = "sluice_controlplane_report_apply_duration_seconds";
    sl_buf_printf(out, "# HELP %s Time to apply one usage report (ledger, quota windows, leases).\n"
                       "# TYPE %s histogram\n",
                  name, name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cum += atomic_load_explicit(&report_hist[i], memory_order_relaxed);
        if (i < NBUCKETS)
            sl_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, report_buckets[i], (unsigned long long)cum);
        else
            sl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    uint64_t us = atomic_load_explicit(&report_sum_us, memory_order_relaxed);
    sl_buf_printf(out, "%s_sum %llu.%06llu\n%s_count %llu\n", name, (unsigned long long)(us / 1000000),
                  (unsigned long long)(us % 1000000), name, (unsigned long long)cum);
}

/* Alert evaluation passes, same buckets as reports. */
static _Atomic uint64_t alert_hist[NBUCKETS + 1];
static _Atomic uint64_t alert_sum_us;
static _Atomic int alert_leader;

void cp_metrics_observe_alert_eval(double seconds)
{
    size_t i = 0;
    while (i < NBUCKETS && seconds > report_buckets[i])
        i++;
    atomic_fetch_add_explicit(&alert_hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&alert_sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

void cp_metrics_set_alert_leader(int leader)
{
    atomic_store_explicit(&alert_leader, leader != 0, memory_order_relaxed);
}

static void render_alerts(sl_buf_t *out)
{
    const char *name = "sluice_controlplane_alert_evaluation_duration_seconds";
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_alert_leader Whether this replica evaluates and delivers alerts (1) or "
                  "not (0).\n# TYPE sluice_controlplane_alert_leader gauge\nsluice_controlplane_alert_leader %d\n",
                  atomic_load_explicit(&alert_leader, memory_order_relaxed));
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_alerts_fired_total Alert fire events recorded in the outbox.\n"
                  "# TYPE sluice_controlplane_alerts_fired_total counter\nsluice_controlplane_alerts_fired_total %llu\n",
                  (unsigned long long)cp_metrics_get(CP_M_ALERTS_FIRED));
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_alerts_resolved_total Alert resolve events recorded in the outbox.\n"
                  "# TYPE sluice_controlplane_alerts_resolved_total counter\n"
                  "sluice_controlplane_alerts_resolved_total %llu\n",
                  (unsigned long long)cp_metrics_get(CP_M_ALERTS_RESOLVED));
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_alert_deliveries_total Alert deliveries a receiver accepted.\n"
                  "# TYPE sluice_controlplane_alert_deliveries_total counter\n"
                  "sluice_controlplane_alert_deliveries_total %llu\n",
                  (unsigned long long)cp_metrics_get(CP_M_ALERT_DELIVERIES));
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_alert_deliveries_failed_total Alert delivery attempts that failed "
                  "(retried later or given up).\n"
                  "# TYPE sluice_controlplane_alert_deliveries_failed_total counter\n"
                  "sluice_controlplane_alert_deliveries_failed_total %llu\n",
                  (unsigned long long)cp_metrics_get(CP_M_ALERT_DELIVERIES_FAILED));
    sl_buf_printf(out, "# HELP %s Time one alert evaluation pass took.\n# TYPE %s histogram\n", name, name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cum += atomic_load_explicit(&alert_hist[i], memory_order_relaxed);
        if (i < NBUCKETS)
            sl_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, report_buckets[i], (unsigned long long)cum);
        else
            sl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    uint64_t us = atomic_load_explicit(&alert_sum_us, memory_order_relaxed);
    sl_buf_printf(out, "%s_sum %llu.%06llu\n%s_count %llu\n", name, (unsigned long long)(us / 1000000),
                  (unsigned long long)(us % 1000000), name, (unsigned long long)cum);
}

/* Push latency: sub-millisecond when the data plane is idle and close, so
 * the buckets start lower than the report buckets. */
static const double push_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,    10};
#define NPUSH (sizeof(push_buckets) / sizeof(push_buckets[0]))
static _Atomic uint64_t push_hist[NPUSH + 1];
static _Atomic uint64_t push_sum_us;

void cp_metrics_observe_push(double seconds)
{
    size_t i = 0;
    if (seconds < 0)
        seconds = 0;
    while (i < NPUSH && seconds > push_buckets[i])
        i++;
    atomic_fetch_add_explicit(&push_hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&push_sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

static void render_push_hist(sl_buf_t *out)
{
    const char *name = "sluice_controlplane_push_duration_seconds";
    sl_buf_printf(out,
                  "# HELP %s Time from learning of a configuration version (NOTIFY or local commit) to its "
                  "delivery to a data plane (SEND_MESSAGE complete).\n# TYPE %s histogram\n",
                  name, name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= NPUSH; i++) {
        cum += atomic_load_explicit(&push_hist[i], memory_order_relaxed);
        if (i < NPUSH)
            sl_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, push_buckets[i], (unsigned long long)cum);
        else
            sl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    uint64_t us = atomic_load_explicit(&push_sum_us, memory_order_relaxed);
    sl_buf_printf(out, "%s_sum %llu.%06llu\n%s_count %llu\n", name, (unsigned long long)(us / 1000000),
                  (unsigned long long)(us % 1000000), name, (unsigned long long)cum);
}

static _Atomic int64_t db_slots, db_open, db_in_use;

void cp_metrics_db_conns(int slots_delta, int open_delta, int in_use_delta)
{
    if (slots_delta != 0)
        atomic_fetch_add_explicit(&db_slots, slots_delta, memory_order_relaxed);
    if (open_delta != 0)
        atomic_fetch_add_explicit(&db_open, open_delta, memory_order_relaxed);
    if (in_use_delta != 0)
        atomic_fetch_add_explicit(&db_in_use, in_use_delta, memory_order_relaxed);
}

static void render_db_conns(sl_buf_t *out)
{
    sl_buf_printf(out,
                  "# HELP sluice_controlplane_db_connections_max Database connection slots (one per thread that "
                  "talks to PostgreSQL).\n# TYPE sluice_controlplane_db_connections_max gauge\n"
                  "sluice_controlplane_db_connections_max %lld\n"
                  "# HELP sluice_controlplane_db_connections_open Database connections currently established.\n"
                  "# TYPE sluice_controlplane_db_connections_open gauge\n"
                  "sluice_controlplane_db_connections_open %lld\n"
                  "# HELP sluice_controlplane_db_connections_in_use Database connections running a statement or "
                  "inside a transaction.\n# TYPE sluice_controlplane_db_connections_in_use gauge\n"
                  "sluice_controlplane_db_connections_in_use %lld\n",
                  (long long)atomic_load_explicit(&db_slots, memory_order_relaxed),
                  (long long)atomic_load_explicit(&db_open, memory_order_relaxed),
                  (long long)atomic_load_explicit(&db_in_use, memory_order_relaxed));
}

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
    static const char *names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
        return "UNKNOWN";
    return names[code];
}

static void counter(sl_buf_t *out, const char *name, const char *help, uint64_t v)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void gauge(sl_buf_t *out, const char *name, const char *help, int64_t v)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, (long long)v);
}

void cp_metrics_render(const cp_gauges_t *g, sl_buf_t *out)
{
    gauge(out, "sluice_controlplane_connected_dataplanes", "Open Watch streams from data planes.", g->watchers);
    gauge(out, "sluice_controlplane_config_version", "Latest configuration version seen by this replica.",
          g->config_version);
    gauge(out, "sluice_controlplane_database_up", "Whether the last database check succeeded (1) or not (0).",
          g->db_up);
    sl_buf_printf(out, "# HELP sluice_controlplane_snapshots_sent_total Snapshot messages sent to data planes.\n"
                       "# TYPE sluice_controlplane_snapshots_sent_total counter\n"
                       "sluice_controlplane_snapshots_sent_total{kind=\"full\"} %llu\n"
                       "sluice_controlplane_snapshots_sent_total{kind=\"delta\"} %llu\n",
                  (unsigned long long)cp_metrics_get(CP_M_SNAPSHOTS_FULL),
                  (unsigned long long)cp_metrics_get(CP_M_SNAPSHOTS_DELTA));
    counter(out, "sluice_controlplane_reports_applied_total", "Usage reports applied to the ledger.",
            cp_metrics_get(CP_M_REPORTS_APPLIED));
    counter(out, "sluice_controlplane_reports_duplicate_total",
            "Usage reports acknowledged as duplicates of reports already applied.",
            cp_metrics_get(CP_M_REPORTS_DUPLICATE));
    counter(out, "sluice_controlplane_usage_entries_total", "Usage entries applied to the ledger.",
            cp_metrics_get(CP_M_USAGE_ENTRIES));
    counter(out, "sluice_controlplane_db_errors_total", "Failed database statements and connections.",
            cp_metrics_get(CP_M_DB_ERRORS));
    counter(out, "sluice_controlplane_ledger_rows_applied_total",
            "Ledger rows (usage per minute, key, provider and model) inserted or updated by reports.",
            cp_metrics_get(CP_M_LEDGER_ROWS));
    counter(out, "sluice_controlplane_lease_grants_total", "Quota lease requests answered with a grant.",
            cp_metrics_get(CP_M_LEASE_GRANTS));
    counter(out, "sluice_controlplane_lease_denials_total",
            "Quota lease requests granted less than they asked for (the quota is running out).",
            cp_metrics_get(CP_M_LEASE_DENIALS));
    counter(out, "sluice_controlplane_leases_reclaimed_total",
            "Quota leases nobody renewed whose outstanding grant was returned to its window.",
            cp_metrics_get(CP_M_LEASES_RECLAIMED));
    render_report_hist(out);
    render_push_hist(out);
    render_db_conns(out);
    render_alerts(out);

    sl_buf_puts(out, "# HELP sluice_controlplane_admin_requests_total Admin API requests by method and status.\n"
                     "# TYPE sluice_controlplane_admin_requests_total counter\n");
    pthread_mutex_lock(&admin_mu);
    for (size_t i = 0; i < admin_nrows; i++)
        sl_buf_printf(out, "sluice_controlplane_admin_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                      admin_rows[i].method, cp_grpc_code_name(admin_rows[i].code),
                      (unsigned long long)admin_rows[i].count);
    pthread_mutex_unlock(&admin_mu);
}
