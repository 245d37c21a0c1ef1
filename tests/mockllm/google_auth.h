/*
 * google_auth.h - Google's service-account OAuth for the Vertex AI fake: the
 * token endpoint (provider "google_oauth", POST /token), the bearer check of
 * the API, Google's error body, and the test service-account generator.
 *
 * Access tokens are stateless: "ya29.mock.<expiry hex>.<MAC hex>" with an
 * HMAC-SHA-256 under a key drawn at startup, so any thread can check one
 * without a lock and a restart invalidates them all.
 *
 * Thread: mock_google_make_service_account() runs before serving; the rest
 * may be called from any worker thread.
 */
#ifndef MOCK_GOOGLE_AUTH_H
#define MOCK_GOOGLE_AUTH_H

#include <stddef.h>

#include "call.h"

/*
 * Writes a Google-style service-account JSON to path (mode 0600): type,
 * project_id "mock-project", private_key_id, private_key (a fresh RSA 2048
 * key, PKCS#8 PEM), client_email "mockllm@mock-project.iam.gserviceaccount.com",
 * client_id, auth_uri, token_uri "https://oauth2.googleapis.com/token" (tests
 * point it at the mock) and the certificate URLs. Returns 0, or -1 after
 * writing a message to err.
 */
int mock_google_make_service_account(const char *path, char *err, size_t errsz);

/*
 * Returns 1 when the call carries "Authorization: Bearer <token>" with a
 * token issued by this process and not expired; else answers 401
 * UNAUTHENTICATED in Google's shape and returns 0.
 */
int mock_google_check_bearer(mock_call_t *call);

/* Answers with Google's error body {"error":{"code","message","status"}}. */
void mock_google_send_error(mock_call_t *call, int code, const char *status, const char *message);

/* Appends Google's error object for code (no framing). */
void mock_google_format_error(mock_buf_t *buf, int code, const char *status, const char *message);

#endif
