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

#include <stddef.h>
#include <stdint.h>

#define DP_RETRY_MAX_ATTEMPTS 4        /* upstream requests per client request */
#define DP_RETRY_BUDGET_MS 600000      /* no attempt starts later than this after the request */
#define DP_RETRY_BASE_MS 250
#define DP_RETRY_CAP_MS 4000
/* A provider's Retry-After is believed up to this long. */
#define DP_RETRY_AFTER_MAX_MS 600000

/* The delay before the k-th retry of one provider (k >= 1); r is a uniform
 * random number. */
uint32_t dp_retry_backoff_ms(uint32_t k, uint64_t r, uint32_t base_ms, uint32_t cap_ms);

/* How long a provider asked us to wait, from its Retry-After value: delta
 * seconds ("20", a fraction such as "1.5" is accepted) or an HTTP date
 * ("Wed, 21 Oct 2026 07:28:00 GMT", compared with now_unix_ms); ms: 1 when
 * the value is a Retry-After-Ms / retry-after-ms header (milliseconds, as
 * OpenAI and Azure send). Returns the wait in milliseconds capped at
 * DP_RETRY_AFTER_MAX_MS (0 for a date in the past), or -1 when the value
 * is not one of these. */
int64_t dp_retry_after_ms(const char *v, size_t len, int ms, int64_t now_unix_ms);

#endif
