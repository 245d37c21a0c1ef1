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

    sl_buf_puts(out, "# HELP sluice_controlplane_admin_requests_total Admin API requests by method and status.\n"
                     "# TYPE sluice_controlplane_admin_requests_total counter\n");
    pthread_mutex_lock(&admin_mu);
    for (size_t i = 0; i < admin_nrows; i++)
        sl_buf_printf(out, "sluice_controlplane_admin_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                      admin_rows[i].method, cp_grpc_code_name(admin_rows[i].code),
                      (unsigned long long)admin_rows[i].count);
    pthread_mutex_unlock(&admin_mu);
}
