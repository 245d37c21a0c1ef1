/*
 * cp_config.h - command line and environment of sluice-controlplane.
 *
 *   sluice-controlplane migrate --database-url URL
 *   sluice-controlplane serve --database-url URL --grpc-listen HOST:PORT
 *       --http-listen HOST:PORT --admin-token-file F --master-key-file F
 *       --node-token-file F [--port-file F] [--workers N]
 *       [--lease-ttl-ms MS] [--lease-reclaim-grace-ms MS] [--alert-interval DURATION]
 *       [--alert-resend-interval DURATION]
 *
 * Every flag may come from its SLUICE_* variable instead; a flag wins. The
 * parsed strings point into argv or the environment (not copied).
 */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include "sl_err.h"

typedef enum { CP_CMD_NONE, CP_CMD_MIGRATE, CP_CMD_SERVE, CP_CMD_HELP, CP_CMD_VERSION } cp_command_t;

typedef struct cp_config {
    cp_command_t command;
    const char *database_url;
    const char *grpc_listen;
    const char *http_listen;
    const char *admin_token_file;
    const char *master_key_file;
    const char *node_token_file;
    const char *port_file;  /* NULL: none */
    int workers;            /* unary handler threads, each with a database connection */
    long long lease_ttl_ms;    /* quota lease lifetime without renewal */
    long long lease_grace_ms;  /* after expiry, before an unrenewed lease is reclaimed */
    const char *alert_interval;        /* as given; parsed into alert_interval_ms */
    const char *alert_resend_interval; /* as given; parsed into alert_resend_ms */
    long long alert_interval_ms; /* alert evaluation period (--alert-interval, e.g. "60s") */
    long long alert_resend_ms;   /* firing alerts re-posted to Alertmanager this often */
} cp_config_t;

/* Parses argv (argv[0] is the program). Returns 0 or SL_EINVAL with a
 * message naming the flag. Checks that the chosen command has what it
 * needs. */
int cp_config_parse(int argc, char **argv, cp_config_t *cfg, sl_err_t *err);

/* The usage text. */
const char *cp_config_usage(void);

#endif
