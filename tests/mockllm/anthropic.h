/*
 * anthropic.h - the Anthropic Messages API fake, shared by the Anthropic
 * provider (anthropic.c), Claude on Vertex AI (vertex.c: rawPredict and
 * streamRawPredict) and Claude on Bedrock (bedrock.c: InvokeModel), which
 * take the same body with the model in the URL and "anthropic_version" in
 * the body.
 *
 * Thread: called on the worker thread that owns the request.
 */
#ifndef MOCK_ANTHROPIC_H
#define MOCK_ANTHROPIC_H

#include <h2o.h>

#include "buf.h"
#include "call.h"

#define MOCK_ANTHROPIC_VERTEX "vertex-2023-10-16"
#define MOCK_ANTHROPIC_BEDROCK "bedrock-2023-05-31"

typedef struct st_mock_anthropic_flavor_t {
    /* The "anthropic_version" the body must carry (MOCK_ANTHROPIC_VERTEX or
     * MOCK_ANTHROPIC_BEDROCK; the model is then the URL's); NULL for the
     * direct API. */
    const char *version;
    h2o_iovec_t model; /* escaped for JSON output; with version only */
    int force_stream;  /* streamRawPredict */
} mock_anthropic_flavor_t;

/* Answers a Messages request (JSON or SSE) whose credentials were checked. */
void mock_anthropic_messages(mock_call_t *call, const mock_anthropic_flavor_t *flavor);

/* Anthropic's in-stream error event: `event: error` with overloaded_error. */
void mock_anthropic_stream_error(mock_call_t *call, mock_buf_t *out);

#endif
