/*
 * dp_proxy.h - the API request path: POST /v1/chat/completions and
 * GET /v1/models (everything else is a 404 in OpenAI's error shape).
 *
 * Per request: authenticate the key (hash lookup in the snapshot), validate
 * and tokenize the body once, route, reserve quota, pick a credential,
 * splice the upstream request, send it on a pooled keep-alive connection,
 * relay the response (SSE incrementally), read usage, price it, settle,
 * record usage, log one line. All per-request memory comes from the
 * request's h2o pool; the request's state is freed by the pool's dispose
 * callback, which is also the one place where the request is accounted.
 *
 * Worker threads only.
 */
#ifndef DP_PROXY_H
#define DP_PROXY_H

#include <h2o.h>

#include "dp_server.h"

/* Registers the API handler on a host configuration. */
void dp_proxy_register(h2o_hostconf_t *host);

/* Worker thread, at exit after the drain deadline: cancels and accounts
 * (as errors) every call still in flight. */
void dp_proxy_abandon_all(dp_worker_t *w);

/* Worker thread, at exit: closes the worker's upstream pools. */
void dp_proxy_dispose_pools(dp_worker_t *w);

#endif
