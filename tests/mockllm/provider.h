/*
 * provider.h - the table of fake providers and what one provider supplies.
 *
 * A provider (OpenAI today; Anthropic, Bedrock, Vertex later) is one .c file
 * that defines a mock_provider_t: its routes, the error body it uses for an
 * injected fault, and its answer to unknown paths under its prefix. Adding a
 * provider means adding that file and one line to the table in providers.c.
 *
 * Routes of all providers are matched before prefixes, so two providers may
 * share a prefix such as "/v1/" as long as their routes differ; an unknown
 * path goes to the provider with the longest matching prefix.
 *
 * Thread: the table is immutable after startup; callbacks run on the worker
 * thread that owns the request.
 */
#ifndef MOCK_PROVIDER_H
#define MOCK_PROVIDER_H

#include <stddef.h>

#include <h2o.h>

typedef struct st_mock_call_t mock_call_t;

/* Process-wide settings from the command line; read-only once serving. */
typedef struct st_mock_settings_t {
    const char *api_key;
    size_t api_key_len;
} mock_settings_t;

typedef struct st_mock_route_t {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact path without query; a final '*' matches any rest */
    void (*on_call)(mock_call_t *call);
} mock_route_t;

typedef struct st_mock_provider_t {
    const char *name;
    const char *prefix; /* paths this provider answers 404 for when no route matches */
    const mock_route_t *routes;
    size_t num_routes;
    /* Called once at startup before serving; may be NULL. Returns 0 or -1. */
    int (*init)(const mock_settings_t *settings);
    /* Responds to call with the provider's error body for an injected status. */
    void (*send_fault)(mock_call_t *call, int status);
    /* Responds 404 to a path under prefix that matches no route. */
    void (*send_not_found)(h2o_req_t *req);
} mock_provider_t;

extern const mock_provider_t mock_openai_provider;

/* Runs every provider's init; returns 0, or -1 when one failed. */
int mock_providers_init(const mock_settings_t *settings);

/*
 * Finds the route for the request's method and normalized path. Returns NULL
 * when none matches; *provider is set to the route's provider, or on no match
 * to the provider that should answer 404 (never NULL: the first provider is
 * the default).
 */
const mock_route_t *mock_providers_route(const h2o_req_t *req, const mock_provider_t **provider);

#endif
