/*
 * server.h - the mock's HTTP server: listeners, worker threads, routing.
 *
 * Each worker thread runs its own h2o event loop with its own SO_REUSEPORT
 * listener on the same address, so the kernel spreads connections across
 * threads. Requests go to the control endpoints (control.h) or to a provider
 * route (provider.h); anything else gets the provider's 404.
 *
 * Thread: create, start and stop are called from the main thread only.
 */
#ifndef MOCK_SERVER_H
#define MOCK_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "provider.h"

typedef struct st_mock_server_t mock_server_t;

/*
 * Binds num_threads listeners on host:port (port "0" picks a free port, then
 * shared by all threads) and prepares their loops. settings is borrowed for
 * the life of the server. Returns NULL after writing a message to err.
 * The server is never freed: connections still open when it stops are left
 * as they are until the process exits.
 */
mock_server_t *mock_server_create(const mock_settings_t *settings, const char *host, const char *port,
                                  size_t num_threads, char *err, size_t errsz);

/* The bound TCP port. */
uint16_t mock_server_port(const mock_server_t *server);

/* Starts the worker threads. Returns 0, or -1 after writing to err. */
int mock_server_start(mock_server_t *server, char *err, size_t errsz);

/*
 * Stops accepting, wakes every loop, and waits until each has stopped. The
 * worker threads are not joined: they stay parked until the process exits
 * (see worker_main in server.c), so return from main() right after this.
 */
void mock_server_stop(mock_server_t *server);

#endif
