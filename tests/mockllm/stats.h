/*
 * stats.h - process-wide counters of what the mock answered, per provider.
 *
 * Each provider has its own set of counters; the top-level fields of the
 * JSON are their sums over the model APIs (the token endpoint, an auxiliary
 * provider, only shows under by_provider). Counters are relaxed atomics
 * shared by all worker threads; a snapshot read while requests are in
 * flight is not transactionally consistent, which is fine for tests that
 * read it once traffic has settled.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef MOCK_STATS_H
#define MOCK_STATS_H

#include <stdint.h>

#include "buf.h"
#include "provider.h"

typedef enum mock_call_kind {
    MOCK_KIND_OTHER = 0, /* listing models, issuing tokens and the like */
    MOCK_KIND_CHAT,
    MOCK_KIND_EMBEDDING,
} mock_call_kind_t;

/* What a 2xx API response reported. cached_tokens is the part of
 * prompt_tokens served from a prompt cache. */
typedef struct st_mock_usage_t {
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t cached_tokens;
} mock_usage_t;

/* A 2xx API response was sent completely. */
void mock_stats_success(mock_provider_id_t p, mock_call_kind_t kind, int streamed, const mock_usage_t *usage);
/* A non-2xx API response was sent; unauthorized when it refused the
 * credentials (401, or 403 for a bad AWS signature). */
void mock_stats_failure(mock_provider_id_t p, int unauthorized);
/* A stream was ended with an in-stream error event (error_after_chunks). */
void mock_stats_stream_error(mock_provider_id_t p);
/* A queued fault was applied to a request. */
void mock_stats_fault_applied(mock_provider_id_t p);
/* A connection was closed on purpose by a drop fault. */
void mock_stats_dropped(mock_provider_id_t p);
void mock_stats_reset(void);
/* Appends the counters as one JSON object: the totals, then by_provider. */
void mock_stats_to_json(mock_buf_t *buf);

#endif
