/*
 * cp_migrations.h - the SQL migrations compiled into the control plane, and
 * the runner behind `sluice-controlplane migrate`.
 *
 * Each migration runs in its own transaction holding a transaction-level
 * advisory lock, so concurrent migrators (several replicas starting at once)
 * serialize and each version is applied exactly once; it is recorded in
 * schema_migrations in the same transaction.
 */
#ifndef CP_MIGRATIONS_H
#define CP_MIGRATIONS_H

#include <stdio.h>

#include "cp_db.h"
#include "sl_err.h"

typedef struct cp_migration {
    const char *name; /* file name, e.g. "0001_init.sql"; its number is the version */
    const char *sql;
} cp_migration_t;

extern const cp_migration_t cp_migrations[];
extern const int cp_migrations_count;

/* The version of a migration file name ("0001_init.sql" -> 1), or -1 when
 * the name does not start with digits followed by '_'. */
int cp_migration_version(const char *name);

/* Checks that the embedded list is strictly increasing and well named. */
int cp_migrations_check_list(const cp_migration_t *list, int n, sl_err_t *err);

/* The highest embedded version. */
int cp_migrations_latest(void);

/* Applies every embedded migration the database lacks, in order, printing
 * one line per applied migration to out (may be NULL). Returns 0 or an
 * SL_E* code with err set. */
int cp_migrate(cp_db_t *db, FILE *out, sl_err_t *err);

/* Verifies that every embedded migration has been applied. Returns 0,
 * SL_EINVAL (not migrated; err says what to run) or another SL_E* code. */
int cp_migrate_verify(cp_db_t *db, sl_err_t *err);

#endif
