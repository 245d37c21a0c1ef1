/*
 * cp_alert_store.h - alert sinks and rules as configuration: validation,
 * rows <-> messages, field renderings for diffs, and the apply planning
 * that cp_apply runs inside its transaction.
 *
 * A sink's secret (webhook HMAC secret, PagerDuty routing key, Slack
 * webhook URL) is sealed like a provider credential: AES-256-GCM under the
 * credential key with additional data "alert_sink/<name>". It is decrypted
 * only to compare it on apply and to deliver; it is never logged, never
 * returned by the Admin API and never sent to data planes.
 *
 * Threads: stateless; use each cp_db_t from one thread.
 */
#ifndef CP_ALERT_STORE_H
#define CP_ALERT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cp_arena.h"
#include "cp_db.h"
#include "cp_pb.h"
#include "cp_store.h"
#include "sl_err.h"

typedef Sluice__Config__V1__AlertSink cp_sink_pb;
typedef Sluice__Config__V1__AlertRule cp_rule_pb;
typedef Sluice__Config__V1__AlertScope cp_scope_pb;

/* Checks one sink or rule on its own (no database). */
int cp_alert_validate_sink(const cp_sink_pb *s, sl_err_t *err);
int cp_alert_validate_rule(const cp_rule_pb *r, sl_err_t *err);
/* Every sink and rule of d, and none listed twice. */
int cp_alert_validate_document(const cp_doc_pb *d, sl_err_t *err);

/* The scope as stored in alert_state: "virtual_key/<id>", "tenant/<id>",
 * "provider/<name>", or "all_tenants" (the rule's scope, not an instance).
 * In a. */
const char *cp_alert_scope_str(const cp_scope_pb *s, cp_arena_t *a);

/* Readers: *out is an arena array of *n messages ordered by name. names_json
 * is a JSON array of names or NULL for all. With keys, sink secrets are
 * decrypted into secret (a secret that cannot be decrypted is left empty and
 * logged); without, secrets stay empty. */
int cp_alert_store_sinks(cp_db_t *db, const char *names_json, const cp_keys_t *keys, cp_arena_t *a, cp_sink_pb ***out,
                         size_t *n, sl_err_t *err);
int cp_alert_store_rules(cp_db_t *db, const char *names_json, cp_arena_t *a, cp_rule_pb ***out, size_t *n,
                         sl_err_t *err);

/* One planned alert write for cp_apply: the change to report and the
 * desired entity (from the document). */
typedef struct cp_alert_plan {
    cp_change_pb *change;
    const char *entity_kind; /* "alert_sink" or "alert_rule" */
    const void *entity;
} cp_alert_plan_t;

/* Loads the current rows of the sinks and rules doc names and diffs them
 * (in the caller's transaction). Appends one plan per listed entity to
 * *plans (arena array, *nplans grows) and warnings for rules whose scope
 * names a key, tenant or provider that does not exist (yet). A rule naming a
 * sink that is neither in doc nor stored fails with SL_EINVAL;
 * create_only makes an existing entity fail with SL_EEXISTS. */
int cp_alert_plan(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, int create_only, cp_arena_t *a,
                  cp_alert_plan_t **plans, size_t *nplans, char ***warnings, size_t *nwarnings, sl_err_t *err);

/* Writes one planned entity stamped with version (sealing a sink's secret). */
int cp_alert_put(cp_db_t *db, const cp_keys_t *keys, const cp_alert_plan_t *p, int64_t version, sl_err_t *err);

#endif
