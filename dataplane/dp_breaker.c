/* dp_breaker.c - circuit breakers per upstream credential (see dp_breaker.h). */
#include "dp_breaker.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 1024 /* power of two */

static dp_breaker_t table[SLOTS];

void dp_breaker_cfg_default(dp_breaker_cfg_t *cfg)
{
    *cfg = (dp_breaker_cfg_t){
        .failures = 5,
        .min_requests = 20,
        .ratio_pct = 50,
        .window_ms = 30000,
        .cooldown_ms = 30000,
        .max_cooldown_ms = 300000,
        .auth_cooldown_ms = 600000,
        .probe_timeout_ms = 60000,
    };
}

void dp_breaker_cfg_for(const dp_provider_t *p, dp_breaker_cfg_t *cfg)
{
    static const struct {
        const char *name;
        size_t off;
    } params[] = {
        {"breaker_failures", offsetof(dp_breaker_cfg_t, failures)},
        {"breaker_min_requests", offsetof(dp_breaker_cfg_t, min_requests)},
        {"breaker_ratio_pct", offsetof(dp_breaker_cfg_t, ratio_pct)},
        {"breaker_window_ms", offsetof(dp_breaker_cfg_t, window_ms)},
        {"breaker_cooldown_ms", offsetof(dp_breaker_cfg_t, cooldown_ms)},
        {"breaker_max_cooldown_ms", offsetof(dp_breaker_cfg_t, max_cooldown_ms)},
        {"breaker_auth_cooldown_ms", offsetof(dp_breaker_cfg_t, auth_cooldown_ms)},
        {"breaker_probe_timeout_ms", offsetof(dp_breaker_cfg_t, probe_timeout_ms)},
    };
    dp_breaker_cfg_default(cfg);
    if (p == NULL || p->pb == NULL)
        return;
    for (size_t i = 0; i < p->pb->n_params; i++) {
        const char *k = p->pb->params[i]->key, *v = p->pb->params[i]->value;
        if (k == NULL || v == NULL || strncmp(k, "breaker_", 8) != 0)
            continue;
        for (size_t j = 0; j < sizeof(params) / sizeof(params[0]); j++) {
            if (strcmp(k, params[j].name) != 0)
                continue;
            char *end;
            errno = 0;
            unsigned long x = strtoul(v, &end, 10);
            if (errno == 0 && end != v && *end == '\0' && x > 0 && x <= 86400000ul)
                *(uint32_t *)((char *)cfg + params[j].off) = (uint32_t)x;
        }
    }
    if (cfg->ratio_pct > 100)
        cfg->ratio_pct = 100;
    if (cfg->max_cooldown_ms < cfg->cooldown_ms)
        cfg->max_cooldown_ms = cfg->cooldown_ms;
}

int64_t dp_breaker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fingerprint(const dp_credential_t *cred)
{
    return fnv(0x84222325cbf29ce4ull, cred->secret, cred->secret_len) | 1;
}

static void copy_name(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= DP_BREAKER_NAME_MAX)
        n = DP_BREAKER_NAME_MAX - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void dp_breaker_reset(dp_breaker_t *b)
{
    atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
    atomic_store_explicit(&b->cooldown_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&b->window_start_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&b->window_ok, 0, memory_order_relaxed);
    atomic_store_explicit(&b->window_fail, 0, memory_order_relaxed);
    atomic_store_explicit(&b->until_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&b->throttled_until_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&b->state, DP_BREAKER_CLOSED, memory_order_release);
}

void dp_breaker_throttle(dp_breaker_t *b, int64_t until_ms)
{
    int64_t cur = atomic_load_explicit(&b->throttled_until_ms, memory_order_relaxed);
    while (cur < until_ms &&
           !atomic_compare_exchange_weak_explicit(&b->throttled_until_ms, &cur, until_ms, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

int64_t dp_breaker_throttled_until(dp_breaker_t *b, int64_t now_ms)
{
    int64_t until = atomic_load_explicit(&b->throttled_until_ms, memory_order_relaxed);
    return until > now_ms ? until : 0;
}

dp_breaker_t *dp_breaker_get(const dp_provider_t *p, const dp_credential_t *cred)
{
    uint64_t k = fnv(0xcbf29ce484222325ull, p->name, strlen(p->name) + 1);
    k = fnv(k, cred->id, strlen(cred->id));
    if (k == 0)
        k = 1;
    for (uint64_t i = 0; i < SLOTS; i++) {
        dp_breaker_t *b = &table[(k + i) & (SLOTS - 1)];
        uint64_t cur = atomic_load_explicit(&b->key, memory_order_acquire);
        if (cur == 0) {
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong(&b->key, &zero, k)) {
                copy_name(b->provider, p->name);
                copy_name(b->credential, cred->id);
                atomic_store_explicit(&b->secret_fp, fingerprint(cred), memory_order_relaxed);
                dp_breaker_reset(b);
                atomic_store_explicit(&b->ready, 1, memory_order_release);
                return b;
            }
            cur = zero; /* another thread took the slot: whose? */
        }
        if (cur != k)
            continue;
        /* state about another secret (a rotated key) does not apply; a
         * closed breaker has none, so only then is the secret hashed */
        if (atomic_load_explicit(&b->state, memory_order_acquire) != DP_BREAKER_CLOSED) {
            uint64_t fp = fingerprint(cred), f = atomic_load_explicit(&b->secret_fp, memory_order_relaxed);
            if (f != fp && atomic_compare_exchange_strong(&b->secret_fp, &f, fp))
                dp_breaker_reset(b);
        }
        return b;
    }
    return NULL;
}

int dp_breaker_available(dp_breaker_t *b, int64_t now_ms)
{
    if (atomic_load_explicit(&b->state, memory_order_acquire) == DP_BREAKER_CLOSED)
        return 1;
    return now_ms >= atomic_load_explicit(&b->until_ms, memory_order_relaxed);
}

int dp_breaker_allow(dp_breaker_t *b, int64_t now_ms)
{
    uint32_t s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == DP_BREAKER_CLOSED)
        return DP_BREAKER_ALLOW;
    int64_t until = atomic_load_explicit(&b->until_ms, memory_order_relaxed);
    if (now_ms < until)
        return DP_BREAKER_DENY;
    /* the cooldown (or a silent probe's deadline) is over: one caller wins
     * the probe by moving the deadline; everyone else is denied */
    int64_t probe_ms = (int64_t)atomic_load_explicit(&b->probe_ms, memory_order_relaxed);
    if (!atomic_compare_exchange_strong(&b->until_ms, &until, now_ms + (probe_ms > 0 ? probe_ms : 60000)))
        return DP_BREAKER_DENY;
    atomic_store_explicit(&b->state, DP_BREAKER_HALF_OPEN, memory_order_release);
    return DP_BREAKER_PROBE;
}

/* Sets the open period; the caller then publishes the state. */
static void set_open_period(dp_breaker_t *b, const dp_breaker_cfg_t *cfg, uint32_t ms, int64_t now_ms)
{
    atomic_store_explicit(&b->cooldown_ms, ms, memory_order_relaxed);
    atomic_store_explicit(&b->probe_ms, cfg->probe_timeout_ms, memory_order_relaxed);
    atomic_store_explicit(&b->until_ms, now_ms + ms, memory_order_relaxed);
}

static void opened(dp_breaker_t *b)
{
    atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
    atomic_store_explicit(&b->window_ok, 0, memory_order_relaxed);
    atomic_store_explicit(&b->window_fail, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->opened_total, 1, memory_order_relaxed);
}

static void open_for(dp_breaker_t *b, const dp_breaker_cfg_t *cfg, uint32_t ms, int64_t now_ms)
{
    set_open_period(b, cfg, ms, now_ms);
    atomic_store_explicit(&b->state, DP_BREAKER_OPEN, memory_order_release);
    opened(b);
}

/* Starts a new ratio window when the current one is over. */
static void roll_window(dp_breaker_t *b, const dp_breaker_cfg_t *cfg, int64_t now_ms)
{
    int64_t start = atomic_load_explicit(&b->window_start_ms, memory_order_relaxed);
    if (now_ms - start < (int64_t)cfg->window_ms)
        return;
    if (atomic_compare_exchange_strong(&b->window_start_ms, &start, now_ms)) {
        atomic_store_explicit(&b->window_ok, 0, memory_order_relaxed);
        atomic_store_explicit(&b->window_fail, 0, memory_order_relaxed);
    }
}

void dp_breaker_record(dp_breaker_t *b, const dp_breaker_cfg_t *cfg, int outcome, int probe, int64_t now_ms,
                       const dp_credential_t *cred)
{
    uint32_t s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (outcome != DP_OUTCOME_SUCCESS && cred != NULL)
        atomic_store_explicit(&b->secret_fp, fingerprint(cred), memory_order_relaxed);
    if (outcome == DP_OUTCOME_AUTH) {
        open_for(b, cfg, cfg->auth_cooldown_ms, now_ms);
        return;
    }
    if (outcome == DP_OUTCOME_SUCCESS) {
        atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
        if (probe || s == DP_BREAKER_HALF_OPEN) {
            /* the probe came back healthy */
            atomic_store_explicit(&b->cooldown_ms, 0, memory_order_relaxed);
            atomic_store_explicit(&b->window_start_ms, now_ms, memory_order_relaxed);
            atomic_store_explicit(&b->window_ok, 0, memory_order_relaxed);
            atomic_store_explicit(&b->window_fail, 0, memory_order_relaxed);
            atomic_store_explicit(&b->state, DP_BREAKER_CLOSED, memory_order_release);
            return;
        }
        if (s == DP_BREAKER_CLOSED) {
            roll_window(b, cfg, now_ms);
            atomic_fetch_add_explicit(&b->window_ok, 1, memory_order_relaxed);
        }
        return;
    }
    /* a failure */
    if (probe || s == DP_BREAKER_HALF_OPEN) {
        uint32_t cd = atomic_load_explicit(&b->cooldown_ms, memory_order_relaxed);
        uint64_t next = cd == 0 ? cfg->cooldown_ms : (uint64_t)cd * 2;
        if (next > cfg->max_cooldown_ms)
            next = cfg->max_cooldown_ms;
        if (next < cfg->cooldown_ms)
            next = cfg->cooldown_ms;
        open_for(b, cfg, (uint32_t)next, now_ms);
        return;
    }
    if (s != DP_BREAKER_CLOSED)
        return; /* a late report from before it opened */
    roll_window(b, cfg, now_ms);
    uint32_t n = atomic_fetch_add_explicit(&b->consecutive, 1, memory_order_relaxed) + 1;
    uint32_t fail = atomic_fetch_add_explicit(&b->window_fail, 1, memory_order_relaxed) + 1;
    uint32_t ok = atomic_load_explicit(&b->window_ok, memory_order_relaxed);
    uint64_t total = (uint64_t)ok + fail;
    int trip = n >= cfg->failures ||
               (total >= cfg->min_requests && (uint64_t)fail * 100 >= (uint64_t)cfg->ratio_pct * total);
    if (!trip)
        return;
    /* the period is set before the state is published (a closed breaker
     * ignores it); concurrent failures open it once */
    set_open_period(b, cfg, cfg->cooldown_ms, now_ms);
    uint32_t closed = DP_BREAKER_CLOSED;
    if (atomic_compare_exchange_strong(&b->state, &closed, DP_BREAKER_OPEN))
        opened(b);
}

int dp_breaker_state(dp_breaker_t *b, int64_t now_ms)
{
    uint32_t s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == DP_BREAKER_OPEN && now_ms >= atomic_load_explicit(&b->until_ms, memory_order_relaxed))
        return DP_BREAKER_HALF_OPEN;
    return (int)s;
}

void dp_breaker_each(void (*fn)(void *ud, const dp_breaker_t *b, int state), void *ud)
{
    int64_t now = dp_breaker_now_ms();
    for (size_t i = 0; i < SLOTS; i++) {
        dp_breaker_t *b = &table[i];
        if (!atomic_load_explicit(&b->ready, memory_order_acquire))
            continue;
        fn(ud, b, dp_breaker_state(b, now));
    }
}
