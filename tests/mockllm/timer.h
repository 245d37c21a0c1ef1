/*
 * timer.h - one-shot timers of any duration on an h2o 2.2.5 event loop.
 *
 * h2o 2.2.5 only offers timeouts of a fixed duration (h2o_timeout_t), each of
 * which must be registered with the loop. Fault injection needs arbitrary
 * delays, so each worker thread keeps a small table of h2o timeouts: one per
 * distinct delay seen (up to MOCK_TIMERS_EXACT), and powers of two as a
 * fallback once the table is full; a long delay is then served in a few hops.
 *
 * Thread: mock_timers_bind() is called once by each worker thread on its own
 * table; mock_timer_*() then use the calling thread's table and loop.
 */
#ifndef MOCK_TIMER_H
#define MOCK_TIMER_H

#include <stdint.h>

#include <h2o.h>

#define MOCK_TIMERS_EXACT 64
#define MOCK_TIMERS_POW2 21 /* 1 ms .. 2^20 ms, more than MOCK_DELAY_MAX_MS */
#define MOCK_DELAY_MAX_MS 600000u

/* The per-thread table; it must not move once bound (h2o links to it). */
typedef struct st_mock_timers_t {
    h2o_loop_t *loop;
    size_t num_exact;
    uint64_t exact_ms[MOCK_TIMERS_EXACT];
    h2o_timeout_t exact[MOCK_TIMERS_EXACT];
    uint32_t pow2_ready; /* bit i set when pow2[i] is registered */
    h2o_timeout_t pow2[MOCK_TIMERS_POW2];
} mock_timers_t;

typedef struct st_mock_timer_t mock_timer_t;
typedef void (*mock_timer_cb)(mock_timer_t *timer);

/* Embed in the object that waits; zero-initialise it before first use. */
struct st_mock_timer_t {
    h2o_timeout_entry_t _entry;
    mock_timer_cb _cb;
    uint64_t _remaining; /* ms still to wait after the current hop */
};

/* Makes timers a table for loop, owned by the calling thread. */
void mock_timers_bind(mock_timers_t *timers, h2o_loop_t *loop);

/*
 * Calls cb once, delay_ms (capped at MOCK_DELAY_MAX_MS, at least 1) after now,
 * from the calling thread's loop. The timer must not be active.
 */
void mock_timer_start(mock_timer_t *timer, uint64_t delay_ms, mock_timer_cb cb);
/* Cancels the timer if it is active; harmless otherwise. */
void mock_timer_stop(mock_timer_t *timer);

#endif
