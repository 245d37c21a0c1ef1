/*
 * cp_serve.h - `sluice-controlplane serve`: wires the database, the gRPC
 * server, the sync publisher and the ops HTTP port together and runs until
 * SIGTERM or SIGINT.
 */
#ifndef CP_SERVE_H
#define CP_SERVE_H

#include "cp_config.h"

/* Runs the server on the calling thread; returns 0 after a clean shutdown,
 * an SL_E* code (already logged) when it could not start. */
int cp_serve(const cp_config_t *cfg);

#endif
