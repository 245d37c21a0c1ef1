/*
 * timer.c - one-shot timers of any duration on h2o 2.2.5 fixed timeouts.
 *
 * Invariant: a timer is active exactly when its h2o entry is linked, so
 * mock_timer_stop() is always safe to call, including from dispose callbacks.
 */
#include "timer.h"

#include <assert.h>
#include <string.h>

static __thread mock_timers_t *thread_timers;

void mock_timers_bind(mock_timers_t *timers, h2o_loop_t *loop)
{
    memset(timers, 0, sizeof(*timers));
    timers->loop = loop;
    thread_timers = timers;
}

/* Returns a registered timeout of at most ms (ms >= 1), preferring exactly ms. */
static h2o_timeout_t *pick_timeout(mock_timers_t *t, uint64_t ms, uint64_t *chosen)
{
    for (size_t i = 0; i != t->num_exact; ++i) {
        if (t->exact_ms[i] == ms) {
            *chosen = ms;
            return &t->exact[i];
        }
    }
    if (t->num_exact != MOCK_TIMERS_EXACT) {
        size_t i = t->num_exact++;
        t->exact_ms[i] = ms;
        h2o_timeout_init(t->loop, &t->exact[i], ms);
        *chosen = ms;
        return &t->exact[i];
    }
    unsigned bit = 63 - (unsigned)__builtin_clzll(ms);
    if (bit >= MOCK_TIMERS_POW2)
        bit = MOCK_TIMERS_POW2 - 1;
    if ((t->pow2_ready & (1u << bit)) == 0) {
        h2o_timeout_init(t->loop, &t->pow2[bit], (uint64_t)1 << bit);
        t->pow2_ready |= 1u << bit;
    }
    *chosen = (uint64_t)1 << bit;
    return &t->pow2[bit];
}

static void link_hop(mock_timer_t *timer, uint64_t ms)
{
    mock_timers_t *t = thread_timers;
    uint64_t chosen;
    h2o_timeout_t *timeout = pick_timeout(t, ms, &chosen);

    timer->_remaining = ms - chosen;
    h2o_timeout_link(t->loop, timeout, &timer->_entry);
}

static void on_hop(h2o_timeout_entry_t *entry)
{
    mock_timer_t *timer = H2O_STRUCT_FROM_MEMBER(mock_timer_t, _entry, entry);

    if (timer->_remaining != 0) {
        link_hop(timer, timer->_remaining);
        return;
    }
    timer->_cb(timer);
}

void mock_timer_start(mock_timer_t *timer, uint64_t delay_ms, mock_timer_cb cb)
{
    assert(thread_timers != NULL);
    assert(!h2o_timeout_is_linked(&timer->_entry));
    if (delay_ms == 0)
        delay_ms = 1;
    if (delay_ms > MOCK_DELAY_MAX_MS)
        delay_ms = MOCK_DELAY_MAX_MS;
    timer->_entry.cb = on_hop;
    timer->_cb = cb;
    link_hop(timer, delay_ms);
}

void mock_timer_stop(mock_timer_t *timer)
{
    if (h2o_timeout_is_linked(&timer->_entry))
        h2o_timeout_unlink(&timer->_entry);
}
