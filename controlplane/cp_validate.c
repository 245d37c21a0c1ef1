/*
 * cp_validate.c - checks on admin input.
 */
#include "cp_validate.h"
#include "cp_quota.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define MAX_TEXT 1024
#define MAX_SECRET 16384

static int id_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
}

int cp_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!id_char((unsigned char)s[i]))
            return 0;
    return 1;
}

int cp_valid_provider_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return 0;
    for (size_t i = 1; i < n; i++) {
        int c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int cp_valid_provider_kind(const char *s)
{
    static const char *kinds[] = {"openai", "azure_openai", "openai_compatible", "anthropic", "bedrock", "vertex"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(s, kinds[i]) == 0)
            return 1;
    return 0;
}

/* Printable ASCII or UTF-8, no control characters, at most max bytes. */
static int plain_text(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
            return 0;
    return n <= max;
}

int cp_parse_base_url(const char *s, cp_url_t *u, sl_err_t *err)
{
    memset(u, 0, sizeof(*u));
#define BAD(why) sl_err_set(err, SL_EINVAL, "base_url \"%s\" %s", s, why)
    const char *p;
    if (strncasecmp(s, "https://", 8) == 0) {
        u->https = 1;
        u->port = 443;
        p = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        u->port = 80;
        p = s + 7;
    } else {
        return BAD("must start with http:// or https://");
    }
    if (!plain_text(s, 2048) || strchr(s, ' ') != NULL)
        return BAD("contains spaces or control characters");
    const char *hend;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (hend == NULL || hend == p + 1)
            return BAD("has a malformed IPv6 address");
        for (const char *q = p + 1; q < hend; q++)
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
                return BAD("has a malformed IPv6 address");
        if ((size_t)(hend - p - 1) >= sizeof(u->host))
            return BAD("has a host name that is too long");
        memcpy(u->host, p + 1, (size_t)(hend - p - 1));
        hend++;
    } else {
        hend = p;
        while (*hend != '\0' && *hend != ':' && *hend != '/' && *hend != '?' && *hend != '#') {
            if (*hend == '@')
                return BAD("must not contain user information");
            if (!isalnum((unsigned char)*hend) && *hend != '.' && *hend != '-' && *hend != '_')
                return BAD("has an invalid host name");
            hend++;
        }
        if (hend == p)
            return BAD("has no host");
        if ((size_t)(hend - p) >= sizeof(u->host))
            return BAD("has a host name that is too long");
        memcpy(u->host, p, (size_t)(hend - p));
    }
    p = hend;
    if (*p == ':') {
        p++;
        long port = 0;
        int digits = 0;
        while (isdigit((unsigned char)*p) && digits < 6) {
            port = port * 10 + (*p - '0');
            p++;
            digits++;
        }
        if (digits == 0 || port < 1 || port > 65535 || (*p != '\0' && *p != '/'))
            return BAD("has an invalid port");
        u->port = (int)port;
    }
    if (*p != '\0' && *p != '/')
        return BAD("must not have a query or fragment");
    if (strpbrk(p, "?#") != NULL)
        return BAD("must not have a query or fragment");
    if (strlen(p) >= sizeof(u->path))
        return BAD("has a path that is too long");
    strcpy(u->path, p);
    return 0;
#undef BAD
}

char *cp_json_canon_object(const char *json, const char *what, sl_err_t *err)
{
    if (json == NULL || json[0] == '\0')
        return strdup("{}");
    json_error_t je;
    json_t *v = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL || !json_is_object(v)) {
        json_decref(v);
        sl_err_set(err, SL_EINVAL, "%s must be a JSON object", what);
        return NULL;
    }
    char *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    if (out == NULL)
        sl_err_set(err, SL_ENOMEM, "out of memory");
    return out;
}

static int check_object(const char *json, const char *what, sl_err_t *err)
{
    char *c = cp_json_canon_object(json, what, err);
    if (c == NULL)
        return SL_EINVAL;
    free(c);
    return 0;
}

static int check_quotas(cp_quota_pb **q, size_t n, const char *what, sl_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (cp_quota_validate(q[i], what, err) != 0)
            return SL_EINVAL;
        if (q[i]->provider[0] != '\0' && !cp_valid_provider_name(q[i]->provider))
            return sl_err_set(err, SL_EINVAL, "%s: quota provider \"%s\" is not a valid provider name", what,
                              q[i]->provider);
        char ki[200], kj[200];
        cp_quota_key(q[i], ki, sizeof(ki));
        for (size_t j = 0; j < i; j++) {
            cp_quota_key(q[j], kj, sizeof(kj));
            if (strcmp(ki, kj) == 0)
                return sl_err_set(err, SL_EINVAL, "%s: quota \"%s\" is listed twice", what, ki);
        }
    }
    return 0;
}

int cp_validate_tenant(const cp_tenant_pb *t, sl_err_t *err)
{
    if (!cp_valid_id(t->id))
        return sl_err_set(err, SL_EINVAL,
                          "tenant id \"%s\" is invalid: use 1 to 128 letters, digits, \"_\", \".\", \":\" or \"-\", "
                          "starting with a letter or digit",
                          t->id);
    if (!plain_text(t->name, 256))
        return sl_err_set(err, SL_EINVAL, "tenant \"%s\": name must be at most 256 characters without control "
                                          "characters", t->id);
    char what[200];
    snprintf(what, sizeof(what), "tenant \"%s\": metadata", t->id);
    if (check_object(t->metadata_json, what, err) != 0)
        return SL_EINVAL;
    for (const char *c = t->time_zone; *c != '\0'; c++)
        if (!isalnum((unsigned char)*c) && strchr("_/+-", *c) == NULL)
            return sl_err_set(err, SL_EINVAL, "tenant \"%s\": time_zone \"%s\" is not an IANA time zone name", t->id,
                              t->time_zone);
    if (strlen(t->time_zone) > 64)
        return sl_err_set(err, SL_EINVAL, "tenant \"%s\": time_zone is too long", t->id);
    snprintf(what, sizeof(what), "tenant \"%s\"", t->id);
    return check_quotas(t->quotas, t->n_quotas, what, err);
}

int cp_validate_vkey(const cp_vkey_pb *k, sl_err_t *err)
{
    if (!cp_valid_id(k->id))
        return sl_err_set(err, SL_EINVAL,
                          "virtual key id \"%s\" is invalid: use 1 to 128 letters, digits, \"_\", \".\", \":\" or "
                          "\"-\", starting with a letter or digit",
                          k->id);
    if (k->tenant_id[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": tenant_id is required", k->id);
    if (!cp_valid_id(k->tenant_id))
        return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": tenant id \"%s\" is invalid", k->id, k->tenant_id);
    for (size_t i = 0; i < k->n_allowed_providers; i++)
        if (!cp_valid_provider_name(k->allowed_providers[i]))
            return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": allowed provider \"%s\" is not a valid provider "
                                              "name", k->id, k->allowed_providers[i]);
    for (size_t i = 0; i < k->n_allowed_models; i++)
        if (k->allowed_models[i][0] == '\0' || !plain_text(k->allowed_models[i], 256))
            return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": allowed model \"%s\" is invalid", k->id,
                              k->allowed_models[i]);
    for (size_t i = 0; i < k->n_fallbacks; i++) {
        const cp_target_pb *t = k->fallbacks[i];
        if (!cp_valid_provider_name(t->provider))
            return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": fallback %zu has invalid provider \"%s\"", k->id,
                              i + 1, t->provider);
        if (t->model[0] == '\0' || !plain_text(t->model, 256))
            return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": fallback %zu has invalid model \"%s\"", k->id,
                              i + 1, t->model);
    }
    if (k->expires_unix < 0)
        return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": expires_unix must not be negative", k->id);
    if (!plain_text(k->budget_reset, 32))
        return sl_err_set(err, SL_EINVAL, "virtual key \"%s\": budget_reset \"%s\" is invalid", k->id,
                          k->budget_reset);
    char what[200];
    snprintf(what, sizeof(what), "virtual key \"%s\": metadata", k->id);
    if (check_object(k->metadata_json, what, err) != 0)
        return SL_EINVAL;
    snprintf(what, sizeof(what), "virtual key \"%s\"", k->id);
    return check_quotas(k->quotas, k->n_quotas, what, err);
}

int cp_validate_provider(const cp_provider_pb *p, sl_err_t *err)
{
    if (!cp_valid_provider_name(p->name))
        return sl_err_set(err, SL_EINVAL,
                          "provider name \"%s\" is invalid: use 1 to 64 lower-case letters, digits, \"_\", \".\" or "
                          "\"-\", starting with a letter or digit",
                          p->name);
    if (!cp_valid_provider_kind(p->kind))
        return sl_err_set(err, SL_EINVAL,
                          "provider \"%s\": kind \"%s\" is unknown (openai, azure_openai, openai_compatible, "
                          "anthropic, bedrock, vertex)",
                          p->name, p->kind);
    cp_url_t u;
    sl_err_t e = {0};
    if (cp_parse_base_url(p->base_url, &u, &e) != 0)
        return sl_err_set(err, SL_EINVAL, "provider \"%s\": %s", p->name, e.msg);
    if (p->connect_timeout_ms < 0 || p->first_byte_timeout_ms < 0 || p->idle_timeout_ms < 0 ||
        p->total_timeout_ms < 0)
        return sl_err_set(err, SL_EINVAL, "provider \"%s\": timeouts must not be negative", p->name);
    for (size_t i = 0; i < p->n_params; i++)
        if (p->params[i]->key[0] == '\0' || !plain_text(p->params[i]->key, 128) ||
            !plain_text(p->params[i]->value, MAX_TEXT))
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": parameter \"%s\" is invalid", p->name,
                              p->params[i]->key);
    for (size_t i = 0; i < p->n_credentials; i++) {
        const cp_cred_pb *c = p->credentials[i];
        if (c->id[0] != '\0' && !cp_valid_id(c->id))
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential id \"%s\" is invalid", p->name, c->id);
        char id[160], other[160];
        cp_cred_id(c->id, i, id, sizeof(id));
        for (size_t j = 0; j < i; j++) {
            cp_cred_id(p->credentials[j]->id, j, other, sizeof(other));
            if (strcmp(id, other) == 0)
                return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential \"%s\" is listed twice", p->name,
                                  id);
        }
        if (c->weight <= 0)
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential %zu weight must be greater than 0",
                              p->name, i + 1);
        if (c->secret.len == 0)
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential %zu has an empty secret", p->name, i + 1);
        if (c->secret.len > MAX_SECRET)
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential %zu secret is too long", p->name, i + 1);
        if (!plain_text(c->secret_env, 256))
            return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential %zu secret_env is invalid", p->name,
                              i + 1);
        for (size_t j = 0; j < c->n_params; j++)
            if (c->params[j]->key[0] == '\0' || !plain_text(c->params[j]->key, 128) ||
                !plain_text(c->params[j]->value, MAX_TEXT))
                return sl_err_set(err, SL_EINVAL, "provider \"%s\": credential %zu parameter \"%s\" is invalid",
                                  p->name, i + 1, c->params[j]->key);
    }
    return 0;
}

int cp_validate_model(const cp_model_pb *m, sl_err_t *err)
{
    if (!cp_valid_provider_name(m->provider))
        return sl_err_set(err, SL_EINVAL, "model \"%s\": provider \"%s\" is not a valid provider name", m->model,
                          m->provider);
    if (m->model[0] == '\0' || !plain_text(m->model, 256))
        return sl_err_set(err, SL_EINVAL, "model name \"%s\" of provider \"%s\" is invalid", m->model, m->provider);
    if (m->input_micro_per_mtok < 0 || m->output_micro_per_mtok < 0 || m->cached_input_micro_per_mtok < 0)
        return sl_err_set(err, SL_EINVAL, "model \"%s/%s\": prices must not be negative", m->provider, m->model);
    if (m->max_output_tokens < 0)
        return sl_err_set(err, SL_EINVAL, "model \"%s/%s\": max_output_tokens must not be negative", m->provider,
                          m->model);
    return 0;
}

int cp_validate_document(const cp_doc_pb *d, sl_err_t *err)
{
    for (size_t i = 0; i < d->n_tenants; i++) {
        if (cp_validate_tenant(d->tenants[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->tenants[i]->id, d->tenants[j]->id) == 0)
                return sl_err_set(err, SL_EINVAL, "tenant \"%s\" is listed twice", d->tenants[i]->id);
    }
    for (size_t i = 0; i < d->n_providers; i++) {
        if (cp_validate_provider(d->providers[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->providers[i]->name, d->providers[j]->name) == 0)
                return sl_err_set(err, SL_EINVAL, "provider \"%s\" is listed twice", d->providers[i]->name);
    }
    for (size_t i = 0; i < d->n_models; i++) {
        if (cp_validate_model(d->models[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->models[i]->provider, d->models[j]->provider) == 0 &&
                strcmp(d->models[i]->model, d->models[j]->model) == 0)
                return sl_err_set(err, SL_EINVAL, "model \"%s/%s\" is listed twice", d->models[i]->provider,
                                  d->models[i]->model);
    }
    for (size_t i = 0; i < d->n_virtual_keys; i++) {
        if (cp_validate_vkey(d->virtual_keys[i], err) != 0)
            return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->virtual_keys[i]->id, d->virtual_keys[j]->id) == 0)
                return sl_err_set(err, SL_EINVAL, "virtual key \"%s\" is listed twice", d->virtual_keys[i]->id);
    }
    return 0;
}

void cp_cred_id(const char *id, size_t index, char *buf, size_t cap)
{
    if (id != NULL && id[0] != '\0')
        snprintf(buf, cap, "%s", id);
    else
        snprintf(buf, cap, "key%zu", index + 1);
}
