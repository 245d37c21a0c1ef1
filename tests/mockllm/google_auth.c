/*
 * google_auth.c - the Google OAuth 2.0 token endpoint of the Vertex AI fake
 * (JWT bearer grant, RFC 7523, as Google serves it at oauth2.googleapis.com)
 * and the bearer-token check of the API.
 *
 *   POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *                &assertion=<RS256 JWT signed with the service account's key>
 *   200 {"access_token":"ya29.mock...","expires_in":TTL,"token_type":"Bearer"}
 *   400 {"error":"invalid_grant","error_description":"Invalid JWT Signature."}
 *       (also a wrong issuer, audience or time window), or
 *       unsupported_grant_type / invalid_request for malformed requests.
 *
 * The assertion is checked as Google does (sl_jwt): RS256 signature under
 * the configured account's public key, iss equal to its client_email, aud
 * equal to the token URI (any of: the account file's token_uri, Google's
 * own, or http(s)://<Host of this request>/token), iat/exp within an hour
 * and not expired (60 s of skew allowed).
 *
 * Invariant: the account (key, email, token_uri) and the MAC key are set by
 * init before serving and never change.
 */
#include "google_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "provider.h"
#include "sl_crypto.h"
#include "sl_jwt.h"

#define TOKEN_PREFIX "ya29.mock."
#define CLOCK_SKEW 60
#define SA_PROJECT "mock-project"
#define SA_EMAIL "mockllm@" SA_PROJECT ".iam.gserviceaccount.com"

static EVP_PKEY *account_key; /* NULL: no account configured, every grant fails */
static char account_email[256];
static char account_token_uri[512];
static uint32_t token_ttl = MOCK_GOOGLE_TOKEN_TTL;
static uint8_t mac_key[32];

/* ---- errors ---------------------------------------------------------------- */

void mock_google_format_error(mock_buf_t *buf, int code, const char *status, const char *message)
{
    mock_buf_append_lit(buf, "{\"error\":{\"code\":");
    mock_buf_append_i64(buf, code);
    mock_buf_append_lit(buf, ",\"message\":");
    mock_buf_append_json_str(buf, message, strlen(message));
    mock_buf_append_lit(buf, ",\"status\":");
    mock_buf_append_json_str(buf, status, strlen(status));
    mock_buf_append_lit(buf, "}}");
}

void mock_google_send_error(mock_call_t *call, int code, const char *status, const char *message)
{
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 128 + strlen(message));
    mock_google_format_error(&buf, code, status, message);
    mock_call_respond(call, code, "application/json; charset=UTF-8", buf.base, buf.len);
}

/* OAuth's own error shape: {"error":"...","error_description":"..."}. */
static void send_oauth_error(mock_call_t *call, int status, const char *error, const char *description)
{
    mock_buf_t buf;

    mock_buf_init(&buf, &call->req->pool, 96 + strlen(description));
    mock_buf_append_lit(&buf, "{\"error\":");
    mock_buf_append_json_str(&buf, error, strlen(error));
    mock_buf_append_lit(&buf, ",\"error_description\":");
    mock_buf_append_json_str(&buf, description, strlen(description));
    mock_buf_append_lit(&buf, "}");
    mock_call_respond(call, status, "application/json; charset=utf-8", buf.base, buf.len);
}

static void send_fault(mock_call_t *call, int status)
{
    if (status == 400)
        send_oauth_error(call, 400, "invalid_request", "Bad Request");
    else if (status == 401)
        send_oauth_error(call, 401, "invalid_client", "The OAuth client was not found.");
    else if (status == 429)
        send_oauth_error(call, 429, "rate_limit_exceeded", "Rate limit exceeded. Please try again later.");
    else if (status >= 500)
        send_oauth_error(call, status, "internal_failure", "Backend Error");
    else
        send_oauth_error(call, status, "invalid_request", mock_http_reason(status));
}

static void send_not_found(h2o_req_t *req)
{
    static const char body[] = "{\"error\":\"not_found\",\"error_description\":\"Not Found\"}";
    mock_http_send(req, 404, MOCK_CT_JSON, body, sizeof(body) - 1);
}

/* ---- access tokens --------------------------------------------------------- */

/* Writes the token for expiry exp into out (at least 80 bytes); returns its length. */
static size_t make_token(int64_t exp, char *out)
{
    char stamp[17];
    uint8_t mac[32];

    snprintf(stamp, sizeof(stamp), "%016llx", (unsigned long long)exp);
    sl_hmac_sha256(mac_key, sizeof(mac_key), stamp, 16, mac);
    memcpy(out, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
    size_t n = sizeof(TOKEN_PREFIX) - 1;
    memcpy(out + n, stamp, 16);
    n += 16;
    out[n++] = '.';
    sl_hex_encode(mac, 16, out + n);
    return n + 32;
}

/* Whether token[0..len) was issued here and is still valid at now. */
static int token_valid(const char *token, size_t len, int64_t now)
{
    char expect[96];
    unsigned long long exp;
    size_t plen = sizeof(TOKEN_PREFIX) - 1;

    if (len != plen + 16 + 1 + 32 || memcmp(token, TOKEN_PREFIX, plen) != 0)
        return 0;
    char stamp[17];
    memcpy(stamp, token + plen, 16);
    stamp[16] = '\0';
    if (sscanf(stamp, "%16llx", &exp) != 1)
        return 0;
    size_t n = make_token((int64_t)exp, expect);
    return n == len && sl_ct_equal(expect, token, len) && (int64_t)exp > now;
}

int mock_google_check_bearer(mock_call_t *call)
{
    static const char scheme[] = "bearer ";
    h2o_iovec_t auth = mock_http_header(call->req, H2O_TOKEN_AUTHORIZATION);

    if (auth.base == NULL) {
        mock_google_send_error(call, 401, "UNAUTHENTICATED",
                               "Request is missing required authentication credential. Expected OAuth 2 access "
                               "token, login cookie or other valid authentication credential. See "
                               "https://developers.google.com/identity/sign-in/web/devconsole-project.");
        return 0;
    }
    if (auth.len > sizeof(scheme) - 1 && h2o_lcstris(auth.base, sizeof(scheme) - 1, H2O_STRLIT(scheme)) &&
        token_valid(auth.base + sizeof(scheme) - 1, auth.len - (sizeof(scheme) - 1), (int64_t)time(NULL)))
        return 1;
    mock_google_send_error(call, 401, "UNAUTHENTICATED",
                           "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                           "cookie or other valid authentication credential. See "
                           "https://developers.google.com/identity/sign-in/web/devconsole-project.");
    return 0;
}

/* ---- token endpoint -------------------------------------------------------- */

/* Whether aud names this token endpoint (see the file comment). */
static int audience_ok(h2o_req_t *req, const char *aud)
{
    if (strcmp(aud, SL_JWT_GOOGLE_TOKEN_URI) == 0 ||
        (account_token_uri[0] != '\0' && strcmp(aud, account_token_uri) == 0))
        return 1;
    const char *rest = strncmp(aud, "http://", 7) == 0 ? aud + 7 : strncmp(aud, "https://", 8) == 0 ? aud + 8 : NULL;
    size_t n = req->authority.len;
    return rest != NULL && n != 0 && strncmp(rest, req->authority.base, n) == 0 && strcmp(rest + n, "/token") == 0;
}

static void on_token(mock_call_t *call)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t body = h2o_iovec_init(req->entity.base != NULL ? req->entity.base : "", req->entity.len);
    sl_err_t err = {0};
    sl_jwt_t jwt = {0};

    h2o_iovec_t grant = mock_http_form_param(&req->pool, body, "grant_type");
    if (grant.base == NULL || strcmp(grant.base, SL_JWT_GRANT_TYPE) != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Invalid grant_type: %.100s", grant.base != NULL ? grant.base : "");
        send_oauth_error(call, 400, "unsupported_grant_type", msg);
        return;
    }
    h2o_iovec_t assertion = mock_http_form_param(&req->pool, body, "assertion");
    if (assertion.base == NULL || assertion.len == 0) {
        send_oauth_error(call, 400, "invalid_request", "Missing required parameter: assertion");
        return;
    }
    if (account_key == NULL) {
        send_oauth_error(call, 400, "invalid_grant", "Invalid grant: account not found");
        return;
    }
    int rc = sl_jwt_verify_rs256(account_key, assertion.base, assertion.len, &jwt, &err);
    if (rc == SL_EPERM) {
        send_oauth_error(call, 400, "invalid_grant", "Invalid JWT Signature.");
        return;
    }
    if (rc != 0) {
        send_oauth_error(call, 400, "invalid_grant", "Invalid JWT: malformed assertion");
        return;
    }

    json_t *claims = json_loadb(jwt.claims, jwt.claims_len, 0, NULL);
    json_t *iss = json_object_get(claims, "iss"), *aud = json_object_get(claims, "aud");
    const char *fail = NULL, *fail_kind = "invalid_grant";
    if (!json_is_string(iss) || strcmp(json_string_value(iss), account_email) != 0) {
        fail = "Invalid grant: account not found";
    } else if (!json_is_string(aud) || !audience_ok(req, json_string_value(aud))) {
        fail = "Invalid JWT: Failed audience check.";
    } else {
        sl_jwt_google_t g;
        int64_t now = (int64_t)time(NULL);
        rc = sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, json_string_value(aud), now, CLOCK_SKEW, &g, &err);
        if (rc == SL_EPERM)
            fail = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check "
                   "your iat and exp values in the JWT claim.";
        else if (rc != 0)
            fail = "Invalid JWT: malformed claims";
    }
    json_decref(claims);
    sl_jwt_free(&jwt);
    if (fail != NULL) {
        send_oauth_error(call, 400, fail_kind, fail);
        return;
    }

    char token[96];
    size_t n = make_token((int64_t)time(NULL) + token_ttl, token);
    mock_buf_t buf;
    mock_buf_init(&buf, &req->pool, 192);
    mock_buf_append_lit(&buf, "{\"access_token\":\"");
    mock_buf_append(&buf, token, n);
    mock_buf_append_lit(&buf, "\",\"expires_in\":");
    mock_buf_append_u64(&buf, token_ttl);
    mock_buf_append_lit(&buf, ",\"token_type\":\"Bearer\"}");
    call->kind = MOCK_KIND_OTHER;
    mock_call_respond(call, 200, "application/json; charset=utf-8", buf.base, buf.len);
}

/* ---- configuration --------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *data = NULL;
    long n;

    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && n < 1024 * 1024 && fseek(fp, 0, SEEK_SET) == 0 &&
        (data = malloc((size_t)n + 1)) != NULL) {
        if (fread(data, 1, (size_t)n, fp) != (size_t)n) {
            free(data);
            data = NULL;
        } else {
            data[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(fp);
    return data;
}

static int copy_field(json_t *root, const char *name, char *out, size_t cap, const char *path)
{
    json_t *v = json_object_get(root, name);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) {
        fprintf(stderr, "sluice-mockllm: service account \"%s\": missing or bad \"%s\"\n", path, name);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int load_service_account(const char *path)
{
    json_error_t jerr;
    sl_err_t err = {0};
    json_t *root = json_load_file(path, 0, &jerr);

    if (root == NULL) {
        fprintf(stderr, "sluice-mockllm: could not read service account \"%s\": %s\n", path, jerr.text);
        return -1;
    }
    json_t *pem = json_object_get(root, "private_key");
    int rc = -1;
    if (!json_is_string(pem)) {
        fprintf(stderr, "sluice-mockllm: service account \"%s\": missing \"private_key\"\n", path);
    } else if (sl_jwt_load_private_pem(json_string_value(pem), json_string_length(pem), &account_key, &err) != 0) {
        fprintf(stderr, "sluice-mockllm: service account \"%s\": %s\n", path, err.msg);
    } else if (copy_field(root, "client_email", account_email, sizeof(account_email), path) == 0) {
        if (json_is_string(json_object_get(root, "token_uri")))
            copy_field(root, "token_uri", account_token_uri, sizeof(account_token_uri), path);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static int init(const mock_settings_t *settings)
{
    token_ttl = settings->google_token_ttl;
    if (sl_random(mac_key, sizeof(mac_key)) != 0) {
        fprintf(stderr, "sluice-mockllm: no randomness for token keys\n");
        return -1;
    }
    if (settings->google_sa_file != NULL && load_service_account(settings->google_sa_file) != 0)
        return -1;
    if (settings->google_public_key_file != NULL) {
        size_t len = 0;
        sl_err_t err = {0};
        char *pem = read_file(settings->google_public_key_file, &len);
        if (pem == NULL) {
            fprintf(stderr, "sluice-mockllm: could not read \"%s\": %s\n", settings->google_public_key_file,
                    strerror(errno));
            return -1;
        }
        EVP_PKEY_free(account_key);
        account_key = NULL;
        int rc = sl_jwt_load_public_pem(pem, len, &account_key, &err);
        free(pem);
        if (rc != 0) {
            fprintf(stderr, "sluice-mockllm: \"%s\": %s\n", settings->google_public_key_file, err.msg);
            return -1;
        }
    }
    if (settings->google_client_email != NULL)
        snprintf(account_email, sizeof(account_email), "%s", settings->google_client_email);
    if (account_key != NULL && account_email[0] == '\0') {
        fprintf(stderr, "sluice-mockllm: --google-sa-public-key needs --google-client-email\n");
        return -1;
    }
    return 0;
}

/* ---- service-account generator --------------------------------------------- */

int mock_google_make_service_account(const char *path, char *err, size_t errsz)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    BIO *bio = NULL;
    json_t *root = NULL;
    char *text = NULL;
    int rc = -1, fd = -1;
    uint8_t raw[20];
    char key_id[41];

    if (key == NULL || (bio = BIO_new(BIO_s_mem())) == NULL ||
        !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) || sl_random(raw, sizeof(raw)) != 0) {
        snprintf(err, errsz, "could not generate an RSA key");
        goto done;
    }
    char *pem;
    long pem_len = BIO_get_mem_data(bio, &pem);
    sl_hex_encode(raw, sizeof(raw), key_id);
    root =
        json_pack("{s:s, s:s, s:s, s:s%, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id",
                  SA_PROJECT, "private_key_id", key_id, "private_key", pem, (size_t)pem_len, "client_email", SA_EMAIL,
                  "client_id", "100000000000000000001", "auth_uri", "https://accounts.google.com/o/oauth2/auth",
                  "token_uri", SL_JWT_GOOGLE_TOKEN_URI, "auth_provider_x509_cert_url",
                  "https://www.googleapis.com/oauth2/v1/certs", "client_x509_cert_url",
                  "https://www.googleapis.com/robot/v1/metadata/x509/mockllm%40" SA_PROJECT ".iam.gserviceaccount.com",
                  "universe_domain", "googleapis.com");
    if (root == NULL || (text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
        snprintf(err, errsz, "out of memory");
        goto done;
    }
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
        snprintf(err, errsz, "could not create \"%s\": %s", path, strerror(errno));
        goto done;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "could not write \"%s\": %s", path, strerror(errno));
            goto done;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || close(fd) != 0) {
        fd = -1;
        snprintf(err, errsz, "could not write \"%s\"", path);
        goto done;
    }
    fd = -1;
    rc = 0;
done:
    if (fd != -1)
        close(fd);
    free(text);
    json_decref(root);
    BIO_free(bio);
    EVP_PKEY_free(key);
    return rc;
}

static const mock_route_t routes[] = {
    {"POST", "/token", on_token},
    {NULL},
};

const mock_provider_t mock_google_oauth_provider = {
    .name = "google_oauth",
    .id = MOCK_PROVIDER_GOOGLE_OAUTH,
    .aux = 1,
    .prefix = "/token/",
    .routes = routes,
    .init = init,
    .send_fault = send_fault,
    .send_not_found = send_not_found,
};
