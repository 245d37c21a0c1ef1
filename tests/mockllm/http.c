/*
 * http.c - small helpers over h2o 2.2.5 requests and responses.
 */
#include "http.h"

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

const char *mock_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Site Overloaded";
    default:
        return "Unknown";
    }
}

int mock_http_method_is(const h2o_req_t *req, const char *method)
{
    size_t n = strlen(method);
    return req->method.len == n && memcmp(req->method.base, method, n) == 0;
}

h2o_iovec_t mock_http_header(const h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i == -1)
        return h2o_iovec_init(NULL, 0);
    return req->headers.entries[i].value;
}

h2o_iovec_t mock_http_header_str(const h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i == -1)
        return h2o_iovec_init(NULL, 0);
    return req->headers.entries[i].value;
}

h2o_iovec_t mock_http_raw_path(const h2o_req_t *req)
{
    size_t n = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    return h2o_iovec_init(req->path.base, n);
}

h2o_iovec_t mock_http_raw_query(const h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    return h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

static h2o_iovec_t decode(h2o_mem_pool_t *pool, const char *s, size_t len, int plus_is_space)
{
    char *out = h2o_mem_alloc_pool(pool, len + 1);
    size_t o = 0;

    for (size_t i = 0; i != len; ++i) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return h2o_iovec_init(out, o);
}

h2o_iovec_t mock_http_percent_decode(h2o_mem_pool_t *pool, const char *s, size_t len)
{
    return decode(pool, s, len, 0);
}

h2o_iovec_t mock_http_form_param(h2o_mem_pool_t *pool, h2o_iovec_t form, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = form.base, *end = form.base + form.len;

    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=')
            return decode(pool, p + nlen + 1, (size_t)(stop - p) - nlen - 1, 1);
        p = amp != NULL ? amp + 1 : NULL;
    }
    return h2o_iovec_init(NULL, 0);
}

void mock_http_add_header(h2o_req_t *req, const char *name, const char *value, size_t len)
{
    h2o_iovec_t v = h2o_strdup(&req->pool, value, len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, v.base, v.len);
}

void mock_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_iovec_init(body, len);

    req->res.status = status;
    req->res.reason = mock_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void mock_http_drop_connection(h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_socket_t *sock = NULL;

    if (req->conn->callbacks->get_socket != NULL)
        sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL) {
        int fd = h2o_socket_get_fd(sock);
        if (fd >= 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            shutdown(fd, SHUT_RDWR);
        }
    }
    /* Whatever h2o now writes fails on the shut-down socket, and the error
     * state makes HTTP/1 close the connection instead of keeping it alive. */
    req->res.status = 502;
    req->res.reason = "Dropped";
    h2o_start_response(req, &generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

json_t *mock_http_json_body(const h2o_req_t *req)
{
    json_t *root = NULL;

    if (req->entity.base != NULL && req->entity.len != 0)
        root = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}
