/*
 * cp_apply.h - the one write path for configuration.
 *
 * Every admin write (Apply and the single-entity methods built on it) runs
 * here in one transaction: lock config_state, load the current state of the
 * listed entities, diff, and when anything differs bump the version once,
 * write the changed entities stamped with it and one config_changes row
 * each. Nothing changed -> no bump, no NOTIFY, changed=false. A dry run does
 * the same and rolls back.
 *
 * Threads: runs on the calling worker with its own connection.
 */
#ifndef CP_APPLY_H
#define CP_APPLY_H

#include "cp_arena.h"
#include "cp_db.h"
#include "cp_pb.h"
#include "cp_store.h"
#include "sl_err.h"

typedef struct cp_apply_opts {
    int dry_run;
    int create_only;      /* a listed entity that exists fails with SL_EEXISTS */
    int require_tenants;  /* a key's missing tenant fails with SL_ENOTFOUND instead of being created */
    const char *actor;    /* recorded in config_changes ("admin") */
} cp_apply_opts_t;

/* Applies doc. On success *out (in a) holds changes, warnings, created
 * secrets (never on a dry run), the resulting version and whether anything
 * changed. On failure nothing is written and err says why. */
int cp_apply(cp_db_t *db, const cp_keys_t *keys, const cp_doc_pb *doc, const cp_apply_opts_t *opts, cp_arena_t *a,
             cp_apply_resp_pb **out, sl_err_t *err);

/* Display prefix of a secret kept for humans ("sk-sluice-AbCd"). */
#define CP_KEY_PREFIX_LEN 14

#endif
