/*
 * cp_auth.c - bearer token checks for the Admin and Sync services.
 */
#include "cp_auth.h"
#include "sl_crypto.h"
#include "sl_grpc.h"

#include <string.h>

#include <openssl/crypto.h>

int cp_auth_init(cp_auth_t *a, const char *admin_token_file, const char *node_token_file, sl_err_t *err)
{
    memset(a, 0, sizeof(*a));
    int rc = sl_read_token_file(admin_token_file, a->admin_token, sizeof(a->admin_token), err);
    if (rc == 0)
        rc = sl_read_token_file(node_token_file, a->node_token, sizeof(a->node_token), err);
    if (rc == 0 && strcmp(a->admin_token, a->node_token) == 0)
        rc = sl_err_set(err, SL_EINVAL, "the admin token and the node token must differ");
    if (rc != 0)
        cp_auth_wipe(a);
    return rc;
}

void cp_auth_wipe(cp_auth_t *a)
{
    OPENSSL_cleanse(a, sizeof(*a));
}

int cp_auth_check(const cp_auth_t *a, cp_auth_kind_t need, const grpc_metadata_array *md, const char *method,
                  sl_err_t *err)
{
    const char *token = need == CP_AUTH_ADMIN ? a->admin_token : a->node_token;
    if (token[0] != '\0' && sl_grpc_bearer_ok(md, token))
        return 0;
    return sl_err_set(err, SL_EPERM, "%s requires a valid \"authorization: Bearer\" %s token", method,
                      need == CP_AUTH_ADMIN ? "admin" : "node");
}
