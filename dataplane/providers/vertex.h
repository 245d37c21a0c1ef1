/*
 * vertex.h - Google Vertex AI (provider kind `vertex`).
 *
 * Models whose name starts with "claude" are Anthropic's, served through
 * Vertex's rawPredict / streamRawPredict with the Messages body
 * (anthropic.h) carrying "anthropic_version":"vertex-2023-10-16" and no
 * model; every other model is Gemini, through generateContent /
 * streamGenerateContent?alt=sse. URLs are
 *
 *   {base_url}/v1/projects/{project}/locations/{location}/publishers/
 *       {google|anthropic}/models/{model}:{method}
 *
 * with `project` and `location` from the provider's params (project
 * defaults to the service account's project_id, location to us-central1)
 * and base_url conventionally https://{location}-aiplatform.googleapis.com.
 * Requests carry `Authorization: Bearer <access token>` from dp_gauth; when
 * no token is available yet build_chat fails with SL_EUNAVAIL (and
 * out->error saying why), which the request path treats like a connect
 * error. A request that cannot be expressed for Gemini fails with
 * SL_EINVAL and out->error_status 400.
 *
 * Gemini translation, OpenAI -> Vertex: system/developer messages ->
 * systemInstruction; user -> role "user", assistant -> role "model"; text
 * parts -> {text}; image data: URLs (and input_audio, file data) ->
 * {inlineData}; http(s)/gs URLs -> {fileData} with the MIME type guessed
 * from the extension; assistant tool_calls -> {functionCall}; tool messages
 * -> {functionResponse} named after the assistant tool call whose id they
 * answer (consecutive ones in one turn); tools -> functionDeclarations
 * (JSON-Schema keywords Vertex refuses are dropped); tool_choice ->
 * toolConfig.functionCallingConfig; max tokens, temperature, top_p, stop,
 * penalties, seed, response_format -> generationConfig (n must be 1: one
 * candidate is translated back); a top-level "cachedContent" is passed
 * through.
 *
 * Vertex -> OpenAI: candidates[0] -> choices[0] (text parts joined; thought
 * parts left out; functionCall parts -> tool_calls "call_<n>" with the args
 * as compact JSON); finishReason STOP -> stop (tool_calls when the answer
 * calls functions), MAX_TOKENS -> length, SAFETY / RECITATION / BLOCKLIST /
 * PROHIBITED_CONTENT / SPII / IMAGE_SAFETY... -> content_filter (also a
 * blocked prompt); usageMetadata -> usage (prompt + tool-use prompt tokens,
 * candidates + thoughts tokens, cachedContentTokenCount -> cached_tokens).
 * Streams: each SSE data is one GenerateContentResponse; the first yields
 * the role chunk, text parts content chunks, function calls one complete
 * tool_calls delta, finishReason the finish chunk, and the chunk carrying
 * the final usage (after a finishReason) the usage chunk (with
 * include_usage) and DP_EV_DONE. Errors {"error":{"code","message",
 * "status"}} map to OpenAI's shape (429 rate limit, 400 invalid request,
 * 401/403 our credential's problem). Embeddings go through
 * .../publishers/google/models/{model}:predict (below).
 *
 * Pure functions over the request pool; any worker thread.
 */
#ifndef DP_VERTEX_H
#define DP_VERTEX_H

#include "dp_provider.h"

extern const dp_provider_ops_t dp_provider_vertex;

/* The anthropic_version Vertex wants in rawPredict bodies. */
#define DP_VERTEX_ANTHROPIC_VERSION "vertex-2023-10-16"

/* Whether a Vertex model is Anthropic's (routed to rawPredict). */
int dp_vertex_is_claude(const char *model, size_t len);

/* Builds the Gemini generateContent body (pool memory) for the OpenAI chat
 * request in. Returns 0, or SL_EINVAL with *errmsg (and *errparam, or NULL)
 * worded for a 400 answer. */
int dp_vertex_gemini_body(h2o_mem_pool_t *pool, const dp_chat_req_t *in, h2o_iovec_t *out, const char **errmsg,
                          const char **errparam);

/* Builds the :predict body of an OpenAI embeddings request (js tokenized in
 * t, t[0] the root object): `input` a string or an array of strings ->
 * instances[].content, `dimensions` -> parameters.outputDimensionality,
 * `input_type` (an extension: RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, ...) ->
 * each instance's task_type. Returns 0, or SL_EINVAL with *errmsg. The
 * answer's predictions[].embeddings.values become OpenAI's data[] (floats,
 * or base64 float32 with encoding_format "base64") and their
 * statistics.token_count the usage. */
int dp_vertex_embeddings_body(h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t, h2o_iovec_t *out,
                              const char **errmsg);

#endif
