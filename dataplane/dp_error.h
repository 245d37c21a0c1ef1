/*
 * dp_error.h - OpenAI-shaped error responses.
 *
 *   {"error":{"message":"...","type":"...","param":null,"code":"..."}}
 *
 * Every error the data plane answers itself (auth, validation, routing,
 * upstream failures) goes through here so clients written for OpenAI parse
 * them. Pure functions; any thread.
 */
#ifndef DP_ERROR_H
#define DP_ERROR_H

#include <h2o.h>

typedef struct dp_error {
    int status;            /* HTTP status */
    const char *type;      /* "invalid_request_error", "api_error", ... */
    const char *code;      /* NULL renders as null */
    const char *param;     /* NULL renders as null */
    const char *message;   /* lower-case, no final period */
} dp_error_t;

/* Renders e as JSON into pool memory (followed by "\n"). */
h2o_iovec_t dp_error_json(h2o_mem_pool_t *pool, const dp_error_t *e);

/* Appends s[0..len) as a JSON string literal (quotes included) at out,
 * which must hold dp_json_escaped_len(s, len) bytes; returns bytes written. */
size_t dp_json_escape(char *out, const char *s, size_t len);
size_t dp_json_escaped_len(const char *s, size_t len);

/* Whether body is an OpenAI-shaped error: a JSON object whose "error"
 * member is an object. */
int dp_error_is_openai_shaped(const char *body, size_t len);

/* The reason phrase for an HTTP status. */
const char *dp_http_reason(int status);

#endif
