/*
 * token_server.h - a tiny OAuth token endpoint on 127.0.0.1 for the
 * dp_gauth and vertex tests: one thread, one connection at a time, answers
 * every POST with {"access_token":"<prefix>-<n>","expires_in":<ttl>} after
 * checking the assertion's RS256 signature and claims against the test
 * account's key (a bad assertion gets 400 invalid_grant).
 */
#ifndef TOKEN_SERVER_H
#define TOKEN_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "sl_jwt.h"

typedef struct token_server {
    int fd;
    int port;
    pthread_t thread;
    atomic_int stop;
    atomic_int requests;    /* token requests answered 200 */
    atomic_int refused;     /* assertions refused */
    atomic_int ttl;         /* expires_in of issued tokens */
    atomic_int fail_status; /* non-zero: answer every request with it */
    EVP_PKEY *key;          /* the account's key (verifies assertions) */
    char uri[64];           /* http://127.0.0.1:PORT/token */
} token_server_t;

/* The value of form field name in body (malloc'd, undecoded), or NULL. */
static char *ts_form(const char *body, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = body; p != NULL && *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1, *e = strchr(v, '&');
            return strndup(v, e != NULL ? (size_t)(e - v) : strlen(v));
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static void ts_answer(token_server_t *s, int c, const char *body)
{
    char out[512], json[256];
    int status = atomic_load(&s->fail_status);
    char *grant = ts_form(body, "grant_type"), *assertion = ts_form(body, "assertion");
    int ok = grant != NULL && strcmp(grant, SL_JWT_GRANT_TYPE_FORM) == 0 && assertion != NULL;
    if (ok) {
        sl_jwt_t jwt;
        sl_err_t err;
        sl_jwt_google_t g;
        ok = sl_jwt_verify_rs256(s->key, assertion, strlen(assertion), &jwt, &err) == 0;
        if (ok) {
            ok = sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, s->uri, (int64_t)time(NULL), 60, &g, &err) == 0;
            sl_jwt_free(&jwt);
        }
    }
    free(grant);
    free(assertion);
    if (!ok) {
        atomic_fetch_add(&s->refused, 1);
        status = 400;
        snprintf(json, sizeof(json), "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}");
    } else if (status != 0) {
        snprintf(json, sizeof(json), "{\"error\":\"internal_failure\",\"error_description\":\"Backend Error\"}");
    } else {
        int n = atomic_fetch_add(&s->requests, 1) + 1;
        status = 200;
        snprintf(json, sizeof(json), "{\"access_token\":\"ya29.test-%d\",\"expires_in\":%d,\"token_type\":\"Bearer\"}",
                 n, atomic_load(&s->ttl));
    }
    int m = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close"
                     "\r\n\r\n%s",
                     status, strlen(json), json);
    ssize_t w = write(c, out, (size_t)m);
    (void)w;
}

static void *ts_main(void *arg)
{
    token_server_t *s = arg;
    while (!atomic_load(&s->stop)) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        char buf[16384];
        size_t len = 0;
        for (;;) {
            ssize_t r = read(c, buf + len, sizeof(buf) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            buf[len] = '\0';
            char *hend = strstr(buf, "\r\n\r\n");
            if (hend == NULL)
                continue;
            char *cl = strcasestr(buf, "content-length:");
            size_t want = cl != NULL ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
            if ((size_t)(buf + len - (hend + 4)) >= want) {
                ts_answer(s, c, hend + 4);
                break;
            }
        }
        close(c);
    }
    return NULL;
}

/* Starts the server; key is borrowed (the account's private key). */
static int ts_start(token_server_t *s, EVP_PKEY *key, int ttl)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    memset(s, 0, sizeof(*s));
    s->key = key;
    atomic_store(&s->ttl, ttl);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    snprintf(s->uri, sizeof(s->uri), "http://127.0.0.1:%d/token", s->port);
    return pthread_create(&s->thread, NULL, ts_main, s) == 0 ? 0 : -1;
}

static void ts_stop(token_server_t *s)
{
    atomic_store(&s->stop, 1);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* A fresh RSA 2048 test account: *key and its service-account JSON
 * (malloc'd) naming token_uri. */
static char *ts_make_account(EVP_PKEY **key, const char *token_uri, const char *project)
{
    *key = EVP_RSA_gen(2048);
    if (*key == NULL)
        return NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, *key, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    /* escape the newlines as a service-account file does */
    char *esc = malloc((size_t)n * 2 + 1), *p = esc;
    for (long i = 0; i < n; i++) {
        if (pem[i] == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else {
            *p++ = pem[i];
        }
    }
    *p = '\0';
    BIO_free(bio);
    char *json = NULL;
    if (asprintf(&json,
                 "{\n  \"type\": \"service_account\",\n  \"project_id\": \"%s\",\n  \"private_key_id\": "
                 "\"0123456789abcdef\",\n  \"private_key\": \"%s\",\n  \"client_email\": "
                 "\"tester@%s.iam.gserviceaccount.com\",\n  \"client_id\": \"1\",\n  \"token_uri\": \"%s\"\n}\n",
                 project, esc, project, token_uri) < 0)
        json = NULL;
    free(esc);
    return json;
}

#endif
