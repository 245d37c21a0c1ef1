/*
 * stats.h - process-wide counters of what the mock answered.
 *
 * Counters are relaxed atomics shared by all worker threads; a snapshot read
 * while requests are in flight is not transactionally consistent, which is
 * fine for tests that read it once traffic has settled.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef MOCK_STATS_H
#define MOCK_STATS_H

#include <stdint.h>

#include "buf.h"

typedef enum mock_call_kind {
    MOCK_KIND_OTHER = 0, /* listing models and the like */
    MOCK_KIND_CHAT,
    MOCK_KIND_EMBEDDING,
} mock_call_kind_t;

/* A 2xx API response was sent completely; usage is what it reported. */
void mock_stats_success(mock_call_kind_t kind, int streamed, uint64_t prompt_tokens, uint64_t completion_tokens);
/* A non-2xx API response was sent. */
void mock_stats_failure(int status);
/* A queued fault was applied to a request. */
void mock_stats_fault_applied(void);
/* A connection was closed on purpose by a drop fault. */
void mock_stats_dropped(void);
void mock_stats_reset(void);
/* Appends the counters as one JSON object. */
void mock_stats_to_json(mock_buf_t *buf);

#endif
