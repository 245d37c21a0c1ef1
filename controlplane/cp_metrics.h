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
    CP_M__COUNT
} cp_counter_t;

void cp_metrics_inc(cp_counter_t c, uint64_t n);
uint64_t cp_metrics_get(cp_counter_t c);

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
