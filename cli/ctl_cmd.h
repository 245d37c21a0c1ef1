/*
 * ctl_cmd.h - the sluicectl command line: argument parsing and commands.
 *
 *   sluicectl [global options] COMMAND [command options]
 *
 * Global options may appear anywhere on the line. The full grammar is in
 * the usage text (`sluicectl --help`). Exit status: 0 success, 1 failure
 * (message on err), 2 usage error (usage on err).
 */
#ifndef CTL_CMD_H
#define CTL_CMD_H

#include <stdio.h>

#include "ctl_yaml.h"

/* Runs one sluicectl invocation. argv[0] is the program name. Output goes
 * to out, diagnostics to err; environment variables (SLUICE_SERVER,
 * SLUICE_ADMIN_TOKEN_FILE, SLUICE_ADMIN_TOKEN and secret_env variables) are
 * read through env. Returns the exit status. */
int ctl_main(int argc, char **argv, FILE *out, FILE *err, ctl_env_fn env, void *ud);

#endif
