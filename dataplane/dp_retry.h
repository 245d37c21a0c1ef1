/*
 * dp_retry.h - how a request retries: the per-request budget and the
 * backoff before going back to a provider that already failed it.
 *
 * Moving on to another target (another provider, or another credential
 * after an authentication refusal) happens at once; only going back to a
 * provider that already failed this request waits, with equal jitter over
 * an exponential: half of min(cap, base * 2^(k-1)) plus a uniform random
 * part of up to the other half, k being the provider's failures so far in
 * this request. No attempt starts once the budget of attempts or time is
 * spent, and a backoff never sleeps past the time budget. Pure; any thread.
 */
#ifndef DP_RETRY_H
#define DP_RETRY_H

#include <stdint.h>

#define DP_RETRY_MAX_ATTEMPTS 4        /* upstream requests per client request */
#define DP_RETRY_BUDGET_MS 600000      /* no attempt starts later than this after the request */
#define DP_RETRY_BASE_MS 250
#define DP_RETRY_CAP_MS 4000

/* The delay before the k-th retry of one provider (k >= 1); r is a uniform
 * random number. */
uint32_t dp_retry_backoff_ms(uint32_t k, uint64_t r, uint32_t base_ms, uint32_t cap_ms);

#endif
