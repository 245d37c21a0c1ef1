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

/* Appends a field; name and value must live as long as out (the arena or
 * static storage). A secret field compares by value but never prints it. */
void cp_fields_add(cp_fields_t *out, cp_arena_t *a, const char *name, const char *value, size_t len, int secret);
void cp_fields_add_str(cp_fields_t *out, cp_arena_t *a, const char *name, const char *value);

/* Display forms of field values, in a: s as a JSON string ("value", with
 * odd characters escaped so they stay visible), and n strings as a compact
 * JSON array. */
const char *cp_diff_quoted(cp_arena_t *a, const char *s);
const char *cp_diff_list(cp_arena_t *a, char *const *items, size_t n);

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

/* The change an apply reports for entity id of kind ("tenant",
 * "alert_rule"): action "create" when old is NULL, else "update" or
 * "unchanged", and the detail lines of cp_diff_fields(). In a. */
cp_change_pb *cp_diff_change(cp_arena_t *a, const char *kind, const char *id, const cp_fields_t *old,
                             const cp_fields_t *new_);

#endif
