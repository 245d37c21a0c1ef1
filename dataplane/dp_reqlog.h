/*
 * dp_reqlog.h - the request log: one JSON line per API request on stderr,
 * written when the request is accounted.
 *
 * Fields (always present, null when they do not apply): ts (end of the
 * request, UTC), level, module "request", request_id, method, path,
 * key_id, tenant_id, model (as requested), requested_provider (the first
 * target's), provider and served_model (the attempt that answered, or the
 * last one tried), stream, status, upstream_status, attempts, outcome (the
 * sluice_requests_total label), input_tokens, cached_input_tokens,
 * output_tokens, cost_nano, cost_usd (decimal string), overhead_us
 * (gateway time: duration minus upstream time), upstream_ms,
 * duration_ms, ttft_ms (streams with content), error. sample_rate is
 * added when sampling is on.
 *
 * Sampling: dp_reqlog_sampled keeps a request with probability rate;
 * errors (status >= 400, broken streams) are always kept.
 *
 * Content: never, unless the key opts in with {"log_content": true} in its
 * metadata. Then the line also carries "prompt" (the request's messages,
 * or an embeddings request's input, as JSON text) and "completion" (the
 * generated text as the client received it), each cut at
 * DP_REQLOG_CONTENT_MAX bytes on a character boundary, with
 * "prompt_truncated" / "completion_truncated". The opt-in is read from the
 * snapshot's metadata_json once per key and snapshot version per worker
 * (dp_reqlog_content_enabled), not per request.
 *
 * Threads: dp_reqlog_init on the main thread before the workers start;
 * everything else on worker threads (the content cache is per worker).
 */
#ifndef DP_REQLOG_H
#define DP_REQLOG_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "dp_provider.h"
#include "dp_snapshot.h"

#define DP_REQLOG_CONTENT_MAX 4096                /* bytes of prompt and of completion text logged */
#define DP_REQLOG_CAPTURE_MAX ((size_t)256 << 10) /* answer bytes kept to find the completion in */

/* Main thread, once, before the workers start (again: starts afresh, for
 * tests): nworkers worker threads, sampling rate in [0, 1]. */
int dp_reqlog_init(int nworkers, double sample_rate);

/* Parses a --request-log-sample value ("0.1", "1", "0"). 0 or SL_EINVAL. */
int dp_reqlog_parse_rate(const char *s, double *out);

/* Whether to write this request's line: r is a uniformly random number;
 * error requests are always written. */
int dp_reqlog_sampled(uint64_t r, int error);

/* Worker thread: whether key opted in to content logging. */
int dp_reqlog_content_enabled(int worker, const dp_snapshot_t *s, const dp_key_t *key);

/* The answer's bytes as sent to the client, kept for the completion text
 * of keys that log content. Allocated from pool on first use. */
typedef struct dp_reqlog_capture {
    char *data;
    size_t len, cap;
    int truncated;
} dp_reqlog_capture_t;
void dp_reqlog_capture(dp_reqlog_capture_t **cap, h2o_mem_pool_t *pool, const void *bytes, size_t len);

/* One request, as the request path saw it. Everything is borrowed for the
 * call. */
typedef struct dp_reqlog_rec {
    const char *request_id;
    h2o_iovec_t method, path;
    const char *key_id, *tenant_id;            /* NULL before authentication */
    h2o_iovec_t requested_model;               /* base NULL when absent */
    const char *requested_provider, *provider; /* NULL when not routed */
    h2o_iovec_t served_model;                  /* base NULL when not routed */
    int stream, status, upstream_status, attempts;
    const char *outcome, *error; /* error NULL when none */
    int64_t input_tokens, cached_input_tokens, output_tokens, cost_nano;
    uint64_t total_ns, upstream_ns, ttft_ns; /* ttft_ns 0: no first token */
    /* content, only for keys that opted in (NULL otherwise) */
    const dp_chat_req_t *chat;
    const dp_reqlog_capture_t *capture;
} dp_reqlog_rec_t;

/* Formats r as one JSON object (no newline) into a buffer the caller frees
 * with free(); returns its length, 0 on allocation failure. */
size_t dp_reqlog_format(const dp_reqlog_rec_t *r, char **out);

/* Formats and writes r's line. */
void dp_reqlog_write(const dp_reqlog_rec_t *r);

/* The generated text in an answer as sent to the client: an OpenAI or
 * Anthropic JSON body, or their SSE streams. Writes at most cap bytes
 * (cut on a character boundary) to out; returns the length, and sets
 * *truncated when there was more. */
size_t dp_reqlog_completion_text(const char *bytes, size_t len, char *out, size_t cap, int *truncated);

#endif
