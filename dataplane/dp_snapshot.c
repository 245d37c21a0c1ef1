/*
 * dp_snapshot.c - immutable configuration snapshots and their reclamation.
 *
 * Building (sync thread only). A received Snapshot message becomes a
 * "segment": the unpacked protobuf-c message (which owns every string) plus
 * an arena holding the derived records built from it (dp_key_t, ...). A
 * snapshot is a set of per-kind indexes (keys, providers, models, tenants)
 * whose tables point at records, plus the list of segments those records
 * come from. A delta copies the pointer tables of the kinds it touches
 * (copy-on-write by page of 1024 slots; kinds it does not touch share the
 * previous index outright), then removes and replaces entries; records of
 * unchanged entities are shared, never copied.
 *
 * Invariants:
 *   - snapshots, indexes and records are immutable once published;
 *   - segment_t.refs counts the live snapshots that list the segment, and
 *     index_t.refs the live snapshots that use the index; both are touched
 *     on the sync thread only;
 *   - segment_t.nrecs counts the records of the segment reachable from the
 *     current (newest) snapshot; a new snapshot lists exactly the segments
 *     with nrecs > 0, so a message is freed once no live snapshot has a
 *     record from it;
 *   - versions only go up: a message not newer than the current snapshot is
 *     dropped, a delta applies only on top of its base version.
 *
 * Reclamation (quiescent-state-based). The current snapshot is published in
 * one atomic pointer. Each snapshot has a reference count: one "published"
 * reference plus one per request holding it. Workers:
 *
 *   acquire:    s = load(current, seq_cst); fetch_add(s->refs, relaxed)
 *   release:    fetch_sub(s->refs, release)
 *   quiescent:  store(worker counter, counter + 1, seq_cst)
 *
 * The sync thread, after exchanging the pointer (seq_cst), records every
 * worker's counter (seq_cst loads) beside the retired snapshot. It drops the
 * published reference once each online worker's counter has moved past the
 * recorded value, and frees the snapshot once refs (loaded with acquire)
 * reaches zero.
 *
 * Why an acquire that raced the swap is safe: the load and the increment in
 * dp_snapshot_acquire() have no quiescent point between them. All four
 * seq_cst operations (pointer exchange, counter load on the sync thread;
 * counter store, pointer load on the worker) sit in one total order. If the
 * worker loaded the old pointer, its load precedes the exchange in that
 * order, so either its next counter store also follows the sync thread's
 * counter load (the recorded value is older, and the store we wait for comes
 * after the increment in program order), or the recorded value already
 * includes a store that preceded the pointer load, in which case we wait for
 * a later store, again after the increment. The counter store is seq_cst (so
 * also release) and our counter load seq_cst (so also acquire): the
 * increment happens-before the published reference is dropped, so refs
 * cannot reach zero while the request holds the snapshot. Once the
 * published reference is gone the snapshot is unreachable for new acquires.
 * The release decrement pairs with the acquire load of refs before freeing,
 * so every read a worker made of the snapshot happens-before the free.
 *
 * Workers start online (dp_snapshot_init) and must call
 * dp_snapshot_quiescent() regularly (once per event-loop iteration, with a
 * bounded loop timeout); a worker that stops for good calls
 * dp_snapshot_offline() after releasing every snapshot it holds.
 *
 * Threads: dp_snapshot_acquire/release/quiescent/offline and the lookup and
 * accessor functions are for any thread holding a reference; everything in
 * the "sync thread only" section of the header is for one thread.
 */
#include "dp_snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_crypto.h"
#include "sl_err.h"
#include "sl_log.h"

#define MOD "snapshot"

/* ---- arena: derived records of one segment ------------------------------ */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk_t;

static void *arena_alloc(chunk_t **head, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    chunk_t *c = *head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->next = *head;
        c->used = 0;
        c->cap = cap;
        *head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strndup(chunk_t **head, const void *s, size_t n)
{
    char *p = arena_alloc(head, n + 1);
    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void arena_free(chunk_t *c)
{
    while (c != NULL) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
}

/* ---- segments and records ----------------------------------------------- */

typedef struct segment {
    Sluice__Sync__V1__Snapshot *msg; /* owns every string of its records */
    chunk_t *arena;                  /* the records themselves */
    int refs;                        /* live snapshots listing this segment */
    size_t nrecs;                    /* records of it in the newest snapshot */
} segment_t;

typedef struct rec_hdr {
    segment_t *seg;
    uint64_t idh; /* hash of the entity id */
} rec_hdr_t;

typedef struct key_rec {
    rec_hdr_t h;
    dp_key_t pub;
} key_rec_t;

typedef struct prov_rec {
    rec_hdr_t h;
    dp_provider_t pub;
} prov_rec_t;

typedef struct model_rec {
    rec_hdr_t h;
    dp_model_t pub;
    const Sluice__Config__V1__ModelPrice *pb;
} model_rec_t;

typedef struct tenant_rec {
    rec_hdr_t h;
    const Sluice__Config__V1__Tenant *pb;
} tenant_rec_t;

static void segment_free(segment_t *seg)
{
    if (seg == NULL)
        return;
    if (seg->msg != NULL)
        sluice__sync__v1__snapshot__free_unpacked(seg->msg, NULL);
    arena_free(seg->arena);
    free(seg);
}

/* ---- open-addressing pointer tables ------------------------------------- */

/* Linear probing over (hash, record) slots; p == NULL marks an empty slot.
 * Deletion shifts later entries back, so tables never hold tombstones.
 * Load factor stays at most 1/2.
 *
 * The slots live in pages of up to PAGE_SLOTS, shared copy-on-write between
 * the tables of consecutive snapshots: copying a table copies the page
 * directory only, and the first write to a shared page (refs > 1) gives the
 * writer its own copy. So a delta costs its changes plus one directory copy
 * (1/1024 of the slots), not a copy of every slot. Published tables are
 * never written; page refs are touched on the sync thread only. */
#define PAGE_SHIFT 10
#define PAGE_SLOTS ((size_t)1 << PAGE_SHIFT)

typedef struct slot {
    uint64_t h;
    void *p;
} slot_t;

typedef struct page {
    int refs; /* tables using this page */
    slot_t s[];
} page_t;

typedef struct table {
    page_t **pages;
    size_t cap; /* power of two, or 0 */
    size_t n;
    unsigned pshift; /* log2(slots per page) */
} table_t;

static size_t page_slots(const table_t *t)
{
    return (size_t)1 << t->pshift;
}

static const slot_t *slot_at(const table_t *t, size_t i)
{
    return &t->pages[i >> t->pshift]->s[i & (page_slots(t) - 1)];
}

/* Writable slot i, unsharing its page first. NULL when out of memory. */
static slot_t *slot_w(table_t *t, size_t i)
{
    page_t **pp = &t->pages[i >> t->pshift];
    if ((*pp)->refs > 1) {
        size_t sz = sizeof(page_t) + page_slots(t) * sizeof(slot_t);
        page_t *np = malloc(sz);
        if (np == NULL)
            return NULL;
        memcpy(np, *pp, sz);
        np->refs = 1;
        (*pp)->refs--;
        *pp = np;
    }
    return &(*pp)->s[i & (page_slots(t) - 1)];
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    /* FNV-1a with a final avalanche so the low bits (the probe start) mix. */
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

#define HASH_SEED 0xcbf29ce484222325ULL

static uint64_t hash_str(const char *s, size_t len)
{
    return hash_final(hash_bytes(HASH_SEED, s, len));
}

static uint64_t hash_pair(const char *a, size_t alen, const char *b, size_t blen)
{
    uint64_t h = hash_bytes(HASH_SEED, a, alen);
    h = hash_bytes(h, "/", 1);
    return hash_final(hash_bytes(h, b, blen));
}

static uint64_t hash_key(const uint8_t hash[32])
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h)); /* HMAC output: already uniform */
    return h;
}

static void table_free(table_t *t)
{
    size_t npages = t->cap >> t->pshift;
    for (size_t i = 0; i < npages; i++)
        if (--t->pages[i]->refs == 0)
            free(t->pages[i]);
    free(t->pages);
    memset(t, 0, sizeof(*t));
}

/* dst shares every page of src. */
static int table_copy(table_t *dst, const table_t *src)
{
    *dst = *src;
    if (src->cap == 0)
        return 0;
    size_t npages = src->cap >> src->pshift;
    dst->pages = malloc(npages * sizeof(page_t *));
    if (dst->pages == NULL) {
        memset(dst, 0, sizeof(*dst));
        return SL_ENOMEM;
    }
    memcpy(dst->pages, src->pages, npages * sizeof(page_t *));
    for (size_t i = 0; i < npages; i++)
        dst->pages[i]->refs++;
    return 0;
}

/* An empty table of cap slots, all pages private. */
static int table_init(table_t *t, size_t cap)
{
    memset(t, 0, sizeof(*t));
    unsigned shift = 0;
    while (((size_t)1 << shift) < cap && shift < PAGE_SHIFT)
        shift++;
    size_t per = (size_t)1 << shift, npages = cap / per;
    t->pages = calloc(npages, sizeof(page_t *));
    if (t->pages == NULL)
        return SL_ENOMEM;
    t->cap = cap;
    t->pshift = shift;
    for (size_t i = 0; i < npages; i++) {
        if ((t->pages[i] = calloc(1, sizeof(page_t) + per * sizeof(slot_t))) == NULL) {
            t->cap = i << shift; /* free the pages made so far */
            table_free(t);
            return SL_ENOMEM;
        }
        t->pages[i]->refs = 1;
    }
    return 0;
}

static int table_put_nogrow(table_t *t, uint64_t h, void *p)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)h & mask;
    while (slot_at(t, i)->p != NULL)
        i = (i + 1) & mask;
    slot_t *sl = slot_w(t, i);
    if (sl == NULL)
        return SL_ENOMEM;
    sl->h = h;
    sl->p = p;
    t->n++;
    return 0;
}

static int table_reserve(table_t *t, size_t want)
{
    if (want * 2 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 16;
    while (want * 2 > cap)
        cap *= 2;
    table_t nt;
    if (table_init(&nt, cap) != 0)
        return SL_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        const slot_t *sl = slot_at(t, i);
        if (sl->p != NULL)
            table_put_nogrow(&nt, sl->h, sl->p); /* private pages: cannot fail */
    }
    table_free(t);
    *t = nt;
    return 0;
}

static int table_put(table_t *t, uint64_t h, void *p)
{
    int rc = table_reserve(t, t->n + 1);
    if (rc != 0)
        return rc;
    return table_put_nogrow(t, h, p);
}

/* Removes the slot holding exactly p (inserted with hash h). Returns 0 or
 * SL_ENOMEM (the table is then unusable and must be discarded). */
static int table_del(table_t *t, uint64_t h, const void *p)
{
    if (t->cap == 0)
        return 0;
    size_t mask = t->cap - 1;
    size_t i = (size_t)h & mask;
    while (slot_at(t, i)->p != p) {
        if (slot_at(t, i)->p == NULL)
            return 0;
        i = (i + 1) & mask;
    }
    /* backward-shift deletion */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        const slot_t *sj = slot_at(t, j);
        if (sj->p == NULL)
            break;
        size_t home = (size_t)sj->h & mask;
        /* move j into the hole at i unless its home lies cyclically in (i, j] */
        int keep = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!keep) {
            slot_t *si = slot_w(t, i);
            if (si == NULL)
                return SL_ENOMEM;
            *si = *sj;
            i = j;
        }
    }
    slot_t *si = slot_w(t, i);
    if (si == NULL)
        return SL_ENOMEM;
    si->p = NULL;
    si->h = 0;
    t->n--;
    return 0;
}

typedef int (*match_fn)(const void *rec, const void *arg);

static void *table_find(const table_t *t, uint64_t h, match_fn eq, const void *arg)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const slot_t *sl = slot_at(t, i);
        if (sl->p == NULL)
            return NULL;
        if (sl->h == h && eq(sl->p, arg))
            return sl->p;
    }
}

/* ---- per-kind indexes --------------------------------------------------- */

typedef enum { KIND_TENANT, KIND_KEY, KIND_PROVIDER, KIND_MODEL, KIND_MAX } kind_t;

typedef struct index {
    int refs;        /* snapshots using this index; sync thread only */
    table_t by_id;   /* every kind */
    table_t by_hash; /* keys: by key hash */
    /* models: catalog sorted by (provider, model), and by (model, provider) */
    model_rec_t **sorted, **by_name;
    size_t nsorted;
} index_t;

static void index_unref(index_t *ix)
{
    if (ix == NULL || --ix->refs > 0)
        return;
    table_free(&ix->by_id);
    table_free(&ix->by_hash);
    free(ix->sorted);
    free(ix->by_name);
    free(ix);
}

static index_t *index_new(void)
{
    index_t *ix = calloc(1, sizeof(*ix));
    if (ix != NULL)
        ix->refs = 1;
    return ix;
}

/* A private copy of the tables of src (records shared). */
static index_t *index_clone(const index_t *src)
{
    index_t *ix = index_new();
    if (ix == NULL)
        return NULL;
    if (table_copy(&ix->by_id, &src->by_id) != 0 || table_copy(&ix->by_hash, &src->by_hash) != 0) {
        index_unref(ix);
        return NULL;
    }
    return ix; /* sorted arrays are rebuilt after editing */
}

/* ---- snapshots ----------------------------------------------------------- */

struct dp_snapshot {
    atomic_long refs; /* published reference + requests holding it */
    int64_t version;
    int64_t generated_ms;
    int has_pepper;
    uint8_t pepper[32];
    index_t *ix[KIND_MAX];
    segment_t **segs;
    size_t nsegs;
    /* retirement bookkeeping, sync thread only */
    struct dp_snapshot *next_retired;
    uint64_t *seen; /* worker counters when retired */
    int published;  /* still holds the published reference */
};

typedef struct worker_state {
    _Alignas(64) atomic_uint_fast64_t counter;
    atomic_int online;
    char pad[64 - sizeof(atomic_uint_fast64_t) - sizeof(atomic_int)];
} worker_state_t;

static _Atomic(dp_snapshot_t *) g_current;
static worker_state_t *g_workers;
static int g_nworkers;
static dp_snapshot_t *g_retired; /* sync thread only */

static void snapshot_free(dp_snapshot_t *s)
{
    for (int k = 0; k < KIND_MAX; k++)
        index_unref(s->ix[k]);
    for (size_t i = 0; i < s->nsegs; i++)
        if (--s->segs[i]->refs == 0)
            segment_free(s->segs[i]);
    free(s->segs);
    free(s->seen);
    free(s);
}

int dp_snapshot_init(int nworkers)
{
    if (nworkers < 0)
        return SL_EINVAL;
    size_t n = nworkers > 0 ? (size_t)nworkers : 1;
    g_workers = aligned_alloc(64, n * sizeof(worker_state_t));
    if (g_workers == NULL)
        return SL_ENOMEM;
    memset(g_workers, 0, n * sizeof(worker_state_t));
    for (int i = 0; i < nworkers; i++) {
        atomic_init(&g_workers[i].counter, 0);
        atomic_init(&g_workers[i].online, 1);
    }
    g_nworkers = nworkers;
    g_retired = NULL;
    atomic_store(&g_current, NULL);
    return 0;
}

dp_snapshot_t *dp_snapshot_acquire(void)
{
    dp_snapshot_t *s = atomic_load_explicit(&g_current, memory_order_seq_cst);
    if (s != NULL)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void dp_snapshot_release(dp_snapshot_t *s)
{
    if (s != NULL)
        atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release);
}

void dp_snapshot_quiescent(int worker)
{
    if (worker < 0 || worker >= g_nworkers)
        return;
    atomic_uint_fast64_t *c = &g_workers[worker].counter;
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_seq_cst);
}

void dp_snapshot_offline(int worker)
{
    if (worker < 0 || worker >= g_nworkers)
        return;
    atomic_store_explicit(&g_workers[worker].online, 0, memory_order_seq_cst);
}

int64_t dp_snapshot_version(const dp_snapshot_t *s)
{
    return s->version;
}

int64_t dp_snapshot_generated_ms(const dp_snapshot_t *s)
{
    return s->generated_ms;
}

const uint8_t *dp_snapshot_pepper(const dp_snapshot_t *s)
{
    return s->has_pepper ? s->pepper : NULL;
}

/* ---- lookups ------------------------------------------------------------ */

const dp_key_t *dp_snapshot_find_key(const dp_snapshot_t *s, const uint8_t hash[32])
{
    const table_t *t = &s->ix[KIND_KEY]->by_hash;
    if (t->cap == 0)
        return NULL;
    uint64_t h = hash_key(hash);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const slot_t *sl = slot_at(t, i);
        if (sl->p == NULL)
            return NULL;
        if (sl->h == h) {
            const key_rec_t *r = sl->p;
            if (sl_ct_equal(r->pub.hash, hash, 32))
                return &r->pub;
        }
    }
}

typedef struct strarg {
    const char *s;
    size_t len;
    const char *s2;
    size_t len2;
} strarg_t;

static int str_is(const char *have, const char *want, size_t len)
{
    return strlen(have) == len && memcmp(have, want, len) == 0;
}

static int eq_tenant(const void *rec, const void *arg)
{
    const strarg_t *a = arg;
    return str_is(((const tenant_rec_t *)rec)->pb->id, a->s, a->len);
}

static int eq_key_id(const void *rec, const void *arg)
{
    const strarg_t *a = arg;
    return str_is(((const key_rec_t *)rec)->pub.id, a->s, a->len);
}

static int eq_provider(const void *rec, const void *arg)
{
    const strarg_t *a = arg;
    return str_is(((const prov_rec_t *)rec)->pub.name, a->s, a->len);
}

static int eq_model(const void *rec, const void *arg)
{
    const strarg_t *a = arg;
    const model_rec_t *m = rec;
    return str_is(m->pub.provider, a->s, a->len) && str_is(m->pub.model, a->s2, a->len2);
}

const dp_provider_t *dp_snapshot_find_provider(const dp_snapshot_t *s, const char *name, size_t len)
{
    strarg_t a = {name, len, NULL, 0};
    const prov_rec_t *r = table_find(&s->ix[KIND_PROVIDER]->by_id, hash_str(name, len), eq_provider, &a);
    return r != NULL ? &r->pub : NULL;
}

const dp_key_t *dp_snapshot_find_key_id(const dp_snapshot_t *s, const char *id, size_t len)
{
    strarg_t a = {id, len, NULL, 0};
    const key_rec_t *r = table_find(&s->ix[KIND_KEY]->by_id, hash_str(id, len), eq_key_id, &a);
    return r != NULL ? &r->pub : NULL;
}

const Sluice__Config__V1__Tenant *dp_snapshot_find_tenant(const dp_snapshot_t *s, const char *id, size_t len)
{
    strarg_t a = {id, len, NULL, 0};
    const tenant_rec_t *r = table_find(&s->ix[KIND_TENANT]->by_id, hash_str(id, len), eq_tenant, &a);
    return r != NULL ? r->pb : NULL;
}

const dp_model_t *dp_snapshot_find_model(const dp_snapshot_t *s, const char *provider, size_t plen, const char *model,
                                         size_t mlen)
{
    strarg_t a = {provider, plen, model, mlen};
    const model_rec_t *r = table_find(&s->ix[KIND_MODEL]->by_id, hash_pair(provider, plen, model, mlen), eq_model, &a);
    return r != NULL ? &r->pub : NULL;
}

/* strcmp of a NUL-terminated string against (s, len) */
static int cmp_len(const char *have, const char *s, size_t len)
{
    size_t hl = strlen(have);
    int c = memcmp(have, s, hl < len ? hl : len);
    if (c != 0)
        return c;
    return hl < len ? -1 : hl > len ? 1 : 0;
}

size_t dp_snapshot_models_named(const dp_snapshot_t *s, const char *model, size_t mlen, const dp_model_t **out,
                                size_t cap)
{
    const index_t *ix = s->ix[KIND_MODEL];
    size_t lo = 0, hi = ix->nsorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_len(ix->by_name[mid]->pub.model, model, mlen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (size_t i = lo; i < ix->nsorted && n < cap; i++) {
        if (cmp_len(ix->by_name[i]->pub.model, model, mlen) != 0)
            break;
        out[n++] = &ix->by_name[i]->pub;
    }
    return n;
}

const dp_model_t *dp_snapshot_model_at(const dp_snapshot_t *s, size_t i)
{
    const index_t *ix = s->ix[KIND_MODEL];
    return i < ix->nsorted ? &ix->sorted[i]->pub : NULL;
}

void dp_snapshot_each_provider(const dp_snapshot_t *s, void (*fn)(void *ud, const dp_provider_t *p), void *ud)
{
    const table_t *t = &s->ix[KIND_PROVIDER]->by_id;
    for (size_t i = 0; i < t->cap; i++) {
        const prov_rec_t *r = slot_at(t, i)->p;
        if (r != NULL)
            fn(ud, &r->pub);
    }
}

/* ---- building records --------------------------------------------------- */

/* Splits scheme://host[:port][/path] into the provider's derived fields.
 * Returns 0 or SL_EINVAL (the provider is kept with an empty host, so
 * requests routed to it fail at connect rather than the snapshot being
 * refused). */
static int split_base_url(chunk_t **arena, const char *url, dp_provider_t *p)
{
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        p->is_ssl = 1;
        p->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p->is_ssl = 0;
        p->port = 80;
        rest = url + 7;
    } else {
        return SL_EINVAL;
    }
    size_t authlen = strcspn(rest, "/?#");
    const char *path = rest + authlen;
    const char *host = rest, *colon = NULL;
    size_t hostlen;
    if (authlen > 0 && rest[0] == '[') { /* [v6]:port */
        const char *close = memchr(rest, ']', authlen);
        if (close == NULL)
            return SL_EINVAL;
        host = rest + 1;
        hostlen = (size_t)(close - host);
        if (close + 1 < rest + authlen) {
            if (close[1] != ':')
                return SL_EINVAL;
            colon = close + 1;
        }
    } else {
        colon = memchr(rest, ':', authlen);
        hostlen = colon != NULL ? (size_t)(colon - rest) : authlen;
    }
    if (hostlen == 0 || memchr(host, '@', hostlen) != NULL)
        return SL_EINVAL;
    if (colon != NULL) {
        const char *d = colon + 1, *end = rest + authlen;
        if (d == end)
            return SL_EINVAL;
        unsigned long port = 0;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9')
                return SL_EINVAL;
            port = port * 10 + (unsigned long)(*d - '0');
            if (port > 65535)
                return SL_EINVAL;
        }
        if (port == 0)
            return SL_EINVAL;
        p->port = (uint16_t)port;
    }
    size_t pathlen = strcspn(path, "?#");
    while (pathlen > 0 && path[pathlen - 1] == '/')
        pathlen--;
    p->host = arena_strndup(arena, host, hostlen);
    p->path_prefix = arena_strndup(arena, path, pathlen);
    if (p->host == NULL || p->path_prefix == NULL)
        return SL_ENOMEM;
    /* the Host header, once per snapshot rather than per request */
    char auth[300];
    int v6 = memchr(host, ':', hostlen) != NULL, n;
    int dflt = p->port == (p->is_ssl ? 443 : 80);
    if (dflt)
        n = snprintf(auth, sizeof(auth), v6 ? "[%.*s]" : "%.*s", (int)hostlen, host);
    else
        n = snprintf(auth, sizeof(auth), v6 ? "[%.*s]:%u" : "%.*s:%u", (int)hostlen, host, (unsigned)p->port);
    if (n < 0 || (size_t)n >= sizeof(auth))
        return SL_EINVAL;
    if ((p->authority = arena_strndup(arena, auth, (size_t)n)) == NULL)
        return SL_ENOMEM;
    p->authority_len = (size_t)n;
    return 0;
}

static prov_rec_t *build_provider(segment_t *seg, const Sluice__Config__V1__Provider *pb)
{
    prov_rec_t *r = arena_alloc(&seg->arena, sizeof(*r));
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->h.seg = seg;
    r->h.idh = hash_str(pb->name, strlen(pb->name));
    dp_provider_t *p = &r->pub;
    p->name = pb->name;
    p->kind = pb->kind;
    p->base_url = pb->base_url;
    p->pb = pb;
    p->connect_timeout_ms = pb->connect_timeout_ms > 0 ? pb->connect_timeout_ms : 0;
    p->first_byte_timeout_ms = pb->first_byte_timeout_ms > 0 ? pb->first_byte_timeout_ms : 0;
    p->idle_timeout_ms = pb->idle_timeout_ms > 0 ? pb->idle_timeout_ms : 0;
    p->total_timeout_ms = pb->total_timeout_ms > 0 ? pb->total_timeout_ms : 0;
    int rc = split_base_url(&seg->arena, pb->base_url, p);
    if (rc == SL_ENOMEM)
        return NULL;
    if (rc != 0) {
        sl_warn(MOD, "provider \"%s\" has an unusable base_url \"%s\"", pb->name, pb->base_url);
        p->is_ssl = 0;
        p->port = 0;
        p->host = "";
        p->path_prefix = "";
        p->authority = "";
        p->authority_len = 0;
    }
    if (pb->n_credentials > 0) {
        dp_credential_t *creds = arena_alloc(&seg->arena, pb->n_credentials * sizeof(*creds));
        if (creds == NULL)
            return NULL;
        for (size_t i = 0; i < pb->n_credentials; i++) {
            const Sluice__Config__V1__Credential *c = pb->credentials[i];
            creds[i].id = c->id;
            creds[i].secret = arena_strndup(&seg->arena, c->secret.data, c->secret.len);
            if (creds[i].secret == NULL)
                return NULL;
            creds[i].secret_len = c->secret.len;
            /* proto3 cannot tell an unset weight from 0: both mean 1 */
            creds[i].weight = c->weight > 0 ? c->weight : 1;
            creds[i].pb = c;
            if (p->total_weight <= INT32_MAX - creds[i].weight)
                p->total_weight += creds[i].weight;
        }
        p->credentials = creds;
        p->n_credentials = pb->n_credentials;
    }
    return r;
}

static key_rec_t *build_key(segment_t *seg, const Sluice__Config__V1__VirtualKey *pb)
{
    key_rec_t *r = arena_alloc(&seg->arena, sizeof(*r));
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->h.seg = seg;
    r->h.idh = hash_str(pb->id, strlen(pb->id));
    dp_key_t *k = &r->pub;
    k->id = pb->id;
    k->tenant_id = pb->tenant_id;
    memcpy(k->hash, pb->key_hash.data, 32); /* length checked by the caller */
    k->revoked = pb->revoked ? 1 : 0;
    k->expires_unix = pb->expires_unix;
    k->allowed_providers = (const char *const *)pb->allowed_providers;
    k->n_allowed_providers = pb->n_allowed_providers;
    k->allowed_models = (const char *const *)pb->allowed_models;
    k->n_allowed_models = pb->n_allowed_models;
    if (pb->n_fallbacks > 0) {
        dp_target_t *fb = arena_alloc(&seg->arena, pb->n_fallbacks * sizeof(*fb));
        if (fb == NULL)
            return NULL;
        for (size_t i = 0; i < pb->n_fallbacks; i++) {
            fb[i].provider = pb->fallbacks[i]->provider;
            fb[i].model = pb->fallbacks[i]->model;
        }
        k->fallbacks = fb;
        k->n_fallbacks = pb->n_fallbacks;
    }
    k->pb = pb;
    return r;
}

static model_rec_t *build_model(segment_t *seg, const Sluice__Config__V1__ModelPrice *pb)
{
    model_rec_t *r = arena_alloc(&seg->arena, sizeof(*r));
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->h.seg = seg;
    r->h.idh = hash_pair(pb->provider, strlen(pb->provider), pb->model, strlen(pb->model));
    r->pub.provider = pb->provider;
    r->pub.model = pb->model;
    r->pub.input_micro_per_mtok = pb->input_micro_per_mtok;
    r->pub.output_micro_per_mtok = pb->output_micro_per_mtok;
    r->pub.cached_input_micro_per_mtok = pb->cached_input_micro_per_mtok;
    r->pub.max_output_tokens = pb->max_output_tokens;
    r->pb = pb;
    return r;
}

static tenant_rec_t *build_tenant(segment_t *seg, const Sluice__Config__V1__Tenant *pb)
{
    tenant_rec_t *r = arena_alloc(&seg->arena, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->h.seg = seg;
    r->h.idh = hash_str(pb->id, strlen(pb->id));
    r->pb = pb;
    return r;
}

/* ---- applying a message ------------------------------------------------- */

/* What one build changes; committed to the shared segments only when every
 * allocation has succeeded. */
typedef struct build {
    dp_snapshot_t *s;
    segment_t *seg;
    rec_hdr_t **dropped; /* records of older segments no longer reachable */
    size_t ndropped, capdropped;
    int touched[KIND_MAX];
} build_t;

static int note_dropped(build_t *b, rec_hdr_t *r)
{
    if (r->seg == b->seg) { /* an id repeated within the message */
        b->seg->nrecs--;
        return 0;
    }
    if (b->ndropped == b->capdropped) {
        size_t cap = b->capdropped ? b->capdropped * 2 : 64;
        rec_hdr_t **d = realloc(b->dropped, cap * sizeof(*d));
        if (d == NULL)
            return SL_ENOMEM;
        b->dropped = d;
        b->capdropped = cap;
    }
    b->dropped[b->ndropped++] = r;
    return 0;
}

/* Gives the build a private, editable index of kind k. */
static int make_private(build_t *b, kind_t k)
{
    if (b->touched[k])
        return 0;
    index_t *old = b->s->ix[k];
    index_t *ix = old != NULL ? index_clone(old) : index_new();
    if (ix == NULL)
        return SL_ENOMEM;
    if (old != NULL)
        index_unref(old);
    b->s->ix[k] = ix;
    b->touched[k] = 1;
    return 0;
}

/* Removes the entity of kind k with the given id (if present). */
static int remove_entity(build_t *b, kind_t k, const char *id)
{
    int rc = make_private(b, k);
    if (rc != 0)
        return rc;
    index_t *ix = b->s->ix[k];
    size_t len = strlen(id);
    rec_hdr_t *r = NULL;
    switch (k) {
    case KIND_TENANT: {
        strarg_t a = {id, len, NULL, 0};
        r = table_find(&ix->by_id, hash_str(id, len), eq_tenant, &a);
        break;
    }
    case KIND_KEY: {
        strarg_t a = {id, len, NULL, 0};
        r = table_find(&ix->by_id, hash_str(id, len), eq_key_id, &a);
        if (r != NULL && (rc = table_del(&ix->by_hash, hash_key(((key_rec_t *)r)->pub.hash), r)) != 0)
            return rc;
        break;
    }
    case KIND_PROVIDER: {
        strarg_t a = {id, len, NULL, 0};
        r = table_find(&ix->by_id, hash_str(id, len), eq_provider, &a);
        break;
    }
    case KIND_MODEL: {
        /* "provider/model": provider names hold no '/', model names may */
        const char *slash = strchr(id, '/');
        if (slash == NULL)
            return 0;
        size_t plen = (size_t)(slash - id);
        strarg_t a = {id, plen, slash + 1, len - plen - 1};
        r = table_find(&ix->by_id, hash_pair(id, plen, slash + 1, len - plen - 1), eq_model, &a);
        break;
    }
    default:
        return 0;
    }
    if (r == NULL)
        return 0;
    if ((rc = table_del(&ix->by_id, r->idh, r)) != 0)
        return rc;
    return note_dropped(b, r);
}

static int insert_entity(build_t *b, kind_t k, rec_hdr_t *r, const char *id)
{
    int rc;
    if ((rc = remove_entity(b, k, id)) != 0)
        return rc;
    index_t *ix = b->s->ix[k];
    if ((rc = table_put(&ix->by_id, r->idh, r)) != 0)
        return rc;
    /* on failure the whole build is discarded: no undo needed */
    if (k == KIND_KEY && (rc = table_put(&ix->by_hash, hash_key(((key_rec_t *)r)->pub.hash), r)) != 0)
        return rc;
    b->seg->nrecs++;
    return 0;
}

static int cmp_prov_model(const void *a, const void *b)
{
    const model_rec_t *x = *(model_rec_t *const *)a, *y = *(model_rec_t *const *)b;
    int c = strcmp(x->pub.provider, y->pub.provider);
    return c != 0 ? c : strcmp(x->pub.model, y->pub.model);
}

static int cmp_model_prov(const void *a, const void *b)
{
    const model_rec_t *x = *(model_rec_t *const *)a, *y = *(model_rec_t *const *)b;
    int c = strcmp(x->pub.model, y->pub.model);
    return c != 0 ? c : strcmp(x->pub.provider, y->pub.provider);
}

static int sort_models(index_t *ix)
{
    free(ix->sorted);
    free(ix->by_name);
    ix->sorted = ix->by_name = NULL;
    ix->nsorted = 0;
    size_t n = ix->by_id.n;
    if (n == 0)
        return 0;
    ix->sorted = malloc(n * sizeof(*ix->sorted));
    ix->by_name = malloc(n * sizeof(*ix->by_name));
    if (ix->sorted == NULL || ix->by_name == NULL)
        return SL_ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < ix->by_id.cap; i++)
        if (slot_at(&ix->by_id, i)->p != NULL)
            ix->sorted[j++] = slot_at(&ix->by_id, i)->p;
    memcpy(ix->by_name, ix->sorted, n * sizeof(*ix->sorted));
    qsort(ix->sorted, n, sizeof(*ix->sorted), cmp_prov_model);
    qsort(ix->by_name, n, sizeof(*ix->by_name), cmp_model_prov);
    ix->nsorted = n;
    return 0;
}

static int build_records(build_t *b, const Sluice__Sync__V1__Snapshot *msg)
{
    segment_t *seg = b->seg;
    int rc;
    for (size_t i = 0; i < msg->n_removed; i++) {
        const Sluice__Sync__V1__Removed *rm = msg->removed[i];
        kind_t k;
        switch (rm->kind) {
        case SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_TENANT:
            k = KIND_TENANT;
            break;
        case SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_VIRTUAL_KEY:
            k = KIND_KEY;
            break;
        case SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_PROVIDER:
            k = KIND_PROVIDER;
            break;
        case SLUICE__SYNC__V1__ENTITY_KIND__ENTITY_KIND_MODEL:
            k = KIND_MODEL;
            break;
        default:
            continue;
        }
        if ((rc = remove_entity(b, k, rm->id)) != 0)
            return rc;
    }
    for (size_t i = 0; i < msg->n_tenants; i++) {
        tenant_rec_t *r = build_tenant(seg, msg->tenants[i]);
        if (r == NULL)
            return SL_ENOMEM;
        if ((rc = insert_entity(b, KIND_TENANT, &r->h, msg->tenants[i]->id)) != 0)
            return rc;
    }
    for (size_t i = 0; i < msg->n_keys; i++) {
        const Sluice__Config__V1__VirtualKey *pb = msg->keys[i];
        if (pb->key_hash.len != 32) {
            sl_warn(MOD, "virtual key \"%s\" has a hash of %zu bytes, not 32: skipped", pb->id, pb->key_hash.len);
            if ((rc = remove_entity(b, KIND_KEY, pb->id)) != 0)
                return rc;
            continue;
        }
        key_rec_t *r = build_key(seg, pb);
        if (r == NULL)
            return SL_ENOMEM;
        if ((rc = insert_entity(b, KIND_KEY, &r->h, pb->id)) != 0)
            return rc;
    }
    for (size_t i = 0; i < msg->n_providers; i++) {
        prov_rec_t *r = build_provider(seg, msg->providers[i]);
        if (r == NULL)
            return SL_ENOMEM;
        if ((rc = insert_entity(b, KIND_PROVIDER, &r->h, msg->providers[i]->name)) != 0)
            return rc;
    }
    for (size_t i = 0; i < msg->n_models; i++) {
        const Sluice__Config__V1__ModelPrice *pb = msg->models[i];
        model_rec_t *r = build_model(seg, pb);
        if (r == NULL)
            return SL_ENOMEM;
        /* id "provider/model" for removal, but insert matches both fields */
        if ((rc = make_private(b, KIND_MODEL)) != 0)
            return rc;
        index_t *ix = b->s->ix[KIND_MODEL];
        strarg_t a = {pb->provider, strlen(pb->provider), pb->model, strlen(pb->model)};
        rec_hdr_t *old = table_find(&ix->by_id, r->h.idh, eq_model, &a);
        if (old != NULL) {
            if ((rc = table_del(&ix->by_id, old->idh, old)) != 0 || (rc = note_dropped(b, old)) != 0)
                return rc;
        }
        if ((rc = table_put(&ix->by_id, r->h.idh, r)) != 0)
            return rc;
        seg->nrecs++;
    }
    if (b->touched[KIND_MODEL] && (rc = sort_models(b->s->ix[KIND_MODEL])) != 0)
        return rc;
    return 0;
}

static dp_snapshot_t *current(void)
{
    return atomic_load_explicit(&g_current, memory_order_relaxed); /* the sync thread is the only writer */
}

int64_t dp_snapshot_current_version(void)
{
    dp_snapshot_t *s = current();
    return s != NULL ? s->version : 0;
}

static void retire(dp_snapshot_t *old)
{
    old->seen = calloc(g_nworkers > 0 ? (size_t)g_nworkers : 1, sizeof(uint64_t));
    if (old->seen == NULL) {
        /* cannot record the grace period: keep it forever rather than risk
         * freeing it under a worker */
        sl_error(MOD, "out of memory retiring snapshot %lld; it is leaked", (long long)old->version);
        return;
    }
    for (int i = 0; i < g_nworkers; i++)
        old->seen[i] = atomic_load_explicit(&g_workers[i].counter, memory_order_seq_cst);
    old->published = 1;
    old->next_retired = g_retired;
    g_retired = old;
}

int dp_snapshot_apply(Sluice__Sync__V1__Snapshot *msg)
{
    dp_snapshot_t *cur = current();
    int64_t curv = cur != NULL ? cur->version : 0;
    if (msg->version <= curv || (cur == NULL && msg->version <= 0)) {
        sl_debug(MOD, "ignoring snapshot version %lld, holding %lld", (long long)msg->version, (long long)curv);
        sluice__sync__v1__snapshot__free_unpacked(msg, NULL);
        return 1;
    }
    if (!msg->full && msg->base_version != curv) {
        sl_info(MOD, "delta %lld on base %lld does not apply to version %lld", (long long)msg->version,
                (long long)msg->base_version, (long long)curv);
        sluice__sync__v1__snapshot__free_unpacked(msg, NULL);
        return SL_EINVAL;
    }

    build_t b = {0};
    int rc = SL_ENOMEM;
    if ((b.seg = calloc(1, sizeof(*b.seg))) == NULL) {
        sluice__sync__v1__snapshot__free_unpacked(msg, NULL);
        goto fail;
    }
    b.seg->msg = msg;
    b.s = calloc(1, sizeof(*b.s));
    size_t maxsegs = 1 + (msg->full || cur == NULL ? 0 : cur->nsegs);
    if (b.s == NULL || (b.s->segs = calloc(maxsegs, sizeof(segment_t *))) == NULL)
        goto fail;
    atomic_init(&b.s->refs, 1);
    b.s->version = msg->version;
    b.s->generated_ms = msg->generated_unix_ms;
    if (!msg->full && cur != NULL) {
        b.s->has_pepper = cur->has_pepper;
        memcpy(b.s->pepper, cur->pepper, 32);
        for (int k = 0; k < KIND_MAX; k++) {
            b.s->ix[k] = cur->ix[k];
            b.s->ix[k]->refs++;
        }
    } else {
        for (int k = 0; k < KIND_MAX; k++)
            if ((b.s->ix[k] = index_new()) == NULL)
                goto fail;
    }
    if (msg->key_pepper.len == 32) {
        b.s->has_pepper = 1;
        memcpy(b.s->pepper, msg->key_pepper.data, 32);
    } else if (msg->key_pepper.len != 0) {
        sl_warn(MOD, "snapshot %lld carries a key pepper of %zu bytes, not 32: ignored", (long long)msg->version,
                msg->key_pepper.len);
    } else if (msg->full) {
        sl_warn(MOD, "full snapshot %lld carries no key pepper: virtual keys cannot be checked",
                (long long)msg->version);
    }
    if ((rc = build_records(&b, msg)) != 0)
        goto fail;

    /* commit: nothing below can fail (msg may be freed below) */
    int full = msg->full;
    for (size_t i = 0; i < b.ndropped; i++)
        b.dropped[i]->seg->nrecs--;
    free(b.dropped);
    if (!full && cur != NULL)
        for (size_t i = 0; i < cur->nsegs; i++)
            if (cur->segs[i]->nrecs > 0)
                b.s->segs[b.s->nsegs++] = cur->segs[i];
    if (b.seg->nrecs > 0)
        b.s->segs[b.s->nsegs++] = b.seg;
    for (size_t i = 0; i < b.s->nsegs; i++)
        b.s->segs[i]->refs++;
    if (b.seg->refs == 0)
        segment_free(b.seg); /* e.g. a delta of removals only */

    dp_snapshot_t *old = atomic_exchange_explicit(&g_current, b.s, memory_order_seq_cst);
    if (old != NULL)
        retire(old);
    sl_debug(MOD, "applied %s snapshot version %lld", full ? "full" : "delta", (long long)b.s->version);
    return 0;

fail:
    sl_error(MOD, "could not build a snapshot: %s", sl_strerror(rc));
    free(b.dropped);
    if (b.s != NULL) {
        /* the new snapshot lists no segment yet: release indexes only */
        for (int k = 0; k < KIND_MAX; k++)
            index_unref(b.s->ix[k]);
        free(b.s->segs);
        free(b.s);
    }
    if (b.seg != NULL) {
        /* records of the new segment may sit in private tables freed above;
         * nrecs of older segments were not touched */
        segment_free(b.seg);
    }
    return rc;
}

void dp_snapshot_reclaim(void)
{
    dp_snapshot_t **pp = &g_retired;
    while (*pp != NULL) {
        dp_snapshot_t *s = *pp;
        if (s->published) {
            int passed = 1;
            for (int i = 0; i < g_nworkers && passed; i++) {
                if (!atomic_load_explicit(&g_workers[i].online, memory_order_seq_cst))
                    continue;
                if (atomic_load_explicit(&g_workers[i].counter, memory_order_seq_cst) == s->seen[i])
                    passed = 0;
            }
            if (passed) {
                atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel);
                s->published = 0;
            }
        }
        if (!s->published && atomic_load_explicit(&s->refs, memory_order_acquire) == 0) {
            *pp = s->next_retired;
            sl_debug(MOD, "freed snapshot version %lld", (long long)s->version);
            snapshot_free(s);
            continue;
        }
        pp = &s->next_retired;
    }
}

/* ---- serialization ------------------------------------------------------ */

static size_t collect(const table_t *t, void **out)
{
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (slot_at(t, i)->p != NULL)
            out[n++] = slot_at(t, i)->p;
    return n;
}

int dp_snapshot_pack_full(uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    dp_snapshot_t *s = current();
    if (s == NULL)
        return SL_ENOTFOUND;
    Sluice__Sync__V1__Snapshot m = SLUICE__SYNC__V1__SNAPSHOT__INIT;
    m.version = s->version;
    m.full = 1;
    m.generated_unix_ms = s->generated_ms;
    if (s->has_pepper) {
        m.key_pepper.data = s->pepper;
        m.key_pepper.len = 32;
    }
    size_t nt = s->ix[KIND_TENANT]->by_id.n, nk = s->ix[KIND_KEY]->by_id.n, np = s->ix[KIND_PROVIDER]->by_id.n,
           nm = s->ix[KIND_MODEL]->nsorted;
    void **recs = malloc((nt + nk + np + nm + 1) * sizeof(void *));
    void **pbs = malloc((nt + nk + np + nm + 1) * sizeof(void *));
    int rc = SL_ENOMEM;
    if (recs == NULL || pbs == NULL)
        goto out;
    void **p = pbs;
    size_t n = collect(&s->ix[KIND_TENANT]->by_id, recs);
    for (size_t i = 0; i < n; i++)
        p[i] = (void *)((tenant_rec_t *)recs[i])->pb;
    m.n_tenants = n;
    m.tenants = (Sluice__Config__V1__Tenant **)p;
    p += n;
    n = collect(&s->ix[KIND_KEY]->by_id, recs);
    for (size_t i = 0; i < n; i++)
        p[i] = (void *)((key_rec_t *)recs[i])->pub.pb;
    m.n_keys = n;
    m.keys = (Sluice__Config__V1__VirtualKey **)p;
    p += n;
    n = collect(&s->ix[KIND_PROVIDER]->by_id, recs);
    for (size_t i = 0; i < n; i++)
        p[i] = (void *)((prov_rec_t *)recs[i])->pub.pb;
    m.n_providers = n;
    m.providers = (Sluice__Config__V1__Provider **)p;
    p += n;
    for (size_t i = 0; i < nm; i++)
        p[i] = (void *)s->ix[KIND_MODEL]->sorted[i]->pb;
    m.n_models = nm;
    m.models = (Sluice__Config__V1__ModelPrice **)p;

    *outlen = sluice__sync__v1__snapshot__get_packed_size(&m);
    *out = malloc(*outlen > 0 ? *outlen : 1);
    if (*out == NULL) {
        *outlen = 0;
        goto out;
    }
    sluice__sync__v1__snapshot__pack(&m, *out);
    rc = 0;
out:
    free(recs);
    free(pbs);
    return rc;
}

void dp_snapshot_shutdown(void)
{
    dp_snapshot_t *s = atomic_exchange(&g_current, NULL);
    if (s != NULL)
        snapshot_free(s);
    while (g_retired != NULL) {
        dp_snapshot_t *r = g_retired;
        g_retired = r->next_retired;
        snapshot_free(r);
    }
    free(g_workers);
    g_workers = NULL;
    g_nworkers = 0;
}

size_t dp_snapshot_retired_count(void)
{
    size_t n = 0;
    for (const dp_snapshot_t *s = g_retired; s != NULL; s = s->next_retired)
        n++;
    return n;
}
