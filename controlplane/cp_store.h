/*
 * cp_store.h - configuration entities in PostgreSQL <-> protobuf messages.
 *
 * Readers fill messages allocated in a caller's arena (borrowed until the
 * arena is freed). Writers expect the caller's transaction to hold the
 * config_state row lock (cp_store_lock_version) and to have bumped the
 * version; they write rows stamped with that version. All SQL is
 * parameterized; lists travel as JSON parameters.
 *
 * Threads: stateless; use each cp_db_t from one thread.
 */
#ifndef CP_STORE_H
#define CP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cp_arena.h"
#include "cp_db.h"
#include "cp_pb.h"
#include "sl_err.h"

/* Keys derived from the master key; the master key itself is not kept. */
typedef struct cp_keys {
    uint8_t pepper[32];      /* virtual key hashes */
    uint8_t cred_key[32];    /* provider credential sealing */
    char cred_key_id[24];    /* stored beside each ciphertext ("mk-" + 12 hex) */
} cp_keys_t;

void cp_keys_derive(const uint8_t master[32], cp_keys_t *k);
void cp_keys_wipe(cp_keys_t *k);

/* Which rows a reader returns. Zeroed: all rows. */
typedef struct cp_filter {
    const char *ids_json;   /* JSON array of ids ("provider/model" for models), or NULL for all */
    const char *after_id;   /* page after this id (NULL or "": from the start) */
    int limit;              /* 0: no limit */
    const char *tenant_id;  /* virtual keys of one tenant (NULL: any) */
} cp_filter_t;

/* Readers. *out is an arena array of *n messages ordered by id (bytewise). */
int cp_store_tenants(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_tenant_pb ***out, size_t *n,
                     sl_err_t *err);
int cp_store_vkeys(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_vkey_pb ***out, size_t *n, sl_err_t *err);
/* keys non-NULL: credentials are decrypted into Credential.secret (a
 * credential that cannot be decrypted is left out and logged). keys NULL:
 * secrets are left empty. */
int cp_store_providers(cp_db_t *db, const cp_filter_t *f, const cp_keys_t *keys, cp_arena_t *a,
                       cp_provider_pb ***out, size_t *n, sl_err_t *err);
int cp_store_models(cp_db_t *db, const cp_filter_t *f, cp_arena_t *a, cp_model_pb ***out, size_t *n, sl_err_t *err);

/* Locks config_state for this transaction and returns the current version. */
int cp_store_lock_version(cp_db_t *db, int64_t *version, sl_err_t *err);
/* The current version without locking. */
int cp_store_version(cp_db_t *db, int64_t *version, sl_err_t *err);
/* sluice_bump_version(): the new version (NOTIFY goes out at commit). */
int cp_store_bump(cp_db_t *db, int64_t *version, sl_err_t *err);
/* One config_changes row. detail_json may be NULL ("{}"). */
int cp_store_record_change(cp_db_t *db, int64_t version, const char *kind, const char *id, const char *op,
                           const char *detail_json, sl_err_t *err);

/* Writers (insert or update), each also replacing the entity's quotas. */
int cp_store_put_tenant(cp_db_t *db, const cp_tenant_pb *t, int64_t version, sl_err_t *err);
/* hash and prefix are used when the key is created; an existing key keeps
 * its own. */
int cp_store_put_vkey(cp_db_t *db, const cp_vkey_pb *k, const uint8_t hash[32], const char *prefix, int64_t version,
                      sl_err_t *err);
/* Seals each credential's secret under keys; with replace_credentials the
 * provider's credentials become exactly the listed ones. */
int cp_store_put_provider(cp_db_t *db, const cp_provider_pb *p, const cp_keys_t *keys, int replace_credentials,
                          int64_t version, sl_err_t *err);
int cp_store_put_model(cp_db_t *db, const cp_model_pb *m, int64_t version, sl_err_t *err);
/* Sets revoked_at (now) and version on a key that is not revoked yet. */
int cp_store_revoke_vkey(cp_db_t *db, const char *id, int64_t version, sl_err_t *err);

/* JSON array of the n strings (malloc'd; caller frees). */
char *cp_store_json_strings(const char *const *s, size_t n);

#endif
