/*
 * dp_cache.h - the snapshot cache file.
 *
 * Holds the last full configuration so a data plane can serve when the
 * control plane is unreachable at start. The file carries provider
 * credentials, so it is sealed with AES-256-GCM under a key derived from the
 * node token (sl_derive_cache_key), written atomically (FILE.tmp, mode 0600,
 * fsync, rename) and rejected whole when the token is wrong or a byte was
 * changed.
 *
 * Layout: "SLSNAPC\0" | u32 big-endian format version (1) | sealed
 * (nonce || ciphertext || tag) of a packed full Snapshot. The 12 header
 * bytes are the AAD.
 *
 * Sync thread only (any single thread: no shared state).
 */
#ifndef DP_CACHE_H
#define DP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sl_err.h"
#include "sluice/sync/v1/sync.pb-c.h"

/* Seals a packed full Snapshot (data, len) into path. Returns 0 or SL_EIO,
 * SL_ENOMEM, SL_ECRYPTO with err set. */
int dp_cache_write(const char *path, const char *node_token, const uint8_t *data, size_t len, sl_err_t *err);

/* Reads path. Returns 0 with *out an unpacked full Snapshot owned by the
 * caller (sluice__sync__v1__snapshot__free_unpacked); SL_ENOTFOUND when the
 * file does not exist; SL_ECRYPTO when the token is wrong or the file was
 * tampered with; SL_EINVAL when it is not a cache file; SL_EIO. */
int dp_cache_read(const char *path, const char *node_token, Sluice__Sync__V1__Snapshot **out, sl_err_t *err);

#endif
