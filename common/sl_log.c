/* sl_log.c - JSON log lines on stderr. */
#include <stddef.h>
#include "sl_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

static _Atomic int min_level = SL_LOG_INFO;

void sl_log_set_level(int level)
{
    if (level < 0) {
        const char *s = getenv("SLUICE_LOG_LEVEL");
        level = SL_LOG_INFO;
        if (s != NULL) {
            if (strcasecmp(s, "debug") == 0) level = SL_LOG_DEBUG;
            else if (strcasecmp(s, "warn") == 0) level = SL_LOG_WARN;
            else if (strcasecmp(s, "error") == 0) level = SL_LOG_ERROR;
        }
    }
    atomic_store(&min_level, level);
}

static size_t json_escape(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; *src != '\0' && n + 7 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c == '\n') {
            dst[n++] = '\\';
            dst[n++] = 'n';
        } else if (c < 0x20) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    return n;
}

void sl_log(sl_log_level_t level, const char *module, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char msg[1024], line[2600];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;

    if ((int)level < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = (size_t)snprintf(line, sizeof(line),
                         "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         ts.tv_nsec / 1000000, names[level], module);
    n += json_escape(line + n, sizeof(line) - n - 4, msg);
    line[n++] = '"';
    line[n++] = '}';
    line[n++] = '\n';
    (void)!write(2, line, n);
}

void sl_log_json_line(const char *json, size_t len)
{
    /* one system call for the line and its newline, however long: lines of
     * concurrent writers (workers) never interleave in an O_APPEND file */
    struct iovec iov[2] = {{(void *)json, len}, {"\n", 1}};
    (void)!writev(2, iov, 2);
}
