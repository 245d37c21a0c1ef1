/*
 * cp_validate.h - input validation for admin writes, before any SQL runs.
 *
 * Checks mirror the table CHECKs of the schema (so users get a clear
 * INVALID_ARGUMENT instead of a constraint name) and add what SQL cannot
 * see (URL shape, JSON shape, duplicates within one document). Pure
 * functions: no I/O, no allocation except where noted.
 */
#ifndef CP_VALIDATE_H
#define CP_VALIDATE_H

#include <stddef.h>

#include "cp_pb.h"
#include "sl_err.h"

/* Tenant, virtual key and credential ids: ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$ */
int cp_valid_id(const char *s);
/* Provider names: ^[a-z0-9][a-z0-9_.-]{0,63}$ */
int cp_valid_provider_name(const char *s);
/* openai, azure_openai, openai_compatible, anthropic, bedrock, vertex */
int cp_valid_provider_kind(const char *s);

typedef struct cp_url {
    int https;
    char host[256];  /* without brackets for IPv6 literals */
    int port;        /* explicit or the scheme's default */
    char path[1024]; /* "" or starting with '/' */
} cp_url_t;

/* Parses http(s)://host[:port][/path]: no user info, query or fragment. */
int cp_parse_base_url(const char *s, cp_url_t *u, sl_err_t *err);

/* Canonical form of a JSON object (compact, keys sorted) for comparisons;
 * "" reads as "{}". Returns a malloc'd string (caller frees) or NULL with
 * err set ("<what> must be a JSON object"). */
char *cp_json_canon_object(const char *json, const char *what, sl_err_t *err);

int cp_validate_tenant(const cp_tenant_pb *t, sl_err_t *err);
int cp_validate_vkey(const cp_vkey_pb *k, sl_err_t *err);
int cp_validate_provider(const cp_provider_pb *p, sl_err_t *err);
int cp_validate_model(const cp_model_pb *m, sl_err_t *err);

/* Every entity, plus no entity listed twice. */
int cp_validate_document(const cp_doc_pb *d, sl_err_t *err);

/* Defaults applied to input that leaves a field empty. */
static inline const char *cp_tenant_time_zone(const char *tz)
{
    return tz != NULL && tz[0] != '\0' ? tz : "UTC";
}
/* A credential's id, or "key<N>" (1-based position) when it has none. */
void cp_cred_id(const char *id, size_t index, char *buf, size_t cap);

#endif
