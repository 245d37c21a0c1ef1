/*
 * dp_gauth.h - Google OAuth 2.0 access tokens for `vertex` providers.
 *
 * A vertex credential's secret is a service-account JSON (client_email,
 * private_key, private_key_id, token_uri, project_id). For each such
 * credential in the current snapshot one background thread (the "gauth"
 * thread, never a worker) keeps an access token: it signs an RS256 JWT
 * assertion with the account's key, POSTs it to the token URI
 * (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer) and keeps the
 * answer until shortly before it expires. Tokens are fetched as soon as a
 * snapshot naming the credential appears, refreshed ahead of expiry
 * (dp_gauth_refresh_after_ms), retried with jittered backoff on failure,
 * and dropped when the credential leaves the configuration. The token URI
 * is the account's, unless the provider's `token_uri` param overrides it.
 *
 * Publication. Tokens reach workers through one atomic pointer to an
 * immutable table (provider, credential id -> token, project, status),
 * replaced whole by the gauth thread on every change. A worker reading the
 * table counts itself in a shared reader counter for the few instructions
 * it takes to copy the token into its request pool; the gauth thread frees
 * a replaced table only after it has seen that counter at zero after the
 * replacement, so no table is freed while a worker may read it. Workers
 * never lock and never block.
 *
 * Threads: dp_gauth_token() on any thread (workers); dp_gauth_on_snapshot()
 * on the sync thread; dp_gauth_set_credentials() and dp_gauth_stop() on one
 * non-worker thread at a time. The pure helpers are thread-safe.
 */
#ifndef DP_GAUTH_H
#define DP_GAUTH_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <openssl/evp.h>

#include "sl_err.h"

/* One credential the manager should keep a token for. Borrowed for the
 * call of dp_gauth_set_credentials() (everything is copied). */
typedef struct dp_gauth_cred {
    const char *provider; /* provider name */
    const char *cred_id;  /* credential id within the provider */
    const char *secret;   /* the service-account JSON */
    size_t secret_len;
    const char *token_uri; /* override (provider param), or NULL */
} dp_gauth_cred_t;

/* Sync thread: when the snapshot version changed since the last call,
 * collects the credentials of every `vertex` provider and hands them to
 * dp_gauth_set_credentials() (no-op when the set did not change). Cheap
 * when nothing changed; never blocks on the network. */
void dp_gauth_on_snapshot(void);

/* Replaces the set of credentials tokens are kept for. New or changed ones
 * are fetched at once; removed ones are dropped. Starts the gauth thread on
 * first use (and registers dp_gauth_stop with atexit). Returns 0 or
 * SL_ENOMEM / SL_EINTERNAL. */
int dp_gauth_set_credentials(const dp_gauth_cred_t *creds, size_t n);

/* Worker: the current access token of (provider, cred_id), copied into pool
 * memory, and the account's project_id (empty when the account has none).
 * Returns 0, or SL_EUNAVAIL when no usable token is held (not fetched yet,
 * expired, failing, or the credential is not a valid service account) with
 * *why (when not NULL) set to a lower-case explanation in pool memory. */
int dp_gauth_token(h2o_mem_pool_t *pool, const char *provider, const char *cred_id, h2o_iovec_t *token,
                   h2o_iovec_t *project, const char **why);

/* Worker: the provider answered 401 to a request made with the current
 * token of (provider, cred_id). Returns 1 when the token will be renewed
 * at once (the gauth thread drops it within a second and fetches another;
 * requests meanwhile find no usable token), 0 when it will not: no token
 * is held, or a refusal already renewed it within the last minute, so the
 * account itself is refused. Never blocks. */
int dp_gauth_refused(const char *provider, const char *cred_id);

/* Stops the gauth thread and frees everything (idempotent). */
void dp_gauth_stop(void);

/* --- pure helpers (exposed for tests) --------------------------------- */

/* A parsed service account. Owned by the caller: dp_gauth_sa_free(). */
typedef struct dp_gauth_sa {
    char *client_email;
    char *private_key_id; /* NULL when absent */
    char *token_uri;      /* the account's, or Google's default */
    char *project_id;     /* NULL when absent */
    EVP_PKEY *key;
} dp_gauth_sa_t;

/* Parses a service-account JSON. Returns 0, or SL_EINVAL with err (never
 * quoting the key). */
int dp_gauth_sa_parse(const char *json, size_t len, dp_gauth_sa_t *out, sl_err_t *err);
void dp_gauth_sa_free(dp_gauth_sa_t *sa);

/* The token request body "grant_type=...&assertion=<JWT>" for sa, with the
 * assertion's audience token_uri, issued at unix time now. *body is
 * malloc'd. Returns 0 or an SL_E* code with err. */
int dp_gauth_request_body(const dp_gauth_sa_t *sa, const char *token_uri, int64_t now, char **body, sl_err_t *err);

/* Reads a token endpoint answer {"access_token","expires_in",...}.
 * Returns 0 with *token malloc'd (printable ASCII only) and *expires_in
 * (seconds, > 0), or SL_EINVAL with err (for an OAuth error body, its
 * "error" and "error_description"). */
int dp_gauth_parse_token_response(const char *body, size_t len, char **token, int64_t *expires_in, sl_err_t *err);

/* Scheduling of a token valid for expires_in seconds from when it was
 * requested: refresh after this many ms (5 minutes ahead of expiry for
 * long-lived tokens, half-way for short ones)... */
int64_t dp_gauth_refresh_after_ms(int64_t expires_in);
/* ...and stop handing it out after this many ms (a safety margin before
 * expiry, always later than the refresh). */
int64_t dp_gauth_usable_ms(int64_t expires_in);
/* Delay before retrying after the n-th consecutive failure (n >= 1):
 * exponential from 1 s up to 60 s, with +-20% jitter taken from rnd. */
int64_t dp_gauth_retry_after_ms(int failures, uint64_t rnd);

#endif
