/*
 * cp_reclaim.c - the lease reclaimer thread.
 */
#include "cp_reclaim.h"
#include "cp_metrics.h"
#include "sl_buf.h"
#include "sl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cp_reclaim {
    cp_db_t db;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

/* At most this many windows per pass; the rest wait for the next one. */
static const char WINDOWS_SQL[] =
    "SELECT w.quota_id, extract(epoch FROM w.window_start)::bigint FROM quota_windows w"
    " WHERE (w.quota_id, w.window_start) IN"
    " (SELECT l.quota_id, l.window_start FROM quota_leases l WHERE l.reclaim_at < now() LIMIT 5000)"
    " ORDER BY w.quota_id, w.window_start FOR UPDATE OF w";

/* $1: the windows locked above, [[quota_id, window_start], ...]. */
static const char RECLAIM_SQL[] =
    "WITH locked AS (SELECT (x->>0)::bigint AS q, to_timestamp((x->>1)::bigint) AS ws"
    "   FROM jsonb_array_elements($1::jsonb) AS x),"
    " gone AS (DELETE FROM quota_leases l USING locked k WHERE l.quota_id = k.q AND l.window_start = k.ws"
    "   AND l.reclaim_at < now() RETURNING l.quota_id, l.window_start, l.outstanding),"
    " upd AS (UPDATE quota_windows w SET outstanding = w.outstanding - g.o"
    "   FROM (SELECT quota_id, window_start, sum(outstanding)::bigint AS o FROM gone GROUP BY 1, 2) g"
    "   WHERE w.quota_id = g.quota_id AND w.window_start = g.window_start RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM upd)";

int cp_reclaim_once(cp_db_t *db, int64_t *n, sl_err_t *err)
{
    if (n != NULL)
        *n = 0;
    int rc = cp_db_begin(db, err);
    if (rc != 0)
        return rc;
    PGresult *r = cp_db_query(db, "SELECT pg_try_advisory_xact_lock(hashtext('sluice_lease_reclaim'))", 0, NULL, err);
    if (r == NULL) {
        rc = err->code;
        goto fail;
    }
    int got = cp_db_bool(r, 0, 0);
    PQclear(r);
    if (!got) {
        cp_db_rollback(db);
        return 0;
    }
    if ((r = cp_db_query(db, WINDOWS_SQL, 0, NULL, err)) == NULL) {
        rc = err->code;
        goto fail;
    }
    sl_buf_t json = {0};
    sl_buf_puts(&json, "[");
    for (int i = 0; i < PQntuples(r); i++)
        sl_buf_printf(&json, "%s[%s,%s]", i > 0 ? "," : "", cp_db_str(r, i, 0), cp_db_str(r, i, 1));
    sl_buf_puts(&json, "]");
    int windows = PQntuples(r);
    PQclear(r);
    int64_t count = 0;
    if (windows > 0) {
        const char *p[1] = {json.data};
        r = cp_db_query(db, RECLAIM_SQL, 1, p, err);
        if (r != NULL) {
            count = cp_db_i64(r, 0, 0);
            PQclear(r);
        }
    }
    sl_buf_free(&json);
    if (windows > 0 && r == NULL) {
        rc = err->code;
        goto fail;
    }
    if ((rc = cp_db_commit(db, err)) != 0)
        goto fail;
    if (count > 0) {
        cp_metrics_inc(CP_M_LEASES_RECLAIMED, (uint64_t)count);
        sl_info("reclaim", "reclaimed %lld expired lease(s)", (long long)count);
    }
    if (n != NULL)
        *n = count;
    return 0;
fail:
    cp_db_rollback(db);
    return rc;
}

static void *reclaim_main(void *arg)
{
    cp_reclaim_t *r = arg;
    int failing = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += r->interval_ms / 1000;
        until.tv_nsec += (r->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
            ;
        if (r->stop)
            break;
        pthread_mutex_unlock(&r->mu);
        sl_err_t err = {0};
        int rc = cp_reclaim_once(&r->db, NULL, &err);
        if (rc != 0 && !failing)
            sl_warn("reclaim", "lease reclaim failed: %s", err.msg);
        failing = rc != 0;
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

cp_reclaim_t *cp_reclaim_start(const char *database_url, const cp_lease_cfg_t *cfg)
{
    cp_reclaim_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    cp_db_init(&r->db, database_url);
    r->interval_ms = cp_lease_reclaim_interval_ms(cfg);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, reclaim_main, r) != 0)
        abort();
    return r;
}

void cp_reclaim_stop(cp_reclaim_t *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    cp_db_close(&r->db);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
