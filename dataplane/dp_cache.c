/*
 * dp_cache.c - the sealed snapshot cache file (see dp_cache.h).
 *
 * The file is replaced atomically, never edited in place: a crash leaves
 * either the old or the new file, plus perhaps a stale FILE.tmp that the
 * next write truncates. The key never touches disk; it is derived from the
 * node token each time.
 */
#include "dp_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl_crypto.h"

#define MAGIC "SLSNAPC\0"
#define HEADER_LEN 12
#define FORMAT_VERSION 1
#define MAX_FILE ((size_t)512 * 1024 * 1024)

static void header(uint8_t h[HEADER_LEN])
{
    memcpy(h, MAGIC, 8);
    h[8] = 0;
    h[9] = 0;
    h[10] = 0;
    h[11] = FORMAT_VERSION;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n-- > 0)
        *v++ = 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes the rename durable. Best effort. */
static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int dp_cache_write(const char *path, const char *node_token, const uint8_t *data, size_t len, sl_err_t *err)
{
    if (len > MAX_FILE - HEADER_LEN - SL_SEAL_OVERHEAD)
        return sl_err_set(err, SL_ETOOBIG, "snapshot of %zu bytes is too large to cache", len);
    size_t total = HEADER_LEN + len + SL_SEAL_OVERHEAD;
    uint8_t *buf = malloc(total);
    char *tmp = NULL;
    int fd = -1, rc;
    if (buf == NULL || asprintf(&tmp, "%s.tmp", path) < 0) {
        tmp = NULL;
        rc = sl_err_set(err, SL_ENOMEM, "out of memory writing the snapshot cache");
        goto out;
    }
    uint8_t key[32];
    sl_derive_cache_key(node_token, key);
    header(buf);
    rc = sl_seal(key, buf, HEADER_LEN, data, len, buf + HEADER_LEN);
    wipe(key, sizeof(key));
    if (rc != 0) {
        rc = sl_err_set(err, SL_ECRYPTO, "could not seal the snapshot cache");
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = sl_err_set(err, SL_EIO, "could not create \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    /* a pre-existing tmp file keeps its mode under O_TRUNC */
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, total) != 0 || fsync(fd) != 0) {
        rc = sl_err_set(err, SL_EIO, "could not write \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = sl_err_set(err, SL_EIO, "could not write \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sl_err_set(err, SL_EIO, "could not rename \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
        goto out;
    }
    fsync_dir_of(path);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(buf);
    return rc;
}

int dp_cache_read(const char *path, const char *node_token, Sluice__Sync__V1__Snapshot **out, sl_err_t *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return sl_err_set(err, SL_ENOTFOUND, "no snapshot cache at \"%s\"", path);
        return sl_err_set(err, SL_EIO, "could not open \"%s\": %s", path, strerror(errno));
    }
    uint8_t *buf = NULL, *plain = NULL;
    int rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = sl_err_set(err, SL_EIO, "could not stat \"%s\": %s", path, strerror(errno));
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (st.st_size < 0 || size < HEADER_LEN + SL_SEAL_OVERHEAD || size > MAX_FILE) {
        rc = sl_err_set(err, SL_EINVAL, "\"%s\" is not a snapshot cache (size %lld)", path, (long long)st.st_size);
        goto out;
    }
    if ((buf = malloc(size)) == NULL || (plain = malloc(size)) == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory reading the snapshot cache");
        goto out;
    }
    size_t off = 0;
    while (off < size) {
        ssize_t n = read(fd, buf + off, size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = sl_err_set(err, SL_EIO, "could not read \"%s\": %s", path, n < 0 ? strerror(errno) : "short read");
            goto out;
        }
        off += (size_t)n;
    }
    uint8_t h[HEADER_LEN];
    header(h);
    if (memcmp(buf, h, 8) != 0) {
        rc = sl_err_set(err, SL_EINVAL, "\"%s\" is not a snapshot cache", path);
        goto out;
    }
    if (memcmp(buf, h, HEADER_LEN) != 0) {
        rc = sl_err_set(err, SL_EINVAL, "\"%s\" has an unknown cache format", path);
        goto out;
    }
    uint8_t key[32];
    sl_derive_cache_key(node_token, key);
    rc = sl_open(key, buf, HEADER_LEN, buf + HEADER_LEN, size - HEADER_LEN, plain);
    wipe(key, sizeof(key));
    if (rc != 0) {
        rc = sl_err_set(err, SL_ECRYPTO, "\"%s\" could not be opened: wrong node token or damaged file", path);
        goto out;
    }
    size_t plen = size - HEADER_LEN - SL_SEAL_OVERHEAD;
    Sluice__Sync__V1__Snapshot *m = sluice__sync__v1__snapshot__unpack(NULL, plen, plain);
    if (m == NULL || !m->full || m->version <= 0) {
        if (m != NULL)
            sluice__sync__v1__snapshot__free_unpacked(m, NULL);
        rc = sl_err_set(err, SL_EINVAL, "\"%s\" holds no full snapshot", path);
        goto out;
    }
    *out = m;
    rc = 0;
out:
    if (plain != NULL)
        wipe(plain, size);
    free(plain);
    free(buf);
    close(fd);
    return rc;
}
