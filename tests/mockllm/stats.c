/*
 * stats.c - process-wide counters of what the mock answered, per provider.
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
    X(cached_tokens)                                                                                                   \
    X(unauthorized)                                                                                                    \
    X(errors)                                                                                                          \
    X(stream_errors)                                                                                                   \
    X(faults_applied)                                                                                                  \
    X(dropped)

#define DECLARE(name) atomic_uint_fast64_t name;
typedef struct st_counters_t {
    COUNTERS(DECLARE)
} counters_t;
#undef DECLARE

/* Each provider's counters on their own cache lines. */
static struct {
    counters_t c;
} __attribute__((aligned(64))) counters[MOCK_PROVIDER_COUNT];

static void add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void mock_stats_success(mock_provider_id_t p, mock_call_kind_t kind, int streamed, const mock_usage_t *usage)
{
    counters_t *c = &counters[p].c;

    add(&c->requests, 1);
    if (kind == MOCK_KIND_CHAT)
        add(&c->chat_requests, 1);
    else if (kind == MOCK_KIND_EMBEDDING)
        add(&c->embedding_requests, 1);
    if (streamed)
        add(&c->stream_requests, 1);
    if (usage->prompt_tokens != 0)
        add(&c->prompt_tokens, usage->prompt_tokens);
    if (usage->completion_tokens != 0)
        add(&c->completion_tokens, usage->completion_tokens);
    if (usage->cached_tokens != 0)
        add(&c->cached_tokens, usage->cached_tokens);
}

void mock_stats_failure(mock_provider_id_t p, int unauthorized)
{
    if (unauthorized)
        add(&counters[p].c.unauthorized, 1);
    else
        add(&counters[p].c.errors, 1);
}

void mock_stats_stream_error(mock_provider_id_t p)
{
    add(&counters[p].c.stream_errors, 1);
}

void mock_stats_fault_applied(mock_provider_id_t p)
{
    add(&counters[p].c.faults_applied, 1);
}

void mock_stats_dropped(mock_provider_id_t p)
{
    add(&counters[p].c.dropped, 1);
}

void mock_stats_reset(void)
{
    for (int p = 0; p != MOCK_PROVIDER_COUNT; ++p) {
#define ZERO(name) atomic_store_explicit(&counters[p].c.name, 0, memory_order_relaxed);
        COUNTERS(ZERO)
#undef ZERO
    }
}

static uint64_t get(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit((atomic_uint_fast64_t *)c, memory_order_relaxed);
}

static void append_counters(mock_buf_t *buf, const counters_t *c)
{
    char sep = '{';
#define EMIT(name)                                                                                                     \
    mock_buf_append(buf, &sep, 1);                                                                                     \
    mock_buf_append_lit(buf, "\"" #name "\":");                                                                        \
    mock_buf_append_u64(buf, get(&c->name));                                                                           \
    sep = ',';
    COUNTERS(EMIT)
#undef EMIT
    mock_buf_append_lit(buf, "}");
}

void mock_stats_to_json(mock_buf_t *buf)
{
    counters_t total;
#define ZERO(name) atomic_init(&total.name, 0);
    COUNTERS(ZERO)
#undef ZERO
    for (int p = 0; p != MOCK_PROVIDER_COUNT; ++p) {
        if (p == MOCK_PROVIDER_GOOGLE_OAUTH)
            continue;
#define SUM(name) atomic_init(&total.name, get(&total.name) + get(&counters[p].c.name));
        COUNTERS(SUM)
#undef SUM
    }
    append_counters(buf, &total);
    buf->len -= 1; /* reopen the object */
    mock_buf_append_lit(buf, ",\"by_provider\":{");
    for (int p = 0; p != MOCK_PROVIDER_COUNT; ++p) {
        if (p != 0)
            mock_buf_append_lit(buf, ",");
        mock_buf_append_lit(buf, "\"");
        mock_buf_append_str(buf, mock_provider_name((mock_provider_id_t)p));
        mock_buf_append_lit(buf, "\":");
        append_counters(buf, &counters[p].c);
    }
    mock_buf_append_lit(buf, "}}");
}
