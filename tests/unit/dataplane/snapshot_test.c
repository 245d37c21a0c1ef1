/* snapshot_test.c - building, delta application, lookups and reclamation of
 * data plane snapshots (dataplane/dp_snapshot.c). */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dp_snapshot.h"
#include "sl_err.h"

/* ---- message builders --------------------------------------------------- */

typedef struct kspec {
    const char *id;
    uint8_t fill; /* key hash = 32 bytes of fill */
    int revoked;
    const char *allowed_provider; /* NULL: none */
} kspec_t;

typedef struct pspec {
    const char *name;
    const char *base_url;
    const char *secret; /* one credential, NULL: none */
    int weight;
} pspec_t;

typedef struct mspec {
    const char *provider, *model;
    int64_t in, out;
} mspec_t;

typedef struct rspec {
    Sluice__Sync__V1__EntityKind kind;
    const char *id;
} rspec_t;

static uint8_t pepper_bytes[32];

/* Packs a message from the specs and unpacks it, so dp_snapshot_apply can own
 * it like one received from the wire. */
static Sluice__Sync__V1__Snapshot *make_msg(int64_t version, int full, int64_t base, const kspec_t *ks, size_t nk,
                                            const pspec_t *ps, size_t np, const mspec_t *ms, size_t nm,
                                            const rspec_t *rs, size_t nr)
{
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = version;
    m.full = full;
    m.base_version = base;
    m.generated_unix_ms = version * 1000;
    if (full) {
        m.key_pepper.data = pepper_bytes;
        m.key_pepper.len = 32;
    }
    Sluice__Config__V1__VirtualKey kv[16], *kp[16];
    uint8_t hashes[16][32];
    char *allowed[16][1];
    Sluice__Config__V1__Target fb[16], *fbp[16][1];
    assert_true(nk <= 16 && np <= 16 && nm <= 16 && nr <= 16);
    for (size_t i = 0; i < nk; i++) {
        sluice__config__v1__virtual_key__init(&kv[i]);
        kv[i].id = (char *)ks[i].id;
        kv[i].tenant_id = "t1";
        memset(hashes[i], ks[i].fill, 32);
        kv[i].key_hash.data = hashes[i];
        kv[i].key_hash.len = 32;
        kv[i].revoked = ks[i].revoked;
        if (ks[i].allowed_provider != NULL) {
            allowed[i][0] = (char *)ks[i].allowed_provider;
            kv[i].allowed_providers = allowed[i];
            kv[i].n_allowed_providers = 1;
        }
        sluice__config__v1__target__init(&fb[i]);
        fb[i].provider = "openai";
        fb[i].model = "gpt-4o";
        fbp[i][0] = &fb[i];
        kv[i].fallbacks = fbp[i];
        kv[i].n_fallbacks = 1;
        kp[i] = &kv[i];
    }
    m.keys = kp;
    m.n_keys = nk;
    Sluice__Config__V1__Provider pv[16], *pp[16];
    Sluice__Config__V1__Credential cv[16], *cp[16][1];
    for (size_t i = 0; i < np; i++) {
        sluice__config__v1__provider__init(&pv[i]);
        pv[i].name = (char *)ps[i].name;
        pv[i].kind = "openai";
        pv[i].base_url = (char *)ps[i].base_url;
        if (ps[i].secret != NULL) {
            sluice__config__v1__credential__init(&cv[i]);
            cv[i].id = "primary";
            cv[i].secret.data = (uint8_t *)ps[i].secret;
            cv[i].secret.len = strlen(ps[i].secret);
            cv[i].weight = ps[i].weight;
            cp[i][0] = &cv[i];
            pv[i].credentials = cp[i];
            pv[i].n_credentials = 1;
        }
        pp[i] = &pv[i];
    }
    m.providers = pp;
    m.n_providers = np;
    Sluice__Config__V1__ModelPrice mv[16], *mp[16];
    for (size_t i = 0; i < nm; i++) {
        sluice__config__v1__model_price__init(&mv[i]);
        mv[i].provider = (char *)ms[i].provider;
        mv[i].model = (char *)ms[i].model;
        mv[i].input_micro_per_mtok = ms[i].in;
        mv[i].output_micro_per_mtok = ms[i].out;
        mp[i] = &mv[i];
    }
    m.models = mp;
    m.n_models = nm;
    Sluice__Sync__V1__Removed rv[16], *rp[16];
    for (size_t i = 0; i < nr; i++) {
        sluice__sync__v1__removed__init(&rv[i]);
        rv[i].kind = rs[i].kind;
        rv[i].id = (char *)rs[i].id;
        rp[i] = &rv[i];
    }
    m.removed = rp;
    m.n_removed = nr;
    Sluice__Config__V1__Tenant tv, *tp[1];
    sluice__config__v1__tenant__init(&tv);
    tv.id = "t1";
    tv.name = "Tenant one";
    tp[0] = &tv;
    if (full) {
        m.tenants = tp;
        m.n_tenants = 1;
    }

    size_t len = sluice__sync__v1__snapshot__get_packed_size(&m);
    uint8_t *buf = malloc(len + 1);
    sluice__sync__v1__snapshot__pack(&m, buf);
    Sluice__Sync__V1__Snapshot *out = sluice__sync__v1__snapshot__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(out);
    return out;
}

static const dp_key_t *key_by_fill(const dp_snapshot_t *s, uint8_t fill)
{
    uint8_t h[32];
    memset(h, fill, 32);
    return dp_snapshot_find_key(s, h);
}

static const kspec_t base_keys[] = {
    {"vk_a", 0xa1, 0, "openai"},
    {"vk_b", 0xb2, 0, NULL},
    {"vk_c", 0xc3, 0, NULL},
};
static const pspec_t base_provs[] = {
    {"openai", "https://api.openai.com/v1", "sk-upstream", 3},
    {"mock", "http://127.0.0.1:8080/", "mock-key", 0},
};
static const mspec_t base_models[] = {
    {"openai", "gpt-4o", 2500000, 10000000},
    {"mock", "gpt-4o", 1, 2},
    {"openai", "gpt-4o-mini", 150000, 600000},
    {"mock", "meta/llama-3", 5, 6},
};

static int setup(void **state)
{
    for (int i = 0; i < 32; i++)
        pepper_bytes[i] = (uint8_t)i;
    return dp_snapshot_init(2);
}

static int teardown(void **state)
{
    dp_snapshot_shutdown();
    return 0;
}

static void apply_base(void)
{
    assert_int_equal(dp_snapshot_apply(make_msg(10, 1, 0, base_keys, 3, base_provs, 2, base_models, 4, NULL, 0)), 0);
}

/* Lets both workers pass a quiescent point and reclaims. */
static void pass_grace(void)
{
    dp_snapshot_quiescent(0);
    dp_snapshot_quiescent(1);
    dp_snapshot_reclaim();
}

/* ---- tests -------------------------------------------------------------- */

static void test_empty(void **state)
{
    assert_null(dp_snapshot_acquire());
    assert_int_equal(dp_snapshot_current_version(), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(dp_snapshot_pack_full(&buf, &len), SL_ENOTFOUND);
}

static void test_full_build_and_lookups(void **state)
{
    apply_base();
    assert_int_equal(dp_snapshot_current_version(), 10);
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_non_null(s);
    assert_int_equal(dp_snapshot_version(s), 10);
    assert_int_equal(dp_snapshot_generated_ms(s), 10000);
    assert_memory_equal(dp_snapshot_pepper(s), pepper_bytes, 32);

    const dp_key_t *k = key_by_fill(s, 0xa1);
    assert_non_null(k);
    assert_string_equal(k->id, "vk_a");
    assert_string_equal(k->tenant_id, "t1");
    assert_int_equal(k->revoked, 0);
    assert_int_equal(k->n_allowed_providers, 1);
    assert_string_equal(k->allowed_providers[0], "openai");
    assert_int_equal(k->n_allowed_models, 0);
    assert_int_equal(k->n_fallbacks, 1);
    assert_string_equal(k->fallbacks[0].provider, "openai");
    assert_string_equal(k->fallbacks[0].model, "gpt-4o");
    assert_non_null(key_by_fill(s, 0xb2));
    assert_string_equal(key_by_fill(s, 0xc3)->id, "vk_c");
    assert_null(key_by_fill(s, 0xd4));
    /* same first 8 bytes, different tail */
    uint8_t h[32];
    memset(h, 0xa1, 32);
    h[31] = 0;
    assert_null(dp_snapshot_find_key(s, h));

    const dp_provider_t *p = dp_snapshot_find_provider(s, "openai", 6);
    assert_non_null(p);
    assert_int_equal(p->is_ssl, 1);
    assert_string_equal(p->host, "api.openai.com");
    assert_int_equal(p->port, 443);
    assert_string_equal(p->path_prefix, "/v1");
    assert_int_equal(p->n_credentials, 1);
    assert_string_equal(p->credentials[0].secret, "sk-upstream");
    assert_int_equal(p->credentials[0].secret_len, 11);
    assert_int_equal(p->total_weight, 3);
    p = dp_snapshot_find_provider(s, "mockX", 4); /* length-limited */
    assert_non_null(p);
    assert_string_equal(p->name, "mock");
    assert_int_equal(p->is_ssl, 0);
    assert_string_equal(p->host, "127.0.0.1");
    assert_int_equal(p->port, 8080);
    assert_string_equal(p->path_prefix, "");
    assert_int_equal(p->total_weight, 1); /* unset weight counts as 1 */
    assert_null(dp_snapshot_find_provider(s, "anthropic", 9));
    assert_null(dp_snapshot_find_provider(s, "open", 4));

    const dp_model_t *m = dp_snapshot_find_model(s, "openai", 6, "gpt-4o", 6);
    assert_non_null(m);
    assert_int_equal(m->input_micro_per_mtok, 2500000);
    assert_int_equal(m->output_micro_per_mtok, 10000000);
    assert_non_null(dp_snapshot_find_model(s, "mock", 4, "meta/llama-3", 12));
    assert_null(dp_snapshot_find_model(s, "mock", 4, "gpt-4o-mini", 11));

    const dp_model_t *out[4];
    assert_int_equal(dp_snapshot_models_named(s, "gpt-4o", 6, out, 4), 2);
    assert_string_equal(out[0]->provider, "mock"); /* provider name order */
    assert_string_equal(out[1]->provider, "openai");
    assert_int_equal(dp_snapshot_models_named(s, "gpt-4o", 6, out, 1), 1);
    assert_int_equal(dp_snapshot_models_named(s, "gpt-4", 5, out, 4), 0);
    assert_int_equal(dp_snapshot_models_named(s, "gpt-4o-mini", 11, out, 4), 1);

    size_t n = 0;
    while (dp_snapshot_model_at(s, n) != NULL)
        n++;
    assert_int_equal(n, 4);
    assert_string_equal(dp_snapshot_model_at(s, 0)->provider, "mock");
    assert_string_equal(dp_snapshot_model_at(s, 3)->model, "gpt-4o-mini");
    dp_snapshot_release(s);
}

static void test_base_url_split(void **state)
{
    static const pspec_t provs[] = {
        {"a", "http://example.com", NULL, 0},        {"b", "https://example.com:8443/openai/v1//", NULL, 0},
        {"c", "http://[::1]:9000/x", NULL, 0},       {"d", "ftp://example.com", NULL, 0},
        {"e", "http://example.com:99999/", NULL, 0}, {"f", "HTTPS://Example.com?q=1", NULL, 0},
    };
    assert_int_equal(dp_snapshot_apply(make_msg(1, 1, 0, NULL, 0, provs, 6, NULL, 0, NULL, 0)), 0);
    dp_snapshot_t *s = dp_snapshot_acquire();
    const dp_provider_t *p = dp_snapshot_find_provider(s, "a", 1);
    assert_string_equal(p->host, "example.com");
    assert_int_equal(p->port, 80);
    assert_string_equal(p->path_prefix, "");
    assert_string_equal(p->authority, "example.com"); /* default port left out */
    assert_int_equal(p->authority_len, 11);
    assert_int_equal(p->n_credentials, 0);
    assert_int_equal(p->total_weight, 0);
    p = dp_snapshot_find_provider(s, "b", 1);
    assert_int_equal(p->is_ssl, 1);
    assert_int_equal(p->port, 8443);
    assert_string_equal(p->path_prefix, "/openai/v1");
    assert_string_equal(p->authority, "example.com:8443");
    p = dp_snapshot_find_provider(s, "c", 1);
    assert_string_equal(p->host, "::1");
    assert_int_equal(p->port, 9000);
    assert_string_equal(p->path_prefix, "/x");
    assert_string_equal(p->authority, "[::1]:9000");
    p = dp_snapshot_find_provider(s, "d", 1); /* kept, unusable */
    assert_string_equal(p->host, "");
    assert_int_equal(p->authority_len, 0);
    assert_int_equal(p->port, 0);
    p = dp_snapshot_find_provider(s, "e", 1);
    assert_string_equal(p->host, "");
    p = dp_snapshot_find_provider(s, "f", 1);
    assert_int_equal(p->is_ssl, 1);
    assert_string_equal(p->host, "Example.com");
    assert_string_equal(p->path_prefix, "");
    dp_snapshot_release(s);
}

static void test_delta_replaces_removes_shares(void **state)
{
    apply_base();
    dp_snapshot_t *s1 = dp_snapshot_acquire();
    const dp_key_t *a1 = key_by_fill(s1, 0xa1), *b1 = key_by_fill(s1, 0xb2);
    const dp_provider_t *mock1 = dp_snapshot_find_provider(s1, "mock", 4);

    /* vk_a rotated (new hash), vk_c removed, openai provider replaced, a model removed */
    static const kspec_t ks[] = {{"vk_a", 0xaa, 0, NULL}, {"vk_d", 0xd4, 0, NULL}};
    static const pspec_t ps[] = {{"openai", "https://proxy.internal:444/v2", "sk-new", 2}};
    static const mspec_t ms[] = {{"openai", "gpt-4o", 3000000, 12000000}};
    static const rspec_t rs[] = {{SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY, "vk_c"},
                                 {SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_MODEL, "mock/meta/llama-3"},
                                 {SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_TENANT, "nope"}};
    assert_int_equal(dp_snapshot_apply(make_msg(11, 0, 10, ks, 2, ps, 1, ms, 1, rs, 3)), 0);
    dp_snapshot_t *s2 = dp_snapshot_acquire();
    assert_int_equal(dp_snapshot_version(s2), 11);
    assert_memory_equal(dp_snapshot_pepper(s2), pepper_bytes, 32); /* carried over */

    assert_null(key_by_fill(s2, 0xa1)); /* old hash gone */
    const dp_key_t *a2 = key_by_fill(s2, 0xaa);
    assert_non_null(a2);
    assert_string_equal(a2->id, "vk_a");
    assert_int_equal(a2->n_allowed_providers, 0);
    assert_ptr_equal(key_by_fill(s2, 0xb2), b1); /* unchanged record shared */
    assert_null(key_by_fill(s2, 0xc3));
    assert_non_null(key_by_fill(s2, 0xd4));
    assert_ptr_equal(dp_snapshot_find_provider(s2, "mock", 4), mock1);
    const dp_provider_t *o = dp_snapshot_find_provider(s2, "openai", 6);
    assert_string_equal(o->host, "proxy.internal");
    assert_int_equal(o->port, 444);
    assert_string_equal(o->credentials[0].secret, "sk-new");
    assert_int_equal(dp_snapshot_find_model(s2, "openai", 6, "gpt-4o", 6)->input_micro_per_mtok, 3000000);
    assert_null(dp_snapshot_find_model(s2, "mock", 4, "meta/llama-3", 12));
    assert_null(dp_snapshot_model_at(s2, 3));

    /* the old snapshot is untouched */
    assert_ptr_equal(key_by_fill(s1, 0xa1), a1);
    assert_non_null(key_by_fill(s1, 0xc3));
    assert_string_equal(dp_snapshot_find_provider(s1, "openai", 6)->host, "api.openai.com");
    assert_non_null(dp_snapshot_find_model(s1, "mock", 4, "meta/llama-3", 12));
    dp_snapshot_release(s1);
    dp_snapshot_release(s2);

    /* many more deltas; records from the first message stay valid */
    for (int v = 12; v < 40; v++) {
        kspec_t k = {"vk_d", (uint8_t)v, v % 2, NULL};
        assert_int_equal(dp_snapshot_apply(make_msg(v, 0, v - 1, &k, 1, NULL, 0, NULL, 0, NULL, 0)), 0);
        pass_grace();
    }
    assert_int_equal(dp_snapshot_retired_count(), 0);
    dp_snapshot_t *s3 = dp_snapshot_acquire();
    assert_ptr_equal(key_by_fill(s3, 0xb2), b1);
    assert_string_equal(key_by_fill(s3, 0xb2)->id, "vk_b");
    assert_string_equal(dp_snapshot_find_provider(s3, "mock", 4)->credentials[0].secret, "mock-key");
    assert_int_equal(key_by_fill(s3, 39)->revoked, 1);
    dp_snapshot_release(s3);
}

static void test_stale_and_out_of_order(void **state)
{
    apply_base();
    /* same or older version, full or delta: ignored */
    assert_int_equal(dp_snapshot_apply(make_msg(10, 1, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)), 1);
    assert_int_equal(dp_snapshot_apply(make_msg(9, 1, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)), 1);
    static const rspec_t rs[] = {{SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY, "vk_a"}};
    assert_int_equal(dp_snapshot_apply(make_msg(8, 0, 7, NULL, 0, NULL, 0, NULL, 0, rs, 1)), 1);
    assert_int_equal(dp_snapshot_current_version(), 10);
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_non_null(key_by_fill(s, 0xa1));
    assert_non_null(dp_snapshot_find_provider(s, "openai", 6));
    dp_snapshot_release(s);
    /* a newer full snapshot replaces everything */
    assert_int_equal(dp_snapshot_apply(make_msg(12, 1, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)), 0);
    s = dp_snapshot_acquire();
    assert_null(key_by_fill(s, 0xa1));
    assert_null(dp_snapshot_find_provider(s, "openai", 6));
    assert_null(dp_snapshot_model_at(s, 0));
    dp_snapshot_release(s);
}

static void test_delta_wrong_base(void **state)
{
    apply_base();
    static const rspec_t rs[] = {{SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY, "vk_a"}};
    assert_int_equal(dp_snapshot_apply(make_msg(12, 0, 11, NULL, 0, NULL, 0, NULL, 0, rs, 1)), SL_EINVAL);
    assert_int_equal(dp_snapshot_current_version(), 10);
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_non_null(key_by_fill(s, 0xa1));
    dp_snapshot_release(s);
    /* a delta with no snapshot at all needs base 0 */
    dp_snapshot_shutdown();
    dp_snapshot_init(2);
    assert_int_equal(dp_snapshot_apply(make_msg(5, 0, 4, NULL, 0, NULL, 0, NULL, 0, rs, 1)), SL_EINVAL);
    assert_null(dp_snapshot_acquire());
}

static void test_revoked_after_delta(void **state)
{
    apply_base();
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_int_equal(key_by_fill(s, 0xb2)->revoked, 0);
    dp_snapshot_release(s);
    static const kspec_t ks[] = {{"vk_b", 0xb2, 1, NULL}};
    assert_int_equal(dp_snapshot_apply(make_msg(11, 0, 10, ks, 1, NULL, 0, NULL, 0, NULL, 0)), 0);
    s = dp_snapshot_acquire();
    assert_int_equal(key_by_fill(s, 0xb2)->revoked, 1);
    assert_int_equal(key_by_fill(s, 0xa1)->revoked, 0);
    dp_snapshot_release(s);
}

static void test_reclamation(void **state)
{
    apply_base();
    dp_snapshot_t *held = dp_snapshot_acquire(); /* a request on worker 0 */
    static const kspec_t ks[] = {{"vk_b", 0xb2, 1, NULL}};
    assert_int_equal(dp_snapshot_apply(make_msg(11, 0, 10, ks, 1, NULL, 0, NULL, 0, NULL, 0)), 0);
    assert_int_equal(dp_snapshot_retired_count(), 1);

    dp_snapshot_reclaim(); /* no worker has passed a quiescent point */
    assert_int_equal(dp_snapshot_retired_count(), 1);
    dp_snapshot_quiescent(0);
    dp_snapshot_reclaim(); /* worker 1 has not */
    assert_int_equal(dp_snapshot_retired_count(), 1);
    dp_snapshot_quiescent(1);
    dp_snapshot_reclaim(); /* grace period over, but the request still holds it */
    assert_int_equal(dp_snapshot_retired_count(), 1);
    assert_int_equal(key_by_fill(held, 0xb2)->revoked, 0); /* still readable */
    dp_snapshot_release(held);
    dp_snapshot_reclaim();
    assert_int_equal(dp_snapshot_retired_count(), 0);

    /* a released snapshot still waits for the grace period */
    held = dp_snapshot_acquire();
    dp_snapshot_release(held);
    static const kspec_t ks2[] = {{"vk_b", 0xb2, 0, NULL}};
    assert_int_equal(dp_snapshot_apply(make_msg(12, 0, 11, ks2, 1, NULL, 0, NULL, 0, NULL, 0)), 0);
    dp_snapshot_reclaim();
    assert_int_equal(dp_snapshot_retired_count(), 1);
    /* a worker gone offline is not waited for */
    dp_snapshot_offline(1);
    dp_snapshot_quiescent(0);
    dp_snapshot_reclaim();
    assert_int_equal(dp_snapshot_retired_count(), 0);

    /* several retired at once, freed independently */
    dp_snapshot_t *h12 = dp_snapshot_acquire();
    assert_int_equal(dp_snapshot_apply(make_msg(13, 0, 12, NULL, 0, NULL, 0, NULL, 0, NULL, 0)), 0);
    assert_int_equal(dp_snapshot_apply(make_msg(14, 0, 13, NULL, 0, NULL, 0, NULL, 0, NULL, 0)), 0);
    assert_int_equal(dp_snapshot_retired_count(), 2);
    dp_snapshot_quiescent(0);
    dp_snapshot_reclaim();
    assert_int_equal(dp_snapshot_retired_count(), 1); /* 13 freed, 12 held */
    assert_int_equal(dp_snapshot_version(h12), 12);
    dp_snapshot_release(h12);
    dp_snapshot_reclaim();
    assert_int_equal(dp_snapshot_retired_count(), 0);
}

static void test_pack_full_round_trip(void **state)
{
    apply_base();
    static const kspec_t ks[] = {{"vk_b", 0xb2, 1, NULL}};
    static const rspec_t rs[] = {{SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_PROVIDER, "mock"}};
    assert_int_equal(dp_snapshot_apply(make_msg(11, 0, 10, ks, 1, NULL, 0, NULL, 0, rs, 1)), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(dp_snapshot_pack_full(&buf, &len), 0);
    Sluice__Sync__V1__Snapshot *m = sluice__sync__v1__snapshot__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(m);
    assert_int_equal(m->version, 11);
    assert_true(m->full);
    assert_int_equal(m->n_keys, 3);
    assert_int_equal(m->n_providers, 1);
    assert_int_equal(m->n_models, 4);
    assert_int_equal(m->n_tenants, 1);
    assert_int_equal(m->key_pepper.len, 32);

    dp_snapshot_shutdown();
    dp_snapshot_init(2);
    assert_int_equal(dp_snapshot_apply(m), 0);
    dp_snapshot_t *s = dp_snapshot_acquire();
    assert_int_equal(dp_snapshot_version(s), 11);
    assert_int_equal(dp_snapshot_generated_ms(s), 11000);
    assert_memory_equal(dp_snapshot_pepper(s), pepper_bytes, 32);
    assert_int_equal(key_by_fill(s, 0xb2)->revoked, 1);
    assert_string_equal(key_by_fill(s, 0xa1)->allowed_providers[0], "openai");
    assert_null(dp_snapshot_find_provider(s, "mock", 4));
    assert_string_equal(dp_snapshot_find_provider(s, "openai", 6)->credentials[0].secret, "sk-upstream");
    assert_int_equal(dp_snapshot_find_model(s, "mock", 4, "gpt-4o", 6)->output_micro_per_mtok, 2);
    dp_snapshot_release(s);
}

static void test_many_keys(void **state)
{
    /* enough keys to grow and probe the tables; then delete half by delta */
    enum { N = 3000 };
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = 1;
    m.full = 1;
    Sluice__Config__V1__VirtualKey *kv = calloc(N, sizeof(*kv));
    Sluice__Config__V1__VirtualKey **kp = calloc(N, sizeof(*kp));
    uint8_t(*hashes)[32] = calloc(N, 32);
    char(*ids)[16] = calloc(N, 16);
    for (int i = 0; i < N; i++) {
        sluice__config__v1__virtual_key__init(&kv[i]);
        snprintf(ids[i], 16, "k%d", i);
        kv[i].id = ids[i];
        /* a few colliding 8-byte prefixes */
        memset(hashes[i], 0, 32);
        hashes[i][0] = (uint8_t)(i % 7);
        memcpy(hashes[i] + 8, &i, sizeof(i));
        kv[i].key_hash.data = hashes[i];
        kv[i].key_hash.len = 32;
        kp[i] = &kv[i];
    }
    m.keys = kp;
    m.n_keys = N;
    size_t len = sluice__sync__v1__snapshot__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    sluice__sync__v1__snapshot__pack(&m, buf);
    assert_int_equal(dp_snapshot_apply(sluice__sync__v1__snapshot__unpack(NULL, len, buf)), 0);
    free(buf);

    dp_snapshot_t *s1 = dp_snapshot_acquire(); /* shares pages with the next one */
    Sluice__Sync__V1__Snapshot d = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    d.version = 2;
    d.base_version = 1;
    Sluice__Sync__V1__Removed *rv = calloc(N / 2, sizeof(*rv));
    Sluice__Sync__V1__Removed **rp = calloc(N / 2, sizeof(*rp));
    for (int i = 0; i < N / 2; i++) {
        sluice__sync__v1__removed__init(&rv[i]);
        rv[i].kind = SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY;
        rv[i].id = ids[2 * i];
        rp[i] = &rv[i];
    }
    d.removed = rp;
    d.n_removed = N / 2;
    len = sluice__sync__v1__snapshot__get_packed_size(&d);
    buf = malloc(len);
    sluice__sync__v1__snapshot__pack(&d, buf);
    assert_int_equal(dp_snapshot_apply(sluice__sync__v1__snapshot__unpack(NULL, len, buf)), 0);
    free(buf);

    dp_snapshot_t *s = dp_snapshot_acquire();
    for (int i = 0; i < N; i++) {
        const dp_key_t *k = dp_snapshot_find_key(s, hashes[i]);
        if (i % 2 == 0) {
            assert_null(k);
        } else {
            assert_non_null(k);
            assert_string_equal(k->id, ids[i]);
        }
    }
    dp_snapshot_release(s);
    /* copy-on-write left the older snapshot's tables intact */
    for (int i = 0; i < N; i++)
        assert_non_null(dp_snapshot_find_key(s1, hashes[i]));
    dp_snapshot_release(s1);
    free(kv);
    free(kp);
    free(hashes);
    free(ids);
    free(rv);
    free(rp);
}

/* Two real worker threads read snapshots while deltas are applied and
 * reclaimed; under AddressSanitizer any early free shows up. */
static atomic_int stress_stop;
static atomic_long stress_reads;

static void *stress_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    while (!atomic_load(&stress_stop)) {
        for (int i = 0; i < 50; i++) {
            dp_snapshot_t *s = dp_snapshot_acquire();
            if (s != NULL) {
                const dp_key_t *k = key_by_fill(s, 0xb2);
                if (k != NULL && k->id[0] != 'v')
                    abort();
                const dp_provider_t *p = dp_snapshot_find_provider(s, "openai", 6);
                if (p != NULL && p->credentials[0].secret[0] != 's')
                    abort();
                dp_snapshot_release(s);
                atomic_fetch_add(&stress_reads, 1);
            }
        }
        dp_snapshot_quiescent(id);
    }
    dp_snapshot_offline(id);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    apply_base();
    atomic_store(&stress_stop, 0);
    atomic_store(&stress_reads, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stress_worker, (void *)(intptr_t)i), 0);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t v = 10;
    do {
        kspec_t k = {"vk_b", 0xb2, (int)(v % 2), NULL};
        pspec_t p = {"openai", "https://api.openai.com/v1", "sk-rotated", 1};
        Sluice__Sync__V1__Snapshot *m =
            v % 25 == 0 ? make_msg(v + 1, 1, 0, base_keys, 3, base_provs, 2, base_models, 4, NULL, 0)
                        : make_msg(v + 1, 0, v, &k, 1, &p, 1, NULL, 0, NULL, 0);
        assert_int_equal(dp_snapshot_apply(m), 0);
        v++;
        dp_snapshot_reclaim();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 400);
    atomic_store(&stress_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    dp_snapshot_reclaim(); /* both workers offline: everything retired goes */
    assert_int_equal(dp_snapshot_retired_count(), 0);
    assert_true(atomic_load(&stress_reads) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_build_and_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_url_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_replaces_removes_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_and_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_wrong_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_after_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclamation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_full_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
