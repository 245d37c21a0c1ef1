/*
 * sl_evstream.h - the AWS event stream binary framing
 * (application/vnd.amazon.eventstream), as Bedrock's ConverseStream and
 * InvokeModelWithResponseStream answer with.
 *
 * A message is, big-endian throughout:
 *   total length (4) | headers length (4) | prelude CRC (4, over the 8 bytes
 *   before it) | headers | payload | message CRC (4, over every byte before
 *   it)
 * and each header is name length (1) | name | value type (1) | value, where
 * the value's shape depends on the type (SL_EVS_* below). Both CRCs are
 * CRC-32 as in zlib and gzip (ISO-HDLC, reflected 0xEDB88320).
 *
 * The decoder is incremental: feed it the body as it arrives, split
 * anywhere, and it calls back once per complete, verified message. Messages
 * that arrive whole inside one chunk are parsed in place; only a message
 * split across chunks is copied, into one internal buffer that grows to the
 * largest such message and is reused (no allocation per message). Messages
 * larger than the decoder's limit (16 MiB unless told otherwise) are
 * rejected before anything is buffered.
 *
 * Memory: a decoded message (headers, payload, strings) points into the
 * caller's chunk or the decoder's buffer and is valid only during the
 * callback. The decoder owns its buffer; release it with
 * sl_evs_decoder_free(). Encoders write into caller memory or an sl_buf_t.
 *
 * Threads: everything is reentrant; a decoder is used by one thread at a
 * time.
 */
#ifndef SL_EVSTREAM_H
#define SL_EVSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sl_buf.h"
#include "sl_err.h"

/* Header value types, as on the wire. */
enum {
    SL_EVS_TRUE = 0,  /* no value bytes */
    SL_EVS_FALSE = 1, /* no value bytes */
    SL_EVS_BYTE = 2,  /* int8 */
    SL_EVS_INT16 = 3,
    SL_EVS_INT32 = 4,
    SL_EVS_INT64 = 5,
    SL_EVS_BYTES = 6,     /* uint16 length + bytes */
    SL_EVS_STRING = 7,    /* uint16 length + UTF-8 */
    SL_EVS_TIMESTAMP = 8, /* int64 milliseconds since the epoch */
    SL_EVS_UUID = 9,      /* 16 bytes */
};

#define SL_EVS_PRELUDE_LEN 12
#define SL_EVS_OVERHEAD 16                     /* prelude + message CRC */
#define SL_EVS_DEFAULT_MAX (16u * 1024 * 1024) /* largest message accepted */
#define SL_EVS_MAX_HEADERS 32                  /* more in one message is an error */
#define SL_EVS_MAX_VALUE_LEN 32767             /* encoder limit for BYTES/STRING */

/* Header names Bedrock uses, and its message types. */
#define SL_EVS_H_EVENT_TYPE ":event-type"
#define SL_EVS_H_MESSAGE_TYPE ":message-type"
#define SL_EVS_H_CONTENT_TYPE ":content-type"
#define SL_EVS_H_EXCEPTION_TYPE ":exception-type"
#define SL_EVS_H_ERROR_CODE ":error-code"
#define SL_EVS_H_ERROR_MESSAGE ":error-message"
#define SL_EVS_MSG_EVENT "event"
#define SL_EVS_MSG_EXCEPTION "exception"
#define SL_EVS_MSG_ERROR "error"

/* ConverseStream event types (the :event-type of an "event" message). */
#define SL_EVS_EV_MESSAGE_START "messageStart"
#define SL_EVS_EV_CONTENT_BLOCK_START "contentBlockStart"
#define SL_EVS_EV_CONTENT_BLOCK_DELTA "contentBlockDelta"
#define SL_EVS_EV_CONTENT_BLOCK_STOP "contentBlockStop"
#define SL_EVS_EV_MESSAGE_STOP "messageStop"
#define SL_EVS_EV_METADATA "metadata"
/* InvokeModelWithResponseStream's event: {"bytes":"<base64 JSON>"}. */
#define SL_EVS_EV_CHUNK "chunk"
/* Exceptions (the :exception-type of an "exception" message). */
#define SL_EVS_EX_INTERNAL_SERVER "internalServerException"
#define SL_EVS_EX_MODEL_STREAM_ERROR "modelStreamErrorException"
#define SL_EVS_EX_VALIDATION "validationException"
#define SL_EVS_EX_THROTTLING "throttlingException"
#define SL_EVS_EX_SERVICE_UNAVAILABLE "serviceUnavailableException"

typedef struct sl_evs_header {
    const char *name;
    size_t name_len;     /* 1..255 */
    uint8_t type;        /* SL_EVS_* */
    int64_t num;         /* TRUE 1, FALSE 0, BYTE/INT16/INT32/INT64, TIMESTAMP */
    const uint8_t *data; /* BYTES, STRING, UUID (16 bytes); not NUL-terminated */
    size_t len;
} sl_evs_header_t;

/* A byte range; p is NULL when absent. Not NUL-terminated. */
typedef struct sl_evs_str {
    const char *p;
    size_t len;
} sl_evs_str_t;

typedef struct sl_evs_message {
    const uint8_t *frame; /* the whole encoded message */
    size_t frame_len;
    sl_evs_header_t headers[SL_EVS_MAX_HEADERS];
    size_t nheaders;
    const uint8_t *payload;
    size_t payload_len;
    /* The well-known string headers, found once (absent: p == NULL). */
    sl_evs_str_t event_type, message_type, content_type, exception_type;
} sl_evs_message_t;

/* CRC-32 (zlib's crc32(): pass 0 to start, the previous result to go on). */
uint32_t sl_crc32(uint32_t crc, const void *data, size_t len);

/* Whether s holds exactly the NUL-terminated lit. */
static inline int sl_evs_str_eq(sl_evs_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.p != NULL && s.len == n && memcmp(s.p, lit, n) == 0;
}

/* The first header named name (NUL-terminated), or NULL. */
const sl_evs_header_t *sl_evs_find(const sl_evs_message_t *m, const char *name);

/* Parses one complete message at the start of p[0..len). Returns 1 and
 * fills *m and *used when a whole message is there, 0 when more bytes are
 * needed (*used then says how many bytes to have: the message's total
 * length once the prelude is in, SL_EVS_PRELUDE_LEN before), or SL_EINVAL
 * (bad CRC, inconsistent lengths, malformed header) or SL_ETOOBIG (total
 * length above max; 0 means SL_EVS_DEFAULT_MAX) with err set. */
int sl_evs_parse(const uint8_t *p, size_t len, size_t max, sl_evs_message_t *m, size_t *used, sl_err_t *err);

/* Called once per verified message; m is valid only during the call.
 * Returning non-zero stops decoding. */
typedef int (*sl_evs_on_message)(void *ctx, const sl_evs_message_t *m);

typedef struct sl_evs_decoder {
    uint8_t *buf; /* a message split across chunks */
    size_t len, cap;
    size_t need; /* total length of the buffered message, once known */
    size_t max;
    int failed; /* sticky: the first error or callback stop */
    sl_evs_message_t msg;
} sl_evs_decoder_t;

/* max 0 means SL_EVS_DEFAULT_MAX. Does not allocate. */
void sl_evs_decoder_init(sl_evs_decoder_t *d, size_t max);
void sl_evs_decoder_free(sl_evs_decoder_t *d);

/* Feeds len bytes. Returns 0 when every complete message was delivered (a
 * partial one is kept), the callback's non-zero value when it stopped, or
 * SL_EINVAL / SL_ETOOBIG / SL_ENOMEM with err set. After a non-zero return
 * the decoder stays failed and returns the same value. */
int sl_evs_decoder_feed(sl_evs_decoder_t *d, const void *data, size_t len, sl_evs_on_message cb, void *ctx,
                        sl_err_t *err);

/* Call at the end of the stream: SL_EINVAL when a message was cut short,
 * the sticky error when the decoder failed, else 0. */
int sl_evs_decoder_finish(sl_evs_decoder_t *d, sl_err_t *err);

/* Header constructors for the encoder (name and value borrowed). */
static inline sl_evs_header_t sl_evs_hdr_string(const char *name, const char *value)
{
    return (sl_evs_header_t){.name = name,
                             .name_len = strlen(name),
                             .type = SL_EVS_STRING,
                             .data = (const uint8_t *)value,
                             .len = strlen(value)};
}
static inline sl_evs_header_t sl_evs_hdr_bytes(const char *name, const void *data, size_t len)
{
    return (sl_evs_header_t){
        .name = name, .name_len = strlen(name), .type = SL_EVS_BYTES, .data = (const uint8_t *)data, .len = len};
}
static inline sl_evs_header_t sl_evs_hdr_bool(const char *name, int v)
{
    return (sl_evs_header_t){
        .name = name, .name_len = strlen(name), .type = v ? SL_EVS_TRUE : SL_EVS_FALSE, .num = v ? 1 : 0};
}
/* type is SL_EVS_BYTE, INT16, INT32, INT64 or TIMESTAMP. */
static inline sl_evs_header_t sl_evs_hdr_int(const char *name, uint8_t type, int64_t v)
{
    return (sl_evs_header_t){.name = name, .name_len = strlen(name), .type = type, .num = v};
}
static inline sl_evs_header_t sl_evs_hdr_uuid(const char *name, const uint8_t uuid[16])
{
    return (sl_evs_header_t){.name = name, .name_len = strlen(name), .type = SL_EVS_UUID, .data = uuid, .len = 16};
}

/* Encoded size of a message, or 0 when a header is invalid (empty or long
 * name, unknown type, integer out of its type's range, value too long). */
size_t sl_evs_encoded_size(const sl_evs_header_t *h, size_t n, size_t payload_len);

/* Encodes one message into out (cap bytes). Returns 0 with *outlen set,
 * SL_EINVAL (invalid header, see above) or SL_ETOOBIG (out too small or the
 * message above 4 GiB). */
int sl_evs_encode(const sl_evs_header_t *h, size_t n, const void *payload, size_t payload_len, uint8_t *out, size_t cap,
                  size_t *outlen);

/* Appends one encoded message to b (which aborts on allocation failure; for
 * the mock and tests). Same returns as sl_evs_encode. */
int sl_evs_encode_buf(sl_buf_t *b, const sl_evs_header_t *h, size_t n, const void *payload, size_t payload_len);

/* Appends a Bedrock event: :event-type, :content-type application/json,
 * :message-type event, with the JSON payload. */
int sl_evs_encode_event(sl_buf_t *b, const char *event_type, const char *json, size_t json_len);

/* Appends a Bedrock in-stream exception: :exception-type,
 * :content-type application/json, :message-type exception. */
int sl_evs_encode_exception(sl_buf_t *b, const char *exception_type, const char *json, size_t json_len);

#endif
