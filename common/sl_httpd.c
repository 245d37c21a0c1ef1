/* sl_httpd.c - operational HTTP endpoints on a dedicated h2o event loop. */
#include "sl_httpd.h"
#include "sl_net.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <h2o.h>

struct sl_httpd {
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    pthread_t thread;
    _Atomic int stop;
    int port;
    sl_httpd_fn fn;
    void *ud;
};

struct handler {
    h2o_handler_t super;
    sl_httpd_t *srv;
};

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    sl_httpd_t *s = ((struct handler *)self)->srv;
    sl_buf_t out = {0};
    const char *ctype = "text/plain; charset=utf-8";
    int status;

    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        status = 405;
        sl_buf_puts(&out, "method not allowed\n");
    } else {
        status = s->fn(s->ud, req->path_normalized.base, req->path_normalized.len, &out, &ctype);
    }
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : (status == 404 ? "Not Found" : "Error");
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    req->res.content_length = out.len;
    h2o_send_inline(req, out.data != NULL ? out.data : "", out.len);
    sl_buf_free(&out);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    sl_httpd_t *s = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    h2o_accept(&s->accept_ctx, sock);
}

static void *run(void *arg)
{
    sl_httpd_t *s = arg;
    while (!atomic_load(&s->stop))
        h2o_evloop_run(s->ctx.loop, 100);
    return NULL;
}

sl_httpd_t *sl_httpd_start(const char *hostport, sl_httpd_fn fn, void *ud, sl_err_t *err)
{
    int fd = sl_listen_tcp(hostport, 0, err);
    if (fd < 0)
        return NULL;
    sl_httpd_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        sl_err_set(err, SL_ENOMEM, "out of memory");
        return NULL;
    }
    s->fn = fn;
    s->ud = ud;
    s->port = sl_socket_port(fd);
    h2o_config_init(&s->config);
    h2o_hostconf_t *host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    struct handler *h = (struct handler *)h2o_create_handler(pc, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = s;
    h2o_context_init(&s->ctx, h2o_evloop_create(), &s->config);
    s->accept_ctx.ctx = &s->ctx;
    s->accept_ctx.hosts = s->config.hosts;
    s->listener = h2o_evloop_socket_create(s->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    s->listener->data = s;
    h2o_socket_read_start(s->listener, on_accept);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        sl_err_set(err, SL_EINTERNAL, "could not start http thread");
        h2o_socket_close(s->listener);
        h2o_context_dispose(&s->ctx);
        h2o_config_dispose(&s->config);
        free(s);
        return NULL;
    }
    return s;
}

int sl_httpd_port(const sl_httpd_t *s)
{
    return s->port;
}

void sl_httpd_stop(sl_httpd_t *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    h2o_socket_read_stop(s->listener);
    h2o_socket_close(s->listener);
    /* Let the loop run the close callbacks it has queued. */
    for (int i = 0; i < 3; i++)
        h2o_evloop_run(s->ctx.loop, 0);
    h2o_context_dispose(&s->ctx);
    h2o_config_dispose(&s->config);
    /* h2o 2.2.5 has no call that frees an evloop; the loop structure itself
     * stays until the process exits (suppressed in tests/lsan.supp). */
    free(s);
}
