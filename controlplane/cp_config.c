/*
 * cp_config.c - flag and environment parsing for sluice-controlplane.
 */
#include "cp_config.h"
#include "cp_lease.h"
#include "sl_duration.h"

#include <stdlib.h>
#include <string.h>

struct flag {
    const char *name;  /* without leading dashes */
    const char *env;
    size_t offset;     /* of the const char * in cp_config_t */
    int serve_only;
    int required;
};

#define OFF(f) __builtin_offsetof(cp_config_t, f)

static const struct flag flags[] = {
    {"database-url", "SLUICE_DATABASE_URL", OFF(database_url), 0, 1},
    {"grpc-listen", "SLUICE_GRPC_LISTEN", OFF(grpc_listen), 1, 1},
    {"http-listen", "SLUICE_HTTP_LISTEN", OFF(http_listen), 1, 1},
    {"admin-token-file", "SLUICE_ADMIN_TOKEN_FILE", OFF(admin_token_file), 1, 1},
    {"master-key-file", "SLUICE_MASTER_KEY_FILE", OFF(master_key_file), 1, 1},
    {"node-token-file", "SLUICE_NODE_TOKEN_FILE", OFF(node_token_file), 1, 1},
    {"port-file", "SLUICE_PORT_FILE", OFF(port_file), 1, 0},
    {"alert-interval", "SLUICE_ALERT_INTERVAL", OFF(alert_interval), 1, 0},
    {"alert-resend-interval", "SLUICE_ALERT_RESEND_INTERVAL", OFF(alert_resend_interval), 1, 0},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static const char **slot(cp_config_t *cfg, const struct flag *f)
{
    return (const char **)((char *)cfg + f->offset);
}

const char *cp_config_usage(void)
{
    return "usage: sluice-controlplane migrate --database-url URL\n"
           "       sluice-controlplane serve --database-url URL --grpc-listen HOST:PORT --http-listen HOST:PORT\n"
           "           --admin-token-file F --master-key-file F --node-token-file F [--port-file F] [--workers N]\n"
           "           [--lease-ttl-ms MS (default 30000)] [--lease-reclaim-grace-ms MS (default 600000)]\n"
           "           [--alert-interval DURATION (default 60s; e.g. 500ms, 2s, 1m)]\n"
           "           [--alert-resend-interval DURATION (default 60s: firing alerts posted to Alertmanager again)]\n"
           "every flag may also be set with its SLUICE_* variable (SLUICE_DATABASE_URL, SLUICE_GRPC_LISTEN, ...)\n";
}

static int parse_ms(const char *flag, const char *s, long long *out, sl_err_t *err)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0)
        return sl_err_set(err, SL_EINVAL, "--%s must be a whole number of milliseconds, not \"%s\"", flag, s);
    *out = v;
    return 0;
}

/* A duration flag's value into *out_ms; NULL leaves *out_ms as it is. */
static int parse_duration(const char *flag, const char *s, long long *out_ms, sl_err_t *err)
{
    int64_t ms;
    if (s == NULL)
        return 0;
    if (sl_duration_parse_ms(s, strlen(s), &ms) != 0 || ms <= 0)
        return sl_err_set(err, SL_EINVAL, "--%s must be a duration such as 500ms, 2s or 1m, not \"%.64s\"", flag, s);
    *out_ms = ms;
    return 0;
}

static int parse_workers(const char *s, int *out, sl_err_t *err)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 64)
        return sl_err_set(err, SL_EINVAL, "--workers must be between 1 and 64, not \"%s\"", s);
    *out = (int)v;
    return 0;
}

int cp_config_parse(int argc, char **argv, cp_config_t *cfg, sl_err_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 4;
    cfg->lease_ttl_ms = CP_LEASE_TTL_MS_DEFAULT;
    cfg->lease_grace_ms = CP_LEASE_GRACE_MS_DEFAULT;
    cfg->alert_interval_ms = 60000;
    cfg->alert_resend_ms = 60000;
    if (argc < 2)
        return sl_err_set(err, SL_EINVAL, "no command given");
    const char *cmd = argv[1];
    if (strcmp(cmd, "migrate") == 0)
        cfg->command = CP_CMD_MIGRATE;
    else if (strcmp(cmd, "serve") == 0)
        cfg->command = CP_CMD_SERVE;
    else if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return cfg->command = CP_CMD_HELP, 0;
    else if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cfg->command = CP_CMD_VERSION, 0;
    else
        return sl_err_set(err, SL_EINVAL, "unknown command \"%s\"", cmd);

    const char *workers = getenv("SLUICE_WORKERS");
    const char *ttl = getenv("SLUICE_LEASE_TTL_MS"), *grace = getenv("SLUICE_LEASE_RECLAIM_GRACE_MS");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return cfg->command = CP_CMD_HELP, 0;
        if (strncmp(a, "--", 2) != 0)
            return sl_err_set(err, SL_EINVAL, "unexpected argument \"%s\"", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const char *val = eq != NULL ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc)
                return sl_err_set(err, SL_EINVAL, "flag \"--%.*s\" needs a value", (int)nlen, name);
            val = argv[++i];
        }
        if (nlen == 7 && strncmp(name, "workers", 7) == 0) {
            workers = val;
            continue;
        }
        if (cfg->command == CP_CMD_SERVE && nlen == 12 && strncmp(name, "lease-ttl-ms", 12) == 0) {
            ttl = val;
            continue;
        }
        if (cfg->command == CP_CMD_SERVE && nlen == 22 && strncmp(name, "lease-reclaim-grace-ms", 22) == 0) {
            grace = val;
            continue;
        }
        size_t k;
        for (k = 0; k < NFLAGS; k++)
            if (strlen(flags[k].name) == nlen && strncmp(flags[k].name, name, nlen) == 0)
                break;
        if (k == NFLAGS || (flags[k].serve_only && cfg->command != CP_CMD_SERVE))
            return sl_err_set(err, SL_EINVAL, "unknown flag \"--%.*s\" for \"%s\"", (int)nlen, name, cmd);
        *slot(cfg, &flags[k]) = val;
    }
    if (workers != NULL && cfg->command == CP_CMD_SERVE && parse_workers(workers, &cfg->workers, err) != 0)
        return SL_EINVAL;
    if (cfg->command == CP_CMD_SERVE) {
        if ((ttl != NULL && *ttl != '\0' && parse_ms("lease-ttl-ms", ttl, &cfg->lease_ttl_ms, err) != 0) ||
            (grace != NULL && *grace != '\0' &&
             parse_ms("lease-reclaim-grace-ms", grace, &cfg->lease_grace_ms, err) != 0))
            return SL_EINVAL;
        cp_lease_cfg_t lc = {cfg->lease_ttl_ms, cfg->lease_grace_ms};
        if (cp_lease_cfg_validate(&lc, err) != 0)
            return SL_EINVAL;
    }
    for (size_t k = 0; k < NFLAGS; k++) {
        if (flags[k].serve_only && cfg->command != CP_CMD_SERVE)
            continue;
        const char **p = slot(cfg, &flags[k]);
        if (*p == NULL || **p == '\0')
            *p = getenv(flags[k].env);
        if ((*p == NULL || **p == '\0') && flags[k].required)
            return sl_err_set(err, SL_EINVAL, "missing --%s (or %s)", flags[k].name, flags[k].env);
        if (*p != NULL && **p == '\0')
            *p = NULL;
    }
    if (cfg->command == CP_CMD_SERVE &&
        (parse_duration("alert-interval", cfg->alert_interval, &cfg->alert_interval_ms, err) != 0 ||
         parse_duration("alert-resend-interval", cfg->alert_resend_interval, &cfg->alert_resend_ms, err) != 0))
        return SL_EINVAL;
    return 0;
}
