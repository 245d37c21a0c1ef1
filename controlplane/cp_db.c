/*
 * cp_db.c - connections, statements and error mapping over libpq.
 */
#include "cp_db.h"
#include "cp_metrics.h"
#include "sl_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_notice(void *arg, const char *msg)
{
    /* NOTICEs from migrations ("relation exists, skipping") are noise */
    (void)arg;
    (void)msg;
}

void cp_db_init(cp_db_t *db, const char *url)
{
    db->url = strdup(url);
    db->conn = NULL;
    db->counted = 0;
    db->in_use = 0;
    if (db->url == NULL)
        abort();
    cp_metrics_db_conns(1, 0, 0);
}

/* Pool metrics: whether db counts as in use (a statement running or a
 * transaction open). */
static void set_in_use(cp_db_t *db, int in_use)
{
    if (in_use == db->in_use)
        return;
    db->in_use = in_use;
    cp_metrics_db_conns(0, 0, in_use ? 1 : -1);
}

void cp_db_disconnect(cp_db_t *db)
{
    if (db->conn != NULL)
        PQfinish(db->conn);
    db->conn = NULL;
    set_in_use(db, 0);
    if (db->counted) {
        db->counted = 0;
        cp_metrics_db_conns(0, -1, 0);
    }
}

void cp_db_close(cp_db_t *db)
{
    cp_db_disconnect(db);
    if (db->url != NULL)
        cp_metrics_db_conns(-1, 0, 0);
    free(db->url);
    db->url = NULL;
}

/* libpq messages end in newlines and may span lines: make them one line */
static void trim_msg(char *s)
{
    for (char *p = s; *p != '\0'; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '.'))
        s[--n] = '\0';
}

int cp_db_ensure(cp_db_t *db, sl_err_t *err)
{
    if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
        return 0;
    cp_db_disconnect(db);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {db->url, "5", "sluice-controlplane", NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", db->conn != NULL ? PQerrorMessage(db->conn) : "out of memory");
        trim_msg(msg);
        if (db->conn != NULL)
            PQfinish(db->conn);
        db->conn = NULL;
        cp_metrics_inc(CP_M_DB_ERRORS, 1);
        return sl_err_set(err, SL_EUNAVAIL, "could not connect to the database: %s", msg);
    }
    PQsetNoticeProcessor(db->conn, on_notice, NULL);
    db->counted = 1;
    cp_metrics_db_conns(0, 1, 0);
    return 0;
}

int cp_db_sqlstate_to_err(const char *s)
{
    if (s == NULL || strlen(s) != 5)
        return SL_EUNAVAIL; /* no SQLSTATE: the connection failed */
    if (strcmp(s, "23505") == 0)
        return SL_EEXISTS;   /* unique_violation */
    if (strcmp(s, "23503") == 0)
        return SL_ENOTFOUND; /* foreign_key_violation: a referenced row is missing */
    if (strncmp(s, "23", 2) == 0 || strncmp(s, "22", 2) == 0)
        return SL_EINVAL;    /* integrity constraint or data exception */
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0)
        return SL_ECONFLICT; /* serialization failure, deadlock, lock not available */
    if (strncmp(s, "08", 2) == 0 || strncmp(s, "53", 2) == 0 || strncmp(s, "57", 2) == 0 ||
        strcmp(s, "58030") == 0)
        return SL_EUNAVAIL;  /* connection, resources, operator intervention, I/O */
    if (strcmp(s, "42P01") == 0 || strcmp(s, "42883") == 0)
        return SL_EUNAVAIL;  /* undefined table/function: schema not migrated */
    return SL_EINTERNAL;
}

static PGresult *check(cp_db_t *db, PGresult *r, sl_err_t *err)
{
    ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int code = cp_db_sqlstate_to_err(state);
    char msg[400];
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf(msg, sizeof(msg), "%s", primary != NULL ? primary : PQerrorMessage(db->conn));
    trim_msg(msg);
    if (PQstatus(db->conn) != CONNECTION_OK) {
        code = SL_EUNAVAIL;
        cp_db_disconnect(db);
    }
    cp_metrics_inc(CP_M_DB_ERRORS, 1);
    if (code == SL_EUNAVAIL)
        sl_err_set(err, code, "database unavailable: %s", msg);
    else
        sl_err_set(err, code, "database error: %s", msg);
    PQclear(r);
    return NULL;
}

PGresult *cp_db_query_bin(cp_db_t *db, const char *sql, int n, const char *const *vals, const int *lens,
                          const int *fmts, sl_err_t *err)
{
    if (cp_db_ensure(db, err) != 0)
        return NULL;
    /* A connection idle since the server restarted looks fine until used:
     * outside a transaction, retry once on a fresh connection. */
    int idle = PQtransactionStatus(db->conn) == PQTRANS_IDLE;
    set_in_use(db, 1);
    PGresult *r = PQexecParams(db->conn, sql, n, NULL, vals, lens, fmts, 0);
    if (idle && PQstatus(db->conn) != CONNECTION_OK) {
        PQclear(r);
        if (cp_db_ensure(db, err) != 0)
            return NULL;
        set_in_use(db, 1);
        r = PQexecParams(db->conn, sql, n, NULL, vals, lens, fmts, 0);
    }
    r = check(db, r, err);
    set_in_use(db, db->conn != NULL && PQtransactionStatus(db->conn) != PQTRANS_IDLE);
    return r;
}

PGresult *cp_db_query(cp_db_t *db, const char *sql, int n, const char *const *vals, sl_err_t *err)
{
    return cp_db_query_bin(db, sql, n, vals, NULL, NULL, err);
}

int cp_db_exec(cp_db_t *db, const char *sql, int n, const char *const *vals, sl_err_t *err)
{
    PGresult *r = cp_db_query(db, sql, n, vals, err);
    if (r == NULL)
        return err != NULL && err->code != 0 ? err->code : SL_EUNAVAIL;
    PQclear(r);
    return 0;
}

int cp_db_begin(cp_db_t *db, sl_err_t *err)
{
    return cp_db_exec(db, "BEGIN", 0, NULL, err);
}

int cp_db_begin_snapshot(cp_db_t *db, sl_err_t *err)
{
    return cp_db_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err);
}

int cp_db_commit(cp_db_t *db, sl_err_t *err)
{
    return cp_db_exec(db, "COMMIT", 0, NULL, err);
}

void cp_db_rollback(cp_db_t *db)
{
    if (db->conn == NULL || PQtransactionStatus(db->conn) == PQTRANS_IDLE)
        return;
    sl_err_t e = {0};
    if (cp_db_exec(db, "ROLLBACK", 0, NULL, &e) != 0)
        sl_warn("db", "rollback failed: %s", e.msg);
}

const char *cp_db_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

int64_t cp_db_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int cp_db_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

const char *cp_db_fmt_i64(int64_t v, char buf[24])
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}
