/*
 * cp_migrate.c - applies and verifies the embedded schema migrations.
 *
 * Migration SQL is trusted (compiled in), so it runs with PQexec, which
 * accepts several statements; it must not contain its own BEGIN/COMMIT.
 */
#include "cp_migrations.h"
#include "sl_log.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary constant naming the migration lock ("sluice" in ASCII). */
#define MIGRATION_LOCK "115108117105099101"

static const char CREATE_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                   " version int PRIMARY KEY,"
                                   " name text NOT NULL,"
                                   " applied_at timestamptz NOT NULL DEFAULT now())";

int cp_migration_version(const char *name)
{
    int v = 0, digits = 0;
    for (; isdigit((unsigned char)*name); name++, digits++) {
        if (v > 100000000)
            return -1;
        v = v * 10 + (*name - '0');
    }
    if (digits == 0 || *name != '_' || v <= 0)
        return -1;
    return v;
}

int cp_migrations_check_list(const cp_migration_t *list, int n, sl_err_t *err)
{
    int prev = 0;
    for (int i = 0; i < n; i++) {
        int v = cp_migration_version(list[i].name);
        if (v < 0)
            return sl_err_set(err, SL_EINVAL, "migration \"%s\" is not named NNNN_name.sql", list[i].name);
        if (v <= prev)
            return sl_err_set(err, SL_EINVAL, "migration \"%s\" repeats or goes back to version %d", list[i].name,
                              v);
        prev = v;
    }
    return 0;
}

int cp_migrations_latest(void)
{
    return cp_migrations_count > 0 ? cp_migration_version(cp_migrations[cp_migrations_count - 1].name) : 0;
}

/* One migration in its own transaction. *applied tells whether it ran. */
static int apply_one(cp_db_t *db, const cp_migration_t *m, int version, int *applied, sl_err_t *err)
{
    char vbuf[24];
    const char *params[2] = {cp_db_fmt_i64(version, vbuf), m->name};
    *applied = 0;
    int rc = cp_db_begin(db, err);
    if (rc == 0)
        rc = cp_db_exec(db, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", 0, NULL, err);
    if (rc == 0)
        rc = cp_db_exec(db, CREATE_TABLE, 0, NULL, err);
    PGresult *r = NULL;
    if (rc == 0 && (r = cp_db_query(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params, err)) == NULL)
        rc = err->code;
    if (rc == 0 && PQntuples(r) == 0) {
        PGresult *x = PQexec(db->conn, m->sql);
        if (PQresultStatus(x) != PGRES_COMMAND_OK && PQresultStatus(x) != PGRES_TUPLES_OK) {
            const char *msg = PQresultErrorField(x, PG_DIAG_MESSAGE_PRIMARY);
            rc = sl_err_set(err, SL_EINVAL, "migration \"%s\" failed: %s", m->name,
                            msg != NULL ? msg : PQerrorMessage(db->conn));
        }
        PQclear(x);
        if (rc == 0)
            rc = cp_db_exec(db, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, params, err);
        if (rc == 0)
            *applied = 1;
    }
    PQclear(r);
    if (rc == 0)
        rc = cp_db_commit(db, err);
    if (rc != 0) {
        cp_db_rollback(db);
        *applied = 0;
    }
    return rc;
}

int cp_migrate(cp_db_t *db, FILE *out, sl_err_t *err)
{
    int rc = cp_migrations_check_list(cp_migrations, cp_migrations_count, err);
    if (rc != 0)
        return rc;
    if ((rc = cp_db_ensure(db, err)) != 0)
        return rc;
    int napplied = 0;
    for (int i = 0; i < cp_migrations_count; i++) {
        int applied;
        const cp_migration_t *m = &cp_migrations[i];
        if ((rc = apply_one(db, m, cp_migration_version(m->name), &applied, err)) != 0)
            return rc;
        if (applied) {
            napplied++;
            if (out != NULL)
                fprintf(out, "applied %s\n", m->name);
        }
    }
    if (out != NULL) {
        if (napplied == 0)
            fprintf(out, "database is up to date at version %d\n", cp_migrations_latest());
        else
            fprintf(out, "database migrated to version %d\n", cp_migrations_latest());
    }
    return 0;
}

int cp_migrate_verify(cp_db_t *db, sl_err_t *err)
{
    PGresult *r = cp_db_query(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, err);
    if (r == NULL)
        return err->code;
    int exists = cp_db_bool(r, 0, 0);
    PQclear(r);
    if (!exists)
        return sl_err_set(err, SL_EINVAL,
                          "database has no schema: run \"sluice-controlplane migrate\" first");
    if ((r = cp_db_query(db, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, err)) == NULL)
        return err->code;
    int rc = 0, n = PQntuples(r);
    for (int i = 0; i < cp_migrations_count && rc == 0; i++) {
        int v = cp_migration_version(cp_migrations[i].name), found = 0;
        for (int j = 0; j < n && !found; j++)
            found = cp_db_i64(r, j, 0) == v;
        if (!found)
            rc = sl_err_set(err, SL_EINVAL,
                            "database schema lacks migration \"%s\": run \"sluice-controlplane migrate\" first",
                            cp_migrations[i].name);
    }
    PQclear(r);
    return rc;
}
