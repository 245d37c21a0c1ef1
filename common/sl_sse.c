/* sl_sse.c - incremental Server-Sent Events parser (see sl_sse.h). */
#include "sl_sse.h"

#include <string.h>

enum { ST_LINE_START, ST_FIELD, ST_VALUE_START, ST_VALUE, ST_IGNORE };
enum { FK_OTHER, FK_DATA, FK_EVENT };

void sl_sse_init(sl_sse_t *p, char *buf, size_t cap)
{
    memset(p, 0, sizeof(*p));
    p->buf = buf;
    p->cap = cap;
}

static void append_data(sl_sse_t *p, const char *s, size_t n)
{
    size_t room = p->cap - p->len;
    if (n > room) {
        n = room;
        p->truncated = 1;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static void append_value(sl_sse_t *p, const char *s, size_t n)
{
    if (p->field_kind == FK_DATA) {
        append_data(p, s, n);
    } else if (p->field_kind == FK_EVENT) {
        size_t room = SL_SSE_EVENT_NAME_MAX - p->event_len;
        if (n > room)
            n = room;
        memcpy(p->event + p->event_len, s, n);
        p->event_len += n;
    }
}

/* The field name is complete: decide what its value feeds. */
static void resolve_field(sl_sse_t *p)
{
    p->field_kind = FK_OTHER;
    if (p->field_len == 4 && memcmp(p->field, "data", 4) == 0) {
        p->field_kind = FK_DATA;
        if (p->has_data)
            append_data(p, "\n", 1);
        p->has_data = 1;
    } else if (p->field_len == 5 && memcmp(p->field, "event", 5) == 0) {
        p->field_kind = FK_EVENT;
        p->event_len = 0;
    }
}

static int dispatch(sl_sse_t *p, sl_sse_cb cb, void *ud)
{
    int ret = 0;
    if (p->has_data) {
        p->buf[p->len] = '\0';
        p->event[p->event_len] = '\0';
        sl_sse_event_t ev = {.data = p->buf, .len = p->len, .event = p->event, .truncated = p->truncated};
        p->events++;
        ret = cb(ud, &ev);
    }
    p->len = 0;
    p->has_data = 0;
    p->truncated = 0;
    p->event_len = 0;
    return ret;
}

/* A line ended (CR, LF or CRLF). */
static int end_line(sl_sse_t *p, sl_sse_cb cb, void *ud)
{
    int state = p->state;
    p->state = ST_LINE_START;
    switch (state) {
    case ST_LINE_START:
        return dispatch(p, cb, ud);
    case ST_FIELD:
        resolve_field(p); /* a line without a colon: the field with an empty value */
        break;
    default:
        break;
    }
    return 0;
}

int sl_sse_feed(sl_sse_t *p, const char *data, size_t len, sl_sse_cb cb, void *ud)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (p->after_cr) {
            p->after_cr = 0;
            if (c == '\n')
                continue;
        }
        if (c == '\r' || c == '\n') {
            p->after_cr = c == '\r';
            int ret = end_line(p, cb, ud);
            if (ret != 0)
                return ret;
            continue;
        }
        switch (p->state) {
        case ST_LINE_START:
            if (c == ':') {
                p->state = ST_IGNORE;
                break;
            }
            p->field_len = 0;
            p->state = ST_FIELD;
            /* fallthrough */
        case ST_FIELD:
            if (c == ':') {
                resolve_field(p);
                p->state = ST_VALUE_START;
            } else {
                if (p->field_len < sizeof(p->field))
                    p->field[p->field_len] = c;
                p->field_len++;
            }
            break;
        case ST_VALUE_START:
            p->state = ST_VALUE;
            if (c == ' ')
                break;
            /* fallthrough */
        case ST_VALUE: {
            size_t j = i;
            while (j < len && data[j] != '\n' && data[j] != '\r')
                j++;
            append_value(p, data + i, j - i);
            i = j - 1;
            break;
        }
        case ST_IGNORE: {
            const char *nl = memchr(data + i, '\n', len - i);
            const char *cr = memchr(data + i, '\r', len - i);
            const char *e = nl == NULL ? cr : (cr == NULL || nl < cr ? nl : cr);
            i = e == NULL ? len - 1 : (size_t)(e - data) - 1;
            break;
        }
        }
    }
    return 0;
}
