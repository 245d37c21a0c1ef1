/*
 * ctl_output.h - how sluicectl prints Admin API results.
 *
 * Three formats:
 *   table  aligned columns for lists, "field: value" lines for one entity,
 *          one line per change for apply (the default)
 *   json   stable field names; money both as an integer in the quota's unit
 *          ("limit", nano-USD for cost quotas) and as a USD decimal string
 *          ("limit_usd")
 *   yaml   tenants and keys in the shape `sluicectl apply` accepts (a
 *          `tenants:` or `virtual_keys:` list), read-only state (key prefix,
 *          status, timestamps) as comments; other results as their JSON
 *          shape written in YAML
 *
 * Every function appends to an sl_buf_t the caller owns; nothing here does
 * I/O or keeps state. Secrets appear only in the created-key and apply
 * renderings, which exist to show them once.
 */
#ifndef CTL_OUTPUT_H
#define CTL_OUTPUT_H

#include <stddef.h>

#include "sl_buf.h"
#include "sluice/admin/v1/admin.pb-c.h"

typedef enum { CTL_OUT_TABLE, CTL_OUT_JSON, CTL_OUT_YAML } ctl_format_t;

/* "table", "json" or "yaml". Returns 0 or SL_EINVAL. */
int ctl_format_parse(const char *s, ctl_format_t *out);

void ctl_out_tenants(sl_buf_t *out, ctl_format_t f, Sluice__Config__V1__Tenant *const *t, size_t n);
void ctl_out_tenant(sl_buf_t *out, ctl_format_t f, const Sluice__Config__V1__Tenant *t);

/* now_unix decides whether a key with expires_unix has expired. */
void ctl_out_keys(sl_buf_t *out, ctl_format_t f, Sluice__Config__V1__VirtualKey *const *k, size_t n,
                  long long now_unix);
void ctl_out_key(sl_buf_t *out, ctl_format_t f, const Sluice__Config__V1__VirtualKey *k, long long now_unix);
void ctl_out_created_key(sl_buf_t *out, ctl_format_t f, const Sluice__Admin__V1__CreateVirtualKeyResponse *r,
                         long long now_unix);

/* The result of Apply. In table format the changes, created secrets and a
 * summary go to out and warnings ("warning: ...") to err; the details of
 * updates are indented under their line; unchanged entities and the details
 * of created ones are listed only when verbose. In json/yaml everything goes to
 * out (warnings are still repeated on err). */
void ctl_out_apply(sl_buf_t *out, sl_buf_t *err, ctl_format_t f, const Sluice__Admin__V1__ApplyResponse *r, int dry_run,
                   int verbose);

/* unix_s as "YYYY-MM-DDTHH:MM:SSZ" (UTC) in buf, or "" when it is 0 or less.
 * Returns buf. */
const char *ctl_time_text(long long unix_s, char *buf, size_t cap);

/* One-line human summary of a quota ("12000 USD/month", "600 req/min"). */
void ctl_quota_summary(sl_buf_t *out, const Sluice__Config__V1__Quota *q);

#endif
