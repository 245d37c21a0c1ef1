/* sl_net.c - listening sockets. */
#include "sl_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sl_split_hostport(const char *s, char *host, size_t cap, int *port, sl_err_t *err)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return sl_err_set(err, SL_EINVAL, "address \"%s\" is not host:port", s);
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535 || hlen + 1 > cap)
        return sl_err_set(err, SL_EINVAL, "address \"%s\" is not host:port", s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int sl_listen_tcp(const char *hostport, int reuseport, sl_err_t *err)
{
    char host[256], portstr[8];
    int port, fd = -1, one = 1, rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;

    if ((rc = sl_split_hostport(hostport, host, sizeof(host), &port, err)) != 0)
        return rc;
    snprintf(portstr, sizeof(portstr), "%d", port);
    if ((rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res)) != 0)
        return sl_err_set(err, SL_EINVAL, "could not resolve \"%s\": %s", host, gai_strerror(rc));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        rc = sl_err_set(err, SL_EIO, "could not listen on \"%s\": %s", hostport, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return rc;
    }
    freeaddrinfo(res);
    return fd;
}

int sl_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}
