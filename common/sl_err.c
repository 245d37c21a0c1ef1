/* sl_err.c - error codes and messages. */
#include "sl_err.h"

#include <stdio.h>

int sl_err_set(sl_err_t *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *sl_strerror(int code)
{
    switch (code) {
    case SL_OK: return "ok";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory";
    case SL_ENOTFOUND: return "not found";
    case SL_EEXISTS: return "already exists";
    case SL_EIO: return "i/o error";
    case SL_EPERM: return "permission denied";
    case SL_EUNAVAIL: return "unavailable";
    case SL_ECONFLICT: return "conflict";
    case SL_ETOOBIG: return "too big";
    case SL_ECRYPTO: return "cryptographic check failed";
    default: return "internal error";
    }
}
