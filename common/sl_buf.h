/*
 * sl_buf.h - a growable byte buffer for code off the data plane's hot path
 * (control plane, CLI, metrics text). Owner frees with sl_buf_free().
 * Appends abort on allocation failure: these callers cannot do better.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>

typedef struct sl_buf {
    char *data; /* always NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
} sl_buf_t;

void sl_buf_reserve(sl_buf_t *b, size_t extra);
void sl_buf_append(sl_buf_t *b, const void *p, size_t n);
void sl_buf_puts(sl_buf_t *b, const char *s);
void sl_buf_printf(sl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
void sl_buf_json_str(sl_buf_t *b, const char *s, size_t n);
void sl_buf_free(sl_buf_t *b);

#endif
