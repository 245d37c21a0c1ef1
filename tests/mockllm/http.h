/*
 * http.h - small helpers over h2o 2.2.5 requests and responses.
 *
 * Thread: called on the worker thread that owns the request.
 */
#ifndef MOCK_HTTP_H
#define MOCK_HTTP_H

#include <stddef.h>

#include <h2o.h>
#include <jansson.h>

#define MOCK_CT_JSON "application/json"
#define MOCK_CT_TEXT "text/plain; charset=utf-8"
#define MOCK_CT_SSE "text/event-stream; charset=utf-8"
#define MOCK_CT_EVENTSTREAM "application/vnd.amazon.eventstream"

/* Standard reason phrase of an HTTP status ("Unknown" when unlisted). */
const char *mock_http_reason(int status);

/* Whether the request method is exactly `method`. */
int mock_http_method_is(const h2o_req_t *req, const char *method);

/* The value of the first request header `token`, or {NULL, 0} when absent. */
h2o_iovec_t mock_http_header(const h2o_req_t *req, const h2o_token_t *token);

/* The value of the first request header named name (lower case), or
 * {NULL, 0} when absent. */
h2o_iovec_t mock_http_header_str(const h2o_req_t *req, const char *name);

/* The raw path without the query, as received. */
h2o_iovec_t mock_http_raw_path(const h2o_req_t *req);

/* The raw query without '?', or {NULL, 0} when the request has none. */
h2o_iovec_t mock_http_raw_query(const h2o_req_t *req);

/*
 * Finds the parameter name in a form-encoded string ("a=1&b=2": a query or
 * an application/x-www-form-urlencoded body) and returns its value
 * percent-decoded ('+' as space) into pool; {NULL, 0} when absent.
 */
h2o_iovec_t mock_http_form_param(h2o_mem_pool_t *pool, h2o_iovec_t form, const char *name);

/* Percent-decodes s[0..len) into pool ('+' kept as is). */
h2o_iovec_t mock_http_percent_decode(h2o_mem_pool_t *pool, const char *s, size_t len);

/* The request body as a JSON object (release it with json_decref), or NULL
 * when the body is empty, not JSON or not an object: the caller answers in
 * its provider's words. */
json_t *mock_http_json_body(const h2o_req_t *req);

/*
 * Adds a response header. name must be lower case and static (it is not
 * copied); value is copied into the request pool.
 */
void mock_http_add_header(h2o_req_t *req, const char *name, const char *value, size_t len);

/*
 * Sends a complete response with Content-Length set. body is not copied: it
 * must stay valid until the request is disposed (pool memory or static).
 */
void mock_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);

/*
 * Closes the request's connection without sending a response: the socket is
 * shut down with a zero linger time (the peer sees a reset), then the
 * request is failed so that h2o tears the connection down. On HTTP/2 this
 * drops the whole connection.
 */
void mock_http_drop_connection(h2o_req_t *req);

#endif
