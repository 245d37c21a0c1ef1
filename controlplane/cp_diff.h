/*
 * cp_diff.h - field-level comparison of configuration entities.
 *
 * An entity is rendered into an ordered list of named fields whose values
 * are canonical display strings (JSON with sorted keys, USD amounts,
 * quotas keyed by what they limit), so that "unchanged" means equal
 * renderings, and the same rendering produces the operator's diff lines.
 * Fields flagged secret compare by value but never print it.
 *
 * Pure functions; every string lives in the caller's arena.
 */
#ifndef CP_DIFF_H
#define CP_DIFF_H

#include <stddef.h>

#include "cp_arena.h"
#include "cp_pb.h"

typedef struct cp_field {
    const char *name;
    const char *value;  /* display form; for secrets the raw secret */
    size_t len;         /* of value */
    int secret;
} cp_field_t;

typedef struct cp_fields {
    cp_field_t *v;
    size_t n, cap;
} cp_fields_t;

void cp_fields_tenant(const cp_tenant_pb *t, cp_arena_t *a, cp_fields_t *out);
void cp_fields_vkey(const cp_vkey_pb *k, cp_arena_t *a, cp_fields_t *out);
void cp_fields_provider(const cp_provider_pb *p, cp_arena_t *a, cp_fields_t *out);
void cp_fields_model(const cp_model_pb *m, cp_arena_t *a, cp_fields_t *out);

/* Compares old (NULL: the entity is new) with new_. Returns the number of
 * differing fields (for a new entity: its field count) and appends one
 * detail line per difference to *lines (an arena array grown as needed):
 *   name: "a" -> "b"          changed
 *   name: "b"                 on a new entity
 *   name: (none) -> "b"       added      / name: "a" -> (none)  removed
 *   credential "k" secret: changed (redacted) */
size_t cp_diff_fields(const cp_fields_t *old, const cp_fields_t *new_, cp_arena_t *a, char ***lines,
                      size_t *nlines);

#endif
