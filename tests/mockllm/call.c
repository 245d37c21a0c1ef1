/*
 * call.c - one API request to a fake provider, from fault to last byte.
 *
 * Invariants:
 * - At most one h2o_send is in flight; the next event is produced only after
 *   h2o asked for more (proceed), and after the chunk delay if one is set.
 * - After the final or error send the call is never touched again: h2o may
 *   dispose the request (and the call with it) at any point after that.
 * - The timer is stopped both by generator stop (client went away mid-stream)
 *   and by the pool dispose (request ended while a delay was pending).
 */
#include "call.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

static atomic_uint_fast64_t call_seq;

static void on_call_dispose(void *p)
{
    mock_call_t *call = p;
    mock_timer_stop(&call->_timer);
}

static int has_drop(const mock_call_t *call)
{
    return call->fault.drop_after_chunks >= 0;
}

static void run(mock_call_t *call)
{
    if (call->fault.status != 0) {
        if (call->fault.retry_after_s != 0) {
            char v[24];
            size_t n = mock_u64toa(v, call->fault.retry_after_s);
            mock_http_add_header(call->req, "retry-after", v, n);
        }
        if (call->fault.error_body != NULL)
            mock_call_respond(call, call->fault.status, MOCK_CT_JSON, call->fault.error_body,
                              call->fault.error_body_len);
        else
            call->provider->send_fault(call, call->fault.status);
        return;
    }
    call->_route->on_call(call);
}

static void on_delay_done(mock_timer_t *timer)
{
    run(H2O_STRUCT_FROM_MEMBER(mock_call_t, _timer, timer));
}

void mock_call_begin(h2o_req_t *req, const mock_settings_t *settings, const mock_provider_t *provider,
                     const mock_route_t *route)
{
    mock_call_t *call = h2o_mem_alloc_shared(&req->pool, sizeof(*call), on_call_dispose);

    memset(call, 0, sizeof(*call));
    call->req = req;
    call->settings = settings;
    call->provider = provider;
    call->seq = atomic_fetch_add_explicit(&call_seq, 1, memory_order_relaxed) + 1;
    call->fault = MOCK_FAULT_NONE;
    call->_route = route;

    if (mock_faults_take(&call->fault, &req->pool, provider->id, provider->aux)) {
        mock_stats_fault_applied(provider->id);
        if (call->fault.delay_ms != 0) {
            mock_timer_start(&call->_timer, call->fault.delay_ms, on_delay_done);
            return;
        }
    }
    run(call);
}

void *mock_call_alloc(mock_call_t *call, size_t size)
{
    void *p = h2o_mem_alloc_pool(&call->req->pool, size);
    memset(p, 0, size);
    return p;
}

size_t mock_call_uuid(const mock_call_t *call, char *dst)
{
    return (size_t)sprintf(dst, "00000000-0000-4000-8000-%012llu", (unsigned long long)(call->seq % 1000000000000ull));
}

static void count_sent(mock_call_t *call, int status, int streamed)
{
    if (status >= 200 && status < 300)
        mock_stats_success(call->provider->id, call->kind, streamed, &call->usage);
    else
        mock_stats_failure(call->provider->id, status == 401 || call->auth_failed);
}

void mock_call_respond(mock_call_t *call, int status, const char *content_type, const char *body, size_t len)
{
    if (has_drop(call)) {
        mock_stats_dropped(call->provider->id);
        mock_http_drop_connection(call->req);
        return;
    }
    count_sent(call, status, 0);
    mock_http_send(call->req, status, content_type, body, len);
}

/* Sends one event, or the abrupt end a drop fault asks for. Returns 1 when the
 * stream is over (the call must not be touched any more). */
static int send_one(mock_call_t *call)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t event;

    if (has_drop(call) && call->_events_sent == (uint32_t)call->fault.drop_after_chunks) {
        call->_done = 1;
        mock_stats_dropped(call->provider->id);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return 1;
    }
    void (*stream_error)(mock_call_t *, mock_buf_t *) =
        call->stream_error != NULL ? call->stream_error : call->provider->stream_error;
    if (call->fault.error_after_chunks >= 0 && call->_events_sent == (uint32_t)call->fault.error_after_chunks &&
        stream_error != NULL) {
        mock_buf_t buf;
        mock_buf_init(&buf, &req->pool, 512);
        stream_error(call, &buf);
        event = h2o_iovec_init(buf.base, buf.len);
        call->_done = 1;
        mock_stats_stream_error(call->provider->id);
        h2o_send(req, &event, 1, H2O_SEND_STATE_FINAL);
        return 1;
    }
    int more = call->_next(call, &event);
    ++call->_events_sent;
    if (!more) {
        call->_done = 1;
        count_sent(call, 200, 1);
        h2o_send(req, &event, 1, H2O_SEND_STATE_FINAL);
        return 1;
    }
    h2o_send(req, &event, 1, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

/* Sends events for as long as h2o asks for them synchronously. */
static void pump(mock_call_t *call)
{
    do {
        call->_proceed_pending = 0;
        call->_in_send = 1;
        if (send_one(call))
            return;
        call->_in_send = 0;
    } while (call->_proceed_pending);
}

static void on_chunk_delay_done(mock_timer_t *timer)
{
    pump(H2O_STRUCT_FROM_MEMBER(mock_call_t, _timer, timer));
}

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    mock_call_t *call = H2O_STRUCT_FROM_MEMBER(mock_call_t, _generator, generator);
    (void)req;

    if (call->_done)
        return;
    if (call->fault.chunk_delay_ms != 0) {
        mock_timer_start(&call->_timer, call->fault.chunk_delay_ms, on_chunk_delay_done);
        return;
    }
    if (call->_in_send)
        call->_proceed_pending = 1;
    else
        pump(call);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    mock_call_t *call = H2O_STRUCT_FROM_MEMBER(mock_call_t, _generator, generator);
    (void)req;

    call->_done = 1;
    mock_timer_stop(&call->_timer);
}

void mock_call_stream(mock_call_t *call, const char *content_type, mock_stream_next_cb next)
{
    h2o_req_t *req = call->req;

    call->_next = next;
    call->_generator.proceed = on_proceed;
    call->_generator.stop = on_stop;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_start_response(req, &call->_generator);
    pump(call);
}
