/*
 * cp_diff.c - entity rendering and field diffs.
 */
#include "cp_diff.h"
#include "cp_quota.h"
#include "cp_validate.h"
#include "sl_money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

void cp_fields_add(cp_fields_t *f, cp_arena_t *a, const char *name, const char *value, size_t len, int secret)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        cp_field_t *v = cp_arena_alloc(a, cap * sizeof(*v));
        if (f->n > 0)
            memcpy(v, f->v, f->n * sizeof(*v));
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (cp_field_t){name, value, len, secret};
}

void cp_fields_add_str(cp_fields_t *f, cp_arena_t *a, const char *name, const char *value)
{
    cp_fields_add(f, a, name, value, strlen(value), 0);
}

const char *cp_diff_quoted(cp_arena_t *a, const char *s)
{
    json_t *j = json_string(s);
    char *d = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    const char *out = cp_arena_strdup(a, d != NULL ? d : "\"?\"");
    free(d);
    return out;
}

static const char *canon_json(cp_arena_t *a, const char *json)
{
    char *c = cp_json_canon_object(json, "metadata", NULL);
    const char *out = cp_arena_strdup(a, c != NULL ? c : json);
    free(c);
    return out;
}

const char *cp_diff_list(cp_arena_t *a, char *const *items, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(items[i]));
    char *d = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    const char *out = cp_arena_strdup(a, d != NULL ? d : "[]");
    free(d);
    return out;
}

static const char *params(cp_arena_t *a, cp_param_pb *const *e, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, e[i]->key, json_string(e[i]->value));
    char *d = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    const char *out = cp_arena_strdup(a, d != NULL ? d : "{}");
    free(d);
    return out;
}

static const char *i64(cp_arena_t *a, int64_t v)
{
    return cp_arena_printf(a, "%lld", (long long)v);
}

static void quotas(cp_fields_t *f, cp_arena_t *a, cp_quota_pb *const *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char key[200], val[120];
        cp_quota_key(q[i], key, sizeof(key));
        cp_quota_value(q[i], val, sizeof(val));
        cp_fields_add_str(f, a, cp_arena_printf(a, "quota %s", key), cp_arena_strdup(a, val));
    }
}

void cp_fields_tenant(const cp_tenant_pb *t, cp_arena_t *a, cp_fields_t *out)
{
    cp_fields_add_str(out, a, "name", cp_diff_quoted(a, t->name));
    cp_fields_add_str(out, a, "metadata", canon_json(a, t->metadata_json));
    cp_fields_add_str(out, a, "time_zone", cp_diff_quoted(a, cp_tenant_time_zone(t->time_zone)));
    quotas(out, a, t->quotas, t->n_quotas);
}

void cp_fields_vkey(const cp_vkey_pb *k, cp_arena_t *a, cp_fields_t *out)
{
    cp_fields_add_str(out, a, "tenant_id", cp_diff_quoted(a, k->tenant_id));
    cp_fields_add_str(out, a, "allowed_providers", cp_diff_list(a, k->allowed_providers, k->n_allowed_providers));
    cp_fields_add_str(out, a, "allowed_models", cp_diff_list(a, k->allowed_models, k->n_allowed_models));
    char **fb = cp_arena_ptrs(a, k->n_fallbacks);
    for (size_t i = 0; i < k->n_fallbacks; i++)
        fb[i] = cp_arena_printf(a, "%s/%s", k->fallbacks[i]->provider, k->fallbacks[i]->model);
    cp_fields_add_str(out, a, "fallbacks", cp_diff_list(a, fb, k->n_fallbacks));
    cp_fields_add_str(out, a, "metadata", canon_json(a, k->metadata_json));
    cp_fields_add_str(out, a, "budget_reset", cp_diff_quoted(a, k->budget_reset));
    if (k->expires_unix > 0) {
        time_t t = (time_t)k->expires_unix;
        struct tm tm;
        char buf[40];
        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        cp_fields_add_str(out, a, "expires_at", cp_arena_strdup(a, buf));
    } else {
        cp_fields_add_str(out, a, "expires_at", "never");
    }
    quotas(out, a, k->quotas, k->n_quotas);
}

void cp_fields_provider(const cp_provider_pb *p, cp_arena_t *a, cp_fields_t *out)
{
    cp_fields_add_str(out, a, "kind", cp_diff_quoted(a, p->kind));
    cp_fields_add_str(out, a, "base_url", cp_diff_quoted(a, p->base_url));
    cp_fields_add_str(out, a, "params", params(a, p->params, p->n_params));
    cp_fields_add_str(out, a, "connect_timeout_ms", i64(a, p->connect_timeout_ms));
    cp_fields_add_str(out, a, "first_byte_timeout_ms", i64(a, p->first_byte_timeout_ms));
    cp_fields_add_str(out, a, "idle_timeout_ms", i64(a, p->idle_timeout_ms));
    cp_fields_add_str(out, a, "total_timeout_ms", i64(a, p->total_timeout_ms));
    for (size_t i = 0; i < p->n_credentials; i++) {
        const cp_cred_pb *c = p->credentials[i];
        char id[160];
        cp_cred_id(c->id, i, id, sizeof(id));
        const char *q = cp_diff_quoted(a, id);
        cp_fields_add_str(out, a, cp_arena_printf(a, "credential %s weight", q), i64(a, c->weight));
        cp_fields_add_str(out, a, cp_arena_printf(a, "credential %s secret_env", q), cp_diff_quoted(a, c->secret_env));
        cp_fields_add_str(out, a, cp_arena_printf(a, "credential %s params", q),
                          params(a, (cp_param_pb *const *)c->params, c->n_params));
        cp_fields_add(out, a, cp_arena_printf(a, "credential %s secret", q), (const char *)c->secret.data,
                      c->secret.len, 1);
    }
}

static const char *usd_micro(cp_arena_t *a, int64_t v)
{
    char buf[40];
    sl_usd_format(v, 6, buf, sizeof(buf));
    return cp_arena_strdup(a, buf);
}

void cp_fields_model(const cp_model_pb *m, cp_arena_t *a, cp_fields_t *out)
{
    cp_fields_add_str(out, a, "input_usd_per_mtok", usd_micro(a, m->input_micro_per_mtok));
    cp_fields_add_str(out, a, "output_usd_per_mtok", usd_micro(a, m->output_micro_per_mtok));
    cp_fields_add_str(out, a, "cached_input_usd_per_mtok", usd_micro(a, m->cached_input_micro_per_mtok));
    cp_fields_add_str(out, a, "max_output_tokens", i64(a, m->max_output_tokens));
}

static const cp_field_t *find(const cp_fields_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].name, name) == 0)
            return &f->v[i];
    return NULL;
}

static void push(cp_arena_t *a, char ***lines, size_t *n, char *line)
{
    /* grow by powers of two: reallocate when n is 0 or a power of two */
    if (*n == 0 || (*n & (*n - 1)) == 0) {
        char **v = cp_arena_ptrs(a, *n == 0 ? 4 : *n * 2);
        if (*n > 0)
            memcpy(v, *lines, *n * sizeof(char *));
        *lines = v;
    }
    (*lines)[(*n)++] = line;
}

static int same(const cp_field_t *x, const cp_field_t *y)
{
    return x->len == y->len && (x->len == 0 || memcmp(x->value, y->value, x->len) == 0);
}

size_t cp_diff_fields(const cp_fields_t *old, const cp_fields_t *new_, cp_arena_t *a, char ***lines, size_t *nlines)
{
    size_t ndiff = 0;
    for (size_t i = 0; i < new_->n; i++) {
        const cp_field_t *nf = &new_->v[i], *of = old != NULL ? find(old, nf->name) : NULL;
        if (old == NULL) {
            push(a, lines, nlines,
                 cp_arena_printf(a, "%s: %s", nf->name, nf->secret ? "(redacted)" : nf->value));
        } else if (of == NULL) {
            push(a, lines, nlines,
                 cp_arena_printf(a, "%s: (none) -> %s", nf->name, nf->secret ? "(redacted)" : nf->value));
        } else if (!same(of, nf)) {
            if (nf->secret)
                push(a, lines, nlines, cp_arena_printf(a, "%s: changed (redacted)", nf->name));
            else
                push(a, lines, nlines, cp_arena_printf(a, "%s: %s -> %s", nf->name, of->value, nf->value));
        } else {
            continue;
        }
        ndiff++;
    }
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        const cp_field_t *of = &old->v[i];
        if (find(new_, of->name) != NULL)
            continue;
        push(a, lines, nlines,
             cp_arena_printf(a, "%s: %s -> (none)", of->name, of->secret ? "(redacted)" : of->value));
        ndiff++;
    }
    return ndiff;
}

cp_change_pb *cp_diff_change(cp_arena_t *a, const char *kind, const char *id, const cp_fields_t *old,
                             const cp_fields_t *new_)
{
    cp_change_pb *c = cp_arena_msg(a, &sluice__admin__v1__change__descriptor);
    c->kind = (char *)kind;
    c->id = cp_arena_strdup(a, id);
    size_t ndiff = cp_diff_fields(old, new_, a, &c->details, &c->n_details);
    c->action = old == NULL ? "create" : (ndiff > 0 ? "update" : "unchanged");
    return c;
}
