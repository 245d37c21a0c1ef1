/*
 * cp_auth.h - who may call what.
 *
 * Every RPC passes through cp_auth_check before its message is read: Admin
 * methods need the admin bearer token, Sync methods the node token, both
 * compared in constant time. Roles and the audit record of admin writes
 * hook in here.
 *
 * Threads: the tokens are immutable after cp_auth_init; any thread.
 */
#ifndef CP_AUTH_H
#define CP_AUTH_H

#include <grpc/grpc.h>

#include "sl_err.h"

typedef enum { CP_AUTH_ADMIN, CP_AUTH_NODE } cp_auth_kind_t;

typedef struct cp_auth {
    char admin_token[512];
    char node_token[512];
} cp_auth_t;

/* Reads both token files. */
int cp_auth_init(cp_auth_t *a, const char *admin_token_file, const char *node_token_file, sl_err_t *err);
void cp_auth_wipe(cp_auth_t *a);

/* 0 when md carries the bearer token the method kind requires, else
 * SL_EPERM with err set. method is for the message only. */
int cp_auth_check(const cp_auth_t *a, cp_auth_kind_t need, const grpc_metadata_array *md, const char *method,
                  sl_err_t *err);

#endif
