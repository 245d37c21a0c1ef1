/*
 * server.c - the mock's HTTP server: listeners, worker threads, routing.
 *
 * Contexts and loops are set up on the main thread before the workers start,
 * so that stop can always reach every loop's wake-up receiver. A worker loops
 * until `stopping` is set; stop sets it, then writes to each loop's wake-up
 * pipe through h2o's multithread queue.
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>
#include <h2o/multithread.h>

#include "call.h"
#include "control.h"
#include "timer.h"

#define MAX_REQUEST_BODY ((size_t)64 * 1024 * 1024)
#define ACCEPT_BATCH 32

typedef struct st_worker_t {
    mock_server_t *server;
    pthread_t tid;
    int started;
    int fd;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    h2o_multithread_receiver_t wake;
    mock_timers_t timers;
} worker_t;

struct st_mock_server_t {
    h2o_globalconf_t config;
    const mock_settings_t *settings;
    atomic_int stopping;
    sem_t parked; /* posted once by each worker whose loop has stopped */
    uint16_t port;
    size_t num_workers;
    worker_t *workers;
};

typedef struct st_handler_t {
    h2o_handler_t super;
    mock_server_t *server;
} handler_t;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    handler_t *handler = (handler_t *)self;
    const mock_provider_t *provider;

    if (mock_control_handle(req))
        return 0;
    const mock_route_t *route = mock_providers_route(req, &provider);
    if (route != NULL)
        mock_call_begin(req, handler->server->settings, provider, route);
    else
        provider->send_not_found(req);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    worker_t *w = listener->data;

    if (err != NULL)
        return;
    for (int i = 0; i != ACCEPT_BATCH; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            break;
        h2o_accept(&w->accept_ctx, sock);
    }
}

static void on_wake(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    /* Only empty wake-ups are sent; the loop re-checks `stopping` itself. */
    (void)receiver;
    (void)messages;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    h2o_loop_t *loop = w->ctx.loop;

    mock_timers_bind(&w->timers, loop);
    h2o_socket_read_start(w->listener, on_accept);
    while (!atomic_load(&w->server->stopping))
        h2o_evloop_run(loop, INT32_MAX);

    h2o_socket_read_stop(w->listener);
    h2o_socket_close(w->listener);
    w->listener = NULL;
    /* let the loop release the closed listener */
    h2o_evloop_run(loop, 0);

    /*
     * Park instead of returning: h2o 2.2.5 keeps per-thread caches of pool
     * chunks and socket buffers in thread-local storage that nothing can
     * free, so the thread stays alive (signals are blocked here) until the
     * process exits and that memory stays reachable.
     */
    sem_post(&w->server->parked);
    for (;;)
        pause();
    return NULL;
}

static int open_listener(const struct addrinfo *ai, uint16_t port, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    int on = 1;
    int fd;

    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);

    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
        snprintf(err, errsz, "could not create socket: %s", strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errsz, "could not listen on port %u: %s", (unsigned)port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd, uint16_t *port)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    socklen_t len = sizeof(addr);

    memset(&addr, 0, sizeof(addr));
    if (getsockname(fd, &addr.sa, &len) != 0)
        return -1;
    *port = ntohs(addr.sa.sa_family == AF_INET ? addr.in.sin_port : addr.in6.sin6_port);
    return 0;
}

static int bind_all(mock_server_t *server, const char *host, const char *port, char *err, size_t errsz)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char *end;
    unsigned long p = strtoul(port, &end, 10);
    int rc;

    if (*port == '\0' || *end != '\0' || p > 65535) {
        snprintf(err, errsz, "invalid port \"%s\"", port);
        return -1;
    }
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        snprintf(err, errsz, "could not resolve \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    server->port = (uint16_t)p;
    for (size_t i = 0; i != server->num_workers; ++i) {
        int fd = open_listener(res, server->port, err, errsz);
        if (fd == -1) {
            freeaddrinfo(res);
            return -1;
        }
        server->workers[i].fd = fd;
        if (server->port == 0 && bound_port(fd, &server->port) != 0) {
            snprintf(err, errsz, "getsockname failed: %s", strerror(errno));
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}

mock_server_t *mock_server_create(const mock_settings_t *settings, const char *host, const char *port,
                                  size_t num_threads, char *err, size_t errsz)
{
    mock_server_t *server = calloc(1, sizeof(*server));
    if (server == NULL || (server->workers = calloc(num_threads, sizeof(worker_t))) == NULL) {
        snprintf(err, errsz, "out of memory");
        free(server);
        return NULL;
    }
    server->settings = settings;
    server->num_workers = num_threads;
    sem_init(&server->parked, 0, 0);
    for (size_t i = 0; i != num_threads; ++i)
        server->workers[i].fd = -1;

    if (bind_all(server, host, port, err, errsz) != 0) {
        for (size_t i = 0; i != num_threads; ++i)
            if (server->workers[i].fd != -1)
                close(server->workers[i].fd);
        free(server->workers);
        free(server);
        return NULL;
    }

    h2o_config_init(&server->config);
    server->config.server_name = h2o_iovec_init(H2O_STRLIT("sluice-mockllm"));
    server->config.max_request_entity_size = MAX_REQUEST_BODY;
    h2o_hostconf_t *host_conf = h2o_config_register_host(&server->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path_conf = h2o_config_register_path(host_conf, "/", 0);
    handler_t *handler = (handler_t *)h2o_create_handler(path_conf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->server = server;

    for (size_t i = 0; i != num_threads; ++i) {
        worker_t *w = &server->workers[i];
        w->server = server;
        h2o_context_init(&w->ctx, h2o_evloop_create(), &server->config);
        w->accept_ctx.ctx = &w->ctx;
        w->accept_ctx.hosts = server->config.hosts;
        h2o_multithread_register_receiver(w->ctx.queue, &w->wake, on_wake);
        w->listener = h2o_evloop_socket_create(w->ctx.loop, w->fd, H2O_SOCKET_FLAG_DONT_READ);
        w->listener->data = w;
    }
    return server;
}

uint16_t mock_server_port(const mock_server_t *server)
{
    return server->port;
}

int mock_server_start(mock_server_t *server, char *err, size_t errsz)
{
    for (size_t i = 0; i != server->num_workers; ++i) {
        worker_t *w = &server->workers[i];
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errsz, "could not start thread: %s", strerror(rc));
            return -1;
        }
        w->started = 1;
    }
    return 0;
}

void mock_server_stop(mock_server_t *server)
{
    atomic_store(&server->stopping, 1);
    for (size_t i = 0; i != server->num_workers; ++i)
        h2o_multithread_send_message(&server->workers[i].wake, NULL);
    for (size_t i = 0; i != server->num_workers; ++i) {
        if (server->workers[i].started) {
            while (sem_wait(&server->parked) != 0)
                ;
        }
    }
}
