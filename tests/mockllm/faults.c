/*
 * faults.c - queue of injected faults for the next API requests.
 *
 * Invariant: `pending` equals the sum of `remaining` over the queue. It is
 * written only under the lock, and read without it as a hint that lets the
 * request path skip the lock when nothing is queued.
 */
#include "faults.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"

typedef struct st_entry_t {
    struct st_entry_t *next;
    mock_fault_t fault; /* error_body points into this allocation */
    uint32_t remaining;
} entry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *head, **tailp = &head;
static atomic_uint_fast64_t pending;

int mock_faults_push(const mock_fault_t *fault, uint32_t count)
{
    entry_t *e = malloc(sizeof(*e) + fault->error_body_len + 1);
    if (e == NULL)
        return -1;
    e->next = NULL;
    e->fault = *fault;
    e->remaining = count;
    if (fault->error_body != NULL) {
        char *body = (char *)(e + 1);
        memcpy(body, fault->error_body, fault->error_body_len);
        body[fault->error_body_len] = '\0';
        e->fault.error_body = body;
    }

    pthread_mutex_lock(&lock);
    *tailp = e;
    tailp = &e->next;
    atomic_fetch_add_explicit(&pending, count, memory_order_relaxed);
    pthread_mutex_unlock(&lock);
    return 0;
}

static int applies(const mock_fault_t *f, int provider, int aux)
{
    return f->provider == provider || (f->provider < 0 && !aux);
}

int mock_faults_take(mock_fault_t *out, h2o_mem_pool_t *pool, int provider, int aux)
{
    entry_t *done = NULL, **link;

    if (atomic_load_explicit(&pending, memory_order_relaxed) == 0)
        return 0;

    pthread_mutex_lock(&lock);
    for (link = &head; *link != NULL && !applies(&(*link)->fault, provider, aux); link = &(*link)->next)
        ;
    entry_t *e = *link;
    if (e == NULL) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    *out = e->fault;
    if (e->fault.error_body != NULL) {
        char *body = h2o_mem_alloc_pool(pool, e->fault.error_body_len + 1);
        memcpy(body, e->fault.error_body, e->fault.error_body_len + 1);
        out->error_body = body;
    }
    atomic_fetch_sub_explicit(&pending, 1, memory_order_relaxed);
    if (--e->remaining == 0) {
        *link = e->next;
        if (*link == NULL)
            tailp = link;
        done = e;
    }
    pthread_mutex_unlock(&lock);

    free(done);
    return 1;
}

void mock_faults_clear(void)
{
    pthread_mutex_lock(&lock);
    entry_t *e = head;
    head = NULL;
    tailp = &head;
    atomic_store_explicit(&pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&lock);

    while (e != NULL) {
        entry_t *next = e->next;
        free(e);
        e = next;
    }
}

void mock_faults_to_json(mock_buf_t *buf)
{
    pthread_mutex_lock(&lock);
    mock_buf_append_lit(buf, "{\"pending_requests\":");
    mock_buf_append_u64(buf, atomic_load_explicit(&pending, memory_order_relaxed));
    mock_buf_append_lit(buf, ",\"faults\":[");
    for (entry_t *e = head; e != NULL; e = e->next) {
        const mock_fault_t *f = &e->fault;
        if (e != head)
            mock_buf_append_lit(buf, ",");
        mock_buf_appendf(buf,
                         "{\"count\":%u,\"status\":%d,\"delay_ms\":%u,\"chunk_delay_ms\":%u,\"drop_after_chunks\":",
                         (unsigned)e->remaining, f->status, (unsigned)f->delay_ms, (unsigned)f->chunk_delay_ms);
        if (f->drop_after_chunks < 0)
            mock_buf_append_lit(buf, "null");
        else
            mock_buf_append_i64(buf, f->drop_after_chunks);
        mock_buf_append_lit(buf, ",\"error_after_chunks\":");
        if (f->error_after_chunks < 0)
            mock_buf_append_lit(buf, "null");
        else
            mock_buf_append_i64(buf, f->error_after_chunks);
        mock_buf_append_lit(buf, ",\"provider\":");
        if (f->provider < 0) {
            mock_buf_append_lit(buf, "null");
        } else {
            mock_buf_append_lit(buf, "\"");
            mock_buf_append_str(buf, mock_provider_name((mock_provider_id_t)f->provider));
            mock_buf_append_lit(buf, "\"");
        }
        mock_buf_appendf(buf, ",\"retry_after\":%u,\"error_body\":", (unsigned)f->retry_after_s);
        if (f->error_body == NULL)
            mock_buf_append_lit(buf, "null");
        else
            mock_buf_append_json_str(buf, f->error_body, f->error_body_len);
        mock_buf_append_lit(buf, "}");
    }
    mock_buf_append_lit(buf, "]}");
    pthread_mutex_unlock(&lock);
}
