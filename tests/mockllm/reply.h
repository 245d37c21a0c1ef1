/*
 * reply.h - what every fake provider answers: the deterministic reply text,
 * word counting, the reply-length rules and the tool-call trigger.
 *
 * The reply of n words is "mock word1 word2 ... word<n-1>"; streams send it
 * one word per event ("mock", " word1", " word2", ...), so that the deltas
 * concatenate to the non-streamed text. A word, when counting prompts, is a
 * maximal run of bytes other than ASCII whitespace.
 *
 * Tool calls: when a request offers at least one tool and its last message
 * is a user message whose text contains "weather" (any case), the reply is a
 * call of the first tool offered with the arguments MOCK_TOOL_ARGS, in the
 * provider's own format. A last message carrying only tool results (or
 * anything but user text) never triggers one, so a client loop that answers
 * the call gets a text reply next.
 *
 * Thread: mock_reply_init() runs once before serving; the rest only reads
 * immutable tables and may be called from any thread.
 */
#ifndef MOCK_REPLY_H
#define MOCK_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "buf.h"

#define MOCK_MAX_COMPLETION 4096
#define MOCK_DEFAULT_COMPLETION 16
/* A limit at or above this does not shorten the reply of the Anthropic,
 * Bedrock and Vertex fakes (see mock_reply_length). */
#define MOCK_GENEROUS_LIMIT 1024

/* Arguments of every tool call, as JSON text, and the same text cut into
 * the pieces a stream sends (concatenated they equal MOCK_TOOL_ARGS). */
#define MOCK_TOOL_ARGS "{\"location\": \"Paris\"}"
#define MOCK_TOOL_ARGS_PIECES 3
extern const char *const mock_tool_args_pieces[MOCK_TOOL_ARGS_PIECES];

/* Builds the reply table. Returns 0, or -1 when it does not fit. */
int mock_reply_init(void);

/* The text of the first n words (n <= MOCK_MAX_COMPLETION); static memory. */
h2o_iovec_t mock_reply_text(uint32_t n);

/* Word i as streamed: "mock" for the first, " wordI" after it. */
h2o_iovec_t mock_reply_token(uint32_t i);

uint64_t mock_count_words(const char *s, size_t n);

/* Whether s contains "weather" in any letter case. */
int mock_mentions_weather(const char *s, size_t n);

/*
 * Whether the text of a message mentions the weather, for the tool trigger:
 * content is a string, or an array of blocks whose "text" strings count;
 * with block_type, only blocks whose "type" is block_type count (Anthropic's
 * typed blocks).
 */
int mock_content_mentions_weather(json_t *content, const char *block_type);

/*
 * Applies a request's stop sequences (a JSON array; anything else holds
 * none) to a reply of *n words: a sequence equal to reply word k ("mock" is
 * word 0, "wordK" word K) with k < *n ends the reply before it (*n = k).
 * Returns the last sequence that shortened the reply, or NULL.
 */
json_t *mock_reply_stop(json_t *stop_sequences, uint32_t *n);

/* FNV-1a over p[0..n), continuing from h (start with MOCK_FNV_OFFSET). */
#define MOCK_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t mock_fnv1a(uint64_t h, const void *p, size_t n);

/* Fills out[0..dims) with a unit-length vector determined by seed. */
void mock_unit_vector(uint64_t seed, float *out, size_t dims);

/* Appends "[x0,x1,...]" with %.9g per component. */
void mock_append_floats(mock_buf_t *buf, const float *v, size_t dims);

/*
 * The reply length of the Anthropic, Bedrock and Vertex fakes for an
 * optional output limit: a limit below MOCK_GENEROUS_LIMIT is used in full
 * (*limited = 1: the provider's max-tokens stop reason); no limit, or a
 * generous one as SDKs and gateways send by default, gives the natural
 * MOCK_DEFAULT_COMPLETION words and a natural stop. (The OpenAI and Azure
 * fakes keep OpenAI's older rule: any limit is used in full up to
 * MOCK_MAX_COMPLETION.)
 */
void mock_reply_length(int has_limit, int64_t limit, uint32_t *n, int *limited);

#endif
