/*
 * cp_serve.c - `sluice-controlplane serve`.
 *
 * Startup: block SIGTERM/SIGINT in every thread (the main thread waits for
 * them with sigwait), read the tokens and the master key, refuse to start
 * unless the database is migrated to this binary's schema, start the sync
 * publisher, the gRPC server and the ops HTTP port, then write the port
 * file. Shutdown: stop accepting gRPC calls and cancel the open ones, stop
 * the publisher, let the workers finish, tear everything down.
 */
#include <stddef.h>

#include "cp_alert.h"
#include "cp_auth.h"
#include "cp_metrics.h"
#include "cp_migrations.h"
#include "cp_reclaim.h"
#include "cp_rpc.h"
#include "cp_serve.h"
#include "cp_service.h"
#include "cp_store.h"
#include "cp_sync.h"
#include "sl_crypto.h"
#include "sl_httpd.h"
#include "sl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <openssl/crypto.h>

static void hook_sent(void *app, cp_call_t *call, int ok)
{
    cp_sync_on_sent(((cp_app_t *)app)->sync, call, ok);
}

static void hook_closed(void *app, cp_call_t *call)
{
    cp_sync_on_closed(((cp_app_t *)app)->sync, call);
}

static int on_http(void *ud, const char *path, size_t len, sl_buf_t *out, const char **ctype)
{
    cp_app_t *app = ud;
#define IS(p) (len == sizeof(p) - 1 && memcmp(path, p, len) == 0)
    if (IS("/healthz")) {
        sl_buf_puts(out, "ok\n");
        return 200;
    }
    if (IS("/readyz")) {
        if (cp_sync_db_ok(app->sync)) {
            sl_buf_puts(out, "ready\n");
            return 200;
        }
        sl_buf_puts(out, "not ready: database unreachable or schema not current\n");
        return 503;
    }
    if (IS("/metrics")) {
        cp_gauges_t g = {cp_sync_watchers(app->sync), cp_sync_version(app->sync), cp_sync_db_ok(app->sync)};
        cp_metrics_render(&g, out);
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        return 200;
    }
#undef IS
    sl_buf_puts(out, "not found\n");
    return 404;
}

/* Writes "GRPC_PORT HTTP_PORT\n" to path via a temporary file and rename. */
static int write_port_file(const char *path, int grpc_port, int http_port, sl_err_t *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return sl_err_set(err, SL_EIO, "could not write \"%s\": %s", tmp, strerror(errno));
    fprintf(f, "%d %d\n", grpc_port, http_port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return sl_err_set(err, SL_EIO, "could not write \"%s\": %s", path, strerror(errno));
    }
    return 0;
}

static int check_schema(const char *url, sl_err_t *err)
{
    cp_db_t db;
    cp_db_init(&db, url);
    int rc = cp_db_ensure(&db, err);
    if (rc == 0)
        rc = cp_migrate_verify(&db, err);
    cp_db_close(&db);
    return rc;
}

int cp_serve(const cp_config_t *cfg)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    sl_err_t err = {0};
    cp_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        abort();
    uint8_t master[32];
    int rc = cp_auth_init(&app->auth, cfg->admin_token_file, cfg->node_token_file, &err);
    if (rc == 0)
        rc = sl_read_master_key(cfg->master_key_file, master, &err);
    if (rc == 0) {
        cp_keys_derive(master, &app->keys);
        OPENSSL_cleanse(master, sizeof(master));
        rc = check_schema(cfg->database_url, &err);
    }
    if (rc != 0) {
        sl_error("serve", "cannot start: %s", err.msg);
        fprintf(stderr, "sluice-controlplane: cannot start: %s\n", err.msg);
        cp_auth_wipe(&app->auth);
        cp_keys_wipe(&app->keys);
        free(app);
        return rc;
    }

    grpc_init();
    app->lease = (cp_lease_cfg_t){cfg->lease_ttl_ms, cfg->lease_grace_ms};
    app->sync = cp_sync_new(cfg->database_url, &app->keys);
    cp_rpc_config_t rcfg = {.listen = cfg->grpc_listen,
                            .methods = cp_methods,
                            .nmethods = cp_methods_count,
                            .auth = &app->auth,
                            .app = app,
                            .database_url = cfg->database_url,
                            .workers = cfg->workers,
                            .stream_sent = hook_sent,
                            .stream_closed = hook_closed};
    cp_rpc_t *rpc = NULL;
    sl_httpd_t *httpd = NULL;
    if ((rc = cp_sync_start(app->sync, &err)) == 0 && (rpc = cp_rpc_start(&rcfg, &err)) == NULL)
        rc = err.code != 0 ? err.code : SL_EIO;
    if (rc == 0 && (httpd = sl_httpd_start(cfg->http_listen, on_http, app, &err)) == NULL)
        rc = err.code != 0 ? err.code : SL_EIO;
    cp_reclaim_t *reclaim = rc == 0 ? cp_reclaim_start(cfg->database_url, &app->lease) : NULL;
    cp_alert_cfg_t acfg = {cfg->database_url, &app->keys, cfg->alert_interval_ms, cfg->alert_resend_ms};
    cp_alert_t *alerts = rc == 0 ? cp_alert_start(&acfg) : NULL;
    if (rc == 0 && cfg->port_file != NULL)
        rc = write_port_file(cfg->port_file, cp_rpc_port(rpc), sl_httpd_port(httpd), &err);

    if (rc == 0) {
        sl_info("serve", "sluice-controlplane %s serving gRPC on port %d, HTTP on port %d, %d workers", SLUICE_VERSION,
                cp_rpc_port(rpc), sl_httpd_port(httpd), cfg->workers);
        int sig = 0;
        while (sigwait(&sigs, &sig) != 0)
            ;
        sl_info("serve", "received signal %d, shutting down", sig);
    } else {
        sl_error("serve", "cannot start: %s", err.msg);
        fprintf(stderr, "sluice-controlplane: cannot start: %s\n", err.msg);
    }

    if (rpc != NULL)
        cp_rpc_begin_shutdown(rpc);
    cp_alert_stop(alerts);
    cp_reclaim_stop(reclaim);
    cp_sync_stop(app->sync);
    if (rpc != NULL)
        cp_rpc_finish(rpc);
    sl_httpd_stop(httpd);
    cp_sync_free(app->sync);
    grpc_shutdown();
    cp_auth_wipe(&app->auth);
    cp_keys_wipe(&app->keys);
    free(app);
    if (rc == 0)
        sl_info("serve", "stopped");
    return rc;
}
