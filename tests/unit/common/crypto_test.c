/* Tests for common/sl_crypto.c: key secrets, hashing, sealing, files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sl_crypto.h"

static void test_vkey_format_and_uniqueness(void **state)
{
    char a[SL_KEY_SECRET_LEN + 1], b[SL_KEY_SECRET_LEN + 1];
    assert_int_equal(sl_vkey_generate(a), 0);
    assert_int_equal(sl_vkey_generate(b), 0);
    assert_int_equal(strlen(a), 53);
    assert_memory_equal(a, "sk-sluice-", 10);
    for (size_t i = 10; i < 53; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    assert_string_not_equal(a, b);
}

static void test_hmac_known_vector(void **state)
{
    /* RFC 4231 test case 2 */
    uint8_t out[32];
    char hex[65];
    sl_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, out);
    sl_hex_encode(out, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_vkey_hash_depends_on_pepper(void **state)
{
    uint8_t m1[32] = {1}, m2[32] = {2}, p1[32], p2[32], h1[32], h2[32], h3[32];
    sl_derive_pepper(m1, p1);
    sl_derive_pepper(m2, p2);
    sl_vkey_hash(p1, "sk-sluice-x", 11, h1);
    sl_vkey_hash(p2, "sk-sluice-x", 11, h2);
    sl_vkey_hash(p1, "sk-sluice-x", 11, h3);
    assert_memory_not_equal(h1, h2, 32);
    assert_memory_equal(h1, h3, 32);
}

static void test_seal_roundtrip_and_tamper(void **state)
{
    uint8_t key[32], other[32], sealed[64 + SL_SEAL_OVERHEAD], opened[64];
    const char *msg = "provider secret";
    size_t n = strlen(msg);
    sl_derive_credential_key((const uint8_t[32]){7}, key);
    sl_derive_credential_key((const uint8_t[32]){8}, other);
    assert_int_equal(sl_seal(key, "aad", 3, msg, n, sealed), 0);
    assert_memory_not_equal(sealed + 12, msg, n);
    assert_int_equal(sl_open(key, "aad", 3, sealed, n + SL_SEAL_OVERHEAD, opened), 0);
    assert_memory_equal(opened, msg, n);
    assert_int_equal(sl_open(other, "aad", 3, sealed, n + SL_SEAL_OVERHEAD, opened), SL_ECRYPTO);
    assert_int_equal(sl_open(key, "aab", 3, sealed, n + SL_SEAL_OVERHEAD, opened), SL_ECRYPTO);
    sealed[14] ^= 1;
    assert_int_equal(sl_open(key, "aad", 3, sealed, n + SL_SEAL_OVERHEAD, opened), SL_ECRYPTO);
    assert_int_equal(sl_open(key, NULL, 0, sealed, 10, opened), SL_EINVAL);
}

static void test_master_key_file(void **state)
{
    char path[] = "/tmp/sl_crypto_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    assert_int_equal(write(fd, hex, strlen(hex)), (ssize_t)strlen(hex));
    close(fd);
    uint8_t key[32];
    sl_err_t err;
    assert_int_equal(sl_read_master_key(path, key, &err), 0);
    assert_int_equal(key[1], 0x11);
    assert_int_equal(key[31], 0xff);
    FILE *f = fopen(path, "w");
    fputs("not hex\n", f);
    fclose(f);
    assert_int_equal(sl_read_master_key(path, key, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "64 hex"));
    unlink(path);
    assert_int_equal(sl_read_master_key(path, key, &err), SL_EIO);
}

static void test_b64url_and_hex(void **state)
{
    char out[16];
    uint8_t raw[3];
    sl_b64url_encode((const uint8_t *)"\xfb\xff", 2, out);
    assert_string_equal(out, "-_8");
    assert_int_equal(sl_hex_decode("0aFf10", 6, raw, 3), 0);
    assert_int_equal(raw[1], 0xff);
    assert_int_equal(sl_hex_decode("0g", 2, raw, 1), SL_EINVAL);
    assert_true(sl_ct_equal("abc", "abc", 3));
    assert_false(sl_ct_equal("abc", "abd", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vkey_format_and_uniqueness), cmocka_unit_test(test_hmac_known_vector),
        cmocka_unit_test(test_vkey_hash_depends_on_pepper), cmocka_unit_test(test_seal_roundtrip_and_tamper),
        cmocka_unit_test(test_master_key_file),           cmocka_unit_test(test_b64url_and_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
