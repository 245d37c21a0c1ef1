/*
 * sl_sse.h - incremental parser for Server-Sent Events (text/event-stream).
 *
 * Bytes are fed as they arrive, split anywhere (inside a field name, a
 * value, or between the CR and LF of a line ending). Lines end with CRLF,
 * LF or CR. Each blank line dispatches the event built so far: the `data`
 * lines joined with "\n" and the last `event` name. Comments (lines
 * starting with ':'), `id` and `retry` are ignored; an event without data
 * is not dispatched, as the SSE specification says.
 *
 * No allocation: the caller provides the buffer that collects an event's
 * data. An event whose data does not fit is still dispatched, with the data
 * cut at the buffer's size and `truncated` set (a relay keeps forwarding the
 * bytes; only its own inspection of that event is incomplete).
 *
 * A parser belongs to one stream and one thread.
 */
#ifndef SL_SSE_H
#define SL_SSE_H

#include <stddef.h>

#define SL_SSE_EVENT_NAME_MAX 63

typedef struct sl_sse_event {
    const char *data;       /* borrowed until the callback returns; NUL-terminated */
    size_t len;
    const char *event;      /* "" when no `event:` field was seen */
    int truncated;
} sl_sse_event_t;

/* Called once per dispatched event. Return non-zero to stop feeding (the
 * rest of the chunk is not parsed; sl_sse_feed returns that value). */
typedef int (*sl_sse_cb)(void *ud, const sl_sse_event_t *ev);

typedef struct sl_sse {
    char *buf;              /* event data, caller-provided */
    size_t cap;             /* usable bytes of buf (one more is kept for the NUL) */
    size_t len;
    int has_data;           /* at least one data line in the current event */
    int truncated;
    /* current line */
    int state;
    int after_cr;           /* the previous byte was a CR ending a line */
    char field[8];          /* field name, when short enough to be one we know */
    size_t field_len;
    int field_kind;
    char event[SL_SSE_EVENT_NAME_MAX + 1];
    size_t event_len;
    size_t events;          /* dispatched so far */
} sl_sse_t;

/* buf must hold cap + 1 bytes. */
void sl_sse_init(sl_sse_t *p, char *buf, size_t cap);

/* Parses data[0..len). Returns 0, or the non-zero value a callback
 * returned. */
int sl_sse_feed(sl_sse_t *p, const char *data, size_t len, sl_sse_cb cb, void *ud);

#endif
