/*
 * dp_provider.h - what a provider implements: translating a chat request
 * for its API and reading usage and errors back.
 *
 * One file per provider in providers/, one row per provider kind in the
 * table (dp_provider.c). Several kinds may share a translator with
 * different URL and auth rules (openai, openai_compatible, azure_openai).
 *
 * Every function is pure with respect to its arguments: it reads the
 * snapshot records it is given (borrowed for the call) and allocates only
 * from the request's pool. Called on worker threads.
 */
#ifndef DP_PROVIDER_H
#define DP_PROVIDER_H

#include <stdint.h>

#include <h2o.h>

#include "dp_jw.h"
#include "dp_snapshot.h"
#include "sl_json.h"

/* The client's chat request, validated and tokenized once. */
typedef struct dp_chat_req {
    const char *body;             /* borrowed from the request entity */
    size_t len;
    const sl_json_tok_t *toks;    /* toks[0] is the root object */
    int ntoks;
    int model_tok;                /* index of the "model" string */
    int stream;                   /* "stream": true */
    int64_t max_tokens;           /* max_completion_tokens / max_tokens, -1 absent */
} dp_chat_req_t;

/* The raw HTTP/1.1 request to send upstream: head, then body pieces
 * (spliced from the client's body: no re-serialization). */
#define DP_UPSTREAM_MAX_BUFS 8
typedef struct dp_upstream_req {
    h2o_iovec_t bufs[DP_UPSTREAM_MAX_BUFS];
    size_t nbufs;
    size_t body_len;
    /* When build_chat fails: why, worded for the client (static or pool
     * memory; NULL when not said), and error_status 400 when the client's
     * request cannot be expressed for this provider (another target may
     * still take it), 0 when the provider's configuration is at fault. */
    const char *error;
    int error_status;
} dp_upstream_req_t;

typedef struct dp_tokens {
    int64_t input;                /* prompt tokens, cached ones included */
    int64_t cached_input;
    int64_t output;
    int seen;                     /* a usage object was read */
} dp_tokens_t;

/* What one stream event said (bit flags). */
enum {
    DP_EV_USAGE = 1,              /* carried usage (tokens filled in) */
    DP_EV_CONTENT = 2,            /* carried generated content */
    DP_EV_DONE = 4,               /* the end-of-stream marker */
    DP_EV_ERROR = 8,              /* an error object instead of a chunk */
};

/* How an upstream error status reaches the client. */
typedef struct dp_upstream_error {
    int status;                   /* status to answer with */
    int pass_body;                /* 1: relay the upstream body as is (OpenAI-shaped) */
    const char *type, *code;      /* when wrapping */
    /* When wrapping: the upstream's own error message (NUL-terminated; ""
     * when none), for translators whose error bodies are not OpenAI-shaped
     * (e.g. Bedrock's {"message": ...}). Zero-initialize the struct. */
    char message[512];
} dp_upstream_error_t;

/* Upstream stream framing. */
enum {
    DP_FRAMING_SSE = 0,           /* text/event-stream (OpenAI, Anthropic, Gemini ?alt=sse) */
    DP_FRAMING_AWS_EVENTSTREAM = 1, /* application/vnd.amazon.eventstream (Bedrock ConverseStream) */
};

/* Per-request state of a translating provider; allocated from the request
 * pool by the request path, `state` by the translator on first use. */
typedef struct dp_xlate_ctx {
    void *state;                  /* translator's own, pool-allocated */
    h2o_iovec_t id;               /* "chatcmpl-<request id>" for chunk/response ids */
    h2o_iovec_t model;            /* the model name reported to the client */
    int64_t created;              /* unix seconds for "created" */
    int include_usage;            /* the client asked for stream_options.include_usage */
} dp_xlate_ctx_t;

typedef struct dp_provider_ops {
    const char *name;             /* translator name, for logs */
    int openai_format;            /* accepts OpenAI chat requests verbatim (unknown models may be forwarded) */
    /* Builds the upstream chat request. client_headers are forwarded minus
     * hop-by-hop, auth and encoding headers. Returns 0 or SL_EINVAL. */
    int (*build_chat)(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                      h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                      h2o_iovec_t request_id, dp_upstream_req_t *out);
    /* Reads usage from a complete non-streaming response body. Returns 0
     * (out->seen tells whether usage was present) or SL_EINVAL. */
    int (*parse_usage)(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out);
    /* Reads one stream event's data; returns DP_EV_* flags. */
    int (*parse_event)(h2o_mem_pool_t *pool, const char *data, size_t len, dp_tokens_t *out);
    /* Decides how an upstream error status is answered. */
    void (*map_error)(int upstream_status, const char *body, size_t len, dp_upstream_error_t *out);

    /* --- translating providers (wire format other than OpenAI's) ---
     * NULL in OpenAI-format translators, whose bodies are relayed as is. */
    int framing;                  /* DP_FRAMING_* of streamed responses */
    /* Translates a complete non-streaming response body into an OpenAI
     * chat.completion JSON body (pool memory) and reads its usage. */
    int (*translate_response)(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *body, size_t len,
                              h2o_iovec_t *out, dp_tokens_t *tokens);
    /* Translates one upstream stream event (the SSE event name and data, or
     * one event-stream message's :event-type and payload) into zero or more
     * complete OpenAI chunk events ("data: {...}\n\n") appended to *out.
     * Returns DP_EV_* flags: DP_EV_CONTENT when the appended output carries
     * generated content (tokens or tool-call deltas), DP_EV_DONE at the
     * upstream's end of message (the request path then writes "data:
     * [DONE]"), DP_EV_ERROR for an in-stream error. */
    int (*translate_event)(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *event, size_t event_len,
                           const char *data, size_t len, h2o_buffer_t **out, dp_tokens_t *tokens);

    /* --- embeddings (POST /v1/embeddings); NULL when the provider has none ---
     * in: the client's OpenAI embeddings body, tokenized once (model_tok
     * set, stream 0, max_tokens -1). Same contract as build_chat. */
    int (*build_embeddings)(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                            h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                            h2o_iovec_t request_id, dp_upstream_req_t *out);
    /* Translates a complete 2xx embeddings answer into OpenAI's
     * {"object":"list","data":[...],"model","usage"} (pool memory) and reads
     * its usage. upstream_headers: the answer's headers (Bedrock counts
     * input tokens in one). NULL when the answer is OpenAI's already (its
     * usage is then read with parse_usage). */
    int (*translate_embeddings)(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const dp_chat_req_t *in,
                                const h2o_headers_t *upstream_headers, const char *body, size_t len,
                                h2o_iovec_t *out, dp_tokens_t *tokens);

    /* An upstream 401 for cred: 1 when it refused a short-lived token the
     * translator is renewing (a transient failure), 0 when the credential
     * itself is refused. NULL: always the credential. Worker thread; must
     * not block. */
    int (*auth_refused)(const dp_provider_t *prov, const dp_credential_t *cred);
} dp_provider_ops_t;

/* The translator for a provider kind, or NULL when the kind is unknown or
 * not implemented yet (such providers are skipped by routing). */
const dp_provider_ops_t *dp_provider_ops_for(const char *kind);

/* Shared helpers for translators (same threads and memory rules as the
 * translators: pool memory lives until the request ends). */

/* Whether a client request header must not be forwarded upstream. */
int dp_provider_drop_request_header(const h2o_header_t *h);

/* The value of the provider's parameter name (borrowed from the snapshot),
 * or NULL when it has none. */
const char *dp_provider_param(const dp_provider_t *prov, const char *name);

/* Tokenizes js[0..len) into stack (scap tokens; NULL and 0 for none) or,
 * when it needs more tokens, into an array allocated from pool that always
 * suffices. *toks is set to the array used. Returns what sl_json_parse()
 * returns. */
int dp_provider_parse_pool(h2o_mem_pool_t *pool, const char *js, size_t len, sl_json_tok_t *stack, size_t scap,
                           sl_json_tok_t **toks);

/* Whether the member found at t[i] (i from sl_json_find) is missing or
 * null: OpenAI's and Anthropic's APIs treat both alike. */
static inline int dp_json_absent(const sl_json_tok_t *t, int i)
{
    return i < 0 || t[i].type == SL_JSON_NULL;
}

/* The unescaped text of string token t: js itself when the token has no
 * escapes, else a pool copy. Not NUL-terminated. */
h2o_iovec_t dp_json_unescape(h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t);

/* Writes the header lines of a JSON request (each ended with CRLF):
 * content-type, accept (what the answer may be: application/json,
 * text/event-stream...) and x-request-id. */
void dp_upstream_json_headers(dp_jw_t *head, const char *accept, h2o_iovec_t request_id);

/* Ends the request head written so far in head (its last header line
 * ended with CRLF) with content-length and the blank line, and makes out
 * that head followed by body. */
void dp_upstream_finish(dp_jw_t *head, h2o_iovec_t body, dp_upstream_req_t *out);

/* Starts map_error's answer: a wrapped 502 api_error "upstream_error" with
 * no message, and settles the statuses every translator answers alike:
 * 401 and 403 mean the provider refused our credential, which is not the
 * client's fault (502 "upstream_auth_failed"; the upstream's message is
 * dropped, as it may echo part of the credential). Returns 1 when status
 * was one of those (out is final), else 0. */
int dp_upstream_error_begin(int status, dp_upstream_error_t *out);

/* Opens an OpenAI answer for ctx: with chunk 0 a chat.completion body,
 * {"id":...,"object":"chat.completion","created":...,"model":...; with
 * chunk 1 the SSE data line of a chunk, data: {"id":...,"object":
 * "chat.completion.chunk",... The caller writes the rest, from ,"choices"
 * on. */
void dp_xlate_open(dp_jw_t *w, const dp_xlate_ctx_t *ctx, int chunk);

/* OpenAI's usage object for tk: prompt (cached included), completion and
 * total tokens, cached tokens, and the reasoning tokens among the
 * completion tokens when reasoning > 0. */
void dp_xlate_usage(dp_jw_t *w, const dp_tokens_t *tk, int64_t reasoning);

#endif
