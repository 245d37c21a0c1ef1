/*
 * openai.h - the OpenAI chat-completions and embeddings fakes, shared by the
 * OpenAI provider (openai.c) and the Azure OpenAI provider (azure.c).
 *
 * The callers authenticate first; these parse the body, answer (JSON or
 * SSE) with OpenAI's wire format plus the flavour's differences, and answer
 * OpenAI-shaped 400s for malformed requests, as both services do.
 *
 * Thread: called on the worker thread that owns the request.
 */
#ifndef MOCK_OPENAI_H
#define MOCK_OPENAI_H

#include <h2o.h>

#include "buf.h"
#include "call.h"

typedef struct st_mock_openai_flavor_t {
    /* Azure: content-filter annotations, the empty-choices preamble chunk of
     * streams, and the model taken from the deployment. */
    int azure;
    /* The model to report, escaped for JSON output (the Azure deployment);
     * base NULL to require and report the body's "model". */
    h2o_iovec_t model;
} mock_openai_flavor_t;

void mock_openai_chat(mock_call_t *call, const mock_openai_flavor_t *flavor);
void mock_openai_embeddings(mock_call_t *call, const mock_openai_flavor_t *flavor);

/* Appends OpenAI's error object {"error":{"message","type","param","code"}}. */
void mock_openai_format_error(mock_buf_t *buf, const char *message, size_t message_len, const char *type,
                              const char *param, const char *code);

/* The in-stream error event both services send when a stream fails:
 * `data: {"error":{...server_error...}}`. */
void mock_openai_stream_error(mock_call_t *call, mock_buf_t *out);

#endif
