/*
 * ctl_alerts.h - `sluicectl alerts list|history`: alert rules with the
 * state of each scope they watch, the sinks (never their secrets), and the
 * event history with each event's deliveries, over Admin.ListAlerts and
 * Admin.AlertHistory.
 *
 *   sluicectl alerts list [--rule NAME]
 *   sluicectl alerts history [--rule NAME] [--limit N]
 *
 * Formats: aligned tables (default) or JSON (stable field names; YAML output
 * is the JSON, which is valid YAML). Renderers append to a buffer the caller
 * owns; nothing here does I/O.
 */
#ifndef CTL_ALERTS_H
#define CTL_ALERTS_H

#include "sl_buf.h"
#include "sluice/admin/v1/admin.pb-c.h"

void ctl_out_alerts(sl_buf_t *out, int json, const Sluice__Admin__V1__ListAlertsResponse *r);
void ctl_out_alert_history(sl_buf_t *out, int json, const Sluice__Admin__V1__AlertHistoryResponse *r);

#endif
