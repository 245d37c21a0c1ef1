/*
 * ctl_yaml.h - the declarative file of `sluicectl apply`, turned into the
 * Document that Admin.Apply takes.
 *
 * Top-level sections: tenants, providers, models, virtual_keys (each a list;
 * any may be absent), and alerts ({sinks: [...], rules: [...]}). Unknown
 * sections and unknown fields are errors, so a typo is never silently
 * ignored. USD amounts are read from the scalar text with sl_usd_parse (never
 * through a double). A credential's `secret_env: VAR`
 * is resolved through the env callback while parsing; an unset or empty
 * variable is an error naming the variable, never showing a value.
 *
 * Several files (and several `---` documents in one file) merge into one
 * Document; an entity defined twice (same tenant id, provider name,
 * provider/model, or key id) is an error naming both places.
 *
 * Every error message names the file, the line and the field path, e.g.
 *   keys.yaml:5: virtual_keys[0].budget.max_per_month_usd: "abc" is not a USD amount
 *
 * No global state; no I/O except ctl_doc_add_file(). Not thread-safe per doc.
 */
#ifndef CTL_YAML_H
#define CTL_YAML_H

#include <stddef.h>

#include "sl_err.h"
#include "sluice/admin/v1/admin.pb-c.h"

/* Returns the value of environment variable name, or NULL when unset. The
 * returned string is borrowed; it is copied before the callback is called
 * again. */
typedef const char *(*ctl_env_fn)(const char *name, void *ud);

/* The env callback backed by getenv(3). */
const char *ctl_env_getenv(const char *name, void *ud);

typedef struct ctl_doc {
    Sluice__Admin__V1__Document *pb; /* owned; what Apply receives */
    /* "file:line" of each entity, parallel to pb's lists (duplicate reports) */
    char **tenant_at;
    char **provider_at;
    char **model_at;
    char **key_at;
    char **sink_at; /* alert sinks and rules */
    char **rule_at;
} ctl_doc_t;

/* Prepares an empty document. Free with ctl_doc_free(). */
void ctl_doc_init(ctl_doc_t *doc);

/* Parses YAML text (len bytes, need not be NUL-terminated) and merges its
 * entities into doc. source names the text in error messages (a file name).
 * env resolves secret_env variables (ud passed through). All or nothing: on
 * error doc is unchanged and err says why. Returns 0 or SL_EINVAL. */
int ctl_doc_add_yaml(ctl_doc_t *doc, const char *source, const char *text, size_t len, ctl_env_fn env, void *ud,
                     sl_err_t *err);

/* Reads path ("-" for standard input, at most 16 MiB) and merges it like
 * ctl_doc_add_yaml(). Returns 0, SL_EIO, SL_ETOOBIG or SL_EINVAL. */
int ctl_doc_add_file(ctl_doc_t *doc, const char *path, ctl_env_fn env, void *ud, sl_err_t *err);

/* Number of entities in doc, all sections together. */
size_t ctl_doc_count(const ctl_doc_t *doc);

/* The YAML field a quota is written as: *section "budget" or "rate_limit"
 * and *field its name (static strings). Returns 1, or 0 when the quota has
 * no YAML form (a provider-scoped quota, or a window the file cannot state). */
int ctl_quota_field(const Sluice__Config__V1__Quota *q, const char **section, const char **field);

/* Wipes credential secrets and frees everything doc owns. Safe on an
 * initialized, never-filled doc and twice in a row. */
void ctl_doc_free(ctl_doc_t *doc);

#endif
