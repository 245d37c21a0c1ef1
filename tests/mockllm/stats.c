/*
 * stats.c - process-wide counters of what the mock answered.
 */
#include "stats.h"

#include <stdatomic.h>

#define COUNTERS(X)                                                                                                    \
    X(requests)                                                                                                        \
    X(chat_requests)                                                                                                   \
    X(stream_requests)                                                                                                 \
    X(embedding_requests)                                                                                              \
    X(prompt_tokens)                                                                                                   \
    X(completion_tokens)                                                                                               \
    X(unauthorized)                                                                                                    \
    X(errors)                                                                                                          \
    X(faults_applied)                                                                                                  \
    X(dropped)

#define DECLARE(name) atomic_uint_fast64_t name;
static struct {
    COUNTERS(DECLARE)
} counters;
#undef DECLARE

static void add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void mock_stats_success(mock_call_kind_t kind, int streamed, uint64_t prompt_tokens, uint64_t completion_tokens)
{
    add(&counters.requests, 1);
    if (kind == MOCK_KIND_CHAT)
        add(&counters.chat_requests, 1);
    else if (kind == MOCK_KIND_EMBEDDING)
        add(&counters.embedding_requests, 1);
    if (streamed)
        add(&counters.stream_requests, 1);
    if (prompt_tokens != 0)
        add(&counters.prompt_tokens, prompt_tokens);
    if (completion_tokens != 0)
        add(&counters.completion_tokens, completion_tokens);
}

void mock_stats_failure(int status)
{
    if (status == 401)
        add(&counters.unauthorized, 1);
    else
        add(&counters.errors, 1);
}

void mock_stats_fault_applied(void)
{
    add(&counters.faults_applied, 1);
}

void mock_stats_dropped(void)
{
    add(&counters.dropped, 1);
}

void mock_stats_reset(void)
{
#define ZERO(name) atomic_store_explicit(&counters.name, 0, memory_order_relaxed);
    COUNTERS(ZERO)
#undef ZERO
}

void mock_stats_to_json(mock_buf_t *buf)
{
    char sep = '{';
#define EMIT(name)                                                                                                     \
    mock_buf_append(buf, &sep, 1);                                                                                     \
    mock_buf_append_lit(buf, "\"" #name "\":");                                                                        \
    mock_buf_append_u64(buf, atomic_load_explicit(&counters.name, memory_order_relaxed));                              \
    sep = ',';
    COUNTERS(EMIT)
#undef EMIT
    mock_buf_append_lit(buf, "}");
}
