/*
 * sl_net.h - listening sockets and "host:port" strings.
 */
#ifndef SL_NET_H
#define SL_NET_H

#include <stddef.h>

#include "sl_err.h"

/* Splits "host:port" ("[::1]:80" too) into host (cap bytes) and port. */
int sl_split_hostport(const char *s, char *host, size_t cap, int *port, sl_err_t *err);

/* Opens a non-blocking TCP listener on "host:port" (port 0 picks a free one)
 * with SO_REUSEADDR, and SO_REUSEPORT when reuseport is set. Returns the fd
 * or a negative SL_E* code. */
int sl_listen_tcp(const char *hostport, int reuseport, sl_err_t *err);

/* The port a bound socket listens on, or -1. */
int sl_socket_port(int fd);

#endif
