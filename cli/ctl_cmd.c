/*
 * ctl_cmd.c - sluicectl's command line.
 *
 * Parsing is two passes: global options are taken out wherever they appear,
 * then the first words pick a command from the table below, whose flags and
 * positional arguments are checked against its spec. Every command returns
 * its exit status; output is buffered and written once at the end, so a
 * failing command never leaves half a table on stdout.
 */
#include "ctl_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "ctl_output.h"
#include "ctl_alerts.h"
#include "ctl_spend.h"
#include "sl_buf.h"
#include "sl_crypto.h"
#include "sl_money.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define MAX_ARGS 256
#define PAGE_SIZE 500
#define MAX_PAGES 10000
#define DEFAULT_TIMEOUT_S 30

typedef struct flag_spec {
    const char *name;  /* "--tenant" */
    const char *alias; /* "-f", or NULL */
    int value;         /* takes a value */
    int repeat;        /* may be given more than once */
} flag_spec_t;

typedef struct cmd_args {
    const char *flag[MAX_ARGS]; /* canonical names, parallel to value */
    const char *value[MAX_ARGS];
    size_t n;
    const char *pos[MAX_ARGS];
    size_t npos;
} cmd_args_t;

typedef struct run {
    FILE *out;
    FILE *err;
    ctl_env_fn env;
    void *ud;
    const char *server;
    const char *token_file;
    ctl_format_t fmt;
    int csv; /* -o csv: spend and quotas only */
    int verbose;
    int timeout_s;
    int help;
    sl_buf_t obuf; /* stdout, written at the end */
    sl_buf_t ebuf; /* stderr, written at the end */
} run_t;

struct command;
typedef int (*cmd_fn)(run_t *r, const struct command *c, cmd_args_t *a);

typedef struct command {
    const char *group; /* "keys", or NULL for a top-level command */
    const char *name;
    const char *synopsis; /* after "sluicectl " */
    const char *help;     /* what it does and its options */
    const flag_spec_t *flags;
    size_t npos; /* exact number of positional arguments */
    cmd_fn fn;
} command_t;

/* ---- small helpers ------------------------------------------------------------- */

static const char *env(run_t *r, const char *name)
{
    const char *v = r->env(name, r->ud);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static const char *flag_get(const cmd_args_t *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->flag[i], name) == 0)
            return a->value[i] != NULL ? a->value[i] : "";
    return NULL;
}

/* Queues "error: ..." for stderr and returns status. */
static int report(run_t *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int report(run_t *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_buf_printf(&r->ebuf, "error: %s\n", msg);
    return status;
}

/* Parses a whole decimal number in [min, max]. */
static int parse_int(const char *s, long long min, long long max, long long *out)
{
    if (s == NULL || s[0] == '\0' || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---- usage --------------------------------------------------------------------- */

static const char global_help[] = "global options (accepted anywhere on the line):\n"
                                  "  --server HOST:PORT   control plane gRPC address (env SLUICE_SERVER)\n"
                                  "  --token-file FILE    file holding the admin token (env SLUICE_ADMIN_TOKEN_FILE;\n"
                                  "                       or the token itself in SLUICE_ADMIN_TOKEN)\n"
                                  "  -o, --output FORMAT  table (default), json or yaml (spend and quotas: also csv)\n"
                                  "  -v, --verbose        more detail (apply: also list unchanged entities)\n"
                                  "  --timeout SECONDS    deadline of each call to the control plane (default 30)\n"
                                  "  -h, --help           show help; after a command, that command's help\n"
                                  "  --version            print the version and exit\n";

static const command_t commands[];

static void usage_all(sl_buf_t *b)
{
    sl_buf_puts(b, "usage: sluicectl [global options] COMMAND [options]\n\ncommands:\n");
    for (const command_t *c = commands; c->name != NULL; c++)
        sl_buf_printf(b, "  sluicectl %s\n", c->synopsis);
    sl_buf_puts(b, "  sluicectl help [COMMAND]\n\n");
    sl_buf_puts(b, global_help);
    sl_buf_puts(b, "\nexit status: 0 success, 1 failure (message on stderr), 2 usage error\n");
}

static void usage_cmd(sl_buf_t *b, const command_t *c)
{
    sl_buf_printf(b, "usage: sluicectl %s\n\n%s\n", c->synopsis, c->help);
    sl_buf_puts(b, global_help);
}

static void usage_group(sl_buf_t *b, const char *group)
{
    sl_buf_puts(b, "usage:\n");
    for (const command_t *c = commands; c->name != NULL; c++)
        if (c->group != NULL && strcmp(c->group, group) == 0)
            sl_buf_printf(b, "  sluicectl %s\n", c->synopsis);
    sl_buf_printf(b, "run \"sluicectl %s SUBCOMMAND --help\" for details\n", group);
}

/* A usage error: the message, then the relevant usage, on stderr; exit 2. */
static int usage_error(run_t *r, const command_t *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int usage_error(run_t *r, const command_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_buf_printf(&r->ebuf, "error: %s\n", msg);
    if (c != NULL)
        sl_buf_printf(&r->ebuf, "usage: sluicectl %s\nrun \"sluicectl %s%s%s --help\" for details\n", c->synopsis,
                      c->group != NULL ? c->group : "", c->group != NULL ? " " : "", c->name);
    else
        usage_all(&r->ebuf);
    return EXIT_USAGE;
}

/* ---- argument parsing ------------------------------------------------------------ */

static const flag_spec_t *find_flag(const flag_spec_t *specs, const char *name, size_t len)
{
    for (const flag_spec_t *s = specs; s != NULL && s->name != NULL; s++)
        if ((strlen(s->name) == len && strncmp(s->name, name, len) == 0) ||
            (s->alias != NULL && strlen(s->alias) == len && strncmp(s->alias, name, len) == 0))
            return s;
    return NULL;
}

static int parse_cmd_args(run_t *r, const command_t *c, char **argv, size_t argc, cmd_args_t *a)
{
    int only_pos = 0;
    for (size_t i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_pos && strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            if (a->npos == MAX_ARGS)
                return usage_error(r, c, "too many arguments");
            a->pos[a->npos++] = arg;
            continue;
        }
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const flag_spec_t *s = find_flag(c->flags, arg, nlen);
        if (s == NULL)
            return usage_error(r, c, "unknown flag \"%.*s\" for \"%s%s%s\"", (int)nlen, arg,
                               c->group != NULL ? c->group : "", c->group != NULL ? " " : "", c->name);
        const char *val = NULL;
        if (s->value) {
            if (eq != NULL)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return usage_error(r, c, "flag %s needs a value", s->name);
        } else if (eq != NULL) {
            return usage_error(r, c, "flag %s takes no value", s->name);
        }
        if (!s->repeat && flag_get(a, s->name) != NULL)
            return usage_error(r, c, "flag %s given twice", s->name);
        if (a->n == MAX_ARGS)
            return usage_error(r, c, "too many arguments");
        a->flag[a->n] = s->name;
        a->value[a->n++] = val;
    }
    if (a->npos < c->npos)
        return usage_error(r, c, "missing argument");
    if (a->npos > c->npos)
        return usage_error(r, c, "unexpected argument \"%s\"", a->pos[c->npos]);
    return 0;
}

/* ---- connecting ------------------------------------------------------------------------ */

/* Resolves the server and token and opens the client. Returns 0 or an exit
 * status. */
static int connect_admin(run_t *r, ctl_client_t *cl)
{
    const char *server = r->server != NULL ? r->server : env(r, "SLUICE_SERVER");
    if (server == NULL)
        return usage_error(r, NULL, "no control plane address: pass --server HOST:PORT or set SLUICE_SERVER");
    char token[512];
    const char *tf = r->token_file != NULL ? r->token_file : env(r, "SLUICE_ADMIN_TOKEN_FILE");
    if (tf != NULL) {
        sl_err_t e = {0};
        if (sl_read_token_file(tf, token, sizeof(token), &e) != 0)
            return report(r, EXIT_FAIL, "%s", e.msg);
    } else {
        const char *t = env(r, "SLUICE_ADMIN_TOKEN");
        if (t == NULL)
            return usage_error(r, NULL,
                               "no admin token: pass --token-file FILE or set SLUICE_ADMIN_TOKEN_FILE or "
                               "SLUICE_ADMIN_TOKEN");
        if (strlen(t) >= sizeof(token))
            return report(r, EXIT_FAIL, "SLUICE_ADMIN_TOKEN is longer than %zu characters", sizeof(token) - 1);
        strcpy(token, t);
    }
    ctl_client_open(cl, server, token, r->timeout_s * 1000);
    explicit_bzero(token, sizeof(token));
    return 0;
}

/* One call; on failure prints "error: STATUS: ..." and returns EXIT_FAIL. */
static int call(run_t *r, ctl_client_t *cl, const char *method, const void *req, const ProtobufCMessageDescriptor *d,
                void *resp)
{
    sl_err_t e = {0};
    if (ctl_client_call(cl, method, (const ProtobufCMessage *)req, d, (ProtobufCMessage **)resp, &e) != GRPC_STATUS_OK)
        return report(r, EXIT_FAIL, "%s", e.msg);
    return 0;
}

/* Shows the response of a call (owned by the caller); ctx is what the command
 * passed along. */
typedef void (*show_fn)(run_t *r, const void *resp, const void *ctx);

/* Connects, makes one call and shows its response. Returns the exit status. */
static int call_and_show(run_t *r, const char *method, const void *req, const ProtobufCMessageDescriptor *d,
                         show_fn show, const void *ctx)
{
    ctl_client_t cl = {0};
    ProtobufCMessage *resp = NULL;
    int rc = connect_admin(r, &cl);
    if (rc == 0 && (rc = call(r, &cl, method, req, d, &resp)) == 0) {
        show(r, resp, ctx);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    ctl_client_close(&cl);
    return rc;
}

/* Shows n listed entities: items is an array of n message pointers. */
typedef void (*show_list_fn)(run_t *r, const void *items, size_t n);

/* Protobuf-c messages read through their descriptors: the pointer stored at
 * byte offset off of m (a string or array field, or an element of an array
 * of messages). memcpy, because the pointer's type is the message's own. */
static const void *pointer_at(const void *m, size_t off)
{
    const void *p;
    memcpy(&p, (const char *)m + off, sizeof(p));
    return p;
}

/* The id of message i of array v, read through the "id" field f. */
static const char *id_at(const void *v, size_t i, const ProtobufCFieldDescriptor *f)
{
    return pointer_at(pointer_at(v, i * sizeof(void *)), f->offset);
}

/*
 * Lists every entity through a paged List method (ListTenants,
 * ListVirtualKeys) and shows them: pages of PAGE_SIZE, each asked for after
 * the last id of the one before, until a short page. req is the method's
 * request with its filters set; limit and after_id point into it. A List
 * response has one field, the repeated entities, and an entity's id is its
 * "id" field: both are found through the response's descriptor d. Returns
 * the exit status.
 */
static int list_all(run_t *r, const char *method, const void *req, int32_t *limit, char **after_id,
                    const ProtobufCMessageDescriptor *d, show_list_fn show)
{
    const ProtobufCFieldDescriptor *items = &d->fields[0];
    const ProtobufCFieldDescriptor *id = protobuf_c_message_descriptor_get_field_by_name(items->descriptor, "id");
    ProtobufCMessage **pages = NULL;
    size_t npages = 0, n = 0;
    void **all = NULL; /* the n entities of all pages (copied pointers) */
    ctl_client_t cl = {0};
    int rc = connect_admin(r, &cl);
    *limit = PAGE_SIZE;
    *after_id = "";
    while (rc == 0 && npages < MAX_PAGES) {
        ProtobufCMessage *p = NULL;
        if ((rc = call(r, &cl, method, req, d, &p)) != 0)
            break;
        pages = realloc(pages, (npages + 1) * sizeof(*pages));
        if (pages == NULL)
            abort();
        pages[npages++] = p;
        size_t got;
        memcpy(&got, (const char *)p + items->quantifier_offset, sizeof(got));
        const void *v = pointer_at(p, items->offset);
        /* a server that ignores after_id would repeat the first page */
        if (got == 0 || ((*after_id)[0] != '\0' && strcmp(id_at(v, 0, id), *after_id) <= 0))
            break;
        all = realloc(all, (n + got) * sizeof(*all));
        if (all == NULL)
            abort();
        memcpy(all + n, v, got * sizeof(*all));
        n += got;
        if (got < PAGE_SIZE)
            break;
        *after_id = (char *)id_at(v, got - 1, id);
    }
    ctl_client_close(&cl);
    if (rc == 0)
        show(r, all, n);
    for (size_t i = 0; i < npages; i++)
        protobuf_c_message_free_unpacked(pages[i], NULL);
    free(pages);
    free(all);
    return rc;
}

/* ---- apply and validate ------------------------------------------------------------------ */

static int load_files(run_t *r, const command_t *c, const cmd_args_t *a, ctl_doc_t *doc)
{
    size_t files = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->flag[i], "--file") != 0)
            continue;
        files++;
        sl_err_t e = {0};
        if (ctl_doc_add_file(doc, a->value[i], r->env, r->ud, &e) != 0)
            return report(r, EXIT_FAIL, "%s", e.msg);
    }
    if (files == 0)
        return usage_error(r, c, "%s needs at least one -f FILE", c->name);
    if (ctl_doc_count(doc) == 0)
        return report(r, EXIT_FAIL,
                      "nothing to apply: the files declare no tenants, providers, models or virtual keys");
    return 0;
}

/* Appends "KEY_ID SECRET" lines to path, creating it with mode 0600. */
static int write_secrets(const char *path, const Sluice__Admin__V1__ApplyResponse *resp, sl_err_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "could not open secrets file \"%s\": %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0)
        rc = sl_err_set(err, SL_EIO, "could not make secrets file \"%s\" private: %s", path, strerror(errno));
    sl_buf_t b = {0};
    for (size_t i = 0; i < resp->n_secrets; i++)
        sl_buf_printf(&b, "%s %s\n", resp->secrets[i]->key_id, resp->secrets[i]->secret);
    for (size_t off = 0; rc == 0 && off < b.len;) {
        ssize_t n = write(fd, b.data + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = sl_err_set(err, SL_EIO, "could not write secrets file \"%s\": %s", path, strerror(errno));
        else
            off += (size_t)n;
    }
    if (b.data != NULL)
        explicit_bzero(b.data, b.len);
    sl_buf_free(&b);
    if (close(fd) != 0 && rc == 0)
        rc = sl_err_set(err, SL_EIO, "could not write secrets file \"%s\": %s", path, strerror(errno));
    return rc;
}

static int cmd_apply(run_t *r, const command_t *c, cmd_args_t *a)
{
    ctl_doc_t doc;
    ctl_doc_init(&doc);
    int rc = load_files(r, c, a, &doc);
    ctl_client_t cl = {0};
    Sluice__Admin__V1__ApplyResponse *resp = NULL;
    int dry_run = flag_get(a, "--dry-run") != NULL;
    const char *secrets_out = flag_get(a, "--secrets-out");
    if (rc == 0)
        rc = connect_admin(r, &cl);
    if (rc == 0) {
        Sluice__Admin__V1__ApplyRequest req = SLUICE__ADMIN__V1__APPLY_REQUEST__INIT;
        req.document = doc.pb;
        req.dry_run = dry_run;
        rc = call(r, &cl, "Apply", &req, &sluice__admin__v1__apply_response__descriptor, &resp);
    }
    ctl_doc_free(&doc); /* wipes the provider secrets read from the environment */
    if (rc == 0) {
        sl_err_t e = {0};
        int wrc = 0;
        if (!dry_run && secrets_out != NULL && resp->n_secrets > 0)
            wrc = write_secrets(secrets_out, resp, &e);
        ctl_out_apply(&r->obuf, &r->ebuf, r->fmt, resp, dry_run, r->verbose);
        if (wrc != 0)
            rc = report(r, EXIT_FAIL, "%s (the secrets above are not stored anywhere else)", e.msg);
    }
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    ctl_client_close(&cl);
    return rc;
}

static int cmd_validate(run_t *r, const command_t *c, cmd_args_t *a)
{
    ctl_doc_t doc;
    ctl_doc_init(&doc);
    int rc = load_files(r, c, a, &doc);
    if (rc == 0) {
        const Sluice__Admin__V1__Document *d = doc.pb;
        sl_buf_printf(&r->obuf, "ok: %zu tenant%s, %zu provider%s, %zu model%s, %zu virtual key%s\n", d->n_tenants,
                      d->n_tenants == 1 ? "" : "s", d->n_providers, d->n_providers == 1 ? "" : "s", d->n_models,
                      d->n_models == 1 ? "" : "s", d->n_virtual_keys, d->n_virtual_keys == 1 ? "" : "s");
    }
    ctl_doc_free(&doc);
    return rc;
}

/* ---- tenants ------------------------------------------------------------------------------- */

static void show_tenants(run_t *r, const void *items, size_t n)
{
    ctl_out_tenants(&r->obuf, r->fmt, items, n);
}

static int cmd_tenants_list(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__ListTenantsRequest req = SLUICE__ADMIN__V1__LIST_TENANTS_REQUEST__INIT;
    return list_all(r, "ListTenants", &req, &req.limit, &req.after_id,
                    &sluice__admin__v1__list_tenants_response__descriptor, show_tenants);
}

static void show_tenant(run_t *r, const void *t, const void *ctx)
{
    ctl_out_tenant(&r->obuf, r->fmt, t);
}

static int cmd_tenants_get(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__GetTenantRequest req = SLUICE__ADMIN__V1__GET_TENANT_REQUEST__INIT;
    req.id = (char *)a->pos[0];
    return call_and_show(r, "GetTenant", &req, &sluice__config__v1__tenant__descriptor, show_tenant, NULL);
}

/* ---- keys ----------------------------------------------------------------------------------- */

static int cmd_keys_create(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Config__V1__VirtualKey k = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    const char *tenant = flag_get(a, "--tenant"), *id = flag_get(a, "--id");
    if (tenant == NULL || tenant[0] == '\0')
        return usage_error(r, c, "--tenant is required");
    if (id == NULL || id[0] == '\0')
        return usage_error(r, c, "--id is required");
    k.id = (char *)id;
    k.tenant_id = (char *)tenant;

    char *providers[MAX_ARGS], *models[MAX_ARGS];
    Sluice__Config__V1__Target targets[MAX_ARGS], *target_ptrs[MAX_ARGS];
    Sluice__Config__V1__Quota quotas[2], *quota_ptrs[2];
    char *split[MAX_ARGS];
    size_t nsplit = 0;
    int rc = 0;
    k.allowed_providers = providers;
    k.allowed_models = models;
    k.fallbacks = target_ptrs;
    k.quotas = quota_ptrs;
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        const char *v = a->value[i];
        if (strcmp(a->flag[i], "--allow-provider") == 0) {
            providers[k.n_allowed_providers++] = (char *)v;
        } else if (strcmp(a->flag[i], "--allow-model") == 0) {
            models[k.n_allowed_models++] = (char *)v;
        } else if (strcmp(a->flag[i], "--fallback") == 0) {
            const char *slash = strchr(v, '/');
            if (slash == NULL || slash == v || slash[1] == '\0') {
                rc = usage_error(r, c, "--fallback: \"%s\" is not PROVIDER/MODEL", v);
                break;
            }
            char *prov = strndup(v, (size_t)(slash - v));
            if (prov == NULL)
                abort();
            split[nsplit++] = prov;
            Sluice__Config__V1__Target *t = &targets[k.n_fallbacks];
            *t = (Sluice__Config__V1__Target)SLUICE__CONFIG__V1__TARGET__INIT;
            t->provider = prov;
            t->model = (char *)slash + 1;
            target_ptrs[k.n_fallbacks++] = t;
        }
    }
    const char *budget = flag_get(a, "--budget-monthly-usd"), *rpm = flag_get(a, "--rpm");
    if (rc == 0 && budget != NULL) {
        int64_t nano;
        if (sl_usd_parse_nano(budget, strlen(budget), &nano) != 0) {
            rc = usage_error(r, c, "--budget-monthly-usd: \"%s\" is not a USD amount", budget);
        } else {
            Sluice__Config__V1__Quota *q = &quotas[k.n_quotas];
            *q = (Sluice__Config__V1__Quota)SLUICE__CONFIG__V1__QUOTA__INIT;
            q->metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO;
            q->window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH;
            q->limit = nano;
            quota_ptrs[k.n_quotas++] = q;
            k.budget_reset = "monthly";
        }
    }
    if (rc == 0 && rpm != NULL) {
        long long v;
        if (parse_int(rpm, 0, INT64_MAX, &v) != 0) {
            rc = usage_error(r, c, "--rpm: \"%s\" is not a non-negative whole number", rpm);
        } else {
            Sluice__Config__V1__Quota *q = &quotas[k.n_quotas];
            *q = (Sluice__Config__V1__Quota)SLUICE__CONFIG__V1__QUOTA__INIT;
            q->metric = SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS;
            q->window = SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE;
            q->limit = v;
            quota_ptrs[k.n_quotas++] = q;
        }
    }

    ctl_client_t cl = {0};
    Sluice__Admin__V1__CreateVirtualKeyResponse *resp = NULL;
    if (rc == 0)
        rc = connect_admin(r, &cl);
    if (rc == 0) {
        Sluice__Admin__V1__CreateVirtualKeyRequest req = SLUICE__ADMIN__V1__CREATE_VIRTUAL_KEY_REQUEST__INIT;
        req.key = &k;
        rc = call(r, &cl, "CreateVirtualKey", &req, &sluice__admin__v1__create_virtual_key_response__descriptor, &resp);
    }
    if (rc == 0) {
        ctl_out_created_key(&r->obuf, r->fmt, resp, (long long)time(NULL));
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    for (size_t i = 0; i < nsplit; i++)
        free(split[i]);
    ctl_client_close(&cl);
    return rc;
}

static void show_key(run_t *r, const void *k, const void *ctx)
{
    ctl_out_key(&r->obuf, r->fmt, k, (long long)time(NULL));
}

static int cmd_keys_get(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__GetVirtualKeyRequest req = SLUICE__ADMIN__V1__GET_VIRTUAL_KEY_REQUEST__INIT;
    req.id = (char *)a->pos[0];
    return call_and_show(r, "GetVirtualKey", &req, &sluice__config__v1__virtual_key__descriptor, show_key, NULL);
}

/* ctx: the id asked for, named when the answer has none. */
static void show_revoked(run_t *r, const void *resp, const void *ctx)
{
    const Sluice__Config__V1__VirtualKey *k = resp;
    if (r->fmt == CTL_OUT_TABLE)
        sl_buf_printf(&r->obuf, "revoked virtual key %s\n", k->id[0] != '\0' ? k->id : (const char *)ctx);
    else
        show_key(r, k, ctx);
}

static int cmd_keys_revoke(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__RevokeVirtualKeyRequest req = SLUICE__ADMIN__V1__REVOKE_VIRTUAL_KEY_REQUEST__INIT;
    req.id = (char *)a->pos[0];
    return call_and_show(r, "RevokeVirtualKey", &req, &sluice__config__v1__virtual_key__descriptor, show_revoked,
                         req.id);
}

static void show_keys(run_t *r, const void *items, size_t n)
{
    ctl_out_keys(&r->obuf, r->fmt, items, n, (long long)time(NULL));
}

static int cmd_keys_list(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__ListVirtualKeysRequest req = SLUICE__ADMIN__V1__LIST_VIRTUAL_KEYS_REQUEST__INIT;
    const char *tenant = flag_get(a, "--tenant");
    if (tenant != NULL)
        req.tenant_id = (char *)tenant;
    return list_all(r, "ListVirtualKeys", &req, &req.limit, &req.after_id,
                    &sluice__admin__v1__list_virtual_keys_response__descriptor, show_keys);
}

/* ---- spend and quotas (ctl_spend.c) ---------------------------------------------------------- */

static ctl_spend_fmt_t spend_fmt(const run_t *r)
{
    return r->csv ? CTL_SPEND_CSV : r->fmt == CTL_OUT_TABLE ? CTL_SPEND_TABLE : CTL_SPEND_JSON;
}

/* ctx: the request the response answers. */
static void show_spend(run_t *r, const void *resp, const void *ctx)
{
    ctl_out_spend(&r->obuf, spend_fmt(r), ctx, resp);
}

static int cmd_spend(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__GetSpendRequest req;
    sl_err_t e = {0};
    if (ctl_spend_request(flag_get(a, "--tenant"), flag_get(a, "--from"), flag_get(a, "--to"), flag_get(a, "--by"),
                          &req, &e) != 0)
        return usage_error(r, c, "%s", e.msg);
    return call_and_show(r, "GetSpend", &req, &sluice__admin__v1__get_spend_response__descriptor, show_spend, &req);
}

static void show_quotas(run_t *r, const void *resp, const void *ctx)
{
    ctl_out_quotas(&r->obuf, spend_fmt(r), resp);
}

static int cmd_quotas(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__GetQuotaStatusRequest req;
    sl_err_t e = {0};
    if (ctl_quotas_request(flag_get(a, "--tenant"), flag_get(a, "--key"), &req, &e) != 0)
        return usage_error(r, c, "%s", e.msg);
    return call_and_show(r, "GetQuotaStatus", &req, &sluice__admin__v1__get_quota_status_response__descriptor,
                         show_quotas, NULL);
}

/* ---- alerts (ctl_alerts.c) ---------------------------------------------------------------------- */

static void show_alerts(run_t *r, const void *resp, const void *ctx)
{
    ctl_out_alerts(&r->obuf, r->fmt != CTL_OUT_TABLE, resp);
}

static int cmd_alerts_list(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__ListAlertsRequest req = SLUICE__ADMIN__V1__LIST_ALERTS_REQUEST__INIT;
    const char *rule = flag_get(a, "--rule");
    if (rule != NULL)
        req.rule = (char *)rule;
    return call_and_show(r, "ListAlerts", &req, &sluice__admin__v1__list_alerts_response__descriptor, show_alerts,
                         NULL);
}

static void show_alert_history(run_t *r, const void *resp, const void *ctx)
{
    ctl_out_alert_history(&r->obuf, r->fmt != CTL_OUT_TABLE, resp);
}

static int cmd_alerts_history(run_t *r, const command_t *c, cmd_args_t *a)
{
    Sluice__Admin__V1__AlertHistoryRequest req = SLUICE__ADMIN__V1__ALERT_HISTORY_REQUEST__INIT;
    const char *rule = flag_get(a, "--rule"), *limit = flag_get(a, "--limit");
    long long n = 0;
    if (limit != NULL && parse_int(limit, 1, 1000, &n) != 0)
        return usage_error(r, c, "--limit: \"%s\" is not a number from 1 to 1000", limit);
    if (rule != NULL)
        req.rule = (char *)rule;
    req.limit = (int32_t)n;
    return call_and_show(r, "AlertHistory", &req, &sluice__admin__v1__alert_history_response__descriptor,
                         show_alert_history, NULL);
}

/* ---- the command table -------------------------------------------------------------------- */

static const flag_spec_t apply_flags[] = {
    {"--file", "-f", 1, 1},
    {"--dry-run", NULL, 0, 0},
    {"--secrets-out", NULL, 1, 0},
    {NULL},
};
static const flag_spec_t validate_flags[] = {
    {"--file", "-f", 1, 1},
    {NULL},
};
static const flag_spec_t no_flags[] = {{NULL}};
static const flag_spec_t keys_create_flags[] = {
    {"--tenant", NULL, 1, 0},
    {"--id", NULL, 1, 0},
    {"--allow-provider", NULL, 1, 1},
    {"--allow-model", NULL, 1, 1},
    {"--fallback", NULL, 1, 1},
    {"--budget-monthly-usd", NULL, 1, 0},
    {"--rpm", NULL, 1, 0},
    {NULL},
};
static const flag_spec_t keys_list_flags[] = {
    {"--tenant", NULL, 1, 0},
    {NULL},
};

static const flag_spec_t spend_flags[] = {
    {"--tenant", NULL, 1, 0},
    {"--from", NULL, 1, 0},
    {"--to", NULL, 1, 0},
    {"--by", NULL, 1, 0},
    {NULL},
};
static const flag_spec_t quotas_flags[] = {
    {"--tenant", NULL, 1, 0},
    {"--key", NULL, 1, 0},
    {NULL},
};

static const flag_spec_t alerts_list_flags[] = {
    {"--rule", NULL, 1, 0},
    {NULL},
};
static const flag_spec_t alerts_history_flags[] = {
    {"--rule", NULL, 1, 0},
    {"--limit", NULL, 1, 0},
    {NULL},
};

static const command_t commands[] = {
    {NULL, "apply", "apply -f FILE [-f FILE]... [--dry-run] [--secrets-out FILE]",
     "Creates or updates every tenant, provider, model price and virtual key the files declare, in one\n"
     "transaction (entities not listed are left alone). Several files merge into one document; an\n"
     "entity defined twice is an error. secret_env variables are read now. Prints one line per change,\n"
     "warnings on stderr, and the secret of each key created (shown only this once). With -v, also\n"
     "unchanged entities and the details of created ones.\n\n"
     "  -f, --file FILE       a YAML file (\"-\" for standard input); repeatable\n"
     "  --dry-run             show what would change; change nothing\n"
     "  --secrets-out FILE    also append \"KEY_ID SECRET\" lines for created keys to FILE (mode 0600)\n",
     apply_flags, 0, cmd_apply},
    {NULL, "validate", "validate -f FILE [-f FILE]...",
     "Checks files offline as apply would read them (syntax, fields, amounts, duplicates, secret_env\n"
     "variables set) without contacting the control plane.\n\n"
     "  -f, --file FILE       a YAML file (\"-\" for standard input); repeatable\n",
     validate_flags, 0, cmd_validate},
    {"tenants", "list", "tenants list", "Lists all tenants.\n", no_flags, 0, cmd_tenants_list},
    {"tenants", "get", "tenants get ID", "Shows one tenant.\n", no_flags, 1, cmd_tenants_get},
    {"keys", "create",
     "keys create --tenant T --id ID [--allow-provider P]... [--allow-model M]... [--fallback P/M]...\n"
     "                      [--budget-monthly-usd X] [--rpm N]",
     "Creates a virtual key of an existing tenant and prints its secret, shown only this once.\n\n"
     "  --tenant T              the tenant (customer) the key belongs to\n"
     "  --id ID                 the key's id, e.g. vk_acme_prod\n"
     "  --allow-provider P      allow only these providers (repeatable; default all)\n"
     "  --allow-model M         allow only these models (repeatable; default all)\n"
     "  --fallback P/M          a fallback target provider/model (repeatable, in order)\n"
     "  --budget-monthly-usd X  monthly spending limit in USD, e.g. 12000 or 2.50\n"
     "  --rpm N                 requests per minute\n",
     keys_create_flags, 0, cmd_keys_create},
    {"keys", "get", "keys get ID", "Shows one virtual key (never its secret).\n", no_flags, 1, cmd_keys_get},
    {"keys", "list", "keys list [--tenant T]",
     "Lists virtual keys, all or one tenant's.\n\n  --tenant T   only the keys of tenant T\n", keys_list_flags, 0,
     cmd_keys_list},
    {NULL, "spend", "spend --tenant T --from YYYY-MM-DD --to YYYY-MM-DD [--by day|model|key]",
     "Shows a tenant's spend from the ledger, per day of the tenant's time zone (default), per\n"
     "provider/model or per virtual key, with a total: the same numbers as the report.* SQL views.\n"
     "Money is printed as exact USD decimals. -o csv gives one row per group with a header.\n\n"
     "  --tenant T          the tenant\n"
     "  --from YYYY-MM-DD   the first day\n"
     "  --to YYYY-MM-DD     the day after the last one (exclusive)\n"
     "  --by day|model|key  how to group (default day)\n",
     spend_flags, 0, cmd_spend},
    {NULL, "quotas", "quotas --tenant T | --key K",
     "Shows the current window of every quota of a tenant (and of its keys) or of a key (and of its\n"
     "tenant): limit, settled use, grants outstanding on data planes and what remains.\n\n"
     "  --tenant T   a tenant's quotas and its keys'\n"
     "  --key K      a key's quotas and its tenant's\n",
     quotas_flags, 0, cmd_quotas},
    {"keys", "revoke", "keys revoke ID", "Revokes a virtual key; every data plane rejects it within a second.\n",
     no_flags, 1, cmd_keys_revoke},
    {"alerts", "list", "alerts list [--rule NAME]",
     "Lists alert rules (declared under alerts: in apply files) with the state of every scope each\n"
     "has fired for (firing or resolved, since when), and the sinks (never their secrets).\n\n"
     "  --rule NAME   only this rule\n",
     alerts_list_flags, 0, cmd_alerts_list},
    {"alerts", "history", "alerts history [--rule NAME] [--limit N]",
     "Lists alert events, newest first, each with its deliveries to sinks: delivered, pending\n"
     "(attempts so far, next attempt, last error) or failed.\n\n"
     "  --rule NAME   only this rule's events\n"
     "  --limit N     at most N events (default 100, at most 1000)\n",
     alerts_history_flags, 0, cmd_alerts_history},
    {NULL},
};

static const command_t *find_command(const char *group, const char *name)
{
    for (const command_t *c = commands; c->name != NULL; c++) {
        if (group == NULL && c->group == NULL && strcmp(c->name, name) == 0)
            return c;
        if (group != NULL && c->group != NULL && strcmp(c->group, group) == 0 && strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

static int is_group(const char *s)
{
    return strcmp(s, "tenants") == 0 || strcmp(s, "keys") == 0 || strcmp(s, "alerts") == 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Takes the global options out of argv; the rest go to rest[]. */
static int parse_globals(run_t *r, int argc, char **argv, char **rest, size_t *nrest, int *version)
{
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (only_pos || arg[0] != '-' || strcmp(arg, "--") == 0) {
            /* "--" itself is passed on: the command parser needs it too */
            only_pos = only_pos || strcmp(arg, "--") == 0;
            if (*nrest == MAX_ARGS)
                return usage_error(r, NULL, "too many arguments");
            rest[(*nrest)++] = arg;
            continue;
        }
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        enum { G_SERVER, G_TOKEN_FILE, G_OUTPUT, G_TIMEOUT } which;
        int glued = strncmp(arg, "-o", 2) == 0 && arg[2] != '\0'; /* -ojson */
#define IS(s) (strlen(s) == nlen && strncmp(arg, s, nlen) == 0)
        if (IS("--server")) {
            which = G_SERVER;
        } else if (IS("--token-file")) {
            which = G_TOKEN_FILE;
        } else if (IS("-o") || IS("--output") || glued) {
            which = G_OUTPUT;
        } else if (IS("--timeout")) {
            which = G_TIMEOUT;
        } else if (IS("-v") || IS("--verbose")) {
            r->verbose = 1;
            continue;
        } else if (IS("-h") || IS("--help")) {
            r->help = 1;
            continue;
        } else if (IS("--version")) {
            *version = 1;
            continue;
        } else {
            if (*nrest == MAX_ARGS)
                return usage_error(r, NULL, "too many arguments");
            rest[(*nrest)++] = arg; /* a command flag */
            continue;
        }
#undef IS
        const char *val;
        if (eq != NULL)
            val = eq + 1;
        else if (glued)
            val = arg + 2;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return usage_error(r, NULL, "flag %.*s needs a value", (int)nlen, arg);
        long long t;
        switch (which) {
        case G_SERVER:
        case G_TOKEN_FILE:
            if (val[0] == '\0')
                return usage_error(r, NULL, "flag %.*s needs a value", (int)nlen, arg);
            *(which == G_SERVER ? &r->server : &r->token_file) = val;
            break;
        case G_OUTPUT:
            r->csv = strcmp(val, "csv") == 0;
            if (!r->csv && ctl_format_parse(val, &r->fmt) != 0)
                return usage_error(r, NULL, "output format \"%s\" is not table, json or yaml", val);
            break;
        case G_TIMEOUT:
            if (parse_int(val, 1, 3600, &t) != 0)
                return usage_error(r, NULL, "--timeout: \"%s\" is not a number of seconds from 1 to 3600", val);
            r->timeout_s = (int)t;
            break;
        }
    }
    return 0;
}

static int run_main(run_t *r, int argc, char **argv)
{
    char *rest[MAX_ARGS];
    size_t nrest = 0;
    int version = 0;
    int rc = parse_globals(r, argc, argv, rest, &nrest, &version);
    if (rc != 0)
        return rc;
    if (version) {
        sl_buf_printf(&r->obuf, "sluicectl %s\n", SLUICE_VERSION);
        return EXIT_OK;
    }
    size_t first = 0;
    if (nrest > 0 && strcmp(rest[0], "--") == 0)
        first = 1;
    if (first >= nrest) {
        if (r->help) {
            usage_all(&r->obuf);
            return EXIT_OK;
        }
        return usage_error(r, NULL, "no command given");
    }

    const char *word = rest[first];
    if (strcmp(word, "help") == 0) {
        const char *g = first + 1 < nrest ? rest[first + 1] : NULL;
        const char *n = first + 2 < nrest ? rest[first + 2] : NULL;
        const command_t *c = NULL;
        if (g == NULL) {
            usage_all(&r->obuf);
            return EXIT_OK;
        }
        if (is_group(g) && n == NULL) {
            usage_group(&r->obuf, g);
            return EXIT_OK;
        }
        c = is_group(g) ? find_command(g, n) : find_command(NULL, g);
        if (c == NULL)
            return usage_error(r, NULL, "no such command \"%s%s%s\"", g, n != NULL ? " " : "", n != NULL ? n : "");
        usage_cmd(&r->obuf, c);
        return EXIT_OK;
    }

    const command_t *c;
    size_t args_at;
    if (is_group(word)) {
        if (first + 1 >= nrest || rest[first + 1][0] == '-') {
            if (r->help) {
                usage_group(&r->obuf, word);
                return EXIT_OK;
            }
            sl_buf_printf(&r->ebuf, "error: \"%s\" needs a subcommand\n", word);
            usage_group(&r->ebuf, word);
            return EXIT_USAGE;
        }
        c = find_command(word, rest[first + 1]);
        if (c == NULL) {
            sl_buf_printf(&r->ebuf, "error: unknown command \"%s %s\"\n", word, rest[first + 1]);
            usage_group(&r->ebuf, word);
            return EXIT_USAGE;
        }
        args_at = first + 2;
    } else {
        c = find_command(NULL, word);
        if (c == NULL)
            return usage_error(r, NULL, "unknown command \"%s\"", word);
        args_at = first + 1;
    }
    if (r->help) {
        usage_cmd(&r->obuf, c);
        return EXIT_OK;
    }
    cmd_args_t a;
    memset(&a, 0, sizeof(a));
    if ((rc = parse_cmd_args(r, c, rest + args_at, nrest - args_at, &a)) != 0)
        return rc;
    if (r->csv && c->fn != cmd_spend && c->fn != cmd_quotas)
        return usage_error(r, c, "-o csv is only available for spend and quotas");
    return c->fn(r, c, &a);
}

int ctl_main(int argc, char **argv, FILE *out, FILE *err, ctl_env_fn envf, void *ud)
{
    run_t r = {.out = out,
               .err = err,
               .env = envf != NULL ? envf : ctl_env_getenv,
               .ud = ud,
               .fmt = CTL_OUT_TABLE,
               .timeout_s = DEFAULT_TIMEOUT_S};
    int rc = run_main(&r, argc, argv);
    if (r.obuf.len > 0)
        fwrite(r.obuf.data, 1, r.obuf.len, out);
    if (r.ebuf.len > 0)
        fwrite(r.ebuf.data, 1, r.ebuf.len, err);
    if (fflush(out) != 0 && rc == EXIT_OK) {
        fprintf(err, "error: could not write output: %s\n", strerror(errno));
        rc = EXIT_FAIL;
    }
    fflush(err);
    if (r.obuf.data != NULL) /* may hold secrets */
        explicit_bzero(r.obuf.data, r.obuf.len);
    sl_buf_free(&r.obuf);
    sl_buf_free(&r.ebuf);
    return rc;
}
