/* cache_test.c - the sealed snapshot cache file (dataplane/dp_cache.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dp_cache.h"
#include "dp_snapshot.h"
#include "sl_err.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/cache_test_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/snapshot.cache", dir);
    return dp_snapshot_init(1);
}

static int teardown(void **state)
{
    char tmp[160];
    unlink(path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    rmdir(dir);
    dp_snapshot_shutdown();
    return 0;
}

/* A full snapshot with one key, one provider with a credential, one model. */
static void pack_sample(int64_t version, uint8_t **buf, size_t *len)
{
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = version;
    m.full = 1;
    uint8_t pepper[32], hash[32];
    memset(pepper, 7, 32);
    memset(hash, 0x42, 32);
    m.key_pepper.data = pepper;
    m.key_pepper.len = 32;
    Sluice__Config__V1__VirtualKey k = SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT, *kp = &k;
    k.id = "vk_acme_prod";
    k.tenant_id = "acme_corp";
    k.key_hash.data = hash;
    k.key_hash.len = 32;
    m.keys = &kp;
    m.n_keys = 1;
    Sluice__Config__V1__Credential c = SLUICE__CONFIG__V1__CREDENTIAL__INIT, *cp = &c;
    c.id = "primary";
    c.secret.data = (uint8_t *)"sk-real-upstream-secret";
    c.secret.len = strlen("sk-real-upstream-secret");
    c.weight = 1;
    Sluice__Config__V1__Provider p = SLUICE__CONFIG__V1__PROVIDER__INIT, *pp = &p;
    p.name = "openai";
    p.kind = "openai";
    p.base_url = "https://api.openai.com/v1";
    p.credentials = &cp;
    p.n_credentials = 1;
    m.providers = &pp;
    m.n_providers = 1;
    Sluice__Config__V1__ModelPrice mp = SLUICE__CONFIG__V1__MODEL_PRICE__INIT, *mpp = &mp;
    mp.provider = "openai";
    mp.model = "gpt-4o";
    mp.input_micro_per_mtok = 2500000;
    m.models = &mpp;
    m.n_models = 1;
    *len = sluice__sync__v1__snapshot__get_packed_size(&m);
    *buf = malloc(*len);
    sluice__sync__v1__snapshot__pack(&m, *buf);
}

static uint8_t *read_all(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_all(const char *p, const uint8_t *b, size_t len)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

static void test_round_trip(void **state)
{
    uint8_t *buf;
    size_t len;
    pack_sample(42, &buf, &len);
    sl_err_t err = {0};
    assert_int_equal(dp_cache_write(path, "node-token-1", buf, len, &err), 0);
    free(buf);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);

    /* the credential is not readable in the file */
    size_t flen;
    uint8_t *file = read_all(path, &flen);
    assert_null(memmem(file, flen, "sk-real-upstream-secret", 23));
    assert_null(memmem(file, flen, "vk_acme_prod", 12));
    free(file);

    Sluice__Sync__V1__Snapshot *m = NULL;
    assert_int_equal(dp_cache_read(path, "node-token-1", &m, &err), 0);
    assert_non_null(m);
    assert_int_equal(m->version, 42);
    assert_int_equal(m->n_keys, 1);
    assert_string_equal(m->keys[0]->id, "vk_acme_prod");

    /* it serves: apply it and look the key up */
    assert_int_equal(dp_snapshot_apply(m), 0);
    dp_snapshot_t *s = dp_snapshot_acquire();
    uint8_t hash[32];
    memset(hash, 0x42, 32);
    assert_non_null(dp_snapshot_find_key(s, hash));
    assert_string_equal(dp_snapshot_find_provider(s, "openai", 6)->credentials[0].secret, "sk-real-upstream-secret");
    dp_snapshot_release(s);
}

static void test_pack_full_to_cache(void **state)
{
    uint8_t *buf;
    size_t len;
    pack_sample(7, &buf, &len);
    assert_int_equal(dp_snapshot_apply(sluice__sync__v1__snapshot__unpack(NULL, len, buf)), 0);
    free(buf);
    assert_int_equal(dp_snapshot_pack_full(&buf, &len), 0);
    sl_err_t err = {0};
    assert_int_equal(dp_cache_write(path, "tok", buf, len, &err), 0);
    free(buf);
    /* overwriting keeps the mode, even over a stale tmp file with another mode */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    write_all(tmp, (const uint8_t *)"x", 1);
    chmod(tmp, 0644);
    assert_int_equal(dp_snapshot_pack_full(&buf, &len), 0);
    assert_int_equal(dp_cache_write(path, "tok", buf, len, &err), 0);
    free(buf);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    Sluice__Sync__V1__Snapshot *m = NULL;
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), 0);
    assert_int_equal(m->version, 7);
    assert_int_equal(m->key_pepper.len, 32);
    sluice__sync__v1__snapshot__free_unpacked(m, NULL);
}

static void test_wrong_token(void **state)
{
    uint8_t *buf;
    size_t len;
    pack_sample(1, &buf, &len);
    sl_err_t err = {0};
    assert_int_equal(dp_cache_write(path, "right-token", buf, len, &err), 0);
    free(buf);
    Sluice__Sync__V1__Snapshot *m = NULL;
    assert_int_equal(dp_cache_read(path, "wrong-token", &m, &err), SL_ECRYPTO);
    assert_null(m);
    assert_non_null(strstr(err.msg, "wrong node token"));
}

static void test_tampered(void **state)
{
    uint8_t *buf;
    size_t len;
    pack_sample(1, &buf, &len);
    sl_err_t err = {0};
    assert_int_equal(dp_cache_write(path, "tok", buf, len, &err), 0);
    free(buf);
    size_t flen;
    uint8_t *file = read_all(path, &flen);
    Sluice__Sync__V1__Snapshot *m = NULL;
    /* flip one bit in the header (AAD), nonce, ciphertext and tag in turn */
    size_t at[] = {11, 12, 40, flen - 1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        file[at[i]] ^= 1;
        write_all(path, file, flen);
        assert_int_not_equal(dp_cache_read(path, "tok", &m, &err), 0);
        assert_null(m);
        file[at[i]] ^= 1;
    }
    /* truncated */
    write_all(path, file, flen - 5);
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), SL_ECRYPTO);
    write_all(path, file, 10);
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), SL_EINVAL);
    /* intact again */
    write_all(path, file, flen);
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), 0);
    sluice__sync__v1__snapshot__free_unpacked(m, NULL);
    free(file);
}

static void test_missing_and_garbage(void **state)
{
    Sluice__Sync__V1__Snapshot *m = NULL;
    sl_err_t err = {0};
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), SL_ENOTFOUND);
    write_all(path, (const uint8_t *)"this is not a cache file at all, not even close", 48);
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), SL_EINVAL);
    assert_null(m);
    /* a sealed delta is not a usable cache */
    Sluice__Sync__V1__Snapshot d = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    d.version = 3;
    d.base_version = 2;
    uint8_t buf[64];
    size_t len = sluice__sync__v1__snapshot__pack(&d, buf);
    assert_int_equal(dp_cache_write(path, "tok", buf, len, &err), 0);
    assert_int_equal(dp_cache_read(path, "tok", &m, &err), SL_EINVAL);
    /* a directory that does not exist */
    assert_int_equal(dp_cache_write("/nonexistent-dir/x.cache", "tok", buf, len, &err), SL_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_full_to_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_garbage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
