/*
 * dp_journal.c - per-worker usage journals in the spool directory, and
 * their recovery after a crash.
 *
 * Why. Workers aggregate usage in memory and hand it to the reporter every
 * second at most; a report is written to the spool directory when it is
 * frozen (before its first send). Without the journal a `kill -9` loses
 * what was recorded since the last freeze. With it, a request is durable
 * against a process crash the moment dp_usage_record returns: its record
 * is in a shared file mapping, i.e. in the page cache, which outlives the
 * process. Nothing is synced to disk: a kernel crash or power loss may lose
 * recent records (and the spool directory's recent files), which is out of
 * scope here.
 *
 * Files (host byte order; read only on the machine that wrote them), one
 * set per process (boot):
 *   journal-<boot>.idx      the index: node id, boot id, worker count, the
 *                           last acknowledged report seq and the coverage of
 *                           the last few frozen reports ("intents"). Locked
 *                           (flock) for as long as the process lives.
 *   journal-<boot>-<w>.jnl  worker w's journal: DP_JOURNAL_SEGS segments of
 *                           DP_JOURNAL_SEG_RECS slots of 64 bytes, used as a
 *                           ring of segments.
 *
 * Records. Every record starts with a checksum of the whole record, a
 * type, its length in slots and a sequence number:
 *   SEG    slot 0 of a segment: worker, generation, and the sequence number
 *          of the segment's first usage record;
 *   TUPLE  the strings (key, tenant, provider, model) behind a small tuple
 *          id; written before the first usage record of a segment that
 *          uses it, so every segment is readable on its own (the ring may
 *          have reused the segments before it); carries the sequence number
 *          of the usage record that follows it;
 *   USAGE  one request: tuple id, minute, tokens, cost, error flag. Usage
 *          records are numbered 1, 2, ... per worker, consecutively.
 * A segment is read from its header while each record's checksum holds and
 * its sequence number is the one expected; that stops at a torn record (a
 * process killed mid-write), at the end of what was written, and at stale
 * records an earlier generation left further on in a reused segment
 * (their numbers are lower). A torn record never reached dp_usage_record's
 * caller as done, so losing it is losing a request in flight.
 *
 * Coverage. A worker hands its table to the reporter together with the
 * number of the last record it journaled; a report therefore covers, per
 * worker, every record up to some number cov[w], and cov only grows from
 * one report to the next. When the reporter freezes report n it first
 * writes intent(n) = (n, cov) into index slot n mod 4, then writes the
 * spool file (rename, so it exists whole or not at all), or, when that
 * fails, marks the intent "unspooled" before the first send. Report n+1
 * is frozen only after that, so at most the newest intent is in doubt.
 * Once frozen, the records a report covers are no longer needed (the spool
 * file, or the acknowledgement, carries them) and their space is reused;
 * a worker that would overwrite records not yet covered stops journaling
 * (the requests are still reported, only not crash-safe; counted, logged)
 * and raises "pressure", which makes it hand off and the reporter freeze
 * every queued report at once, before the ring can fill.
 *
 * Recovery (dp_journal_recover, at start, before this process journals):
 * for each index of another boot that is not locked (its process is gone):
 *   1. m = the highest intent whose checksum holds (0: none). Report m was
 *      frozen iff its spool file <boot>-<m>.pb exists, or m <= the acked
 *      seq, or it is marked unspooled. The frontier is cov(m) if it was,
 *      else cov(m-1) (intent m-1 was frozen before intent m was written;
 *      none: 0), since report m was then never sent.
 *   2. Every usage record above the frontier is handed to the replay
 *      callback, which writes it as new reports of that boot numbered
 *      m+1, m+2, ... (never a number an intent used, so never the number
 *      of a report that might have reached the control plane with other
 *      content).
 *   3. The index is deleted (this is the commit point), then the journals.
 * A crash during recovery before step 3 leaves index and journals as they
 * were: the next recovery computes the same frontier and numbers and
 * overwrites the same files with the same usage, and the control plane's
 * (node_id, boot_id, seq) dedupe absorbs anything sent twice. Replayed
 * reports are not sent before step 3 completes (the caller sends only
 * after recovery). Journals without an index are what a crash between
 * steps 3's deletions leaves: they are deleted. Reports frozen but not
 * spooled (a spool write that failed) and never acknowledged are not
 * rebuilt: if the control plane did not apply them their usage is lost,
 * and recovery says so; counting them again could bill twice.
 */
#include "dp_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl_err.h"
#include "sl_log.h"

#define MOD "journal"

#define SLOT 64
#define SEG_BYTES ((size_t)DP_JOURNAL_SEG_RECS * SLOT)
#define FILE_BYTES ((size_t)DP_JOURNAL_SEGS * SEG_BYTES)
#define SEG_MAGIC 0x47534a53u /* "SJSG" */
#define IDX_MAGIC 0x58494a53u /* "SJIX" */
#define IDX_VERSION 1
#define NINTENTS 4
#define NODE_MAX 256
#define BOOT_MAX 64
#define TUPLE_MAX_BYTES 8192 /* the four strings together */

enum { T_SEG = 1, T_TUPLE = 2, T_USAGE = 3 };

typedef struct jhead {
    uint32_t sum;
    uint8_t type, nslots, error, pad;
    uint64_t seq;
} jhead_t;

typedef struct jusage {
    jhead_t h;
    uint32_t tuple, pad;
    int64_t minute, input, cached, output, cost;
} jusage_t;

typedef struct jseg {
    jhead_t h;
    uint32_t worker, magic;
    uint64_t gen;
    uint8_t pad[32];
} jseg_t;

typedef struct jtuple_rec {
    jhead_t h;
    uint32_t tuple;
    uint16_t len[4];
    uint32_t pad;
    /* the four strings follow, not terminated */
} jtuple_rec_t;

_Static_assert(sizeof(jusage_t) == SLOT, "usage record is one slot");
_Static_assert(sizeof(jseg_t) == SLOT, "segment header is one slot");
_Static_assert(sizeof(jtuple_rec_t) == 32, "tuple record header");

typedef struct idx_hdr {
    uint32_t sum; /* first: rsum skips it */
    uint32_t magic, version, nworkers;
    char node_id[NODE_MAX];
    char boot_id[BOOT_MAX];
    uint8_t pad[512 - 16 - NODE_MAX - BOOT_MAX];
} idx_hdr_t;

#define IDX_ACKED_OFF 512
#define IDX_SLOTS_OFF 576

typedef struct intent {
    uint32_t sum;          /* over seq and cov */
    _Atomic uint32_t unspooled;
    int64_t seq;
    uint64_t cov[];
} intent_t;

struct dp_jtuple {
    uint64_t h;
    uint32_t id;
    uint32_t nslots;
    uint64_t emitted_gen; /* generation of the segment it was last written to */
    const char *s[4];
    size_t rec_len;       /* bytes of the record image, a multiple of SLOT */
    unsigned char rec[];  /* the TUPLE record (seq and sum filled per write) */
};

typedef struct jworker {
    _Alignas(64) unsigned char *base;
    uint64_t next_seq;
    uint64_t gen;
    uint32_t seg, pos;
    uint64_t seg_max[DP_JOURNAL_SEGS]; /* highest usage seq written in each segment */
    dp_jtuple_t **tab;
    size_t cap, n;
    uint32_t next_id;
    int full_logged;
    _Alignas(64) _Atomic uint64_t reclaim; /* records <= this are covered (reporter) */
    _Atomic int pressure;
} jworker_t;

struct dp_journal {
    char *dir, *boot;
    int nworkers;
    int idx_fd;
    unsigned char *idx;
    size_t idx_len, intent_len;
    jworker_t *w;
    _Atomic uint64_t skipped;
};

/* ---- helpers ------------------------------------------------------------ */

/* Checksum of len bytes (a multiple of 8) whose first 4 bytes (the sum
 * field) are taken as zero. */
static uint32_t rsum(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0x243f6a8885a308d3ULL, v;
    for (size_t i = 0; i < len; i += 8) {
        memcpy(&v, b + i, 8);
        if (i == 0)
            v &= ~(uint64_t)0xffffffffu; /* little endian: the sum field */
        h = (h ^ v) * 0x9fb21c651e98df25ULL;
        h ^= h >> 31;
    }
    h ^= len;
    h *= 0xff51afd7ed558ccdULL;
    return (uint32_t)(h ^ (h >> 32));
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= 0xff;
    return h * 0x100000001b3ULL;
}

static char *idx_path(const char *dir, const char *boot)
{
    char *p = NULL;
    return asprintf(&p, "%s/journal-%s.idx", dir, boot) < 0 ? NULL : p;
}

static char *jnl_path(const char *dir, const char *boot, int w)
{
    char *p = NULL;
    return asprintf(&p, "%s/journal-%s-%d.jnl", dir, boot, w) < 0 ? NULL : p;
}

static size_t intent_size(int nworkers)
{
    return (sizeof(intent_t) + (size_t)nworkers * sizeof(uint64_t) + 63) & ~(size_t)63;
}

static size_t idx_size(int nworkers)
{
    return (IDX_SLOTS_OFF + NINTENTS * intent_size(nworkers) + 4095) & ~(size_t)4095;
}

static intent_t *intent_at(unsigned char *idx, size_t ilen, int64_t seq)
{
    return (intent_t *)(idx + IDX_SLOTS_OFF + (size_t)(seq % NINTENTS) * ilen);
}

static uint32_t intent_sum(const intent_t *in, int nworkers)
{
    /* seq and cov, not the unspooled flag (set later by one store) */
    uint64_t buf[1 + 256];
    int n = nworkers < 256 ? nworkers : 256;
    buf[0] = (uint64_t)in->seq;
    memcpy(&buf[1], in->cov, (size_t)n * sizeof(uint64_t));
    return rsum(buf, (size_t)(n + 1) * 8) ^ 0x5a5a5a5au;
}

/* A file of len bytes, zero-filled, mapped shared. */
static unsigned char *map_new(const char *path, size_t len, int *fd_out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    /* allocate the blocks now, not on the hot path's first touch */
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc != 0 && ftruncate(fd, (off_t)len) != 0) {
        close(fd);
        unlink(path);
        return NULL;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        unlink(path);
        return NULL;
    }
    if (fd_out != NULL)
        *fd_out = fd;
    else
        close(fd);
    return m;
}

/* ---- writer ------------------------------------------------------------- */

static void write_seg_header(jworker_t *jw, int w)
{
    jseg_t s;
    memset(&s, 0, sizeof(s));
    s.h.type = T_SEG;
    s.h.nslots = 1;
    s.h.seq = jw->next_seq;
    s.worker = (uint32_t)w;
    s.magic = SEG_MAGIC;
    s.gen = jw->gen;
    s.h.sum = rsum(&s, sizeof(s));
    memcpy(jw->base + (size_t)jw->seg * SEG_BYTES, &s, sizeof(s));
    jw->pos = 1;
}

int dp_journal_open(const char *dir, const char *node_id, const char *boot_id, int nworkers, dp_journal_t **out)
{
    *out = NULL;
    if (nworkers <= 0 || nworkers > 256 || strlen(node_id) >= NODE_MAX || strlen(boot_id) >= BOOT_MAX)
        return SL_EINVAL;
    dp_journal_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return SL_ENOMEM;
    j->idx_fd = -1;
    j->nworkers = nworkers;
    j->dir = strdup(dir);
    j->boot = strdup(boot_id);
    j->w = aligned_alloc(64, ((size_t)nworkers * sizeof(jworker_t) + 63) & ~(size_t)63);
    int rc = SL_ENOMEM;
    if (j->dir == NULL || j->boot == NULL || j->w == NULL)
        goto fail;
    memset(j->w, 0, (size_t)nworkers * sizeof(jworker_t));
    rc = SL_EIO;
    /* the index first: journals without an index are deleted by recovery */
    char *ip = idx_path(dir, boot_id);
    if (ip == NULL) {
        rc = SL_ENOMEM;
        goto fail;
    }
    j->intent_len = intent_size(nworkers);
    j->idx_len = idx_size(nworkers);
    j->idx = map_new(ip, j->idx_len, &j->idx_fd);
    free(ip);
    if (j->idx == NULL)
        goto fail;
    if (flock(j->idx_fd, LOCK_EX | LOCK_NB) != 0)
        goto fail;
    idx_hdr_t *h = (idx_hdr_t *)j->idx;
    h->magic = IDX_MAGIC;
    h->version = IDX_VERSION;
    h->nworkers = (uint32_t)nworkers;
    snprintf(h->node_id, sizeof(h->node_id), "%s", node_id);
    snprintf(h->boot_id, sizeof(h->boot_id), "%s", boot_id);
    h->sum = rsum(h, sizeof(*h));
    for (int i = 0; i < nworkers; i++) {
        jworker_t *jw = &j->w[i];
        char *p = jnl_path(dir, boot_id, i);
        if (p == NULL) {
            rc = SL_ENOMEM;
            goto fail;
        }
        jw->base = map_new(p, FILE_BYTES, NULL);
        free(p);
        if (jw->base == NULL)
            goto fail;
        jw->next_seq = 1;
        jw->gen = 1;
        jw->seg = 0;
        write_seg_header(jw, i);
    }
    *out = j;
    return 0;
fail:
    dp_journal_close(j, 1);
    return rc;
}

void dp_journal_close(dp_journal_t *j, int remove_files)
{
    if (j == NULL)
        return;
    if (j->w != NULL) {
        for (int i = 0; i < j->nworkers; i++) {
            jworker_t *jw = &j->w[i];
            if (jw->base != NULL)
                munmap(jw->base, FILE_BYTES);
            for (size_t k = 0; k < jw->cap; k++)
                free(jw->tab[k]);
            free(jw->tab);
            if (remove_files && j->dir != NULL && j->boot != NULL) {
                char *p = jnl_path(j->dir, j->boot, i);
                if (p != NULL)
                    unlink(p);
                free(p);
            }
        }
    }
    if (remove_files && j->dir != NULL && j->boot != NULL) {
        char *p = idx_path(j->dir, j->boot);
        if (p != NULL)
            unlink(p);
        free(p);
    }
    if (j->idx != NULL)
        munmap(j->idx, j->idx_len);
    if (j->idx_fd >= 0)
        close(j->idx_fd); /* releases the lock */
    free(j->w);
    free(j->dir);
    free(j->boot);
    free(j);
}

static int tab_grow(jworker_t *jw)
{
    if ((jw->n + 1) * 2 <= jw->cap)
        return 0;
    size_t cap = jw->cap ? jw->cap * 2 : 64;
    dp_jtuple_t **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < jw->cap; i++) {
        dp_jtuple_t *e = jw->tab[i];
        if (e == NULL)
            continue;
        size_t k = (size_t)e->h & (cap - 1);
        while (t[k] != NULL)
            k = (k + 1) & (cap - 1);
        t[k] = e;
    }
    free(jw->tab);
    jw->tab = t;
    jw->cap = cap;
    return 0;
}

dp_jtuple_t *dp_journal_tuple(dp_journal_t *j, int w, const char *key_id, const char *tenant_id, const char *provider,
                              const char *model)
{
    jworker_t *jw = &j->w[w];
    const char *s[4] = {key_id, tenant_id, provider, model};
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 4; i++)
        h = fnv(h, s[i]);
    if (jw->cap != 0) {
        for (size_t k = (size_t)h & (jw->cap - 1);; k = (k + 1) & (jw->cap - 1)) {
            dp_jtuple_t *e = jw->tab[k];
            if (e == NULL)
                break;
            if (e->h == h && strcmp(e->s[0], key_id) == 0 && strcmp(e->s[1], tenant_id) == 0 &&
                strcmp(e->s[2], provider) == 0 && strcmp(e->s[3], model) == 0)
                return e;
        }
    }
    size_t len[4], total = 0;
    for (int i = 0; i < 4; i++) {
        len[i] = strlen(s[i]);
        total += len[i];
    }
    if (total > TUPLE_MAX_BYTES || tab_grow(jw) != 0)
        return NULL;
    size_t rec_len = (sizeof(jtuple_rec_t) + total + SLOT - 1) / SLOT * SLOT;
    /* the record image, then the four strings again, terminated */
    dp_jtuple_t *e = calloc(1, sizeof(*e) + rec_len + total + 4);
    if (e == NULL)
        return NULL;
    e->h = h;
    e->id = jw->next_id++;
    e->rec_len = rec_len;
    e->nslots = (uint32_t)(rec_len / SLOT);
    jtuple_rec_t *r = (jtuple_rec_t *)e->rec;
    r->h.type = T_TUPLE;
    r->h.nslots = (uint8_t)e->nslots;
    r->tuple = e->id;
    char *p = (char *)e->rec + sizeof(jtuple_rec_t);
    char *q = (char *)e->rec + rec_len;
    for (int i = 0; i < 4; i++) {
        r->len[i] = (uint16_t)len[i];
        memcpy(p, s[i], len[i]);
        p += len[i];
        memcpy(q, s[i], len[i] + 1);
        e->s[i] = q;
        q += len[i] + 1;
    }
    size_t k = (size_t)h & (jw->cap - 1);
    while (jw->tab[k] != NULL)
        k = (k + 1) & (jw->cap - 1);
    jw->tab[k] = e;
    jw->n++;
    return e;
}

static int seg_free(jworker_t *jw, uint32_t seg, uint64_t reclaim)
{
    return jw->seg_max[seg] <= reclaim;
}

/* Moves to the next segment of the ring if every record in it is covered. */
static int next_segment(jworker_t *jw, int w)
{
    uint32_t ns = (jw->seg + 1) % DP_JOURNAL_SEGS;
    uint64_t rec = atomic_load_explicit(&jw->reclaim, memory_order_acquire);
    if (!seg_free(jw, ns, rec)) {
        atomic_store_explicit(&jw->pressure, 1, memory_order_relaxed);
        return -1;
    }
    jw->seg = ns;
    jw->gen++;
    jw->seg_max[ns] = 0;
    write_seg_header(jw, w);
    /* one segment of headroom left: ask for reports to be frozen now */
    int p = !seg_free(jw, (ns + 1) % DP_JOURNAL_SEGS, rec);
    atomic_store_explicit(&jw->pressure, p, memory_order_relaxed);
    return 0;
}

uint64_t dp_journal_append(dp_journal_t *j, int w, dp_jtuple_t *t, int64_t minute, const dp_usage_rec_t *r)
{
    jworker_t *jw = &j->w[w];
    if (atomic_load_explicit(&jw->pressure, memory_order_relaxed)) {
        uint64_t rec = atomic_load_explicit(&jw->reclaim, memory_order_acquire);
        if (seg_free(jw, (jw->seg + 1) % DP_JOURNAL_SEGS, rec))
            atomic_store_explicit(&jw->pressure, 0, memory_order_relaxed);
    }
    uint32_t need = 1 + (t->emitted_gen != jw->gen ? t->nslots : 0);
    if (jw->pos + need > DP_JOURNAL_SEG_RECS) {
        if (next_segment(jw, w) != 0) {
            atomic_fetch_add_explicit(&j->skipped, 1, memory_order_relaxed);
            if (!jw->full_logged) {
                jw->full_logged = 1;
                sl_warn(MOD, "worker %d: usage journal full of records no frozen report covers; new requests "
                             "are reported but not crash-safe until reports are frozen",
                        w);
            }
            return 0;
        }
        if (jw->full_logged) {
            jw->full_logged = 0;
            sl_info(MOD, "worker %d: usage journal has room again", w);
        }
    }
    unsigned char *at = jw->base + (size_t)jw->seg * SEG_BYTES + (size_t)jw->pos * SLOT;
    if (t->emitted_gen != jw->gen) {
        jtuple_rec_t *tr = (jtuple_rec_t *)t->rec;
        tr->h.seq = jw->next_seq;
        tr->h.sum = rsum(t->rec, t->rec_len);
        memcpy(at, t->rec, t->rec_len);
        at += t->rec_len;
        jw->pos += t->nslots;
        t->emitted_gen = jw->gen;
    }
    jusage_t u = {
        .h = {.type = T_USAGE, .nslots = 1, .error = r->error ? 1 : 0, .seq = jw->next_seq},
        .tuple = t->id,
        .minute = minute,
        .input = r->input_tokens,
        .cached = r->cached_input_tokens,
        .output = r->output_tokens,
        .cost = r->cost_nano,
    };
    u.h.sum = rsum(&u, sizeof(u));
    memcpy(at, &u, sizeof(u));
    jw->pos++;
    jw->seg_max[jw->seg] = jw->next_seq;
    return jw->next_seq++;
}

int dp_journal_pressure(dp_journal_t *j, int w)
{
    return atomic_load_explicit(&j->w[w].pressure, memory_order_relaxed);
}

uint64_t dp_journal_skipped(dp_journal_t *j)
{
    return j != NULL ? atomic_load_explicit(&j->skipped, memory_order_relaxed) : 0;
}

/* ---- reporter ----------------------------------------------------------- */

void dp_journal_intent(dp_journal_t *j, int64_t seq, const uint64_t *cov)
{
    intent_t *in = intent_at(j->idx, j->intent_len, seq);
    in->sum = 0;
    atomic_store_explicit(&in->unspooled, 0, memory_order_relaxed);
    in->seq = seq;
    memcpy(in->cov, cov, (size_t)j->nworkers * sizeof(uint64_t));
    in->sum = intent_sum(in, j->nworkers);
}

void dp_journal_unspooled(dp_journal_t *j, int64_t seq)
{
    intent_t *in = intent_at(j->idx, j->intent_len, seq);
    if (in->seq == seq)
        atomic_store_explicit(&in->unspooled, 1, memory_order_relaxed);
}

void dp_journal_reclaim(dp_journal_t *j, const uint64_t *cov)
{
    for (int i = 0; i < j->nworkers; i++) {
        jworker_t *jw = &j->w[i];
        if (cov[i] > atomic_load_explicit(&jw->reclaim, memory_order_relaxed))
            atomic_store_explicit(&jw->reclaim, cov[i], memory_order_release);
    }
}

void dp_journal_acked(dp_journal_t *j, int64_t seq)
{
    _Atomic int64_t *acked = (_Atomic int64_t *)(j->idx + IDX_ACKED_OFF);
    if (seq > atomic_load_explicit(acked, memory_order_relaxed))
        atomic_store_explicit(acked, seq, memory_order_relaxed);
}

/* ---- recovery ----------------------------------------------------------- */

typedef struct rtuple {
    char *s[4]; /* NULL: not seen */
} rtuple_t;

typedef struct rstate {
    dp_usage_rec_t *recs;
    size_t n, cap;
    rtuple_t *tuples;
    size_t ntuples;
    uint64_t torn, undefined;
} rstate_t;

static int push_rec(rstate_t *st, const dp_usage_rec_t *r)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        dp_usage_rec_t *n = realloc(st->recs, cap * sizeof(*n));
        if (n == NULL)
            return SL_ENOMEM;
        st->recs = n;
        st->cap = cap;
    }
    st->recs[st->n++] = *r;
    return 0;
}

static int define_tuple(rstate_t *st, const jtuple_rec_t *tr)
{
    if (tr->tuple >= 1u << 24)
        return SL_EINVAL;
    if (tr->tuple >= st->ntuples) {
        size_t n = st->ntuples ? st->ntuples : 64;
        while (n <= tr->tuple)
            n *= 2;
        rtuple_t *t = realloc(st->tuples, n * sizeof(*t));
        if (t == NULL)
            return SL_ENOMEM;
        memset(t + st->ntuples, 0, (n - st->ntuples) * sizeof(*t));
        st->tuples = t;
        st->ntuples = n;
    }
    rtuple_t *t = &st->tuples[tr->tuple];
    if (t->s[0] != NULL)
        return 0;
    const char *p = (const char *)tr + sizeof(*tr);
    for (int i = 0; i < 4; i++) {
        if ((t->s[i] = strndup(p, tr->len[i])) == NULL)
            return SL_ENOMEM;
        p += tr->len[i];
    }
    return 0;
}

/* Reads one worker journal (a copy in memory), adding usage records above
 * frontier. Tuple ids are per worker: st->tuples is reset by the caller. */
static int read_journal(const unsigned char *buf, size_t len, int w, uint64_t frontier, rstate_t *st)
{
    unsigned char tmp[TUPLE_MAX_BYTES + 2 * SLOT];
    for (size_t seg = 0; seg < DP_JOURNAL_SEGS && (seg + 1) * SEG_BYTES <= len; seg++) {
        const unsigned char *s = buf + seg * SEG_BYTES;
        jseg_t sh;
        memcpy(&sh, s, sizeof(sh));
        if (sh.h.type != T_SEG || sh.magic != SEG_MAGIC || sh.worker != (uint32_t)w || rsum(&sh, sizeof(sh)) != sh.h.sum)
            continue; /* never written, or a header torn while the segment was being reused */
        uint64_t expect = sh.h.seq;
        uint32_t pos = 1;
        while (pos < DP_JOURNAL_SEG_RECS) {
            const unsigned char *at = s + (size_t)pos * SLOT;
            jhead_t h;
            memcpy(&h, at, sizeof(h));
            if (h.seq != expect || h.nslots == 0 || pos + h.nslots > DP_JOURNAL_SEG_RECS)
                break;
            size_t rl = (size_t)h.nslots * SLOT;
            if (h.type == T_TUPLE && rl <= sizeof(tmp)) {
                memcpy(tmp, at, rl);
                if (rsum(tmp, rl) != h.sum) {
                    st->torn++;
                    break;
                }
                jtuple_rec_t tr;
                memcpy(&tr, tmp, sizeof(tr));
                size_t total = (size_t)tr.len[0] + tr.len[1] + tr.len[2] + tr.len[3];
                if (sizeof(tr) + total > rl)
                    break;
                int rc = define_tuple(st, (const jtuple_rec_t *)tmp);
                if (rc == SL_ENOMEM)
                    return rc;
            } else if (h.type == T_USAGE && h.nslots == 1) {
                jusage_t u;
                memcpy(&u, at, sizeof(u));
                if (rsum(&u, sizeof(u)) != u.h.sum) {
                    st->torn++;
                    break;
                }
                expect++;
                if (u.h.seq > frontier) {
                    if (u.tuple >= st->ntuples || st->tuples[u.tuple].s[0] == NULL) {
                        st->undefined++;
                    } else {
                        const rtuple_t *t = &st->tuples[u.tuple];
                        dp_usage_rec_t r = {
                            .key_id = t->s[0],
                            .tenant_id = t->s[1],
                            .provider = t->s[2],
                            .model = t->s[3],
                            .unix_sec = u.minute,
                            .input_tokens = u.input,
                            .cached_input_tokens = u.cached,
                            .output_tokens = u.output,
                            .cost_nano = u.cost,
                            .error = u.h.error,
                        };
                        if (push_rec(st, &r) != 0)
                            return SL_ENOMEM;
                    }
                }
            } else {
                break;
            }
            pos += h.nslots;
        }
    }
    return 0;
}

static int read_whole(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    struct stat st;
    int rc = SL_EIO;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size > FILE_BYTES) {
        close(fd);
        return rc;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    if (b == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, b + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    *out = b;
    *len = off;
    return 0;
}

static int spool_exists(const char *dir, const char *boot, int64_t seq)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s-%lld.pb", dir, boot, (long long)seq) < 0)
        return 0;
    struct stat st;
    int ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

static void remove_journals(const char *dir, const char *boot)
{
    /* every journal-<boot>-<w>.jnl, whatever the worker count */
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    char prefix[BOOT_MAX + 16];
    snprintf(prefix, sizeof(prefix), "journal-%s-", boot);
    size_t pl = strlen(prefix);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > pl + 4 && strncmp(de->d_name, prefix, pl) == 0 && strcmp(de->d_name + l - 4, ".jnl") == 0) {
            char *p = NULL;
            if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0) {
                unlink(p);
                free(p);
            }
        }
    }
    closedir(d);
}

/* Recovers one boot whose index is locked by us (fd). */
static int recover_boot(const char *dir, const char *boot, const unsigned char *idx, size_t idx_len,
                        dp_journal_replay_fn replay, void *ctx)
{
    idx_hdr_t h;
    if (idx_len < IDX_SLOTS_OFF) {
        sl_error(MOD, "usage journal index of boot %s is truncated; its unreported usage is lost", boot);
        return 1;
    }
    memcpy(&h, idx, sizeof(h));
    if (h.magic != IDX_MAGIC || h.version != IDX_VERSION || h.nworkers == 0 || h.nworkers > 256 ||
        rsum(&h, sizeof(h)) != h.sum || idx_len < idx_size((int)h.nworkers) ||
        memchr(h.node_id, 0, sizeof(h.node_id)) == NULL || strcmp(h.boot_id, boot) != 0) {
        sl_error(MOD, "usage journal index of boot %s is unreadable; its unreported usage is lost", boot);
        return 1;
    }
    int nw = (int)h.nworkers;
    size_t ilen = intent_size(nw);
    int64_t acked;
    memcpy(&acked, idx + IDX_ACKED_OFF, sizeof(acked));
    const intent_t *best = NULL, *prev = NULL;
    const intent_t *valid[NINTENTS];
    int nvalid = 0;
    for (int i = 0; i < NINTENTS; i++) {
        const intent_t *in = (const intent_t *)(idx + IDX_SLOTS_OFF + (size_t)i * ilen);
        if (in->seq > 0 && in->seq % NINTENTS == i && intent_sum(in, nw) == in->sum) {
            valid[nvalid++] = in;
            if (best == NULL || in->seq > best->seq)
                best = in;
        }
    }
    uint64_t *frontier = calloc((size_t)nw, sizeof(uint64_t));
    if (frontier == NULL)
        return SL_ENOMEM;
    int64_t m = best != NULL ? best->seq : 0;
    if (best != NULL) {
        int unsp = (int)atomic_load((_Atomic uint32_t *)&best->unspooled);
        int frozen = spool_exists(dir, boot, m) || acked >= m || unsp;
        if (frozen) {
            memcpy(frontier, best->cov, (size_t)nw * sizeof(uint64_t));
        } else {
            for (int i = 0; i < nvalid; i++)
                if (valid[i]->seq == m - 1)
                    prev = valid[i];
            if (prev != NULL)
                memcpy(frontier, prev->cov, (size_t)nw * sizeof(uint64_t));
            else if (m > 1) /* cannot happen: intent m-1 completed before m was started */
                memcpy(frontier, best->cov, (size_t)nw * sizeof(uint64_t));
        }
        /* an unspooled report the control plane never acknowledged */
        for (int i = 0; i < nvalid; i++) {
            const intent_t *in = valid[i];
            if (in->seq > acked && atomic_load((_Atomic uint32_t *)&in->unspooled) && !spool_exists(dir, boot, in->seq))
                sl_warn(MOD, "report %lld of boot %s was sent without a spool file and never acknowledged; if the "
                             "control plane did not apply it, its usage is missing",
                        (long long)in->seq, boot);
        }
    }

    rstate_t st;
    memset(&st, 0, sizeof(st));
    rtuple_t **tables = calloc((size_t)nw, sizeof(*tables)); /* per worker: recs point into them */
    size_t *ntables = calloc((size_t)nw, sizeof(*ntables));
    int rc = tables != NULL && ntables != NULL ? 0 : SL_ENOMEM;
    for (int w = 0; w < nw && rc == 0; w++) {
        char *p = jnl_path(dir, boot, w);
        unsigned char *buf = NULL;
        size_t len = 0;
        if (p == NULL) {
            rc = SL_ENOMEM;
            break;
        }
        int r = read_whole(p, &buf, &len);
        free(p);
        if (r == SL_ENOMEM)
            rc = r;
        else if (r == 0)
            rc = read_journal(buf, len, w, frontier[w], &st);
        else if (r != SL_ENOTFOUND)
            sl_error(MOD, "could not read the usage journal of boot %s worker %d", boot, w);
        free(buf);
        tables[w] = st.tuples;
        ntables[w] = st.ntuples;
        st.tuples = NULL;
        st.ntuples = 0;
    }
    if (st.torn > 0)
        sl_info(MOD, "boot %s: %llu journal segments end in a record torn by the crash (requests in flight)", boot,
                (unsigned long long)st.torn);
    if (st.undefined > 0)
        sl_error(MOD, "boot %s: %llu journaled requests name an unknown tuple and are lost", boot,
                 (unsigned long long)st.undefined);
    if (rc == 0) {
        dp_journal_lost_t lost = {.node_id = h.node_id, .boot_id = boot, .next_seq = m + 1, .recs = st.recs, .n = st.n};
        rc = replay(&lost, ctx);
        if (rc == 0 && st.n > 0)
            sl_info(MOD, "recovered %zu journaled requests of boot %s (node \"%s\") as reports from seq %lld", st.n,
                    boot, h.node_id, (long long)(m + 1));
    }
    for (int w = 0; tables != NULL && w < nw; w++) {
        for (size_t k = 0; k < ntables[w]; k++)
            for (int i = 0; i < 4; i++)
                free(tables[w][k].s[i]);
        free(tables[w]);
    }
    free(tables);
    free(ntables);
    free(st.recs);
    free(frontier);
    return rc;
}

/* "journal-<boot>.idx" -> boot (into out), else 0. */
static int idx_name(const char *name, char *out, size_t outlen)
{
    size_t l = strlen(name);
    if (l <= 12 || strncmp(name, "journal-", 8) != 0 || strcmp(name + l - 4, ".idx") != 0 || l - 12 >= outlen)
        return 0;
    memcpy(out, name + 8, l - 12);
    out[l - 12] = '\0';
    return 1;
}

/* "journal-<boot>-<w>.jnl" -> boot (into out), else 0. */
static int jnl_name(const char *name, char *out, size_t outlen)
{
    size_t l = strlen(name);
    if (l <= 12 || strncmp(name, "journal-", 8) != 0 || strcmp(name + l - 4, ".jnl") != 0)
        return 0;
    const char *dash = NULL;
    for (const char *p = name + 8; p < name + l - 4; p++)
        if (*p == '-')
            dash = p;
    if (dash == NULL || (size_t)(dash - (name + 8)) >= outlen)
        return 0;
    memcpy(out, name + 8, (size_t)(dash - (name + 8)));
    out[dash - (name + 8)] = '\0';
    return 1;
}

int dp_journal_recover(const char *dir, const char *own_boot, dp_journal_replay_fn replay, void *ctx)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    char **boots = NULL;
    size_t nb = 0, cap = 0;
    char **orphans = NULL;
    size_t no = 0, ocap = 0;
    struct dirent *de;
    char b[BOOT_MAX];
    while ((de = readdir(d)) != NULL) {
        int is_idx = idx_name(de->d_name, b, sizeof(b));
        int is_jnl = !is_idx && jnl_name(de->d_name, b, sizeof(b));
        if ((!is_idx && !is_jnl) || strcmp(b, own_boot) == 0)
            continue;
        char ***list = is_idx ? &boots : &orphans;
        size_t *n = is_idx ? &nb : &no, *c = is_idx ? &cap : &ocap;
        if (*n == *c) {
            size_t nc = *c ? *c * 2 : 8;
            char **nl = realloc(*list, nc * sizeof(char *));
            if (nl == NULL)
                break;
            *list = nl;
            *c = nc;
        }
        if (((*list)[*n] = strdup(b)) == NULL)
            break;
        (*n)++;
    }
    closedir(d);
    int recovered = 0;
    for (size_t i = 0; i < nb; i++) {
        char *ip = idx_path(dir, boots[i]);
        int fd = ip != NULL ? open(ip, O_RDWR | O_CLOEXEC) : -1;
        if (fd < 0) {
            free(ip);
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) { /* its process is alive */
            close(fd);
            free(ip);
            continue;
        }
        unsigned char *idx = NULL;
        size_t len = 0;
        int rc = read_whole(ip, &idx, &len);
        if (rc == 0)
            rc = recover_boot(dir, boots[i], idx, len, replay, ctx);
        free(idx);
        if (rc >= 0) {
            /* rc 1: unreadable index, already logged; deleted too */
            unlink(ip); /* the commit point */
            remove_journals(dir, boots[i]);
            if (rc == 0)
                recovered++;
        } else {
            sl_error(MOD, "could not recover the usage journal of boot %s: %s; kept for the next start", boots[i],
                     sl_strerror(rc));
        }
        close(fd);
        free(ip);
    }
    /* journals whose index is gone: a recovery that crashed after its commit */
    for (size_t i = 0; i < no; i++) {
        char *ip = idx_path(dir, orphans[i]);
        struct stat st;
        if (ip != NULL && stat(ip, &st) != 0 && errno == ENOENT)
            remove_journals(dir, orphans[i]);
        free(ip);
    }
    for (size_t i = 0; i < nb; i++)
        free(boots[i]);
    for (size_t i = 0; i < no; i++)
        free(orphans[i]);
    free(boots);
    free(orphans);
    return recovered;
}
