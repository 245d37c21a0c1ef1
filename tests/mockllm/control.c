/*
 * control.c - the mock's own endpoints: /healthz and everything under /_mock/.
 *
 * POST /_mock/faults body, all fields optional except count:
 *   {"count": N >= 1, "status": 400..599, "delay_ms": D, "chunk_delay_ms": C,
 *    "drop_after_chunks": K >= 0, "error_after_chunks": K >= 0,
 *    "retry_after": seconds, "error_body": "raw",
 *    "provider": "openai" | "azure" | "anthropic" | "bedrock" | "vertex" |
 *                "google_oauth"}
 * Unknown fields are rejected so that a typo in a test fails loudly.
 */
#include "control.h"

#include <jansson.h>
#include <string.h>

#include "buf.h"
#include "faults.h"
#include "http.h"
#include "provider.h"
#include "stats.h"
#include "timer.h"

static void send_json(h2o_req_t *req, int status, mock_buf_t *buf)
{
    mock_http_send(req, status, MOCK_CT_JSON, buf->base, buf->len);
}

static void send_error(h2o_req_t *req, int status, const char *message)
{
    mock_buf_t buf;
    mock_buf_init(&buf, &req->pool, 128);
    mock_buf_append_lit(&buf, "{\"error\":");
    mock_buf_append_json_str(&buf, message, strlen(message));
    mock_buf_append_lit(&buf, "}");
    send_json(req, status, &buf);
}

static void send_ok(h2o_req_t *req)
{
    mock_http_send(req, 200, MOCK_CT_JSON, H2O_STRLIT("{\"ok\":true}"));
}

/* Reads an optional integer field in [min, max]; returns 0, or -1 after
 * writing a message to err. */
static int get_int(json_t *obj, const char *key, json_int_t min, json_int_t max, json_int_t *out, char *err,
                   size_t errsz)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errsz, "\"%s\" must be an integer in [%lld, %lld]", key, (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int parse_fault(json_t *root, mock_fault_t *fault, uint32_t *count, char *err, size_t errsz)
{
    static const char *const known[] = {
        "count",       "status",     "delay_ms",           "chunk_delay_ms", "drop_after_chunks",
        "retry_after", "error_body", "error_after_chunks", "provider"};
    const char *key;
    json_t *value;
    json_int_t n;

    if (!json_is_object(root)) {
        snprintf(err, errsz, "body must be a JSON object");
        return -1;
    }
    json_object_foreach(root, key, value)
    {
        size_t i;
        for (i = 0; i != sizeof(known) / sizeof(known[0]); ++i)
            if (strcmp(key, known[i]) == 0)
                break;
        if (i == sizeof(known) / sizeof(known[0])) {
            snprintf(err, errsz, "unknown field \"%.64s\"", key);
            return -1;
        }
    }

    *fault = MOCK_FAULT_NONE;
    n = 0;
    if (get_int(root, "count", 1, 1000000000, &n, err, errsz) != 0)
        return -1;
    if (n == 0) {
        snprintf(err, errsz, "\"count\" is required");
        return -1;
    }
    *count = (uint32_t)n;
    n = 0;
    if (get_int(root, "status", 400, 599, &n, err, errsz) != 0)
        return -1;
    fault->status = (int)n;
    n = 0;
    if (get_int(root, "delay_ms", 0, MOCK_DELAY_MAX_MS, &n, err, errsz) != 0)
        return -1;
    fault->delay_ms = (uint32_t)n;
    n = 0;
    if (get_int(root, "chunk_delay_ms", 0, MOCK_DELAY_MAX_MS, &n, err, errsz) != 0)
        return -1;
    fault->chunk_delay_ms = (uint32_t)n;
    n = -1;
    if (get_int(root, "drop_after_chunks", 0, 1000000, &n, err, errsz) != 0)
        return -1;
    fault->drop_after_chunks = (int32_t)n;
    n = -1;
    if (get_int(root, "error_after_chunks", 0, 1000000, &n, err, errsz) != 0)
        return -1;
    fault->error_after_chunks = (int32_t)n;
    n = 0;
    if (get_int(root, "retry_after", 0, 86400, &n, err, errsz) != 0)
        return -1;
    fault->retry_after_s = (uint32_t)n;

    json_t *provider = json_object_get(root, "provider");
    if (provider != NULL && !json_is_null(provider)) {
        int id = json_is_string(provider)
                     ? mock_provider_parse(json_string_value(provider), json_string_length(provider))
                     : -1;
        if (id < 0) {
            snprintf(err, errsz, "\"provider\" must be one of openai, azure, anthropic, bedrock, vertex, google_oauth");
            return -1;
        }
        fault->provider = id;
    }

    json_t *body = json_object_get(root, "error_body");
    if (body != NULL && !json_is_null(body)) {
        if (!json_is_string(body)) {
            snprintf(err, errsz, "\"error_body\" must be a string");
            return -1;
        }
        fault->error_body = json_string_value(body);
        fault->error_body_len = json_string_length(body);
    }
    return 0;
}

static void post_faults(h2o_req_t *req)
{
    char err[160];
    json_error_t jerr;
    mock_fault_t fault;
    uint32_t count;

    json_t *root = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len, 0, &jerr);
    if (root == NULL) {
        snprintf(err, sizeof(err), "invalid JSON: %.120s", jerr.text);
        send_error(req, 400, err);
        return;
    }
    if (parse_fault(root, &fault, &count, err, sizeof(err)) != 0) {
        json_decref(root);
        send_error(req, 400, err);
        return;
    }
    int rc = mock_faults_push(&fault, count);
    json_decref(root);
    if (rc != 0) {
        send_error(req, 500, "out of memory");
        return;
    }
    mock_buf_t buf;
    mock_buf_init(&buf, &req->pool, 256);
    mock_faults_to_json(&buf);
    send_json(req, 200, &buf);
}

static int path_is(const h2o_req_t *req, const char *path)
{
    size_t n = strlen(path);
    return req->path_normalized.len == n && memcmp(req->path_normalized.base, path, n) == 0;
}

int mock_control_handle(h2o_req_t *req)
{
    static const char prefix[] = "/_mock/";
    mock_buf_t buf;

    if (path_is(req, "/healthz")) {
        mock_http_send(req, 200, MOCK_CT_TEXT, H2O_STRLIT("ok"));
        return 1;
    }
    if (req->path_normalized.len < sizeof(prefix) - 1 ||
        memcmp(req->path_normalized.base, prefix, sizeof(prefix) - 1) != 0)
        return 0;

    if (path_is(req, "/_mock/faults")) {
        if (mock_http_method_is(req, "POST")) {
            post_faults(req);
        } else if (mock_http_method_is(req, "DELETE")) {
            mock_faults_clear();
            send_ok(req);
        } else if (mock_http_method_is(req, "GET")) {
            mock_buf_init(&buf, &req->pool, 256);
            mock_faults_to_json(&buf);
            send_json(req, 200, &buf);
        } else {
            send_error(req, 405, "method not allowed");
        }
    } else if (path_is(req, "/_mock/stats")) {
        if (mock_http_method_is(req, "GET")) {
            mock_buf_init(&buf, &req->pool, 512);
            mock_stats_to_json(&buf);
            send_json(req, 200, &buf);
        } else {
            send_error(req, 405, "method not allowed");
        }
    } else if (path_is(req, "/_mock/reset")) {
        if (mock_http_method_is(req, "POST")) {
            mock_faults_clear();
            mock_stats_reset();
            send_ok(req);
        } else {
            send_error(req, 405, "method not allowed");
        }
    } else {
        send_error(req, 404, "unknown control endpoint");
    }
    return 1;
}
