/*
 * call.h - one API request to a fake provider, from fault to last byte.
 *
 * The server hands every request that matches a provider route to
 * mock_call_begin(). The call takes the next queued fault (if any), waits
 * out its delay, answers an injected status through the provider, or else
 * runs the route. The route answers exactly once, either with
 * mock_call_respond() or with mock_call_stream(); both apply the remaining
 * parts of the fault (drop, chunk delay, in-stream error) and count the
 * outcome in the stats of the call's provider.
 *
 * Lifetime: a call is allocated from the request's pool and disposed with it;
 * providers may hang their own pool allocations off `provider_data`.
 *
 * Thread: everything runs on the worker thread that owns the request.
 */
#ifndef MOCK_CALL_H
#define MOCK_CALL_H

#include <stdint.h>

#include <h2o.h>

#include "faults.h"
#include "provider.h"
#include "stats.h"
#include "timer.h"

/*
 * Produces the next event of a stream (an SSE event, or one binary event
 * stream message) into *event; the bytes must stay valid until the producer
 * is called again or the request ends. Returns 1 when more events follow, 0
 * when this one is the last.
 */
typedef int (*mock_stream_next_cb)(mock_call_t *call, h2o_iovec_t *event);

struct st_mock_call_t {
    h2o_req_t *req;
    const mock_settings_t *settings;
    const mock_provider_t *provider;
    uint64_t seq;       /* process-wide request number, for response ids */
    mock_fault_t fault; /* MOCK_FAULT_NONE when no fault was queued */
    /* Set by the route before answering: counted in the stats on success. */
    mock_call_kind_t kind;
    mock_usage_t usage;
    /* Set by the route when it refuses credentials with a status other than
     * 401 (Bedrock's 403), so that the stats count it as unauthorized. */
    unsigned auth_failed : 1;
    /* The in-stream error format, when it is not the provider's (Claude on
     * Vertex streams Anthropic's events); NULL for the provider's. */
    void (*stream_error)(mock_call_t *call, mock_buf_t *out);
    void *provider_data;

    /* private to call.c */
    const mock_route_t *_route;
    mock_timer_t _timer;
    h2o_generator_t _generator;
    mock_stream_next_cb _next;
    uint32_t _events_sent;
    unsigned _in_send : 1;
    unsigned _proceed_pending : 1;
    unsigned _done : 1;
};

/* Zeroed memory from the request's pool: it lives as long as the call. */
void *mock_call_alloc(mock_call_t *call, size_t size);

/* The call's number shaped as a UUID, "00000000-0000-4000-8000-" and 12
 * digits (AWS and Azure request ids), into dst (at least 40 bytes).
 * Returns its length. */
size_t mock_call_uuid(const mock_call_t *call, char *dst);

/* Starts handling req with route of provider. */
void mock_call_begin(h2o_req_t *req, const mock_settings_t *settings, const mock_provider_t *provider,
                     const mock_route_t *route);

/*
 * Answers the call with a complete response. body must live until the request
 * ends (pool or static memory). A drop fault closes the connection instead.
 */
void mock_call_respond(mock_call_t *call, int status, const char *content_type, const char *body, size_t len);

/*
 * Answers the call with a 200 response of content_type (static) whose events
 * come from next, one h2o send per event, honouring the chunk delay, drop
 * and in-stream error faults.
 */
void mock_call_stream(mock_call_t *call, const char *content_type, mock_stream_next_cb next);

#endif
