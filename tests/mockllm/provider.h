/*
 * provider.h - the table of fake providers and what one provider supplies.
 *
 * A provider (OpenAI, Azure OpenAI, Anthropic, Bedrock, Vertex AI, and the
 * Google OAuth token endpoint Vertex clients use) is one .c file that
 * defines a mock_provider_t: its routes, the error body it uses for an
 * injected fault, its in-stream error event, and its answer to unknown paths
 * under its prefix. Adding a provider means adding that file, an id below
 * and one line to the table in providers.c.
 *
 * Routes of all providers are matched before prefixes, so two providers may
 * share a prefix such as "/v1/" as long as their routes differ; an unknown
 * path goes to the provider with the longest matching prefix.
 *
 * Thread: the table and the settings are immutable once serving; callbacks
 * run on the worker thread that owns the request.
 */
#ifndef MOCK_PROVIDER_H
#define MOCK_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "buf.h"

typedef struct st_mock_call_t mock_call_t;

/* Provider ids: index of the per-provider counters and the "provider" field
 * of a fault. */
typedef enum mock_provider_id {
    MOCK_PROVIDER_OPENAI = 0,
    MOCK_PROVIDER_AZURE,
    MOCK_PROVIDER_ANTHROPIC,
    MOCK_PROVIDER_BEDROCK,
    MOCK_PROVIDER_VERTEX,
    MOCK_PROVIDER_GOOGLE_OAUTH, /* the token endpoint; not a model API */
    MOCK_PROVIDER_COUNT
} mock_provider_id_t;

/* "openai", "azure", "anthropic", "bedrock", "vertex", "google_oauth". */
const char *mock_provider_name(mock_provider_id_t id);
/* The id named name[0..len), or -1. */
int mock_provider_parse(const char *name, size_t len);

/* Default AWS test credentials (documented in README.md). */
#define MOCK_AWS_ACCESS_KEY_ID "AKIAMOCKLLMTEST00001"
#define MOCK_AWS_SECRET_ACCESS_KEY "mockllm/TEST/secret/0000000000000000000000"
#define MOCK_GOOGLE_TOKEN_TTL 3600

/* Process-wide settings from the command line; read-only once serving. */
typedef struct st_mock_settings_t {
    const char *api_key; /* OpenAI bearer key; default of the others */
    size_t api_key_len;
    const char *anthropic_key; /* x-api-key */
    size_t anthropic_key_len;
    const char *azure_key; /* api-key */
    size_t azure_key_len;
    const char *aws_access_key_id;
    const char *aws_secret_access_key;
    const char *google_sa_file;         /* service-account JSON: public key, email, token_uri */
    const char *google_public_key_file; /* PEM public key instead of (or besides) the file */
    const char *google_client_email;    /* the one issuer the token endpoint knows */
    uint32_t google_token_ttl;          /* seconds an issued access token lives */
} mock_settings_t;

typedef struct st_mock_route_t {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact path without query; a final '*' matches any rest */
    void (*on_call)(mock_call_t *call);
} mock_route_t;

typedef struct st_mock_provider_t {
    const char *name;
    mock_provider_id_t id;
    /*
     * Not a model API (the token endpoint): takes only faults that name it,
     * and its requests are counted under by_provider only, never in the
     * top-level totals.
     */
    int aux;
    const char *prefix; /* paths this provider answers 404 for when no route matches */
    const mock_route_t *routes; /* ends with an entry whose method is NULL */
    /* Called once at startup before serving; may be NULL. Returns 0 or -1
     * after printing why to stderr. */
    int (*init)(const mock_settings_t *settings);
    /* Responds to call with the provider's error body for an injected status. */
    void (*send_fault)(mock_call_t *call, int status);
    /*
     * Formats the provider's in-stream error event (the whole event, framing
     * included) into out, for the error_after_chunks fault. NULL when the
     * provider never streams.
     */
    void (*stream_error)(mock_call_t *call, mock_buf_t *out);
    /* Responds 404 to a path under prefix that matches no route. */
    void (*send_not_found)(h2o_req_t *req);
} mock_provider_t;

extern const mock_provider_t mock_openai_provider;
extern const mock_provider_t mock_azure_provider;
extern const mock_provider_t mock_anthropic_provider;
extern const mock_provider_t mock_bedrock_provider;
extern const mock_provider_t mock_vertex_provider;
extern const mock_provider_t mock_google_oauth_provider;

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
