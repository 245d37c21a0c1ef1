/* route_test.c - model resolution and credential choice (dataplane/dp_route.c)
 * against snapshots built from Snapshot messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_route.h"
#include "dp_snapshot.h"
#include "sl_err.h"

typedef struct key_spec {
    const char *id;
    uint8_t fill;
    const char *allowed_providers[4];
    const char *allowed_models[4];
    const char *fallbacks[4]; /* "provider/model" */
} key_spec_t;

static uint8_t pepper[32];

/* Builds, packs and unpacks a full snapshot so dp_snapshot_apply owns it. */
static void publish(int64_t version, const key_spec_t *keys, size_t nk)
{
    static const struct {
        const char *name, *kind, *url;
        int ncred;
    } provs[] = {
        {"openai", "openai", "https://api.openai.com/v1", 2},
        {"local", "openai_compatible", "http://127.0.0.1:8000/v1", 1},
        /* a kind without a translator (routing skips it) */
        {"anthropic", "not_yet_supported", "https://api.anthropic.com", 1},
        {"empty", "openai", "http://127.0.0.1:9/v1", 0},
    };
    static const struct {
        const char *provider, *model;
    } models[] = {
        {"anthropic", "shared-model"}, {"local", "llama-3"},      {"local", "shared-model"},
        {"openai", "gpt-4o"},          {"openai", "shared-model"}, {"empty", "lonely"},
    };
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = version;
    m.full = 1;
    m.generated_unix_ms = 1000;
    m.key_pepper.data = pepper;
    m.key_pepper.len = 32;

    Sluice__Config__V1__Provider pv[4], *pp[4];
    Sluice__Config__V1__Credential cv[4][2], *cp[4][2];
    static char *secrets[2] = {"sk-a", "sk-b"};
    for (size_t i = 0; i < 4; i++) {
        sluice__config__v1__provider__init(&pv[i]);
        pv[i].name = (char *)provs[i].name;
        pv[i].kind = (char *)provs[i].kind;
        pv[i].base_url = (char *)provs[i].url;
        for (int c = 0; c < provs[i].ncred; c++) {
            sluice__config__v1__credential__init(&cv[i][c]);
            cv[i][c].id = c == 0 ? "a" : "b";
            cv[i][c].secret.data = (uint8_t *)secrets[c];
            cv[i][c].secret.len = 4;
            cv[i][c].weight = c == 0 ? 1 : 3;
            cp[i][c] = &cv[i][c];
        }
        pv[i].credentials = cp[i];
        pv[i].n_credentials = (size_t)provs[i].ncred;
        pp[i] = &pv[i];
    }
    m.providers = pp;
    m.n_providers = 4;

    Sluice__Config__V1__ModelPrice mv[6], *mp[6];
    for (size_t i = 0; i < 6; i++) {
        sluice__config__v1__model_price__init(&mv[i]);
        mv[i].provider = (char *)models[i].provider;
        mv[i].model = (char *)models[i].model;
        mv[i].input_micro_per_mtok = 1000000;
        mv[i].output_micro_per_mtok = 2000000;
        mp[i] = &mv[i];
    }
    m.models = mp;
    m.n_models = 6;

    Sluice__Config__V1__VirtualKey kv[8], *kp[8];
    uint8_t hashes[8][32];
    Sluice__Config__V1__Target tv[8][4], *tp[8][4];
    char prov[8][4][64], mod[8][4][64];
    for (size_t i = 0; i < nk; i++) {
        sluice__config__v1__virtual_key__init(&kv[i]);
        kv[i].id = (char *)keys[i].id;
        kv[i].tenant_id = "t1";
        memset(hashes[i], keys[i].fill, 32);
        kv[i].key_hash.data = hashes[i];
        kv[i].key_hash.len = 32;
        size_t n = 0;
        while (n < 4 && keys[i].allowed_providers[n] != NULL)
            n++;
        kv[i].allowed_providers = (char **)keys[i].allowed_providers;
        kv[i].n_allowed_providers = n;
        n = 0;
        while (n < 4 && keys[i].allowed_models[n] != NULL)
            n++;
        kv[i].allowed_models = (char **)keys[i].allowed_models;
        kv[i].n_allowed_models = n;
        n = 0;
        while (n < 4 && keys[i].fallbacks[n] != NULL) {
            const char *s = keys[i].fallbacks[n], *slash = strchr(s, '/');
            snprintf(prov[i][n], 64, "%.*s", (int)(slash - s), s);
            snprintf(mod[i][n], 64, "%s", slash + 1);
            sluice__config__v1__target__init(&tv[i][n]);
            tv[i][n].provider = prov[i][n];
            tv[i][n].model = mod[i][n];
            tp[i][n] = &tv[i][n];
            n++;
        }
        kv[i].fallbacks = tp[i];
        kv[i].n_fallbacks = n;
        kp[i] = &kv[i];
    }
    m.keys = kp;
    m.n_keys = nk;

    size_t len = sluice__sync__v1__snapshot__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    sluice__sync__v1__snapshot__pack(&m, buf);
    Sluice__Sync__V1__Snapshot *u = sluice__sync__v1__snapshot__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(u);
    assert_int_equal(dp_snapshot_apply(u), 0);
}

static const key_spec_t keys[] = {
    {.id = "all", .fill = 1},
    {.id = "openai_only", .fill = 2, .allowed_providers = {"openai"}},
    {.id = "prefers_openai", .fill = 3, .fallbacks = {"openai/gpt-4o", "local/llama-3"}},
    {.id = "pending_anthropic", .fill = 4, .allowed_providers = {"bedrock", "anthropic", "local"},
     .fallbacks = {"bedrock/claude", "local/llama-3"}},
    {.id = "mini_only", .fill = 5, .allowed_models = {"gpt-4o-mini", "local/llama-3"}},
    {.id = "anthropic_only", .fill = 6, .allowed_providers = {"anthropic"}},
    {.id = "skips", .fill = 7, .allowed_providers = {"openai", "local"},
     .fallbacks = {"anthropic/shared-model", "openai/gpt-4o", "openai/gpt-4o", "local/llama-3"}},
    {.id = "chain", .fill = 8, .fallbacks = {"anthropic/shared-model", "empty/lonely", "local/llama-3"}},
};

static dp_snapshot_t *snap;

static const dp_key_t *key(uint8_t fill)
{
    uint8_t h[32];
    memset(h, fill, 32);
    const dp_key_t *k = dp_snapshot_find_key(snap, h);
    assert_non_null(k);
    return k;
}

static int setup(void **state)
{
    assert_int_equal(dp_snapshot_init(1), 0);
    publish(1, keys, sizeof(keys) / sizeof(keys[0]));
    snap = dp_snapshot_acquire();
    assert_non_null(snap);
    return 0;
}

static int teardown(void **state)
{
    dp_snapshot_release(snap);
    dp_snapshot_offline(0);
    dp_snapshot_shutdown();
    return 0;
}

static int route(uint8_t fill, const char *model, dp_route_t *r, dp_error_t *e)
{
    memset(r, 0, sizeof(*r));
    memset(e, 0, sizeof(*e));
    return dp_route_resolve(snap, key(fill), model, strlen(model), r, e);
}

#define ASSERT_ROUTE(FILL, MODEL, WANT_PROVIDER, WANT_MODEL, PRICED)                                        \
    do {                                                                                                       \
        dp_route_t r_;                                                                                         \
        dp_error_t e_;                                                                                         \
        int rc_ = route((FILL), (MODEL), &r_, &e_);                                                            \
        if (rc_ != 0)                                                                                          \
            fail_msg("%s: %d %s", (MODEL), e_.status, e_.code);                                                \
        assert_string_equal(r_.provider->name, (WANT_PROVIDER));                                               \
        assert_int_equal(r_.model_len, strlen(WANT_MODEL));                                                    \
        assert_memory_equal(r_.model, (WANT_MODEL), r_.model_len);                                             \
        assert_true((r_.price != NULL) == (PRICED));                                                           \
        assert_non_null(r_.ops);                                                                               \
    } while (0)

#define ASSERT_DENIED(FILL, MODEL, WANT_STATUS, WANT_CODE)                                                     \
    do {                                                                                                       \
        dp_route_t r_;                                                                                         \
        dp_error_t e_;                                                                                         \
        assert_true(route((FILL), (MODEL), &r_, &e_) < 0);                                                     \
        assert_int_equal(e_.status, (WANT_STATUS));                                                           \
        assert_string_equal(e_.code, (WANT_CODE));                                                             \
    } while (0)

static void test_explicit_provider_prefix(void **state)
{
    ASSERT_ROUTE(1, "openai/gpt-4o", "openai", "gpt-4o", 1);
    ASSERT_ROUTE(1, "local/shared-model", "local", "shared-model", 1);
    /* a configured provider with a model it has no price for: forwarded, unpriced */
    ASSERT_ROUTE(1, "openai/gpt-5-preview", "openai", "gpt-5-preview", 0);
    ASSERT_DENIED(2, "local/llama-3", 403, "provider_not_allowed");
    /* kinds without a translator yet */
    ASSERT_DENIED(1, "anthropic/shared-model", 503, "provider_unavailable");
}

static void test_prefix_that_is_not_a_provider(void **state)
{
    /* "meta-llama/..." names no provider: the whole string is a bare model,
     * unknown to the catalog, forwarded to the key's default provider */
    ASSERT_ROUTE(2, "meta-llama/Llama-3-8b", "openai", "meta-llama/Llama-3-8b", 0);
    /* a provider the key names but that is not configured yet */
    ASSERT_DENIED(4, "bedrock/claude", 503, "provider_unavailable");
}

static void test_bare_model_catalog(void **state)
{
    ASSERT_ROUTE(1, "gpt-4o", "openai", "gpt-4o", 1);
    ASSERT_ROUTE(1, "llama-3", "local", "llama-3", 1);
    /* several providers serve it: provider name order, skipping kinds
     * without a translator (anthropic) */
    ASSERT_ROUTE(1, "shared-model", "local", "shared-model", 1);
    ASSERT_ROUTE(2, "shared-model", "openai", "shared-model", 1);
    /* the key's first fallback provider serving the model wins over name order */
    ASSERT_ROUTE(3, "shared-model", "openai", "shared-model", 1);
    ASSERT_DENIED(2, "llama-3", 403, "provider_not_allowed");
    ASSERT_DENIED(6, "gpt-4o", 403, "provider_not_allowed");
}

static void test_unknown_model_default_provider(void **state)
{
    /* fallbacks first (bedrock is skipped: not configured) */
    ASSERT_ROUTE(4, "some-new-model", "local", "some-new-model", 0);
    ASSERT_ROUTE(3, "some-new-model", "openai", "some-new-model", 0);
    /* allow-list */
    ASSERT_ROUTE(2, "some-new-model", "openai", "some-new-model", 0);
    /* nothing usable: anthropic has no translator yet */
    ASSERT_DENIED(6, "some-new-model", 503, "provider_unavailable");
}

static void test_allowed_models(void **state)
{
    ASSERT_DENIED(5, "gpt-4o", 403, "model_not_allowed");
    ASSERT_DENIED(5, "openai/gpt-4o", 403, "model_not_allowed");
    ASSERT_ROUTE(5, "llama-3", "local", "llama-3", 1);
    ASSERT_ROUTE(5, "local/llama-3", "local", "llama-3", 1);
    ASSERT_ROUTE(5, "openai/gpt-4o-mini", "openai", "gpt-4o-mini", 0);
}

static void test_provider_allowed(void **state)
{
    const dp_key_t *k = key(2);
    assert_true(dp_route_provider_allowed(k, "openai", 6));
    assert_false(dp_route_provider_allowed(k, "openai", 5));
    assert_false(dp_route_provider_allowed(k, "local", 5));
    assert_true(dp_route_provider_allowed(key(1), "anything", 8));
}

static void test_credential_weights(void **state)
{
    const dp_provider_t *p = dp_snapshot_find_provider(snap, "openai", 6);
    assert_non_null(p);
    assert_int_equal(p->total_weight, 4);
    int counts[2] = {0, 0};
    for (uint64_t r = 0; r < 4000; r++) {
        const dp_credential_t *c = dp_route_pick_credential(p, r * 2654435761u);
        counts[strcmp(c->id, "a") == 0 ? 0 : 1]++;
    }
    assert_true(counts[0] > 800 && counts[0] < 1200);
    assert_true(counts[1] > 2800 && counts[1] < 3200);
    assert_null(dp_route_pick_credential(dp_snapshot_find_provider(snap, "empty", 5), 7));
}

/* The request's targets: the resolved route, then the key's fallbacks. */
static size_t targets(uint8_t fill, const char *model, dp_route_t *out, size_t cap)
{
    dp_route_t r;
    dp_error_t e;
    assert_int_equal(route(fill, model, &r, &e), 0);
    return dp_route_targets(snap, key(fill), &r, out, cap);
}

#define ASSERT_TARGET(T, WANT_PROVIDER, WANT_MODEL, PRICED)                                                   \
    do {                                                                                                       \
        assert_string_equal((T).provider->name, (WANT_PROVIDER));                                              \
        assert_int_equal((T).model_len, strlen(WANT_MODEL));                                                   \
        assert_memory_equal((T).model, (WANT_MODEL), (T).model_len);                                           \
        assert_true(((T).price != NULL) == (PRICED));                                                          \
        assert_non_null((T).ops);                                                                              \
    } while (0)

static void test_targets(void **state)
{
    dp_route_t t[DP_MAX_TARGETS];
    /* the resolved target repeats the first fallback: not tried twice */
    assert_int_equal(targets(3, "gpt-4o", t, DP_MAX_TARGETS), 2);
    ASSERT_TARGET(t[0], "openai", "gpt-4o", 1);
    ASSERT_TARGET(t[1], "local", "llama-3", 1);
    /* a fallback to an unconfigured provider (bedrock) is skipped */
    assert_int_equal(targets(4, "local/shared-model", t, DP_MAX_TARGETS), 2);
    ASSERT_TARGET(t[0], "local", "shared-model", 1);
    ASSERT_TARGET(t[1], "local", "llama-3", 1);
    /* a provider the key may not use, then duplicates */
    assert_int_equal(targets(7, "openai/gpt-4o", t, DP_MAX_TARGETS), 2);
    ASSERT_TARGET(t[0], "openai", "gpt-4o", 1);
    ASSERT_TARGET(t[1], "local", "llama-3", 1);
    /* a kind without a translator is skipped; an unknown model of a
     * configured provider stays (unpriced); order is the key's */
    assert_int_equal(targets(8, "openai/gpt-x", t, DP_MAX_TARGETS), 3);
    ASSERT_TARGET(t[0], "openai", "gpt-x", 0);
    ASSERT_TARGET(t[1], "empty", "lonely", 1);
    ASSERT_TARGET(t[2], "local", "llama-3", 1);
    /* a key without fallbacks: just the route */
    assert_int_equal(targets(1, "llama-3", t, DP_MAX_TARGETS), 1);
    ASSERT_TARGET(t[0], "local", "llama-3", 1);
    /* the caller's capacity bounds the list */
    assert_int_equal(targets(8, "gpt-4o", t, 2), 2);
    ASSERT_TARGET(t[1], "empty", "lonely", 1);
}

static void test_credential_pick_excluding(void **state)
{
    const dp_provider_t *p = dp_snapshot_find_provider(snap, "openai", 6);
    int counts[2] = {0, 0};
    for (uint64_t r = 0; r < 4000; r++)
        counts[dp_route_pick_credential_excluding(p, r * 2654435761u, 0)]++;
    assert_true(counts[0] > 800 && counts[0] < 1200);
    for (uint64_t r = 0; r < 100; r++) {
        assert_int_equal(dp_route_pick_credential_excluding(p, r, 1), 1);
        assert_int_equal(dp_route_pick_credential_excluding(p, r, 2), 0);
    }
    assert_int_equal(dp_route_pick_credential_excluding(p, 5, 3), -1);
    assert_int_equal(dp_route_pick_credential_excluding(dp_snapshot_find_provider(snap, "empty", 5), 5, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explicit_provider_prefix), cmocka_unit_test(test_prefix_that_is_not_a_provider),
        cmocka_unit_test(test_bare_model_catalog),       cmocka_unit_test(test_unknown_model_default_provider),
        cmocka_unit_test(test_allowed_models),           cmocka_unit_test(test_provider_allowed),
        cmocka_unit_test(test_credential_weights),       cmocka_unit_test(test_targets),
        cmocka_unit_test(test_credential_pick_excluding),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
