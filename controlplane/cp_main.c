/*
 * cp_main.c - entry point of sluice-controlplane: `migrate` and `serve`.
 */
#include "cp_config.h"
#include "cp_migrations.h"
#include "cp_serve.h"
#include "sl_log.h"

#include <stdio.h>
#include <string.h>

static int run_migrate(const cp_config_t *cfg)
{
    cp_db_t db;
    sl_err_t err = {0};
    cp_db_init(&db, cfg->database_url);
    int rc = cp_migrate(&db, stdout, &err);
    cp_db_close(&db);
    if (rc != 0) {
        fprintf(stderr, "sluice-controlplane: migrate failed: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cp_config_t cfg;
    sl_err_t err = {0};
    sl_log_set_level(-1);
    if (cp_config_parse(argc, argv, &cfg, &err) != 0) {
        fprintf(stderr, "sluice-controlplane: %s\n%s", err.msg, cp_config_usage());
        return 2;
    }
    switch (cfg.command) {
    case CP_CMD_HELP:
        fputs(cp_config_usage(), stdout);
        return 0;
    case CP_CMD_VERSION:
        printf("sluice-controlplane %s\n", SLUICE_VERSION);
        return 0;
    case CP_CMD_MIGRATE:
        return run_migrate(&cfg);
    case CP_CMD_SERVE:
        return cp_serve(&cfg) == 0 ? 0 : 1;
    default:
        fputs(cp_config_usage(), stderr);
        return 2;
    }
}
