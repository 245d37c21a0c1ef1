/*
 * buf.h - append-only byte buffer allocated from an h2o memory pool.
 *
 * Responses of the mock are built with direct string formatting into one of
 * these. Memory comes from the request's pool, so nothing is freed by hand:
 * the buffer, and every intermediate copy made while growing, lives until the
 * pool is cleared at the end of the request.
 *
 * Thread: a buffer belongs to the thread that owns its pool.
 */
#ifndef MOCK_BUF_H
#define MOCK_BUF_H

#include <stddef.h>
#include <stdint.h>

#include <h2o/memory.h>

typedef struct st_mock_buf_t {
    char *base;
    size_t len;
    size_t cap;
    h2o_mem_pool_t *pool;
} mock_buf_t;

/* Starts an empty buffer with room for cap bytes, allocated from pool. */
void mock_buf_init(mock_buf_t *buf, h2o_mem_pool_t *pool, size_t cap);
/* Makes room for at least n more bytes and returns where they go. */
char *mock_buf_reserve(mock_buf_t *buf, size_t n);
void mock_buf_append(mock_buf_t *buf, const char *s, size_t n);
#define mock_buf_append_lit(buf, lit) mock_buf_append((buf), (lit), sizeof(lit) - 1)
void mock_buf_append_str(mock_buf_t *buf, const char *s);
void mock_buf_append_u64(mock_buf_t *buf, uint64_t v);
void mock_buf_append_i64(mock_buf_t *buf, int64_t v);
void mock_buf_appendf(mock_buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Appends s as the inside of a JSON string (no quotes): '"', '\\' and control
 * characters are escaped; other bytes, including UTF-8 sequences, are copied.
 */
void mock_buf_append_json_chars(mock_buf_t *buf, const char *s, size_t n);
/* Appends s as a quoted JSON string. */
void mock_buf_append_json_str(mock_buf_t *buf, const char *s, size_t n);

/* Copies s into pool escaped as the inside of a JSON string. */
h2o_iovec_t mock_escaped_copy(h2o_mem_pool_t *pool, const char *s, size_t n);

/* Writes v in decimal to dst (at least 20 bytes) and returns the length. */
size_t mock_u64toa(char *dst, uint64_t v);

#endif
