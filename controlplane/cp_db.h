/*
 * cp_db.h - the control plane's database layer over libpq.
 *
 * A cp_db_t is one connection owned by one thread (each worker, the
 * publisher and the listener have their own); it reconnects lazily when the
 * server went away. Every statement goes through PQexecParams with
 * parameters: SQL is never built from user input. This is the only place
 * where SQLSTATEs become SL_E* codes (cp_db_sqlstate_to_err). Every
 * handle counts in the pool metrics (cp_metrics_db_conns): a slot from
 * cp_db_init to cp_db_close, open while connected, in use while a statement
 * runs or a transaction is open.
 */
#ifndef CP_DB_H
#define CP_DB_H

#include <stdint.h>

#include <libpq-fe.h>

#include "sl_err.h"

typedef struct cp_db {
    char *url;     /* owned */
    PGconn *conn;  /* NULL or a connection; reset on failure */
    int counted;   /* open connection counted in the pool metrics */
    int in_use;    /* counted as running a statement or inside a transaction */
} cp_db_t;

/* Initializes db for url without connecting. */
void cp_db_init(cp_db_t *db, const char *url);
/* Connects (or reconnects when the connection is broken). 0 or SL_EUNAVAIL. */
int cp_db_ensure(cp_db_t *db, sl_err_t *err);
void cp_db_close(cp_db_t *db);
/* Drops the connection (if any); the next statement reconnects. */
void cp_db_disconnect(cp_db_t *db);

/* SQLSTATE (5 characters, may be NULL) -> SL_E* code. */
int cp_db_sqlstate_to_err(const char *sqlstate);

/* Runs sql with text parameters (NULL value: SQL NULL). On success returns
 * the result (caller PQclear()s it); on failure NULL with err set and the
 * connection dropped if it broke. */
PGresult *cp_db_query(cp_db_t *db, const char *sql, int n, const char *const *vals, sl_err_t *err);
/* Like cp_db_query with per-parameter lengths and formats (1: binary). */
PGresult *cp_db_query_bin(cp_db_t *db, const char *sql, int n, const char *const *vals, const int *lens,
                          const int *fmts, sl_err_t *err);
/* Runs sql, discarding the result. Returns 0 or an SL_E* code. */
int cp_db_exec(cp_db_t *db, const char *sql, int n, const char *const *vals, sl_err_t *err);

/* Transactions. cp_db_rollback never fails visibly (errors are logged). */
int cp_db_begin(cp_db_t *db, sl_err_t *err);
int cp_db_begin_snapshot(cp_db_t *db, sl_err_t *err); /* REPEATABLE READ, READ ONLY */
int cp_db_commit(cp_db_t *db, sl_err_t *err);
void cp_db_rollback(cp_db_t *db);

/* Field accessors for a result row; NULL fields read as "" / 0. */
const char *cp_db_str(const PGresult *r, int row, int col);
int64_t cp_db_i64(const PGresult *r, int row, int col);
int cp_db_bool(const PGresult *r, int row, int col);

/* Formats v as decimal into buf (24 bytes suffice) and returns buf. */
const char *cp_db_fmt_i64(int64_t v, char buf[24]);

#endif
