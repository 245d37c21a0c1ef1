/*
 * cp_metrics.h - the control plane's Prometheus metrics.
 *
 * Counters are process-wide atomics (they describe the process, like its
 * log), updated from any thread and rendered by the ops HTTP thread. Names
 * are sluice_controlplane_*; counters end in _total.
 */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include <stdint.h>

#include "sl_buf.h"

typedef enum {
    CP_M_SNAPSHOTS_FULL,     /* full snapshots sent */
    CP_M_SNAPSHOTS_DELTA,    /* deltas sent */
    CP_M_REPORTS_APPLIED,
    CP_M_REPORTS_DUPLICATE,
    CP_M_USAGE_ENTRIES,      /* usage entries applied */
    CP_M_DB_ERRORS,
    CP_M_LEDGER_ROWS,        /* usage_minute rows inserted or updated by reports */
    CP_M_LEASE_GRANTS,       /* lease requests answered with granted > 0 */
    CP_M_LEASE_DENIALS,      /* lease requests answered with granted < want */
    CP_M_LEASES_RECLAIMED,   /* leases nobody renewed, returned to their window */
    CP_M_ALERTS_FIRED,       /* alert fire events recorded in the outbox */
    CP_M_ALERTS_RESOLVED,    /* alert resolve events recorded in the outbox */
    CP_M_ALERT_DELIVERIES,   /* alert deliveries a receiver accepted */
    CP_M_ALERT_DELIVERIES_FAILED, /* delivery attempts that failed (retried or given up) */
    CP_M__COUNT
} cp_counter_t;

void cp_metrics_inc(cp_counter_t c, uint64_t n);
uint64_t cp_metrics_get(cp_counter_t c);

/* Records the time one report took to apply (seconds, a histogram). */
void cp_metrics_observe_report(double seconds);

/* Records the time one alert evaluation pass took (seconds, a histogram),
 * and whether this replica leads alert evaluation (a gauge). */
void cp_metrics_observe_alert_eval(double seconds);
void cp_metrics_set_alert_leader(int leader);

/* Records one push: the time from this replica learning of a new
 * configuration version (a NOTIFY or a local commit woke the publisher) to
 * the completion of the SEND_MESSAGE carrying it to one data plane. */
void cp_metrics_observe_push(double seconds);

/* Database connections of this process (cp_db.c keeps them): slots is the
 * number of cp_db_t handles (one per thread that talks to PostgreSQL: the
 * pool), open those connected, in_use those running a statement or inside
 * a transaction. Deltas, any thread. */
void cp_metrics_db_conns(int slots_delta, int open_delta, int in_use_delta);

/* Counts one admin RPC by method name ("Apply") and gRPC status code. */
void cp_metrics_admin_request(const char *method, int grpc_code);

/* Gauges are read through this callback when rendering. */
typedef struct cp_gauges {
    int64_t watchers;        /* connected data planes (open Watch streams) */
    int64_t config_version;  /* latest version this replica has seen */
    int db_up;
} cp_gauges_t;

/* Appends the Prometheus text exposition to out. */
void cp_metrics_render(const cp_gauges_t *g, sl_buf_t *out);

/* The text name of a gRPC status code ("OK", "NOT_FOUND"). */
const char *cp_grpc_code_name(int code);

#endif
