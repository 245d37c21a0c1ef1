/*
 * dp_gauth.c - the Google access-token manager (see dp_gauth.h).
 *
 * Ownership and lifetime:
 *   - the gauth thread owns the entries (one per credential: the parsed
 *     account, its key, the current token and the fetch schedule), the
 *     curl handle and the list of retired tables;
 *   - the sync thread owns the last-seen snapshot version and digest used
 *     by dp_gauth_on_snapshot();
 *   - `pending` (a copied credential set waiting for the gauth thread) and
 *     `stop` are shared under `mu`;
 *   - published tables are immutable; workers read them between an
 *     increment and a decrement of g_readers. A table replaced at time E is
 *     freed only after the gauth thread loaded g_readers == 0 at some time
 *     after E (both seq_cst): a worker that loaded the old pointer
 *     incremented the counter before E, so a zero read after E includes its
 *     matching decrement (a release, read by that acquire load), and every
 *     byte it copied was read before the free.
 *
 * Failures never block workers: a request for a credential without a usable
 * token gets SL_EUNAVAIL at once. Secrets (the account key, the assertion,
 * tokens) are wiped before their memory is released and never logged.
 */
#include "dp_gauth.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "dp_provider.h"
#include "dp_snapshot.h"
#include "sl_crypto.h"
#include "sl_json.h"
#include "sl_jwt.h"
#include "sl_log.h"

#define MOD "gauth"
#define MAX_SA_LEN (64 * 1024)
#define MAX_TOKEN_LEN 4096
#define MAX_RESPONSE_LEN (64 * 1024)
#define CONNECT_TIMEOUT_MS 10000
#define FETCH_TIMEOUT_MS 30000
#define IDLE_WAKE_MS 1000 /* also bounds how long retired tables wait */
/* A token the provider refused is renewed at once, but for one credential
 * at most this often: an account the provider keeps refusing is an
 * authentication problem, not a stale token. */
#define REFUSAL_RENEW_MS 60000
#define REFRESH_AHEAD_S 300
#define USABLE_MARGIN_MAX_MS 60000
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 60000

/* ---- helpers ------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* The unescaped string member `name` of the object at t[obj], malloc'd;
 * NULL when absent, not a string, empty or on allocation failure (*bad set
 * when present but unusable). */
static char *member_str(const char *js, const sl_json_tok_t *t, int obj, const char *name, int *bad)
{
    int i = sl_json_find(js, t, obj, name, strlen(name));
    if (i < 0)
        return NULL;
    if (t[i].type != SL_JSON_STRING) {
        *bad = 1;
        return NULL;
    }
    size_t n = sl_json_str_len(js, &t[i]);
    if (n == 0) {
        *bad = 1;
        return NULL;
    }
    char *s = malloc(n + 1);
    if (s == NULL || sl_json_str_copy(js, &t[i], s, n + 1) != n || memchr(s, '\0', n) != NULL) {
        *bad = 1;
        free(s);
        return NULL;
    }
    return s;
}

static int parse_doc(const char *js, size_t len, sl_json_tok_t **toks)
{
    size_t cap = len / 2 + 2;
    *toks = malloc(cap * sizeof(**toks));
    if (*toks == NULL)
        return SL_ENOMEM;
    int n = sl_json_parse(js, len, *toks, cap, NULL);
    if (n < 1 || (*toks)[0].type != SL_JSON_OBJECT) {
        free(*toks);
        *toks = NULL;
        return SL_EINVAL;
    }
    return n;
}

/* ---- service accounts ---------------------------------------------------- */

void dp_gauth_sa_free(dp_gauth_sa_t *sa)
{
    free(sa->client_email);
    free(sa->private_key_id);
    free(sa->token_uri);
    free(sa->project_id);
    EVP_PKEY_free(sa->key);
    memset(sa, 0, sizeof(*sa));
}

int dp_gauth_sa_parse(const char *json, size_t len, dp_gauth_sa_t *out, sl_err_t *err)
{
    sl_json_tok_t *t = NULL;
    char *pem = NULL, *type = NULL;
    int bad = 0, rc;

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > MAX_SA_LEN)
        return sl_err_set(err, SL_EINVAL, "the service account JSON is empty or too long");
    if ((rc = parse_doc(json, len, &t)) < 0)
        return rc == SL_ENOMEM ? sl_err_set(err, rc, "out of memory")
                               : sl_err_set(err, SL_EINVAL, "the service account is not a JSON object");
    type = member_str(json, t, 0, "type", &bad);
    if (type != NULL && strcmp(type, "service_account") != 0) {
        rc = sl_err_set(err, SL_EINVAL, "the credential is of type \"%.40s\", not \"service_account\"", type);
        goto fail;
    }
    bad = 0;
    out->client_email = member_str(json, t, 0, "client_email", &bad);
    if (out->client_email == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "the service account has no \"client_email\"");
        goto fail;
    }
    pem = member_str(json, t, 0, "private_key", &bad);
    if (pem == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "the service account has no \"private_key\"");
        goto fail;
    }
    sl_err_t kerr = {0};
    if (sl_jwt_load_private_pem(pem, strlen(pem), &out->key, &kerr) != 0) {
        rc = sl_err_set(err, SL_EINVAL, "the service account's private_key is unusable: %s", kerr.msg);
        goto fail;
    }
    bad = 0;
    out->private_key_id = member_str(json, t, 0, "private_key_id", &bad);
    out->project_id = member_str(json, t, 0, "project_id", &bad);
    bad = 0;
    out->token_uri = member_str(json, t, 0, "token_uri", &bad);
    if (bad) {
        rc = sl_err_set(err, SL_EINVAL, "the service account's \"token_uri\" is not a string");
        goto fail;
    }
    if (out->token_uri == NULL && (out->token_uri = strdup(SL_JWT_GOOGLE_TOKEN_URI)) == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    wipe_free(pem);
    free(type);
    free(t);
    return 0;
fail:
    wipe_free(pem);
    free(type);
    free(t);
    dp_gauth_sa_free(out);
    return rc;
}

int dp_gauth_request_body(const dp_gauth_sa_t *sa, const char *token_uri, int64_t now, char **body, sl_err_t *err)
{
    char *jwt = NULL;
    *body = NULL;
    int rc = sl_jwt_google_assertion(sa->key, sa->private_key_id, sa->client_email, NULL, token_uri, now, &jwt, err);
    if (rc != 0)
        return rc;
    static const char head[] = "grant_type=" SL_JWT_GRANT_TYPE_FORM "&assertion=";
    size_t n = strlen(jwt);
    *body = malloc(sizeof(head) + n);
    if (*body == NULL) {
        wipe_free(jwt);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    memcpy(*body, head, sizeof(head) - 1);
    memcpy(*body + sizeof(head) - 1, jwt, n + 1);
    wipe_free(jwt);
    return 0;
}

/* Copies s into out (cap bytes) keeping printable ASCII only. */
static void sanitize(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (; s != NULL && *s != '\0' && j + 1 < cap; s++)
        out[j++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[j] = '\0';
}

int dp_gauth_parse_token_response(const char *body, size_t len, char **token, int64_t *expires_in, sl_err_t *err)
{
    sl_json_tok_t *t = NULL;
    int bad = 0, rc;

    *token = NULL;
    *expires_in = 0;
    if (len > MAX_RESPONSE_LEN)
        return sl_err_set(err, SL_EINVAL, "the token endpoint's answer is too long");
    if ((rc = parse_doc(body, len, &t)) < 0)
        return rc == SL_ENOMEM ? sl_err_set(err, rc, "out of memory")
                               : sl_err_set(err, SL_EINVAL, "the token endpoint's answer is not a JSON object");
    char *error = member_str(body, t, 0, "error", &bad);
    if (error != NULL) {
        char *desc = member_str(body, t, 0, "error_description", &bad);
        char e[64], d[200];
        sanitize(error, e, sizeof(e));
        sanitize(desc, d, sizeof(d));
        free(error);
        free(desc);
        free(t);
        return sl_err_set(err, SL_EINVAL, "%s%s%s", e, d[0] != '\0' ? ": " : "", d);
    }
    bad = 0;
    char *tok = member_str(body, t, 0, "access_token", &bad);
    if (tok == NULL) {
        free(t);
        return sl_err_set(err, SL_EINVAL, "the token endpoint's answer has no \"access_token\"");
    }
    size_t n = strlen(tok);
    int ok = n <= MAX_TOKEN_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = tok[i] > 0x20 && tok[i] < 0x7f; /* it goes into a header line */
    if (!ok) {
        wipe_free(tok);
        free(t);
        return sl_err_set(err, SL_EINVAL, "the token endpoint's access_token is malformed");
    }
    char *type = member_str(body, t, 0, "token_type", &bad);
    if (type != NULL && strcasecmp(type, "bearer") != 0) {
        free(type);
        wipe_free(tok);
        free(t);
        return sl_err_set(err, SL_EINVAL, "the token endpoint issued a token that is not a bearer token");
    }
    free(type);
    int64_t ttl = 0;
    int i = sl_json_find(body, t, 0, "expires_in", 10);
    if (i > 0 && t[i].type == SL_JSON_STRING) {
        /* some endpoints send it as a string */
        char num[24];
        if (sl_json_str_copy(body, &t[i], num, sizeof(num)) != SIZE_MAX) {
            char *end;
            long long v = strtoll(num, &end, 10);
            if (end != num && *end == '\0')
                ttl = v;
        }
    } else if (i > 0 && sl_json_int64(body, &t[i], &ttl) != 0) {
        ttl = 0;
    }
    free(t);
    if (i < 0)
        ttl = 3600; /* RFC 6749 makes it optional; Google always sends it */
    if (ttl <= 0 || ttl > 7 * 24 * 3600) {
        wipe_free(tok);
        return sl_err_set(err, SL_EINVAL, "the token endpoint's expires_in is missing or out of range");
    }
    *token = tok;
    *expires_in = ttl;
    return 0;
}

/* ---- scheduling ---------------------------------------------------------- */

int64_t dp_gauth_refresh_after_ms(int64_t expires_in)
{
    if (expires_in <= 0)
        return 0;
    if (expires_in > 2 * REFRESH_AHEAD_S)
        return (expires_in - REFRESH_AHEAD_S) * 1000;
    return expires_in * 1000 / 2;
}

int64_t dp_gauth_usable_ms(int64_t expires_in)
{
    if (expires_in <= 0)
        return 0;
    int64_t life = expires_in * 1000, margin = life / 4;
    if (margin > USABLE_MARGIN_MAX_MS)
        margin = USABLE_MARGIN_MAX_MS;
    return life - margin;
}

int64_t dp_gauth_retry_after_ms(int failures, uint64_t rnd)
{
    int64_t d = RETRY_MIN_MS;
    for (int i = 1; i < failures && d < RETRY_MAX_MS; i++)
        d *= 2;
    if (d > RETRY_MAX_MS)
        d = RETRY_MAX_MS;
    /* jitter in [-20%, +20%] */
    int64_t span = d * 2 / 5;
    return d - d / 5 + (span > 0 ? (int64_t)(rnd % (uint64_t)(span + 1)) : 0);
}

/* ---- the published table ------------------------------------------------- */

typedef struct trec {
    char *provider, *cred_id;
    char *token; /* NULL: none usable */
    size_t token_len;
    char *project;           /* "" when unknown */
    char *why;               /* when token is NULL */
    int64_t usable_until_ms; /* monotonic */
    int renew_on_refusal;    /* a refused token is renewed at once (not done in the last REFUSAL_RENEW_MS) */
    atomic_int refused;      /* a worker saw the provider refuse this token (set by workers) */
} trec_t;

typedef struct table {
    struct table *next_retired;
    size_t n;
    trec_t recs[];
} table_t;

static _Atomic(table_t *) g_table;
static atomic_long g_readers;

static void table_free(table_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->recs[i].provider);
        free(t->recs[i].cred_id);
        wipe_free(t->recs[i].token);
        free(t->recs[i].project);
        free(t->recs[i].why);
    }
    free(t);
}

static h2o_iovec_t pool_dup(h2o_mem_pool_t *pool, const char *s, size_t n)
{
    char *p = h2o_mem_alloc_pool(pool, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return h2o_iovec_init(p, n);
}

/* The record of (provider, cred_id) in t, or NULL. Callers count
 * themselves in g_readers around the call and their use of the record. */
static trec_t *find_rec(table_t *t, const char *provider, const char *cred_id)
{
    for (size_t i = 0; t != NULL && i < t->n; i++)
        if (strcmp(t->recs[i].provider, provider) == 0 && strcmp(t->recs[i].cred_id, cred_id) == 0)
            return &t->recs[i];
    return NULL;
}

int dp_gauth_token(h2o_mem_pool_t *pool, const char *provider, const char *cred_id, h2o_iovec_t *token,
                   h2o_iovec_t *project, const char **why)
{
    int rc = SL_EUNAVAIL;
    const char *reason = "no access token has been fetched for this credential yet";
    int64_t now = mono_ms();

    *token = h2o_iovec_init(NULL, 0);
    *project = h2o_iovec_init("", 0);
    atomic_fetch_add_explicit(&g_readers, 1, memory_order_seq_cst);
    const trec_t *r = find_rec(atomic_load_explicit(&g_table, memory_order_seq_cst), provider, cred_id);
    if (r != NULL) {
        *project = pool_dup(pool, r->project, strlen(r->project));
        if (r->token != NULL && atomic_load_explicit(&r->refused, memory_order_relaxed)) {
            reason = "the provider refused the access token; a new one is being fetched";
        } else if (r->token != NULL && now < r->usable_until_ms) {
            *token = pool_dup(pool, r->token, r->token_len);
            rc = 0;
        } else if (r->token != NULL) {
            reason = "the access token expired and could not be refreshed yet";
        } else if (r->why != NULL) {
            reason = NULL;
            if (why != NULL)
                *why = pool_dup(pool, r->why, strlen(r->why)).base;
        }
    }
    atomic_fetch_sub_explicit(&g_readers, 1, memory_order_release);
    if (rc != 0 && why != NULL && reason != NULL)
        *why = reason;
    return rc;
}

/* ---- the gauth thread's state -------------------------------------------- */

typedef struct entry {
    char *provider, *cred_id;
    char *secret;       /* as configured, to notice changes */
    char *override_uri; /* provider param token_uri, or NULL */
    dp_gauth_sa_t sa;
    int sa_ok;
    const char *token_uri; /* effective: override or the account's */
    char *token;
    int64_t usable_until_ms;
    int64_t next_fetch_ms; /* INT64_MAX: never (unusable account) */
    int64_t renewed_for_refusal_ms; /* when a refusal last made it renew (0: never) */
    int failures;
    char *why; /* last failure, for requests and logs */
} entry_t;

typedef struct ccopy {
    char *provider, *cred_id, *secret, *token_uri;
} ccopy_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int stop;
    ccopy_t *pending;
    size_t npending;
    int has_pending;
    /* set once */
    int started, atexit_done;
    pthread_t thread;
    atomic_int abort_fetch;
    /* gauth thread only */
    entry_t *entries;
    size_t nentries;
    table_t *retired;
    CURL *curl;
    uint64_t rng;
    /* sync thread only */
    int64_t seen_version;
    uint8_t digest[32];
    int have_digest;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint64_t next_rand(void)
{
    G.rng ^= G.rng << 13;
    G.rng ^= G.rng >> 7;
    G.rng ^= G.rng << 17;
    return G.rng;
}

static void ccopy_free(ccopy_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].provider);
        free(c[i].cred_id);
        wipe_free(c[i].secret);
        free(c[i].token_uri);
    }
    free(c);
}

static void entry_clear(entry_t *e)
{
    free(e->provider);
    free(e->cred_id);
    wipe_free(e->secret);
    free(e->override_uri);
    dp_gauth_sa_free(&e->sa);
    wipe_free(e->token);
    free(e->why);
    memset(e, 0, sizeof(*e));
}

static void set_why(entry_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(entry_t *e, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    free(e->why);
    e->why = s;
}

/* Builds and publishes the table for the current entries; retires the old
 * one. On allocation failure the old table stays (and is retried on the
 * next change). */
static void publish(void)
{
    table_t *t = calloc(1, sizeof(*t) + G.nentries * sizeof(trec_t));
    if (t == NULL)
        goto oom;
    for (size_t i = 0; i < G.nentries; i++) {
        const entry_t *e = &G.entries[i];
        trec_t *r = &t->recs[t->n++];
        r->provider = strdup(e->provider);
        r->cred_id = strdup(e->cred_id);
        r->project = strdup(e->sa.project_id != NULL ? e->sa.project_id : "");
        if (r->provider == NULL || r->cred_id == NULL || r->project == NULL)
            goto oom;
        if (e->token != NULL) {
            if ((r->token = strdup(e->token)) == NULL)
                goto oom;
            r->token_len = strlen(e->token);
            r->usable_until_ms = e->usable_until_ms;
        }
        r->renew_on_refusal =
            e->renewed_for_refusal_ms == 0 || mono_ms() - e->renewed_for_refusal_ms >= REFUSAL_RENEW_MS;
        if (e->why != NULL && (r->why = strdup(e->why)) == NULL)
            goto oom;
    }
    table_t *old = atomic_exchange_explicit(&g_table, t, memory_order_seq_cst);
    if (old != NULL) {
        old->next_retired = G.retired;
        G.retired = old;
    }
    return;
oom:
    table_free(t);
    sl_error(MOD, "out of memory publishing access tokens");
}

/* Frees retired tables once no worker can still be reading them. */
static void reclaim(void)
{
    if (G.retired == NULL || atomic_load_explicit(&g_readers, memory_order_seq_cst) != 0)
        return;
    while (G.retired != NULL) {
        table_t *t = G.retired;
        G.retired = t->next_retired;
        table_free(t);
    }
}

static int is_loopback_http(const char *uri)
{
    if (strncasecmp(uri, "http://", 7) != 0)
        return 0;
    const char *h = uri + 7;
    return strncmp(h, "127.", 4) == 0 || strncasecmp(h, "localhost", 9) == 0 || strncmp(h, "[::1]", 5) == 0;
}

/* Sets up a new entry from c; the account is parsed here (not on the sync
 * thread: loading an RSA key is not free). */
static int entry_init(entry_t *e, const ccopy_t *c)
{
    sl_err_t err = {0};
    memset(e, 0, sizeof(*e));
    e->provider = strdup(c->provider);
    e->cred_id = strdup(c->cred_id);
    e->secret = strdup(c->secret);
    e->override_uri = c->token_uri != NULL ? strdup(c->token_uri) : NULL;
    if (e->provider == NULL || e->cred_id == NULL || e->secret == NULL ||
        (c->token_uri != NULL && e->override_uri == NULL)) {
        entry_clear(e);
        return SL_ENOMEM;
    }
    e->next_fetch_ms = INT64_MAX;
    if (dp_gauth_sa_parse(e->secret, strlen(e->secret), &e->sa, &err) != 0) {
        set_why(e, "credential \"%s\" of provider \"%s\" is not a usable service account: %s", e->cred_id, e->provider,
                err.msg);
        sl_error(MOD, "%s", e->why != NULL ? e->why : "a credential is not a usable service account");
        return 0;
    }
    e->token_uri = e->override_uri != NULL ? e->override_uri : e->sa.token_uri;
    if (strncasecmp(e->token_uri, "https://", 8) != 0 && strncasecmp(e->token_uri, "http://", 7) != 0) {
        set_why(e, "the token URI of credential \"%s\" of provider \"%s\" is not an http(s) URL", e->cred_id,
                e->provider);
        sl_error(MOD, "%s", e->why != NULL ? e->why : "a token URI is not an http(s) URL");
        return 0;
    }
    if (strncasecmp(e->token_uri, "http://", 7) == 0 && !is_loopback_http(e->token_uri))
        sl_warn(MOD, "provider \"%s\": the token URI \"%s\" is plain HTTP; assertions travel unencrypted", e->provider,
                e->token_uri);
    e->sa_ok = 1;
    e->next_fetch_ms = 0;
    return 0;
}

static int same_opt(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Makes the entries match the credential set cs (taking ownership). */
static void reconcile(ccopy_t *cs, size_t n)
{
    entry_t *ne = calloc(n > 0 ? n : 1, sizeof(*ne));
    if (ne == NULL) {
        sl_error(MOD, "out of memory applying vertex credentials");
        ccopy_free(cs, n);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        entry_t *old = NULL;
        for (size_t j = 0; j < G.nentries && old == NULL; j++)
            if (G.entries[j].provider != NULL && strcmp(G.entries[j].provider, cs[i].provider) == 0 &&
                strcmp(G.entries[j].cred_id, cs[i].cred_id) == 0)
                old = &G.entries[j];
        if (old != NULL && strcmp(old->secret, cs[i].secret) == 0 && same_opt(old->override_uri, cs[i].token_uri)) {
            ne[k++] = *old; /* unchanged: keep token and schedule */
            memset(old, 0, sizeof(*old));
            continue;
        }
        if (entry_init(&ne[k], &cs[i]) != 0) {
            sl_error(MOD, "out of memory applying vertex credentials");
            continue;
        }
        if (old != NULL && ne[k].sa_ok && old->token != NULL) {
            /* a rotated account: the old token stays valid for its own
             * account until the new one arrives */
            ne[k].token = old->token;
            ne[k].usable_until_ms = old->usable_until_ms;
            old->token = NULL;
        }
        if (old != NULL)
            entry_clear(old); /* replaced, not dropped */
        sl_info(MOD, "%s access tokens for credential \"%s\" of provider \"%s\"",
                old != NULL ? "the service account changed: renewing" : "keeping", cs[i].cred_id, cs[i].provider);
        k++;
    }
    for (size_t j = 0; j < G.nentries; j++) {
        if (G.entries[j].provider != NULL)
            sl_info(MOD, "dropping the access token of credential \"%s\" of provider \"%s\"", G.entries[j].cred_id,
                    G.entries[j].provider);
        entry_clear(&G.entries[j]);
    }
    free(G.entries);
    G.entries = ne;
    G.nentries = k;
    ccopy_free(cs, n);
    publish();
}

/* ---- token requests ------------------------------------------------------ */

typedef struct rbuf {
    char *p;
    size_t len;
} rbuf_t;

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    rbuf_t *b = ud;
    size_t n = size * nmemb;
    if (n > MAX_RESPONSE_LEN - b->len)
        return 0; /* too long: abort */
    char *p = realloc(b->p, b->len + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->len, ptr, n);
    b->p = p;
    b->len += n;
    p[b->len] = '\0';
    return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    return atomic_load(&G.abort_fetch) ? 1 : 0;
}

/* One token request for e (blocking, on the gauth thread). */
static int fetch(entry_t *e, char **token, int64_t *expires_in, sl_err_t *err)
{
    char *body = NULL, errbuf[CURL_ERROR_SIZE];
    rbuf_t rb = {NULL, 0};
    struct curl_slist *hdrs = NULL;
    int rc = dp_gauth_request_body(&e->sa, e->token_uri, (int64_t)time(NULL), &body, err);
    if (rc != 0)
        return rc;
    if (G.curl == NULL && (G.curl = curl_easy_init()) == NULL) {
        wipe_free(body);
        return sl_err_set(err, SL_ENOMEM, "could not create an HTTP client");
    }
    CURL *c = G.curl;
    curl_easy_reset(c);
    hdrs = curl_slist_append(hdrs, "content-type: application/x-www-form-urlencoded");
    hdrs = curl_slist_append(hdrs, "accept: application/json");
    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, e->token_uri);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &rb);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hdrs);
    wipe_free(body);
    if (cc != CURLE_OK) {
        char eb[160];
        sanitize(errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc), eb, sizeof(eb));
        rc = sl_err_set(err, SL_EUNAVAIL, "could not reach the token endpoint \"%s\": %s", e->token_uri, eb);
    } else {
        sl_err_t perr = {0};
        rc = dp_gauth_parse_token_response(rb.p != NULL ? rb.p : "", rb.len, token, expires_in, &perr);
        if (status != 200) {
            wipe_free(*token);
            *token = NULL;
            rc = sl_err_set(err, status == 400 || status == 401 || status == 403 ? SL_EPERM : SL_EUNAVAIL,
                            "the token endpoint \"%s\" answered HTTP %ld: %s", e->token_uri, status,
                            rc != 0 ? perr.msg : "unexpected answer");
        } else if (rc != 0) {
            rc = sl_err_set(err, rc, "the token endpoint \"%s\": %s", e->token_uri, perr.msg);
        }
    }
    if (rb.p != NULL) {
        explicit_bzero(rb.p, rb.len);
        free(rb.p);
    }
    return rc;
}

int dp_gauth_refused(const char *provider, const char *cred_id)
{
    int renew = 0;
    atomic_fetch_add_explicit(&g_readers, 1, memory_order_seq_cst);
    trec_t *r = find_rec(atomic_load_explicit(&g_table, memory_order_seq_cst), provider, cred_id);
    if (r != NULL && r->renew_on_refusal && r->token != NULL) {
        renew = 1;
        atomic_store_explicit(&r->refused, 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&g_readers, 1, memory_order_release);
    if (renew)
        pthread_cond_signal(&G.cv); /* a wake-up, not a lock: at worst the next idle wake-up sees the flag */
    return renew;
}

/* Gauth thread: tokens workers saw refused are dropped (requests stop
 * sending them) and renewed now. */
static void take_refusals(void)
{
    table_t *t = atomic_load_explicit(&g_table, memory_order_acquire); /* only this thread replaces it */
    int changed = 0;
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (!atomic_load_explicit(&t->recs[i].refused, memory_order_relaxed))
            continue;
        for (size_t j = 0; j < G.nentries; j++) {
            entry_t *e = &G.entries[j];
            if (e->provider == NULL || strcmp(e->provider, t->recs[i].provider) != 0 ||
                strcmp(e->cred_id, t->recs[i].cred_id) != 0 || !e->sa_ok || e->token == NULL)
                continue;
            sl_warn(MOD, "provider \"%s\" refused the access token of credential \"%s\": fetching a new one",
                    e->provider, e->cred_id);
            wipe_free(e->token);
            e->token = NULL;
            e->usable_until_ms = 0;
            e->next_fetch_ms = 0;
            e->renewed_for_refusal_ms = mono_ms();
            changed = 1;
        }
    }
    if (changed)
        publish(); /* the new table's recs start unrefused */
}

/* Fetches tokens that are due; returns the earliest next due time. */
static int64_t run_due(void)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < G.nentries; i++) {
        entry_t *e = &G.entries[i];
        if (!e->sa_ok)
            continue;
        int64_t now = mono_ms();
        if (e->next_fetch_ms > now) {
            if (e->next_fetch_ms < next)
                next = e->next_fetch_ms;
            continue;
        }
        char *tok = NULL;
        int64_t ttl = 0;
        sl_err_t err = {0};
        int64_t t0 = mono_ms(); /* lifetimes count from before the request */
        int rc = fetch(e, &tok, &ttl, &err);
        if (atomic_load(&G.abort_fetch)) {
            wipe_free(tok);
            return 0;
        }
        if (rc == 0) {
            wipe_free(e->token);
            e->token = tok;
            e->usable_until_ms = t0 + dp_gauth_usable_ms(ttl);
            e->next_fetch_ms = t0 + dp_gauth_refresh_after_ms(ttl);
            if (e->failures > 0)
                sl_info(MOD, "provider \"%s\" credential \"%s\": access token fetched after %d failed attempts",
                        e->provider, e->cred_id, e->failures);
            else
                sl_debug(MOD, "provider \"%s\" credential \"%s\": access token fetched (expires in %lld s)",
                         e->provider, e->cred_id, (long long)ttl);
            e->failures = 0;
            free(e->why);
            e->why = NULL;
        } else {
            e->failures++;
            int64_t delay = dp_gauth_retry_after_ms(e->failures, next_rand());
            e->next_fetch_ms = mono_ms() + delay;
            set_why(e, "could not obtain an access token for credential \"%s\" of provider \"%s\": %s", e->cred_id,
                    e->provider, err.msg);
            sl_warn(MOD, "%s (attempt %d, retrying in %lld ms)", e->why != NULL ? e->why : err.msg, e->failures,
                    (long long)delay);
        }
        publish();
        if (e->next_fetch_ms < next)
            next = e->next_fetch_ms;
    }
    return next;
}

static void *gauth_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&G.mu);
    for (;;) {
        if (G.stop)
            break;
        ccopy_t *cs = NULL;
        size_t n = 0;
        int have = G.has_pending;
        if (have) {
            cs = G.pending;
            n = G.npending;
            G.pending = NULL;
            G.npending = 0;
            G.has_pending = 0;
        }
        pthread_mutex_unlock(&G.mu);

        if (have)
            reconcile(cs, n);
        take_refusals();
        int64_t next = run_due();
        reclaim();

        pthread_mutex_lock(&G.mu);
        if (G.stop || G.has_pending)
            continue;
        int64_t now = mono_ms(), wait = next == INT64_MAX ? IDLE_WAKE_MS : next - now;
        if (wait > IDLE_WAKE_MS)
            wait = IDLE_WAKE_MS;
        if (wait <= 0)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&G.cv, &G.mu, &ts);
    }
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

static void stop_at_exit(void)
{
    dp_gauth_stop();
}

static int start_locked(void)
{
    pthread_condattr_t ca;
    if (G.started)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return SL_EINTERNAL;
    /* the condition variable waits on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&G.cv);
    pthread_cond_init(&G.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (sl_random(&G.rng, sizeof(G.rng)) != 0 || G.rng == 0)
        G.rng = 0x9e3779b97f4a7c15ULL;
    G.stop = 0;
    atomic_store(&G.abort_fetch, 0);
    int rc = pthread_create(&G.thread, NULL, gauth_main, NULL);
    if (rc != 0) {
        sl_error(MOD, "could not start the access-token thread: %s", strerror(rc));
        return SL_EINTERNAL;
    }
    pthread_setname_np(G.thread, "sluice-gauth");
    G.started = 1;
    if (!G.atexit_done) {
        atexit(stop_at_exit);
        G.atexit_done = 1;
    }
    return 0;
}

int dp_gauth_set_credentials(const dp_gauth_cred_t *creds, size_t n)
{
    ccopy_t *cs = calloc(n > 0 ? n : 1, sizeof(*cs));
    if (cs == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cs[i].provider = strdup(creds[i].provider);
        cs[i].cred_id = strdup(creds[i].cred_id);
        cs[i].secret = strndup(creds[i].secret, creds[i].secret_len);
        cs[i].token_uri =
            creds[i].token_uri != NULL && creds[i].token_uri[0] != '\0' ? strdup(creds[i].token_uri) : NULL;
        if (cs[i].provider == NULL || cs[i].cred_id == NULL || cs[i].secret == NULL ||
            (creds[i].token_uri != NULL && creds[i].token_uri[0] != '\0' && cs[i].token_uri == NULL)) {
            ccopy_free(cs, n);
            return SL_ENOMEM;
        }
    }
    pthread_mutex_lock(&G.mu);
    if (!G.started && n == 0) {
        pthread_mutex_unlock(&G.mu);
        ccopy_free(cs, n);
        return 0;
    }
    int rc = start_locked();
    if (rc != 0) {
        pthread_mutex_unlock(&G.mu);
        ccopy_free(cs, n);
        return rc;
    }
    if (G.has_pending)
        ccopy_free(G.pending, G.npending);
    G.pending = cs;
    G.npending = n;
    G.has_pending = 1;
    pthread_cond_signal(&G.cv);
    pthread_mutex_unlock(&G.mu);
    return 0;
}

void dp_gauth_stop(void)
{
    pthread_mutex_lock(&G.mu);
    if (!G.started) {
        pthread_mutex_unlock(&G.mu);
        return;
    }
    G.stop = 1;
    atomic_store(&G.abort_fetch, 1);
    pthread_cond_signal(&G.cv);
    pthread_mutex_unlock(&G.mu);
    pthread_join(G.thread, NULL);

    pthread_mutex_lock(&G.mu);
    if (G.has_pending)
        ccopy_free(G.pending, G.npending);
    G.pending = NULL;
    G.npending = 0;
    G.has_pending = 0;
    G.started = 0;
    pthread_mutex_unlock(&G.mu);

    for (size_t i = 0; i < G.nentries; i++)
        entry_clear(&G.entries[i]);
    free(G.entries);
    G.entries = NULL;
    G.nentries = 0;
    if (G.curl != NULL)
        curl_easy_cleanup(G.curl);
    G.curl = NULL;
    table_t *old = atomic_exchange_explicit(&g_table, NULL, memory_order_seq_cst);
    if (old != NULL) {
        old->next_retired = G.retired;
        G.retired = old;
    }
    /* workers have normally stopped by now; wait a little for stragglers,
     * and rather leak than free under a reader */
    for (int i = 0; i < 1000 && G.retired != NULL; i++) {
        reclaim();
        if (G.retired != NULL) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    G.seen_version = 0;
    G.have_digest = 0;
}

/* ---- snapshot hook (sync thread) ----------------------------------------- */

typedef struct collect {
    dp_gauth_cred_t *v;
    size_t n, cap;
    int oom;
} collect_t;

static void digest_str(EVP_MD_CTX *md, const char *s, size_t n)
{
    uint64_t len = n;
    EVP_DigestUpdate(md, &len, sizeof(len));
    EVP_DigestUpdate(md, s, n);
}

static void collect_provider(void *ud, const dp_provider_t *p)
{
    collect_t *c = ud;
    if (p->kind == NULL || strcmp(p->kind, "vertex") != 0)
        return;
    const char *uri = dp_provider_param(p, "token_uri");
    for (size_t i = 0; i < p->n_credentials; i++) {
        const dp_credential_t *cr = &p->credentials[i];
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 8;
            dp_gauth_cred_t *v = realloc(c->v, cap * sizeof(*v));
            if (v == NULL) {
                c->oom = 1;
                return;
            }
            c->v = v;
            c->cap = cap;
        }
        c->v[c->n++] = (dp_gauth_cred_t){.provider = p->name,
                                         .cred_id = cr->id,
                                         .secret = cr->secret,
                                         .secret_len = cr->secret_len,
                                         .token_uri = uri};
    }
}

static int cmp_cred(const void *a, const void *b)
{
    const dp_gauth_cred_t *x = a, *y = b;
    int c = strcmp(x->provider, y->provider);
    return c != 0 ? c : strcmp(x->cred_id, y->cred_id);
}

void dp_gauth_on_snapshot(void)
{
    int64_t version = dp_snapshot_current_version();
    if (version == G.seen_version)
        return;
    dp_snapshot_t *s = dp_snapshot_acquire();
    if (s == NULL)
        return;
    collect_t c = {0};
    dp_snapshot_each_provider(s, collect_provider, &c);
    if (c.oom) {
        /* try again on the next call */
        dp_snapshot_release(s);
        free(c.v);
        return;
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(*c.v), cmp_cred);
    uint8_t d[32];
    unsigned dl = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < c.n; i++) {
        digest_str(md, c.v[i].provider, strlen(c.v[i].provider));
        digest_str(md, c.v[i].cred_id, strlen(c.v[i].cred_id));
        digest_str(md, c.v[i].secret, c.v[i].secret_len);
        const char *uri = c.v[i].token_uri != NULL ? c.v[i].token_uri : "";
        digest_str(md, uri, strlen(uri));
    }
    ok = ok && EVP_DigestFinal_ex(md, d, &dl) && dl == sizeof(d);
    EVP_MD_CTX_free(md);
    int changed = !ok || !G.have_digest || memcmp(d, G.digest, sizeof(d)) != 0;
    int rc = 0;
    if (changed && (c.n > 0 || G.have_digest))
        rc = dp_gauth_set_credentials(c.v, c.n);
    dp_snapshot_release(s);
    free(c.v);
    if (rc == 0) {
        G.seen_version = version;
        if (ok) {
            memcpy(G.digest, d, sizeof(d));
            G.have_digest = 1;
        }
    }
}
