/*
 * sl_err.h - error codes shared by every Sluice module.
 *
 * Functions return 0 on success or a negative SL_E* code. Where context
 * matters (database, configuration, parsing) they also fill an optional
 * sl_err_t with a lower-case message without a final period. SQLSTATEs are
 * mapped to SL_E* only in the database layer, SL_E* to gRPC or HTTP status
 * only at the edges.
 */
#ifndef SL_ERR_H
#define SL_ERR_H

#include <stdarg.h>

enum {
    SL_OK = 0,
    SL_EINVAL = -1,      /* bad input from the caller or the user */
    SL_ENOMEM = -2,
    SL_ENOTFOUND = -3,
    SL_EEXISTS = -4,
    SL_EIO = -5,         /* socket, file or database I/O failed */
    SL_EPERM = -6,       /* authentication or authorization failed */
    SL_EUNAVAIL = -7,    /* a dependency is down; retrying may work */
    SL_ECONFLICT = -8,   /* concurrent change; retry the transaction */
    SL_ETOOBIG = -9,
    SL_ECRYPTO = -10,    /* decryption or authentication tag failed */
    SL_EINTERNAL = -11,
};

typedef struct sl_err {
    int code;
    char msg[512];
} sl_err_t;

/* Sets err (when not NULL) and returns code, so callers can
 * `return sl_err_set(err, SL_EINVAL, "bad \"%s\"", s);`. */
int sl_err_set(sl_err_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A short lower-case name of the code ("invalid argument"). */
const char *sl_strerror(int code);

#endif
