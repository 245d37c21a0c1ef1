/* gauth_test.c - the Google access-token manager (dataplane/dp_gauth.c):
 * service-account parsing, the signed assertion and its claims, token
 * endpoint answers, refresh and retry scheduling, and the manager thread
 * end to end against a local token endpoint (fetch, reuse, refresh before
 * expiry without a gap, failures, credentials dropped). */
#include "provider_fixture.h"

#include "dp_gauth.h"
#include "sl_jwt.h"
#include "token_server.h"

static EVP_PKEY *key;
static char *account; /* token_uri: Google's */

static int group_setup(void **state)
{
    account = ts_make_account(&key, SL_JWT_GOOGLE_TOKEN_URI, "proj-one");
    return account != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    free(account);
    EVP_PKEY_free(key);
    dp_gauth_stop();
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- service accounts ---------------------------------------------------- */

static void test_sa_parse(void **state)
{
    dp_gauth_sa_t sa;
    sl_err_t err = {0};
    assert_int_equal(dp_gauth_sa_parse(account, strlen(account), &sa, &err), 0);
    assert_string_equal(sa.client_email, "tester@proj-one.iam.gserviceaccount.com");
    assert_string_equal(sa.private_key_id, "0123456789abcdef");
    assert_string_equal(sa.token_uri, SL_JWT_GOOGLE_TOKEN_URI);
    assert_string_equal(sa.project_id, "proj-one");
    assert_non_null(sa.key);
    assert_int_equal(EVP_PKEY_eq(sa.key, key), 1);
    dp_gauth_sa_free(&sa);
}

static void expect_sa_error(const char *json, const char *needle)
{
    dp_gauth_sa_t sa;
    sl_err_t err = {0};
    assert_int_equal(dp_gauth_sa_parse(json, strlen(json), &sa, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, needle));
    assert_null(strstr(err.msg, "PRIVATE KEY"));
    assert_null(sa.key);
    assert_null(sa.client_email);
}

/* account with the member `name` removed */
static char *without(const char *name)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", name);
    char *copy = strdup(account), *p = strstr(copy, pat);
    assert_non_null(p);
    char *eol = strchr(p, '\n');
    memmove(p, eol + 1, strlen(eol + 1) + 1);
    return copy;
}

static void test_sa_rejects(void **state)
{
    expect_sa_error("", "empty");
    expect_sa_error("[1]", "not a JSON object");
    expect_sa_error("{\"type\":", "not a JSON object");
    expect_sa_error("{\"type\":\"authorized_user\",\"client_email\":\"a@b\"}", "not \"service_account\"");
    char *s = without("client_email");
    expect_sa_error(s, "client_email");
    free(s);
    s = without("private_key");
    expect_sa_error(s, "private_key");
    free(s);
    expect_sa_error("{\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END "
                    "PRIVATE KEY-----\\n\"}",
                    "unusable");
    expect_sa_error("{\"client_email\":7,\"private_key\":\"x\"}", "client_email");
}

/* ---- the assertion ------------------------------------------------------- */

static void test_request_body_assertion_verifies(void **state)
{
    dp_gauth_sa_t sa;
    sl_err_t err = {0};
    char *body = NULL;
    const char *uri = "http://127.0.0.1:9/token";
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(dp_gauth_sa_parse(account, strlen(account), &sa, &err), 0);
    assert_int_equal(dp_gauth_request_body(&sa, uri, now, &body, &err), 0);
    static const char head[] = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    assert_memory_equal(body, head, sizeof(head) - 1);
    const char *jwt = body + sizeof(head) - 1;
    assert_null(strchr(jwt, '&'));

    sl_jwt_t v;
    assert_int_equal(sl_jwt_verify_rs256(key, jwt, strlen(jwt), &v, &err), 0);
    assert_non_null(strstr(v.header, "\"alg\":\"RS256\""));
    assert_non_null(strstr(v.header, "\"kid\":\"0123456789abcdef\""));
    sl_jwt_google_t g;
    assert_int_equal(sl_jwt_check_google_claims(v.claims, v.claims_len, uri, now, 60, &g, &err), 0);
    assert_string_equal(g.iss, "tester@proj-one.iam.gserviceaccount.com");
    assert_string_equal(g.scope, SL_JWT_GOOGLE_SCOPE);
    assert_int_equal(g.iat, now);
    assert_int_equal(g.exp, now + 3600);
    /* the audience is the URI asked for, not the account's */
    assert_int_equal(sl_jwt_check_google_claims(v.claims, v.claims_len, SL_JWT_GOOGLE_TOKEN_URI, now, 60, &g, &err),
                     SL_EINVAL);
    sl_jwt_free(&v);

    /* another key does not verify it */
    EVP_PKEY *other = EVP_RSA_gen(2048);
    assert_int_equal(sl_jwt_verify_rs256(other, jwt, strlen(jwt), &v, &err), SL_EPERM);
    EVP_PKEY_free(other);
    free(body);
    dp_gauth_sa_free(&sa);
}

/* ---- token endpoint answers ---------------------------------------------- */

static void expect_token(const char *body, const char *token, int64_t ttl)
{
    char *tok = NULL;
    int64_t exp = 0;
    sl_err_t err = {0};
    assert_int_equal(dp_gauth_parse_token_response(body, strlen(body), &tok, &exp, &err), 0);
    assert_string_equal(tok, token);
    assert_int_equal(exp, ttl);
    free(tok);
}

static void expect_token_error(const char *body, const char *needle)
{
    char *tok = NULL;
    int64_t exp = 0;
    sl_err_t err = {0};
    assert_int_equal(dp_gauth_parse_token_response(body, strlen(body), &tok, &exp, &err), SL_EINVAL);
    assert_null(tok);
    assert_non_null(strstr(err.msg, needle));
}

static void test_token_response(void **state)
{
    /* as Google answers */
    expect_token("{\n  \"access_token\": \"ya29.c.b0AXv0zTO\",\n  \"expires_in\": 3599,\n  \"token_type\": "
                 "\"Bearer\"\n}",
                 "ya29.c.b0AXv0zTO", 3599);
    expect_token("{\"access_token\":\"t\",\"expires_in\":\"120\"}", "t", 120);
    expect_token("{\"access_token\":\"t\"}", "t", 3600);
    expect_token_error("{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}",
                       "invalid_grant: Invalid JWT Signature.");
    expect_token_error("{\"error\":\"invalid_grant\",\"error_description\":\"a\\nb\"}", "invalid_grant: a?b");
    expect_token_error("{\"expires_in\":10}", "no \"access_token\"");
    expect_token_error("{\"access_token\":\"a b\",\"expires_in\":10}", "malformed");
    expect_token_error("{\"access_token\":\"a\\r\\nx-evil: 1\",\"expires_in\":10}", "malformed");
    expect_token_error("{\"access_token\":\"t\",\"expires_in\":0}", "expires_in");
    expect_token_error("{\"access_token\":\"t\",\"expires_in\":-5}", "expires_in");
    expect_token_error("{\"access_token\":\"t\",\"expires_in\":1.5}", "expires_in");
    expect_token_error("{\"access_token\":\"t\",\"expires_in\":10,\"token_type\":\"mac\"}", "not a bearer");
    expect_token_error("<html>", "not a JSON object");
    expect_token_error("", "not a JSON object");
}

/* ---- scheduling ------------------------------------------------------------ */

static void test_schedule(void **state)
{
    assert_int_equal(dp_gauth_refresh_after_ms(3600), 3300 * 1000);
    assert_int_equal(dp_gauth_usable_ms(3600), 3540 * 1000);
    assert_int_equal(dp_gauth_refresh_after_ms(3599), 3299 * 1000);
    assert_int_equal(dp_gauth_refresh_after_ms(5), 2500);
    assert_int_equal(dp_gauth_usable_ms(5), 3750);
    assert_int_equal(dp_gauth_refresh_after_ms(600), 300 * 1000);
    assert_int_equal(dp_gauth_refresh_after_ms(0), 0);
    assert_int_equal(dp_gauth_usable_ms(0), 0);
    for (int64_t ttl = 1; ttl <= 100000; ttl += ttl < 1000 ? 1 : 997) {
        int64_t r = dp_gauth_refresh_after_ms(ttl), u = dp_gauth_usable_ms(ttl);
        assert_true(r > 0 && r < u);
        assert_true(u < ttl * 1000);
        assert_true(ttl * 1000 - r <= 300 * 1000); /* never more than 5 minutes early */
    }
    for (uint64_t rnd = 0; rnd < 1000; rnd += 37) {
        int64_t d1 = dp_gauth_retry_after_ms(1, rnd), d3 = dp_gauth_retry_after_ms(3, rnd);
        int64_t d50 = dp_gauth_retry_after_ms(50, rnd);
        assert_true(d1 >= 800 && d1 <= 1200);
        assert_true(d3 >= 3200 && d3 <= 4800);
        assert_true(d50 >= 48000 && d50 <= 72000);
    }
}

/* ---- malformed inputs ------------------------------------------------------ */

static uint64_t rng = 0x243f6a8885a308d3ULL;
static uint64_t next_rand(void)
{
    return xorshift64(&rng);
}

static void test_mutations(void **state)
{
    static const char answer[] = "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    char buf[sizeof(answer)];
    for (int i = 0; i < 3000; i++) {
        memcpy(buf, answer, sizeof(answer));
        size_t len = sizeof(answer) - 1;
        int edits = 1 + (int)(next_rand() % 3);
        for (int k = 0; k < edits; k++)
            buf[next_rand() % len] = (char)(next_rand() % 256);
        if (next_rand() % 4 == 0)
            len = next_rand() % len;
        char *tok = NULL;
        int64_t exp = 0;
        sl_err_t err = {0};
        int rc = dp_gauth_parse_token_response(buf, len, &tok, &exp, &err);
        assert_true(rc == 0 || rc == SL_EINVAL);
        if (rc == 0) {
            assert_true(exp > 0);
            for (const char *p = tok; *p != '\0'; p++)
                assert_true(*p > 0x20 && *p < 0x7f);
        }
        free(tok);
    }
    /* service accounts: mutate outside the key (inside it every edit just
     * breaks the key, which is slow to find out) */
    size_t alen = strlen(account);
    char *copy = malloc(alen + 1);
    const char *pk = strstr(account, "\"private_key\":");
    const char *pk_end = strstr(pk, "\",\n") + 1;
    for (int i = 0; i < 300; i++) {
        memcpy(copy, account, alen + 1);
        size_t at;
        do
            at = next_rand() % alen;
        while (account + at >= pk && account + at < pk_end);
        copy[at] = (char)(next_rand() % 256);
        size_t len = next_rand() % 8 == 0 ? next_rand() % alen : alen;
        dp_gauth_sa_t sa;
        sl_err_t err = {0};
        int rc = dp_gauth_sa_parse(copy, len, &sa, &err);
        assert_true(rc == 0 || rc == SL_EINVAL);
        if (rc == 0) {
            assert_non_null(sa.key);
            assert_non_null(sa.client_email);
            assert_non_null(sa.token_uri);
            dp_gauth_sa_free(&sa);
        }
    }
    free(copy);
}

/* ---- the manager ------------------------------------------------------------ */

/* Polls dp_gauth_token until it answers 0 (or timeout); returns its rc. */
static int wait_token(const char *prov, const char *cred, h2o_iovec_t *tok, h2o_iovec_t *project, int timeout_ms,
                      const char **why)
{
    int rc = SL_EUNAVAIL;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        *why = NULL;
        if ((rc = dp_gauth_token(&pool, prov, cred, tok, project, why)) == 0)
            return 0;
        sleep_ms(10);
    }
    return rc;
}

static void test_manager_fetch_refresh_drop(void **state)
{
    token_server_t ts;
    assert_int_equal(ts_start(&ts, key, 3600), 0);
    h2o_iovec_t tok, project;
    const char *why = NULL;

    /* nothing configured yet */
    assert_int_equal(dp_gauth_token(&pool, "vx", "c1", &tok, &project, &why), SL_EUNAVAIL);
    assert_non_null(strstr(why, "no access token has been fetched"));

    dp_gauth_cred_t c = {
        .provider = "vx", .cred_id = "c1", .secret = account, .secret_len = strlen(account), .token_uri = ts.uri};
    assert_int_equal(dp_gauth_set_credentials(&c, 1), 0);
    assert_int_equal(wait_token("vx", "c1", &tok, &project, 5000, &why), 0);
    assert_int_equal(tok.len, strlen("ya29.test-1"));
    assert_memory_equal(tok.base, "ya29.test-1", tok.len);
    assert_int_equal(project.len, 8);
    assert_memory_equal(project.base, "proj-one", 8);
    assert_int_equal(atomic_load(&ts.refused), 0);
    /* reused, not fetched per request; the same set again changes nothing */
    assert_int_equal(dp_gauth_set_credentials(&c, 1), 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(dp_gauth_token(&pool, "vx", "c1", &tok, &project, &why), 0);
        sleep_ms(2);
    }
    assert_int_equal(atomic_load(&ts.requests), 1);
    /* another credential of the same provider is separate */
    assert_int_equal(dp_gauth_token(&pool, "vx", "c2", &tok, &project, &why), SL_EUNAVAIL);

    /* short-lived tokens are refreshed before they expire: no gap (6 s
     * tokens leave a 1.5 s window for the refresh, ample even under a
     * sanitizer on a loaded machine) */
    atomic_store(&ts.ttl, 6);
    dp_gauth_cred_t c2 = c;
    c2.cred_id = "short";
    assert_int_equal(dp_gauth_set_credentials((dp_gauth_cred_t[]){c, c2}, 2), 0);
    assert_int_equal(wait_token("vx", "short", &tok, &project, 5000, &why), 0);
    int first = atomic_load(&ts.requests);
    for (int waited = 0; waited < 7000; waited += 20) {
        assert_int_equal(dp_gauth_token(&pool, "vx", "short", &tok, &project, &why), 0);
        sleep_ms(20);
    }
    assert_true(atomic_load(&ts.requests) >= first + 1); /* refreshed at ~3 s and ~6 s */
    /* c1 kept its token through the change */
    assert_int_equal(dp_gauth_token(&pool, "vx", "c1", &tok, &project, &why), 0);
    assert_memory_equal(tok.base, "ya29.test-1", tok.len);

    /* dropped with its credential */
    assert_int_equal(dp_gauth_set_credentials(&c2, 1), 0);
    for (int i = 0; i < 200 && dp_gauth_token(&pool, "vx", "c1", &tok, &project, &why) == 0; i++)
        sleep_ms(10);
    assert_int_equal(dp_gauth_token(&pool, "vx", "c1", &tok, &project, &why), SL_EUNAVAIL);
    assert_int_equal(dp_gauth_set_credentials(NULL, 0), 0);
    ts_stop(&ts);
}

static void test_manager_failures(void **state)
{
    token_server_t ts;
    assert_int_equal(ts_start(&ts, key, 3600), 0);
    h2o_iovec_t tok, project;
    const char *why = NULL;

    /* an account that is not one */
    static const char not_account[] = "{\"type\":\"service_account\"}";
    dp_gauth_cred_t bad = {.provider = "vx",
                           .cred_id = "bad",
                           .secret = not_account,
                           .secret_len = sizeof(not_account) - 1,
                           .token_uri = ts.uri};
    /* the endpoint refuses (signed by another key) */
    EVP_PKEY *other;
    char *other_account = ts_make_account(&other, ts.uri, "proj-two");
    dp_gauth_cred_t refused = {
        .provider = "vx", .cred_id = "refused", .secret = other_account, .secret_len = strlen(other_account)};
    /* nobody listens */
    dp_gauth_cred_t down = {.provider = "vx",
                            .cred_id = "down",
                            .secret = account,
                            .secret_len = strlen(account),
                            .token_uri = "http://127.0.0.1:1/token"};
    /* a 503, then recovery */
    dp_gauth_cred_t flaky = {
        .provider = "vx", .cred_id = "flaky", .secret = account, .secret_len = strlen(account), .token_uri = ts.uri};
    atomic_store(&ts.fail_status, 503);
    assert_int_equal(dp_gauth_set_credentials((dp_gauth_cred_t[]){bad, refused, down, flaky}, 4), 0);

    int seen = 0;
    for (int i = 0; i < 1000 && seen != 15; i++) {
        sleep_ms(10);
        why = NULL;
        if (dp_gauth_token(&pool, "vx", "bad", &tok, &project, &why) == SL_EUNAVAIL && why != NULL &&
            strstr(why, "not a usable service account") != NULL)
            seen |= 1;
        why = NULL;
        if (dp_gauth_token(&pool, "vx", "refused", &tok, &project, &why) == SL_EUNAVAIL && why != NULL &&
            strstr(why, "Invalid JWT Signature") != NULL)
            seen |= 2;
        why = NULL;
        if (dp_gauth_token(&pool, "vx", "down", &tok, &project, &why) == SL_EUNAVAIL && why != NULL &&
            strstr(why, "could not reach the token endpoint") != NULL)
            seen |= 4;
        why = NULL;
        if (dp_gauth_token(&pool, "vx", "flaky", &tok, &project, &why) == SL_EUNAVAIL && why != NULL &&
            strstr(why, "HTTP 503") != NULL)
            seen |= 8;
    }
    assert_int_equal(seen, 15);
    /* the endpoint recovers: the retry (after about a second) gets a token */
    atomic_store(&ts.fail_status, 0);
    assert_int_equal(wait_token("vx", "flaky", &tok, &project, 5000, &why), 0);
    assert_true(atomic_load(&ts.refused) >= 1);

    dp_gauth_stop();
    assert_int_equal(dp_gauth_token(&pool, "vx", "flaky", &tok, &project, &why), SL_EUNAVAIL);
    /* and it starts again on demand */
    assert_int_equal(dp_gauth_set_credentials(&flaky, 1), 0);
    assert_int_equal(wait_token("vx", "flaky", &tok, &project, 5000, &why), 0);
    dp_gauth_stop();
    free(other_account);
    EVP_PKEY_free(other);
    ts_stop(&ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sa_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sa_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_body_assertion_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_fetch_refresh_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
