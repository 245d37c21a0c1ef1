/*
 * Tests for cli/ctl_cmd.c and cli/ctl_client.c: the sluicectl command line,
 * run in-process against a fake Admin gRPC server on a free port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>

#include "ctl_client.h"
#include "ctl_cmd.h"
#include "sl_grpc.h"
#include "sluice/admin/v1/admin.pb-c.h"

#define TOKEN "test-admin-token"
#define PAGE 500 /* sluicectl's page size */

/* ---- a fake Admin service ------------------------------------------------------ */

typedef struct fake {
    grpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t th;
    int port;
    char target[64];
    int shutdown_tag;
    /* what the last calls carried */
    int apply_calls;
    int last_dry_run;
    size_t last_keys;
    size_t last_providers;
    char last_secret[64];
    char last_tenant_filter[64];
    /* ListTenants: 0 one tenant; else PAGE tenants t0000... after "", one
     * more after the last of them; 2 ignores after_id (repeats page one) */
    int tenant_pages;
    int list_tenant_calls;
    Sluice__Config__V1__VirtualKey *last_created; /* owned */
} fake_t;

/* Waits for tag on the fake's queue; notes the shutdown tag if it passes by. */
static void wait_for(fake_t *f, void *tag, int *shutdown_seen, int *success)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        assert_int_equal(ev.type, GRPC_OP_COMPLETE);
        if (ev.tag == &f->shutdown_tag)
            *shutdown_seen = 1;
        if (ev.tag == tag) {
            if (success != NULL)
                *success = ev.success;
            return;
        }
    }
}

static Sluice__Config__V1__VirtualKey sample_key(const char *id)
{
    Sluice__Config__V1__VirtualKey k = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT;
    k.id = (char *)id;
    k.tenant_id = "acme_corp";
    k.key_prefix = "sk-sluice-AbCd";
    k.created_unix = 1767225600;
    return k;
}

/* Answers one call: returns the status and sets *resp (static storage or
 * heap, see *resp_free) for OK. */
static grpc_status_code handle(fake_t *f, const char *method, grpc_byte_buffer *in, ProtobufCMessage **resp,
                               char *details, size_t cap)
{
    static Sluice__Admin__V1__ApplyResponse ar;
    static Sluice__Admin__V1__Change change, *changes[1];
    static char *warnings[1];
    static Sluice__Admin__V1__CreatedSecret secret, *secrets[1];
    static Sluice__Config__V1__VirtualKey keys[2], *keyp[2];
    static Sluice__Admin__V1__ListVirtualKeysResponse lk;
    static Sluice__Admin__V1__CreateVirtualKeyResponse ck;
    static Sluice__Config__V1__Tenant tenant, *tenantp[1];
    static Sluice__Admin__V1__ListTenantsResponse lt;

    if (strcmp(method, "/sluice.admin.v1.Admin/Apply") == 0) {
        Sluice__Admin__V1__ApplyRequest *req = NULL;
        assert_int_equal(sl_bb_to_pb(in, &sluice__admin__v1__apply_request__descriptor, (ProtobufCMessage **)&req), 0);
        f->apply_calls++;
        f->last_dry_run = req->dry_run;
        f->last_keys = req->document->n_virtual_keys;
        f->last_providers = req->document->n_providers;
        f->last_secret[0] = '\0';
        if (req->document->n_providers > 0 && req->document->providers[0]->n_credentials > 0) {
            ProtobufCBinaryData *s = &req->document->providers[0]->credentials[0]->secret;
            snprintf(f->last_secret, sizeof(f->last_secret), "%.*s", (int)s->len, (const char *)s->data);
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
        change = (Sluice__Admin__V1__Change)SLUICE__ADMIN__V1__CHANGE__INIT;
        change.kind = "virtual_key";
        change.id = "vk_acme_prod";
        change.action = "create";
        changes[0] = &change;
        warnings[0] = "fallback provider \"bedrock\" is not configured";
        secret = (Sluice__Admin__V1__CreatedSecret)SLUICE__ADMIN__V1__CREATED_SECRET__INIT;
        secret.key_id = "vk_acme_prod";
        secret.secret = "sk-sluice-FAKE";
        secrets[0] = &secret;
        ar = (Sluice__Admin__V1__ApplyResponse)SLUICE__ADMIN__V1__APPLY_RESPONSE__INIT;
        ar.n_changes = 1;
        ar.changes = changes;
        ar.n_warnings = 1;
        ar.warnings = warnings;
        ar.n_secrets = f->last_dry_run ? 0 : 1;
        ar.secrets = secrets;
        ar.version = 42;
        ar.changed = 1;
        *resp = &ar.base;
        return GRPC_STATUS_OK;
    }
    if (strcmp(method, "/sluice.admin.v1.Admin/GetVirtualKey") == 0 ||
        strcmp(method, "/sluice.admin.v1.Admin/RevokeVirtualKey") == 0) {
        Sluice__Admin__V1__GetVirtualKeyRequest *req = NULL; /* same shape as the revoke request */
        assert_int_equal(
            sl_bb_to_pb(in, &sluice__admin__v1__get_virtual_key_request__descriptor, (ProtobufCMessage **)&req), 0);
        int found = strcmp(req->id, "vk_acme_prod") == 0;
        if (!found)
            snprintf(details, cap, "virtual key \"%s\" not found", req->id);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        if (!found)
            return GRPC_STATUS_NOT_FOUND;
        keys[0] = sample_key("vk_acme_prod");
        keys[0].revoked = strstr(method, "Revoke") != NULL;
        *resp = &keys[0].base;
        return GRPC_STATUS_OK;
    }
    if (strcmp(method, "/sluice.admin.v1.Admin/ListVirtualKeys") == 0) {
        Sluice__Admin__V1__ListVirtualKeysRequest *req = NULL;
        assert_int_equal(
            sl_bb_to_pb(in, &sluice__admin__v1__list_virtual_keys_request__descriptor, (ProtobufCMessage **)&req), 0);
        snprintf(f->last_tenant_filter, sizeof(f->last_tenant_filter), "%s", req->tenant_id);
        assert_int_equal(req->limit, 500);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        keys[0] = sample_key("vk_acme_prod");
        keys[1] = sample_key("vk_acme_test");
        keyp[0] = &keys[0];
        keyp[1] = &keys[1];
        lk = (Sluice__Admin__V1__ListVirtualKeysResponse)SLUICE__ADMIN__V1__LIST_VIRTUAL_KEYS_RESPONSE__INIT;
        lk.n_keys = 2;
        lk.keys = keyp;
        *resp = &lk.base;
        return GRPC_STATUS_OK;
    }
    if (strcmp(method, "/sluice.admin.v1.Admin/CreateVirtualKey") == 0) {
        Sluice__Admin__V1__CreateVirtualKeyRequest *req = NULL;
        assert_int_equal(
            sl_bb_to_pb(in, &sluice__admin__v1__create_virtual_key_request__descriptor, (ProtobufCMessage **)&req), 0);
        if (f->last_created != NULL)
            protobuf_c_message_free_unpacked(&f->last_created->base, NULL);
        f->last_created = req->key;
        req->key = NULL;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        ck = (Sluice__Admin__V1__CreateVirtualKeyResponse)SLUICE__ADMIN__V1__CREATE_VIRTUAL_KEY_RESPONSE__INIT;
        ck.key = f->last_created;
        ck.secret = "sk-sluice-CREATED";
        *resp = &ck.base;
        return GRPC_STATUS_OK;
    }
    if (strcmp(method, "/sluice.admin.v1.Admin/ListTenants") == 0 && f->tenant_pages) {
        static Sluice__Config__V1__Tenant many[PAGE], *manyp[PAGE];
        static char ids[PAGE + 1][16];
        Sluice__Admin__V1__ListTenantsRequest *req = NULL;
        assert_int_equal(
            sl_bb_to_pb(in, &sluice__admin__v1__list_tenants_request__descriptor, (ProtobufCMessage **)&req), 0);
        assert_int_equal(req->limit, PAGE);
        int first = req->after_id[0] == '\0' || f->tenant_pages == 2 ? 0 : atoi(req->after_id + 1) + 1;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        f->list_tenant_calls++;
        lt = (Sluice__Admin__V1__ListTenantsResponse)SLUICE__ADMIN__V1__LIST_TENANTS_RESPONSE__INIT;
        for (int i = first; i <= PAGE && lt.n_tenants < PAGE; i++) {
            snprintf(ids[i], sizeof(ids[i]), "t%04d", i);
            many[lt.n_tenants] = (Sluice__Config__V1__Tenant)SLUICE__CONFIG__V1__TENANT__INIT;
            many[lt.n_tenants].id = ids[i];
            manyp[lt.n_tenants] = &many[lt.n_tenants];
            lt.n_tenants++;
        }
        lt.tenants = manyp;
        *resp = &lt.base;
        return GRPC_STATUS_OK;
    }
    if (strcmp(method, "/sluice.admin.v1.Admin/ListTenants") == 0 ||
        strcmp(method, "/sluice.admin.v1.Admin/GetTenant") == 0) {
        tenant = (Sluice__Config__V1__Tenant)SLUICE__CONFIG__V1__TENANT__INIT;
        tenant.id = "acme_corp";
        tenant.name = "ACME Corp";
        tenant.metadata_json = "{\"billing_code\":\"AC-1001\"}";
        tenantp[0] = &tenant;
        lt = (Sluice__Admin__V1__ListTenantsResponse)SLUICE__ADMIN__V1__LIST_TENANTS_RESPONSE__INIT;
        lt.n_tenants = 1;
        lt.tenants = tenantp;
        *resp = strstr(method, "List") != NULL ? &lt.base : &tenant.base;
        return GRPC_STATUS_OK;
    }
    snprintf(details, cap, "no method %s", method);
    return GRPC_STATUS_UNIMPLEMENTED;
}

static void *fake_loop(void *arg)
{
    fake_t *f = arg;
    int shutdown_seen = 0;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details det;
        grpc_metadata_array md;
        grpc_call_details_init(&det);
        grpc_metadata_array_init(&md);
        int newtag, ok = 0;
        assert_int_equal(grpc_server_request_call(f->srv, &call, &det, &md, f->cq, f->cq, &newtag), GRPC_CALL_OK);
        wait_for(f, &newtag, &shutdown_seen, &ok);
        if (!ok) { /* the server is shutting down */
            grpc_call_details_destroy(&det);
            grpc_metadata_array_destroy(&md);
            if (!shutdown_seen)
                wait_for(f, &f->shutdown_tag, &shutdown_seen, NULL);
            return NULL;
        }
        grpc_byte_buffer *in = NULL;
        grpc_op ops[3];
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &in;
        int t1;
        assert_int_equal(grpc_call_start_batch(call, ops, 2, &t1, NULL), GRPC_CALL_OK);
        wait_for(f, &t1, &shutdown_seen, NULL);

        char method[128], details[256] = "";
        char *m = grpc_slice_to_c_string(det.method);
        snprintf(method, sizeof(method), "%s", m);
        gpr_free(m);
        ProtobufCMessage *resp = NULL;
        grpc_status_code st;
        if (!sl_grpc_bearer_ok(&md, TOKEN)) {
            st = GRPC_STATUS_UNAUTHENTICATED;
            snprintf(details, sizeof(details), "invalid admin token");
        } else {
            st = handle(f, method, in, &resp, details, sizeof(details));
        }
        if (in != NULL)
            grpc_byte_buffer_destroy(in);

        grpc_byte_buffer *outbb = resp != NULL ? sl_pb_to_bb(resp) : NULL;
        grpc_slice dslice = grpc_slice_from_copied_string(details);
        int cancelled = 0, n = 0;
        memset(ops, 0, sizeof(ops));
        if (outbb != NULL) {
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = outbb;
        }
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = st;
        ops[n++].data.send_status_from_server.status_details = &dslice;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &cancelled;
        int t2;
        assert_int_equal(grpc_call_start_batch(call, ops, (size_t)n, &t2, NULL), GRPC_CALL_OK);
        wait_for(f, &t2, &shutdown_seen, NULL);
        grpc_slice_unref(dslice);
        if (outbb != NULL)
            grpc_byte_buffer_destroy(outbb);
        grpc_call_unref(call);
        grpc_call_details_destroy(&det);
        grpc_metadata_array_destroy(&md);
    }
}

static fake_t *fake_start(void)
{
    fake_t *f = calloc(1, sizeof(*f));
    grpc_init();
    f->cq = grpc_completion_queue_create_for_next(NULL);
    f->srv = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(f->srv, f->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    f->port = grpc_server_add_http2_port(f->srv, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    assert_true(f->port > 0);
    snprintf(f->target, sizeof(f->target), "127.0.0.1:%d", f->port);
    grpc_server_start(f->srv);
    assert_int_equal(pthread_create(&f->th, NULL, fake_loop, f), 0);
    return f;
}

static void fake_stop(fake_t *f)
{
    grpc_server_shutdown_and_notify(f->srv, f->cq, &f->shutdown_tag);
    grpc_server_cancel_all_calls(f->srv);
    pthread_join(f->th, NULL);
    grpc_server_destroy(f->srv);
    grpc_completion_queue_shutdown(f->cq);
    while (grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(f->cq);
    if (f->last_created != NULL)
        protobuf_c_message_free_unpacked(&f->last_created->base, NULL);
    free(f);
    grpc_shutdown();
}

/* ---- running sluicectl in-process ------------------------------------------------- */

static const char *env_vars[8][2]; /* {name, value}; set per test */

static const char *fake_env(const char *name, void *ud)
{
    for (size_t i = 0; i < 8 && env_vars[i][0] != NULL; i++)
        if (strcmp(env_vars[i][0], name) == 0)
            return env_vars[i][1];
    if (strcmp(name, "OPENAI_API_KEY") == 0)
        return "sk-test-primary-value";
    return NULL;
}

typedef struct result {
    int rc;
    char *out;
    char *err;
} result_t;

/* Runs sluicectl with the NULL-terminated arguments. */
static result_t run_args(const char **args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "sluicectl";
    for (; *args != NULL; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    result_t r = {0};
    size_t olen, elen;
    FILE *out = open_memstream(&r.out, &olen), *err = open_memstream(&r.err, &elen);
    r.rc = ctl_main(argc, argv, out, err, fake_env, NULL);
    fclose(out);
    fclose(err);
    return r;
}

#define RUN(...) run_args((const char *[]){__VA_ARGS__, NULL})

static void result_free(result_t *r)
{
    free(r->out);
    free(r->err);
}

static void expect(result_t r, int rc, const char *in_out, const char *in_err)
{
    if (r.rc != rc || (in_out != NULL && strstr(r.out, in_out) == NULL) ||
        (in_err != NULL && strstr(r.err, in_err) == NULL))
        fail_msg("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwanted stdout to hold \"%s\", stderr \"%s\"", r.rc, rc,
                 r.out, r.err, in_out != NULL ? in_out : "", in_err != NULL ? in_err : "");
    result_free(&r);
}

static char tmpdir[64];
static char seed_path[128], token_path[128], empty_path[128], bad_path[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/ctl_cmd_testXXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(seed_path, sizeof(seed_path), "%s/sluice.yaml", tmpdir);
    snprintf(token_path, sizeof(token_path), "%s/admin.token", tmpdir);
    snprintf(empty_path, sizeof(empty_path), "%s/empty.yaml", tmpdir);
    snprintf(bad_path, sizeof(bad_path), "%s/bad.yaml", tmpdir);
    write_file(seed_path, "virtual_keys:\n- id: vk_acme_prod\n  customer_id: acme_corp\n"
                          "  budget: {max_per_month_usd: 12000, reset_duration: monthly}\n"
                          "providers:\n- {name: openai, kind: openai, keys: [{secret_env: OPENAI_API_KEY}]}\n");
    write_file(token_path, TOKEN "\n");
    write_file(empty_path, "# nothing\n");
    write_file(bad_path, "virtual_keys:\n- id: vk_a\n  customer_id: acme\n  budget: {max_per_month_usd: abc}\n");
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void clear_env(void)
{
    memset(env_vars, 0, sizeof(env_vars));
}

/* Starts the fake, with SLUICE_SERVER naming it and the right admin token in
 * SLUICE_ADMIN_TOKEN (and nothing else in the environment). */
static fake_t *fake_start_in_env(void)
{
    fake_t *f = fake_start();
    clear_env();
    env_vars[0][0] = "SLUICE_SERVER";
    env_vars[0][1] = f->target;
    env_vars[1][0] = "SLUICE_ADMIN_TOKEN";
    env_vars[1][1] = TOKEN;
    return f;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_usage_errors_exit_2(void **state)
{
    clear_env();
    expect(RUN("--server", "x:1"), 2, "", "error: no command given\nusage: sluicectl");
    expect(RUN("frobnicate"), 2, "", "error: unknown command \"frobnicate\"");
    expect(RUN("apply", "--bogus"), 2, "", "error: unknown flag \"--bogus\" for \"apply\"\nusage: sluicectl apply");
    expect(RUN("apply"), 2, "", "error: apply needs at least one -f FILE");
    expect(RUN("apply", "-f"), 2, "", "error: flag --file needs a value");
    expect(RUN("apply", "-f", seed_path, "--dry-run=yes"), 2, "", "flag --dry-run takes no value");
    expect(RUN("apply", "-f", seed_path, "--secrets-out", "a", "--secrets-out", "b"), 2, "",
           "flag --secrets-out given twice");
    expect(RUN("-o", "xml", "keys", "list"), 2, "", "output format \"xml\" is not table, json or yaml");
    expect(RUN("keys"), 2, "", "error: \"keys\" needs a subcommand\nusage:\n  sluicectl keys create");
    expect(RUN("keys", "rotate", "x"), 2, "", "error: unknown command \"keys rotate\"");
    expect(RUN("keys", "get"), 2, "", "error: missing argument\nusage: sluicectl keys get ID");
    expect(RUN("keys", "get", "a", "b"), 2, "", "error: unexpected argument \"b\"");
    expect(RUN("keys", "create", "--id", "vk_x"), 2, "", "error: --tenant is required");
    expect(RUN("keys", "create", "--tenant", "t", "--id", "vk_x", "--budget-monthly-usd", "abc"), 2, "",
           "error: --budget-monthly-usd: \"abc\" is not a USD amount");
    expect(RUN("keys", "create", "--tenant", "t", "--id", "vk_x", "--rpm", "-3"), 2, "",
           "error: --rpm: \"-3\" is not a non-negative whole number");
    expect(RUN("keys", "create", "--tenant", "t", "--id", "vk_x", "--fallback", "gpt-4o"), 2, "",
           "error: --fallback: \"gpt-4o\" is not PROVIDER/MODEL");
    expect(RUN("--timeout", "0", "tenants", "list"), 2, "", "--timeout: \"0\" is not a number of seconds");
    expect(RUN("tenants", "list", "--server"), 2, "", "flag --server needs a value");
    /* after "--" everything is an argument, even what looks like a flag */
    expect(RUN("keys", "get", "--", "--server"), 2, "", "no control plane address");
}

static void test_help_and_version(void **state)
{
    clear_env();
    expect(RUN("--help"), 0, "usage: sluicectl [global options] COMMAND", "");
    expect(RUN("help"), 0, "  sluicectl keys revoke ID\n", "");
    expect(RUN("apply", "--help"), 0, "usage: sluicectl apply -f FILE [-f FILE]... [--dry-run] [--secrets-out FILE]",
           "");
    expect(RUN("keys", "create", "-h"), 0, "--budget-monthly-usd X  monthly spending limit", "");
    expect(RUN("help", "keys", "list"), 0, "usage: sluicectl keys list [--tenant T]", "");
    expect(RUN("keys", "--help"), 0, "  sluicectl keys get ID\n", "");
    expect(RUN("--version"), 0, "sluicectl ", "");
}

static void test_validate_offline(void **state)
{
    clear_env();
    expect(RUN("validate", "-f", seed_path), 0, "ok: 0 tenants, 1 provider, 0 models, 1 virtual key\n", "");
    expect(RUN("validate", "-f", bad_path), 1, "", "error: /tmp/ctl_cmd_test");
    result_t r = RUN("validate", "-f", bad_path);
    assert_non_null(strstr(r.err, "bad.yaml:4: virtual_keys[0].budget.max_per_month_usd: \"abc\" is not a USD amount"));
    result_free(&r);
    expect(RUN("validate", "-f", empty_path), 1, "", "error: nothing to apply");
    expect(RUN("validate", "-f", seed_path, "-f", seed_path), 1, "",
           "sluice.yaml:6: duplicate provider \"openai\" (also defined at ");
    expect(RUN("validate", "-f", "/nonexistent/x.yaml"), 1, "", "error: could not open \"/nonexistent/x.yaml\"");
}

static void test_server_and_token_resolution(void **state)
{
    clear_env();
    expect(RUN("apply", "-f", seed_path), 2, "", "error: no control plane address: pass --server HOST:PORT");
    expect(RUN("apply", "-f", seed_path, "--server", "127.0.0.1:1"), 2, "", "error: no admin token");
    expect(RUN("keys", "list", "--server", "127.0.0.1:1", "--token-file", "/nonexistent/token"), 1, "",
           "/nonexistent/token");
    /* a parse error is reported before any connection is attempted */
    expect(RUN("apply", "-f", bad_path, "--server", "127.0.0.1:1", "--token-file", token_path), 1, "",
           "is not a USD amount");
}

/* A port nothing listens on: bound once, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_connection_refused_is_clear(void **state)
{
    clear_env();
    char server[64], want[192];
    snprintf(server, sizeof(server), "127.0.0.1:%d", closed_port());
    snprintf(want, sizeof(want), "error: UNAVAILABLE: could not reach the control plane at \"%s\" (is it running?)",
             server);
    env_vars[0][0] = "SLUICE_SERVER";
    env_vars[0][1] = server;
    env_vars[1][0] = "SLUICE_ADMIN_TOKEN";
    env_vars[1][1] = TOKEN;
    expect(RUN("keys", "get", "vk_acme_prod", "--timeout", "5"), 1, "", want);
    expect(RUN("apply", "-f", seed_path), 1, "", want);
}

static void test_apply_against_fake_server(void **state)
{
    clear_env();
    fake_t *f = fake_start();
    char secrets[160];
    snprintf(secrets, sizeof(secrets), "%s/secrets.txt", tmpdir);

    /* global options after the command work too */
    result_t r =
        RUN("apply", "-f", seed_path, "--secrets-out", secrets, "--server", f->target, "--token-file", token_path);
    if (r.rc != 0)
        fail_msg("%s", r.err);
    assert_string_equal(r.out, "+ create virtual_key vk_acme_prod\n"
                               "created virtual key vk_acme_prod: sk-sluice-FAKE\n"
                               "applied: 1 created, 0 updated, 0 unchanged (config version 42)\n");
    assert_string_equal(r.err, "warning: fallback provider \"bedrock\" is not configured\n");
    result_free(&r);
    assert_int_equal(f->apply_calls, 1);
    assert_int_equal(f->last_dry_run, 0);
    assert_int_equal(f->last_keys, 1);
    assert_int_equal(f->last_providers, 1);
    assert_string_equal(f->last_secret, "sk-test-primary-value"); /* secret_env resolved at apply time */

    struct stat st;
    assert_int_equal(stat(secrets, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* appended on the next apply; a too-open file is made private */
    chmod(secrets, 0644);
    expect(RUN("--server", f->target, "--token-file", token_path, "apply", "-f", seed_path, "--secrets-out", secrets),
           0, "created virtual key", "");
    assert_int_equal(stat(secrets, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *sf = fopen(secrets, "r");
    char buf[256] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, sf);
    fclose(sf);
    buf[n] = '\0';
    assert_string_equal(buf, "vk_acme_prod sk-sluice-FAKE\nvk_acme_prod sk-sluice-FAKE\n");

    /* a dry run sends dry_run, prints the plan, stores no secret */
    expect(RUN("--server", f->target, "--token-file", token_path, "apply", "--dry-run", "-f", seed_path,
               "--secrets-out", secrets),
           0,
           "+ create virtual_key vk_acme_prod\ndry run: 1 to create, 0 to update, 0 unchanged; nothing was applied\n",
           "warning:");
    assert_int_equal(f->last_dry_run, 1);
    assert_int_equal(stat(secrets, &st), 0);
    assert_int_equal(st.st_size, (off_t)strlen(buf));

    /* -o json is the ApplyResponse */
    r = RUN("--server", f->target, "--token-file", token_path, "-o", "json", "apply", "-f", seed_path);
    assert_int_equal(r.rc, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 42);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "secrets"), 0), "secret")),
                        "sk-sluice-FAKE");
    json_decref(j);
    result_free(&r);

    /* a secrets file that cannot be written fails the command but still shows the secret */
    expect(RUN("--server", f->target, "--token-file", token_path, "apply", "-f", seed_path, "--secrets-out",
               "/nonexistent/dir/secrets"),
           1, "created virtual key vk_acme_prod: sk-sluice-FAKE",
           "could not open secrets file \"/nonexistent/dir/secrets\"");

    /* a wrong token is the server's UNAUTHENTICATED, with a hint */
    env_vars[0][0] = "SLUICE_ADMIN_TOKEN";
    env_vars[0][1] = "wrong";
    expect(RUN("--server", f->target, "apply", "-f", seed_path), 1, "",
           "error: UNAUTHENTICATED: invalid admin token (check the admin token");
    fake_stop(f);
}

static void test_keys_and_tenants_against_fake_server(void **state)
{
    fake_t *f = fake_start_in_env();

    expect(RUN("keys", "get", "vk_acme_prod"), 0, "id:                vk_acme_prod\n", "");
    expect(RUN("keys", "get", "nope"), 1, "", "error: NOT_FOUND: virtual key \"nope\" not found\n");
    expect(RUN("keys", "list", "--tenant", "acme_corp"), 0,
           "ID            TENANT     PREFIX          STATUS  LIMITS  CREATED\n"
           "vk_acme_prod  acme_corp  sk-sluice-AbCd  active  -       2026-01-01T00:00:00Z\n"
           "vk_acme_test  acme_corp",
           "");
    assert_string_equal(f->last_tenant_filter, "acme_corp");
    expect(RUN("-o", "yaml", "keys", "list"), 0, "virtual_keys:\n# active, secret sk-sluice-AbCd...", "");
    assert_string_equal(f->last_tenant_filter, "");
    expect(RUN("keys", "revoke", "vk_acme_prod"), 0, "revoked virtual key vk_acme_prod\n", "");
    expect(RUN("keys", "revoke", "vk_acme_prod", "-o", "json"), 0, "\"status\": \"revoked\"", "");

    expect(RUN("keys", "create", "--tenant", "acme_corp", "--id", "vk_new", "--allow-provider", "openai",
               "--allow-provider", "anthropic", "--fallback", "openai/gpt-4o", "--budget-monthly-usd", "2.50", "--rpm",
               "60"),
           0, "created virtual key vk_new: sk-sluice-CREATED\n", "");
    Sluice__Config__V1__VirtualKey *k = f->last_created;
    assert_non_null(k);
    assert_string_equal(k->id, "vk_new");
    assert_string_equal(k->tenant_id, "acme_corp");
    assert_int_equal(k->n_allowed_providers, 2);
    assert_string_equal(k->allowed_providers[1], "anthropic");
    assert_int_equal(k->n_fallbacks, 1);
    assert_string_equal(k->fallbacks[0]->provider, "openai");
    assert_string_equal(k->fallbacks[0]->model, "gpt-4o");
    assert_int_equal(k->n_quotas, 2);
    assert_int_equal(k->quotas[0]->metric, SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO);
    assert_int_equal(k->quotas[0]->window, SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH);
    assert_int_equal(k->quotas[0]->limit, INT64_C(2500000000));
    assert_int_equal(k->quotas[1]->limit, 60);
    assert_string_equal(k->budget_reset, "monthly");
    expect(RUN("keys", "create", "--tenant", "acme_corp", "--id", "vk_new", "-o", "json"), 0,
           "\"secret\": \"sk-sluice-CREATED\"", "");

    expect(RUN("tenants", "list"), 0, "ID         NAME       TIME ZONE  LIMITS  CREATED\nacme_corp  ACME Corp", "");
    expect(RUN("tenants", "get", "acme_corp", "-o", "yaml"), 0,
           "tenants:\n- id: acme_corp\n  name: ACME Corp\n  metadata:\n    billing_code: AC-1001\n", "");
    fake_stop(f);
}

/* Lines of text (each ends in a newline). */
static size_t lines(const char *text)
{
    size_t n = 0;
    for (; *text != '\0'; text++)
        n += *text == '\n';
    return n;
}

static void test_lists_every_page(void **state)
{
    fake_t *f = fake_start_in_env();

    f->tenant_pages = 1;
    result_t r = RUN("tenants", "list");
    assert_int_equal(r.rc, 0);
    assert_int_equal(lines(r.out), 1 + PAGE + 1); /* the header, a full page and one more */
    assert_non_null(strstr(r.out, "\nt0000 "));
    assert_non_null(strstr(r.out, "\nt0500 "));
    assert_int_equal(f->list_tenant_calls, 2);
    result_free(&r);

    /* a server that ignores after_id: the repeated page ends the listing */
    f->tenant_pages = 2;
    f->list_tenant_calls = 0;
    r = RUN("tenants", "list");
    assert_int_equal(r.rc, 0);
    assert_int_equal(lines(r.out), 1 + PAGE);
    assert_int_equal(f->list_tenant_calls, 2);
    result_free(&r);
    fake_stop(f);
}

static void test_status_names(void **state)
{
    assert_string_equal(ctl_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
    assert_string_equal(ctl_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(ctl_status_name(GRPC_STATUS_FAILED_PRECONDITION), "FAILED_PRECONDITION");
    assert_string_equal(ctl_status_name(99), "UNKNOWN");
    sl_err_t e = {0};
    ctl_call_error(&e, GRPC_STATUS_INVALID_ARGUMENT, "h:1", "virtual key \"x\": tenant \"y\" is not valid", 30000);
    assert_string_equal(e.msg, "INVALID_ARGUMENT: virtual key \"x\": tenant \"y\" is not valid");
    ctl_call_error(&e, GRPC_STATUS_DEADLINE_EXCEEDED, "h:1", "Deadline Exceeded", 30000);
    assert_string_equal(e.msg, "DEADLINE_EXCEEDED: no answer from the control plane at \"h:1\" within 30 s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_validate_offline),
        cmocka_unit_test(test_server_and_token_resolution),
        cmocka_unit_test(test_connection_refused_is_clear),
        cmocka_unit_test(test_apply_against_fake_server),
        cmocka_unit_test(test_keys_and_tenants_against_fake_server),
        cmocka_unit_test(test_lists_every_page),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
