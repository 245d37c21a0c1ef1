/*
 * sl_httpd.h - a small HTTP server on its own thread for operational
 * endpoints (/healthz, /readyz, /metrics) of every Sluice process.
 *
 * The handler runs on the server's thread; it fills out and returns the
 * HTTP status. It must be quick and thread-safe with respect to whatever
 * state it reads (atomics, or its own locking).
 */
#ifndef SL_HTTPD_H
#define SL_HTTPD_H

#include "sl_buf.h"
#include "sl_err.h"

typedef int (*sl_httpd_fn)(void *ud, const char *path, size_t pathlen, sl_buf_t *out, const char **content_type);

typedef struct sl_httpd sl_httpd_t;

/* Listens on "host:port" and serves GET requests through fn. Returns NULL
 * and fills err on failure. Caller owns the server: sl_httpd_stop(). */
sl_httpd_t *sl_httpd_start(const char *hostport, sl_httpd_fn fn, void *ud, sl_err_t *err);
int sl_httpd_port(const sl_httpd_t *s);
/* Stops the thread, closes the socket and frees s. */
void sl_httpd_stop(sl_httpd_t *s);

#endif
