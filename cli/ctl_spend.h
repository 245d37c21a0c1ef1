/*
 * ctl_spend.h - `sluicectl spend` and `sluicectl quotas`: spend from the
 * ledger and the state of quota windows, over Admin.GetSpend and
 * Admin.GetQuotaStatus.
 *
 *   sluicectl spend --tenant T --from YYYY-MM-DD --to YYYY-MM-DD [--by day|model|key]
 *   sluicectl quotas --tenant T | --key K
 *
 * Formats: an aligned table (default), JSON (money as exact integers in
 * nano-USD and as USD decimal strings, never floating point) and CSV (a
 * header row, then one row per group; RFC 4180 quoting). YAML output is the
 * JSON, which is valid YAML. Nothing here does I/O: renderers append to a
 * buffer the caller owns.
 */
#ifndef CTL_SPEND_H
#define CTL_SPEND_H

#include "sl_buf.h"
#include "sl_err.h"
#include "sluice/admin/v1/admin.pb-c.h"

typedef enum { CTL_SPEND_TABLE, CTL_SPEND_JSON, CTL_SPEND_CSV } ctl_spend_fmt_t;

/* Fills req from the flags (strings are borrowed, not copied). Returns 0 or
 * SL_EINVAL with a message for a usage error: a missing flag, a date that
 * is not YYYY-MM-DD, --to not after --from, or --by other than day, model
 * or key. --to is exclusive, as in the API and the report views. */
int ctl_spend_request(const char *tenant, const char *from, const char *to, const char *by,
                      Sluice__Admin__V1__GetSpendRequest *req, sl_err_t *err);

/* Fills req from --tenant / --key: exactly one. */
int ctl_quotas_request(const char *tenant, const char *key, Sluice__Admin__V1__GetQuotaStatusRequest *req,
                       sl_err_t *err);

/* Renders a GetSpend response for the request it answers. */
void ctl_out_spend(sl_buf_t *out, ctl_spend_fmt_t f, const Sluice__Admin__V1__GetSpendRequest *req,
                   const Sluice__Admin__V1__GetSpendResponse *r);

/* Renders a GetQuotaStatus response. */
void ctl_out_quotas(sl_buf_t *out, ctl_spend_fmt_t f, const Sluice__Admin__V1__GetQuotaStatusResponse *r);

/* Appends s as one CSV field (quoted when it holds a comma, quote, CR or LF). */
void ctl_csv_field(sl_buf_t *out, const char *s);

#endif
