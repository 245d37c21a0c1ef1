/* dp_metrics_labels.c - per-(provider, model) tokens, cost and time to first
 * token (see dp_metrics_labels.h). */
#include "dp_metrics_labels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_err.h"

#define TTFT_BUCKETS 16
#define FOLD_HEADROOM 64 /* slots kept for the "_other" series once a table is nearly full */

/* Upper bounds in milliseconds: a first token comes after tens of
 * milliseconds (a cache, a small model) to tens of seconds (a reasoning
 * model). */
static const uint32_t ttft_bounds_ms[TTFT_BUCKETS] = {10,   25,   50,   100,  250,  500,   750,   1000,
                                                      1500, 2000, 3000, 5000, 7500, 10000, 20000, 60000};

enum { DIR_INPUT, DIR_CACHED_INPUT, DIR_OUTPUT, DIR_COUNT };
static const char *const dir_names[DIR_COUNT] = {"input", "cached_input", "output"};

typedef struct series {
    _Atomic int used; /* release-published once labels are set */
    uint64_t hash;    /* owner only */
    char *labels;     /* "provider\0model\0tenant\0", owned by the table */
    uint32_t len;
    _Atomic uint64_t tokens[DIR_COUNT];
    _Atomic uint64_t cost_nano;
    _Atomic uint64_t ttft[TTFT_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t ttft_sum_ns;
} series_t;

typedef struct table {
    series_t *slots;
    uint32_t cap;   /* power of two */
    uint32_t count; /* owner only */
    uint32_t limit; /* series before folding into "_other" */
} __attribute__((aligned(64))) table_t;

static table_t *tables;
static int ntables;
static int tenant_label;

void dp_mlabels_set_tenant_label(int on)
{
    tenant_label = on != 0;
}

int dp_mlabels_tenant_label(void)
{
    return tenant_label;
}

static void free_tables(void)
{
    for (int i = 0; i < ntables; i++) {
        for (uint32_t k = 0; tables[i].slots != NULL && k < tables[i].cap; k++)
            free(tables[i].slots[k].labels);
        free(tables[i].slots);
    }
    free(tables);
    tables = NULL;
    ntables = 0;
}

int dp_mlabels_init(int nworkers)
{
    uint32_t max = tenant_label ? DP_MLABELS_TENANT_SERIES_MAX : DP_MLABELS_SERIES_MAX;
    free_tables(); /* a second init (tests) starts afresh */
    tables = aligned_alloc(64, sizeof(*tables) * (size_t)nworkers);
    if (tables == NULL)
        return SL_ENOMEM;
    memset(tables, 0, sizeof(*tables) * (size_t)nworkers);
    ntables = nworkers;
    for (int i = 0; i < nworkers; i++) {
        tables[i].cap = max * 2;
        tables[i].limit = max;
        tables[i].slots = calloc(tables[i].cap, sizeof(series_t));
        if (tables[i].slots == NULL)
            return SL_ENOMEM;
    }
    return 0;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* Packs the label values NUL-separated into out (cap bytes, values cut to
 * fit); returns the length. */
static size_t pack(char *out, size_t cap, const char *p, const char *m, const char *t)
{
    const char *v[3] = {p, m, t};
    size_t pos = 0, per = cap / 3 - 1;
    for (int i = 0; i < 3; i++) {
        size_t l = strnlen(v[i], per);
        memcpy(out + pos, v[i], l);
        pos += l;
        out[pos++] = '\0';
    }
    return pos;
}

/* Owner thread: the series of these label values, created when new and
 * the table holds fewer than limit; NULL otherwise. */
static series_t *find(table_t *t, const char *packed, size_t len, uint32_t limit)
{
    uint64_t h = fnv(packed, len);
    for (uint32_t i = 0; i < t->cap; i++) {
        series_t *s = &t->slots[(h + i) & (t->cap - 1)];
        if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
            if (t->count >= limit)
                return NULL;
            char *copy = malloc(len);
            if (copy == NULL)
                return NULL;
            memcpy(copy, packed, len);
            s->labels = copy;
            s->len = (uint32_t)len;
            s->hash = h;
            t->count++;
            atomic_store_explicit(&s->used, 1, memory_order_release);
            return s;
        }
        if (s->hash == h && s->len == len && memcmp(s->labels, packed, len) == 0)
            return s;
    }
    return NULL;
}

static void add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

void dp_mlabels_record(int worker, const dp_mlabels_rec_t *r)
{
    if (worker < 0 || worker >= ntables)
        return;
    table_t *t = &tables[worker];
    char packed[384];
    const char *model = r->model != NULL ? r->model : "_other";
    const char *tenant = tenant_label && r->tenant != NULL ? r->tenant : "";
    size_t n = pack(packed, sizeof(packed), r->provider, model, tenant);
    series_t *s = find(t, packed, n, t->limit - FOLD_HEADROOM);
    if (s == NULL) {
        /* full: fold the unbounded dimension, the tenant when labelled,
         * else the model */
        n = tenant_label ? pack(packed, sizeof(packed), r->provider, model, "_other")
                         : pack(packed, sizeof(packed), r->provider, "_other", "");
        if ((s = find(t, packed, n, t->limit)) == NULL &&
            (!tenant_label ||
             (s = find(t, packed, pack(packed, sizeof(packed), r->provider, "_other", "_other"), t->limit)) == NULL))
            return;
    }
    if (r->input_tokens > 0)
        add(&s->tokens[DIR_INPUT], (uint64_t)r->input_tokens);
    if (r->cached_input_tokens > 0)
        add(&s->tokens[DIR_CACHED_INPUT], (uint64_t)r->cached_input_tokens);
    if (r->output_tokens > 0)
        add(&s->tokens[DIR_OUTPUT], (uint64_t)r->output_tokens);
    if (r->cost_nano > 0)
        add(&s->cost_nano, (uint64_t)r->cost_nano);
    if (r->ttft_ns != 0) {
        int i = 0;
        while (i < TTFT_BUCKETS && r->ttft_ns > (uint64_t)ttft_bounds_ms[i] * 1000000ull)
            i++;
        add(&s->ttft[i], 1);
        add(&s->ttft_sum_ns, r->ttft_ns);
    }
}

/* ---- rendering (scraper thread) ------------------------------------------ */

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static int cmp_series(const void *a, const void *b)
{
    const series_t *x = *(series_t *const *)a, *y = *(series_t *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->labels, y->labels, n);
    return c != 0 ? c : (x->len < y->len ? -1 : x->len > y->len);
}

/* Length of the "provider\0model\0" prefix of packed labels. */
static size_t pm_len(const series_t *s)
{
    size_t a = strlen(s->labels) + 1;
    return a + strlen(s->labels + a) + 1;
}

static int same_pm(const series_t *x, const series_t *y)
{
    size_t n = pm_len(x);
    return n == pm_len(y) && memcmp(x->labels, y->labels, n) == 0;
}

static void put_label(sl_buf_t *out, const char *name, const char *v)
{
    sl_buf_printf(out, "%s=\"", name);
    const char *run = v;
    for (; *v != '\0'; v++) {
        if (*v != '"' && *v != '\\' && *v != '\n')
            continue;
        sl_buf_append(out, run, (size_t)(v - run));
        sl_buf_puts(out, *v == '"' ? "\\\"" : *v == '\\' ? "\\\\" : "\\n");
        run = v + 1;
    }
    sl_buf_append(out, run, (size_t)(v - run));
    sl_buf_puts(out, "\"");
}

/* {provider="..",model=".."[,extra=".."][,tenant=".."] */
static void put_labels(sl_buf_t *out, const series_t *s, const char *extra_name, const char *extra, int with_tenant)
{
    const char *p = s->labels, *m = p + strlen(p) + 1, *t = m + strlen(m) + 1;
    sl_buf_puts(out, "{");
    put_label(out, "provider", p);
    sl_buf_puts(out, ",");
    put_label(out, "model", m);
    if (extra_name != NULL) {
        sl_buf_puts(out, ",");
        put_label(out, extra_name, extra);
    }
    if (with_tenant) {
        sl_buf_puts(out, ",");
        put_label(out, "tenant", t);
    }
    sl_buf_puts(out, "}");
}

static void render_ttft(sl_buf_t *out, series_t **v, size_t n)
{
    const char *name = "sluice_time_to_first_token_seconds";
    sl_buf_printf(out,
                  "# HELP %s Time from the request's arrival to the first content of a streamed answer, by "
                  "serving provider and model.\n# TYPE %s histogram\n",
                  name, name);
    for (size_t i = 0; i < n;) {
        uint64_t b[TTFT_BUCKETS + 1] = {0}, sum = 0;
        size_t j = i;
        for (; j < n && same_pm(v[i], v[j]); j++) {
            for (int k = 0; k <= TTFT_BUCKETS; k++)
                b[k] += ld(&v[j]->ttft[k]);
            sum += ld(&v[j]->ttft_sum_ns);
        }
        uint64_t total = 0;
        for (int k = 0; k <= TTFT_BUCKETS; k++)
            total += b[k];
        if (total != 0) {
            uint64_t cum = 0;
            for (int k = 0; k <= TTFT_BUCKETS; k++) {
                cum += b[k];
                char le[24];
                if (k < TTFT_BUCKETS)
                    snprintf(le, sizeof(le), "%g", ttft_bounds_ms[k] / 1000.0);
                else
                    memcpy(le, "+Inf", 5);
                sl_buf_printf(out, "%s_bucket", name);
                put_labels(out, v[i], "le", le, 0);
                sl_buf_printf(out, " %llu\n", (unsigned long long)cum);
            }
            sl_buf_printf(out, "%s_sum", name);
            put_labels(out, v[i], NULL, NULL, 0);
            sl_buf_printf(out, " %llu.%09llu\n%s_count", (unsigned long long)(sum / 1000000000ull),
                          (unsigned long long)(sum % 1000000000ull), name);
            put_labels(out, v[i], NULL, NULL, 0);
            sl_buf_printf(out, " %llu\n", (unsigned long long)total);
        }
        i = j;
    }
}

void dp_mlabels_render(sl_buf_t *out)
{
    size_t cap = 0, n = 0;
    for (int w = 0; w < ntables; w++)
        cap += tables[w].cap;
    series_t **v = cap != 0 ? malloc(cap * sizeof(*v)) : NULL;
    if (v != NULL) {
        for (int w = 0; w < ntables; w++)
            for (uint32_t i = 0; i < tables[w].cap; i++)
                if (atomic_load_explicit(&tables[w].slots[i].used, memory_order_acquire))
                    v[n++] = &tables[w].slots[i];
        qsort(v, n, sizeof(*v), cmp_series);
    }

    sl_buf_puts(out, "# HELP sluice_tokens_total Tokens accounted, by serving provider, catalog model and direction "
                     "(input includes cached input).\n# TYPE sluice_tokens_total counter\n");
    for (size_t i = 0; i < n;) {
        uint64_t sum[DIR_COUNT] = {0};
        size_t j = i;
        for (; j < n && cmp_series(&v[i], &v[j]) == 0; j++)
            for (int d = 0; d < DIR_COUNT; d++)
                sum[d] += ld(&v[j]->tokens[d]);
        for (int d = 0; d < DIR_COUNT; d++) {
            sl_buf_puts(out, "sluice_tokens_total");
            put_labels(out, v[i], "direction", dir_names[d], tenant_label);
            sl_buf_printf(out, " %llu\n", (unsigned long long)sum[d]);
        }
        i = j;
    }

    sl_buf_puts(out, "# HELP sluice_cost_usd_total Cost of served requests in USD at catalog prices, by serving "
                     "provider and catalog model.\n# TYPE sluice_cost_usd_total counter\n");
    for (size_t i = 0; i < n;) {
        uint64_t sum = 0;
        size_t j = i;
        for (; j < n && cmp_series(&v[i], &v[j]) == 0; j++)
            sum += ld(&v[j]->cost_nano);
        sl_buf_puts(out, "sluice_cost_usd_total");
        put_labels(out, v[i], NULL, NULL, tenant_label);
        sl_buf_printf(out, " %llu.%09llu\n", (unsigned long long)(sum / 1000000000ull),
                      (unsigned long long)(sum % 1000000000ull));
        i = j;
    }

    render_ttft(out, v, n);
    free(v);
}
