/*
 * cp_arena.h - a bump allocator for memory that lives exactly as long as one
 * RPC or one snapshot build.
 *
 * Protobuf messages the control plane builds (responses, snapshots) are
 * allocated here, so they are released in one place with cp_arena_free()
 * and never individually. Allocation failure aborts: the control plane
 * cannot answer without memory anyway. An arena is used by one thread at a
 * time.
 */
#ifndef CP_ARENA_H
#define CP_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct cp_arena cp_arena_t;

/* Caller owns the arena: cp_arena_free(). */
cp_arena_t *cp_arena_new(void);
void cp_arena_free(cp_arena_t *a);

/* Zeroed memory, aligned for any type, valid until cp_arena_free(). */
void *cp_arena_alloc(cp_arena_t *a, size_t n);
void *cp_arena_memdup(cp_arena_t *a, const void *p, size_t n);
char *cp_arena_strdup(cp_arena_t *a, const char *s);
char *cp_arena_strndup(cp_arena_t *a, const char *s, size_t n);
char *cp_arena_printf(cp_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An array of n pointers (zeroed). */
#define cp_arena_ptrs(a, n) ((void *)cp_arena_alloc((a), sizeof(void *) * ((n) > 0 ? (n) : 1)))

/* Allocates a protobuf message of descriptor d, initialized to defaults. */
void *cp_arena_msg(cp_arena_t *a, const ProtobufCMessageDescriptor *d);

#endif
