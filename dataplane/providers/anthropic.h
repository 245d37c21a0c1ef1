/*
 * anthropic.h - Anthropic's Messages API, both ways.
 *
 * Provider side (kind `anthropic`): OpenAI chat requests are rewritten into
 * Messages requests (POST {base_url}/v1/messages, `x-api-key`,
 * `anthropic-version: 2023-06-01`) and the answers, complete or streamed as
 * named SSE events, back into OpenAI chat completions and chunks. The body
 * builder and the response and event translators are exported so that
 * providers serving Claude through another front door (Vertex rawPredict)
 * reuse them.
 *
 * Ingress side (clients speaking Anthropic to Sluice at POST /v1/messages):
 * pure functions turning an Anthropic request into an OpenAI chat request,
 * and the OpenAI answer (complete, streamed chunk by chunk, or an error)
 * back into Anthropic's shapes.
 *
 * Everything here allocates only from the pool it is given and keeps no
 * state outside its arguments; any worker thread.
 */
#ifndef DP_ANTHROPIC_H
#define DP_ANTHROPIC_H

#include <stdint.h>

#include <h2o.h>

#include "dp_provider.h"
#include "sl_err.h"

extern const dp_provider_ops_t dp_provider_anthropic;

/* The `anthropic-version` header value sent to the direct API. */
#define DP_ANTHROPIC_VERSION "2023-06-01"
/* max_tokens when neither the client nor the catalog gives one. */
#define DP_ANTHROPIC_DEFAULT_MAX_TOKENS 4096

/* --- provider side ------------------------------------------------------ */

/* Builds a Messages request body (pool memory) from the OpenAI chat request
 * in. model: written as "model" unless its base is NULL (Vertex puts the
 * model in the URL). version: written as "anthropic_version" when not NULL
 * (Vertex wants "vertex-2023-10-16" there). default_max_tokens: used when
 * the client set neither max_completion_tokens nor max_tokens. Returns 0,
 * or SL_EINVAL when the request cannot be expressed for Anthropic (bad
 * shape, n > 1, logprobs, an unsupported content part, tool arguments that
 * are not a JSON object...), with *errmsg (and *errparam when one field is
 * to blame, else NULL) set to a lower-case message for a 400 answer. */
int dp_anthropic_chat_body(h2o_mem_pool_t *pool, const dp_chat_req_t *in, h2o_iovec_t model, const char *version,
                           int64_t default_max_tokens, h2o_iovec_t *out, const char **errmsg, const char **errparam);

/* max_tokens to send when the client gave none: the catalog's
 * max_output_tokens of (provider, model) when the current snapshot has one,
 * else DP_ANTHROPIC_DEFAULT_MAX_TOKENS. Worker threads. */
int64_t dp_anthropic_default_max_tokens(const char *provider, h2o_iovec_t model);

/* The translators of dp_provider_anthropic, for reuse (see dp_provider.h
 * for the contracts). */
int dp_anthropic_translate_response(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *body, size_t len,
                                    h2o_iovec_t *out, dp_tokens_t *tokens);
int dp_anthropic_translate_event(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *event, size_t event_len,
                                 const char *data, size_t len, h2o_buffer_t **out, dp_tokens_t *tokens);
int dp_anthropic_parse_usage(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out);
int dp_anthropic_parse_event(h2o_mem_pool_t *pool, const char *data, size_t len, dp_tokens_t *out);
void dp_anthropic_map_error(int upstream_status, const char *body, size_t len, dp_upstream_error_t *out);

/* --- ingress side (Anthropic-format clients) ---------------------------- */

/* Rewrites an Anthropic Messages request into an OpenAI chat request (pool
 * memory): system, messages and their blocks (text, image, tool_use,
 * tool_result), tools, tool_choice, max_tokens, stop_sequences,
 * temperature, top_p, metadata.user_id, and stream (with
 * stream_options.include_usage). Returns 0, or SL_EINVAL with err->msg
 * saying what is wrong (answer 400 invalid_request_error). */
int dp_anthropic_ingress_to_openai(h2o_mem_pool_t *pool, const char *body, size_t len, h2o_iovec_t *out, sl_err_t *err);

/* Rewrites an OpenAI chat.completion body into an Anthropic message (pool
 * memory) reporting model. Returns 0 or SL_EINVAL when the body is not a
 * chat completion. */
int dp_anthropic_egress_response(h2o_mem_pool_t *pool, const char *openai_body, size_t len, h2o_iovec_t model,
                                 h2o_iovec_t *out);

/* Rewrites an error answer (status, OpenAI-shaped body or anything else)
 * into Anthropic's {"type":"error","error":{"type","message"}} (pool
 * memory). */
h2o_iovec_t dp_anthropic_egress_error(h2o_mem_pool_t *pool, int status, const char *openai_body, size_t len);

/* Streaming egress: OpenAI chunks in, Anthropic SSE events out. */
typedef struct dp_anthropic_egress dp_anthropic_egress_t;

/* A translator for one stream (pool memory). id: the message id to report
 * ("msg_..."), model: the model to report; both copied. */
dp_anthropic_egress_t *dp_anthropic_egress_new(h2o_mem_pool_t *pool, h2o_iovec_t id, h2o_iovec_t model);

/* Feeds the data of one OpenAI SSE event ("[DONE]" included) and appends
 * the resulting Anthropic events ("event: NAME\ndata: {...}\n\n") to *out.
 * Returns DP_EV_* flags: DP_EV_CONTENT when content went out, DP_EV_DONE
 * after message_stop, DP_EV_ERROR when the chunk was an error object (an
 * Anthropic error event was appended; the stream is over). */
int dp_anthropic_egress_event(dp_anthropic_egress_t *s, const char *data, size_t len, h2o_buffer_t **out);

/* Ends a broken stream: appends `event: error` with an api_error carrying
 * message (nothing when the stream already ended). */
void dp_anthropic_egress_fail(dp_anthropic_egress_t *s, const char *message, h2o_buffer_t **out);

#endif
