/*
 * faults.h - queue of injected faults for the next API requests.
 *
 * Tests POST a fault with a count; the next `count` API requests, on any
 * thread, each take one application of it, in the order the faults were
 * queued. A fault may name a provider: then only that provider's requests
 * take it, and the others pass it by (they take the oldest fault that
 * matches them). A fault naming none applies to every model API, never to
 * an auxiliary provider (the token endpoint). The queue is a mutex-protected list with an atomic counter in front
 * of it, so requests pay for the lock only while faults are pending.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef MOCK_FAULTS_H
#define MOCK_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include <h2o/memory.h>

#include "buf.h"

typedef struct st_mock_fault_t {
    int status;                 /* HTTP status to answer with (>= 400), 0 for none */
    uint32_t delay_ms;          /* wait before the response headers */
    uint32_t chunk_delay_ms;    /* wait between SSE events */
    int32_t drop_after_chunks;  /* close abruptly after this many stream events, -1 for never */
    int32_t error_after_chunks; /* end a stream with an in-stream error event after this many, -1 for never */
    int provider;               /* mock_provider_id_t it applies to, -1 for any model API */
    uint32_t retry_after_s;     /* Retry-After header on a status fault, 0 for none */
    const char *error_body;     /* raw body for a status fault, NULL for the provider's */
    size_t error_body_len;
} mock_fault_t;

/* The neutral fault: nothing injected. */
#define MOCK_FAULT_NONE ((mock_fault_t){0, 0, 0, -1, -1, -1, 0, NULL, 0})

/*
 * Queues fault for the next count requests (count >= 1). error_body is copied.
 * Returns 0, or -1 when out of memory.
 */
int mock_faults_push(const mock_fault_t *fault, uint32_t count);
/*
 * Takes one application of the oldest queued fault that applies to a request
 * of provider (aux: an auxiliary provider, see above) into *out. Its
 * error_body is copied into pool and lives as long as the pool. Returns 1
 * when a fault was taken, 0 when none applies.
 */
int mock_faults_take(mock_fault_t *out, h2o_mem_pool_t *pool, int provider, int aux);
/* Drops every queued fault. */
void mock_faults_clear(void);
/* Appends the queue as JSON: {"pending_requests":N,"faults":[{...},...]}. */
void mock_faults_to_json(mock_buf_t *buf);

#endif
