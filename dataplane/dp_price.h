/*
 * dp_price.h - pricing usage from the snapshot's catalog, in integer
 * nano-USD (DESIGN §3). Pure; any thread.
 */
#ifndef DP_PRICE_H
#define DP_PRICE_H

#include <stdint.h>

#include "dp_provider.h"
#include "dp_snapshot.h"

/* (input - cached) at the input price + cached at the cached-input price
 * (the input price when that is 0) + output at the output price. A NULL
 * model (not in the catalog) costs 0. Saturates at INT64_MAX. */
int64_t dp_price_cost(const dp_model_t *m, const dp_tokens_t *t);

/* Upper bound of a request's cost for quota reservation. */
int64_t dp_price_estimate(const dp_model_t *m, int64_t input_tokens, int64_t output_tokens);

#endif
