/*
 * http.c - small helpers over h2o 2.2.5 requests and responses.
 */
#include "http.h"

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
