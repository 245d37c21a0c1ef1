/*
 * dp_proxy.h - the API request path: POST /v1/chat/completions,
 * POST /v1/embeddings, POST /v1/messages (Anthropic-format clients),
 * GET /v1/models and GET /v1/sluice/usage (everything else is a 404 in
 * OpenAI's error shape).
 *
 * Per request: authenticate the key (hash lookup in the snapshot), validate
 * and tokenize the body once, route, reserve quota, then try the request's
 * targets (the resolved model, then the key's fallbacks) with a healthy
 * credential each, failing over on connect errors, timeouts, 429 and 5xx
 * until one answers; relay the answer (translated when the provider speaks
 * another format; streams held until their first content so a failover
 * stays invisible), read usage, price it, settle, record usage, log one
 * line. All per-request memory comes from the request's h2o pool; the
 * request's state is freed by the pool's dispose callback, which is also
 * the one place where the request is accounted.
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
