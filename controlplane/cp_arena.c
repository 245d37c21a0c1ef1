/*
 * cp_arena.c - bump allocator in chunks; large requests get a chunk of their
 * own. Chunks are singly linked and freed together.
 */
#include "cp_arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE (16 * 1024)
#define ALIGN 16

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(ALIGN) unsigned char data[];
};

struct cp_arena {
    struct chunk *head;
};

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (p == NULL) {
        fputs("sluice-controlplane: out of memory\n", stderr);
        abort();
    }
    return p;
}

cp_arena_t *cp_arena_new(void)
{
    return xcalloc(sizeof(cp_arena_t));
}

void cp_arena_free(cp_arena_t *a)
{
    if (a == NULL)
        return;
    struct chunk *c = a->head;
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *cp_arena_alloc(cp_arena_t *a, size_t n)
{
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (n == 0)
        n = ALIGN;
    struct chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
        struct chunk *nc = xcalloc(sizeof(struct chunk) + cap);
        nc->cap = cap;
        if (cap == n && c != NULL) {
            /* a large block: keep the current chunk in front for small ones */
            nc->next = c->next;
            c->next = nc;
            nc->used = n;
            return nc->data;
        }
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p; /* chunks come from calloc and are never reused: already zero */
}

void *cp_arena_memdup(cp_arena_t *a, const void *p, size_t n)
{
    void *d = cp_arena_alloc(a, n + 1);
    if (n > 0)
        memcpy(d, p, n);
    return d;
}

char *cp_arena_strndup(cp_arena_t *a, const char *s, size_t n)
{
    return cp_arena_memdup(a, s, n); /* memdup leaves a zero byte after n */
}

char *cp_arena_strdup(cp_arena_t *a, const char *s)
{
    return cp_arena_strndup(a, s, strlen(s));
}

char *cp_arena_printf(cp_arena_t *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = cp_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    if (n > 0)
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void *cp_arena_msg(cp_arena_t *a, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = cp_arena_alloc(a, d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}
