/*
 * cp_alert_admin.c - Admin.ListAlerts and Admin.AlertHistory: rules with
 * their state, sinks without secrets, events with their deliveries.
 * Read-only.
 */
#include "cp_alert_store.h"
#include "cp_service.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define HISTORY_DEFAULT 100
#define HISTORY_MAX 1000

int cp_admin_list_alerts(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__ListAlertsRequest *q = (const void *)req;
    cp_arena_t *a = ctx->arena;
    const char *names = NULL;
    if (q->rule[0] != '\0') {
        char *j = cp_store_json_strings((const char *const *)&q->rule, 1);
        names = cp_arena_strdup(a, j);
        free(j);
    }
    Sluice__Admin__V1__ListAlertsResponse *r = cp_arena_msg(a, &sluice__admin__v1__list_alerts_response__descriptor);
    cp_rule_pb **rules = NULL;
    size_t n = 0;
    int rc = cp_alert_store_rules(ctx->db, names, a, &rules, &n, err);
    if (rc != 0)
        return rc;
    if (names != NULL && n == 0)
        return sl_err_set(err, SL_ENOTFOUND, "alert rule \"%s\" not found", q->rule);
    /* sinks never carry their secret out: loaded without keys */
    if ((rc = cp_alert_store_sinks(ctx->db, NULL, NULL, a, &r->sinks, &r->n_sinks, err)) != 0)
        return rc;
    r->rules = cp_arena_ptrs(a, n);
    r->n_rules = n;
    for (size_t i = 0; i < n; i++) {
        Sluice__Admin__V1__AlertRuleStatus *st = cp_arena_msg(a, &sluice__admin__v1__alert_rule_status__descriptor);
        st->rule = rules[i];
        r->rules[i] = st;
    }
    PGresult *res = cp_db_query(ctx->db,
                                "SELECT rule, scope, instance, status, extract(epoch FROM fired_at)::bigint,"
                                " COALESCE(extract(epoch FROM resolved_at)::bigint, 0), last_values::text,"
                                " extract(epoch FROM evaluated_at)::bigint FROM alert_state"
                                " WHERE ($1::text IS NULL OR rule = $1)"
                                " ORDER BY rule COLLATE \"C\", status = 'resolved', fired_at DESC, scope, instance"
                                " LIMIT 10000",
                                1, (const char *const[]){q->rule[0] != '\0' ? q->rule : NULL}, err);
    if (res == NULL)
        return err->code;
    int rows = PQntuples(res), row = 0;
    for (size_t i = 0; i < n; i++) {
        Sluice__Admin__V1__AlertRuleStatus *st = r->rules[i];
        while (row < rows && strcmp(cp_db_str(res, row, 0), rules[i]->name) < 0)
            row++;
        int start = row;
        while (row < rows && strcmp(cp_db_str(res, row, 0), rules[i]->name) == 0)
            row++;
        st->states = cp_arena_ptrs(a, (size_t)(row - start));
        for (int j = start; j < row; j++) {
            Sluice__Admin__V1__AlertState *s = cp_arena_msg(a, &sluice__admin__v1__alert_state__descriptor);
            s->scope = cp_arena_strdup(a, cp_db_str(res, j, 1));
            s->instance = cp_arena_strdup(a, cp_db_str(res, j, 2));
            s->status = cp_arena_strdup(a, cp_db_str(res, j, 3));
            s->fired_unix = cp_db_i64(res, j, 4);
            s->resolved_unix = cp_db_i64(res, j, 5);
            s->last_values_json = cp_arena_strdup(a, cp_db_str(res, j, 6));
            s->evaluated_unix = cp_db_i64(res, j, 7);
            st->states[st->n_states++] = s;
        }
    }
    PQclear(res);
    *resp = &r->base;
    return 0;
}

int cp_admin_alert_history(cp_unary_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, sl_err_t *err)
{
    const Sluice__Admin__V1__AlertHistoryRequest *q = (const void *)req;
    cp_arena_t *a = ctx->arena;
    int limit = q->limit <= 0 ? HISTORY_DEFAULT : q->limit > HISTORY_MAX ? HISTORY_MAX : q->limit;
    char lb[24], bb[24];
    const char *p[3] = {q->rule[0] != '\0' ? q->rule : NULL, cp_db_fmt_i64(limit, lb),
                        cp_db_fmt_i64(q->before_id > 0 ? q->before_id : INT64_MAX, bb)};
    PGresult *res =
        cp_db_query(ctx->db,
                    "SELECT e.id, e.uid::text, e.rule, e.rule_kind, e.scope, e.instance, e.kind, e.severity, e.summary,"
                    " e.dedup_key, e.details::text, extract(epoch FROM e.created_at)::bigint,"
                    " COALESCE((SELECT json_agg(json_build_array(d.sink, d.status, d.attempts,"
                    "   extract(epoch FROM d.next_attempt_at)::bigint, d.last_error,"
                    "   COALESCE(extract(epoch FROM d.delivered_at)::bigint, 0)) ORDER BY d.sink)"
                    "   FROM alert_deliveries d WHERE d.event_id = e.id), '[]')::text"
                    " FROM alert_events e WHERE ($1::text IS NULL OR e.rule = $1) AND e.id < $3::bigint"
                    " ORDER BY e.id DESC LIMIT $2",
                    3, p, err);
    if (res == NULL)
        return err->code;
    Sluice__Admin__V1__AlertHistoryResponse *r =
        cp_arena_msg(a, &sluice__admin__v1__alert_history_response__descriptor);
    int rows = PQntuples(res);
    r->events = cp_arena_ptrs(a, (size_t)rows);
    for (int i = 0; i < rows; i++) {
        Sluice__Admin__V1__AlertEvent *e = cp_arena_msg(a, &sluice__admin__v1__alert_event__descriptor);
        e->id = cp_db_i64(res, i, 0);
        e->uid = cp_arena_strdup(a, cp_db_str(res, i, 1));
        e->rule = cp_arena_strdup(a, cp_db_str(res, i, 2));
        e->rule_kind = cp_arena_strdup(a, cp_db_str(res, i, 3));
        e->scope = cp_arena_strdup(a, cp_db_str(res, i, 4));
        e->instance = cp_arena_strdup(a, cp_db_str(res, i, 5));
        e->kind = cp_arena_strdup(a, cp_db_str(res, i, 6));
        e->severity = cp_arena_strdup(a, cp_db_str(res, i, 7));
        e->summary = cp_arena_strdup(a, cp_db_str(res, i, 8));
        e->dedup_key = cp_arena_strdup(a, cp_db_str(res, i, 9));
        e->details_json = cp_arena_strdup(a, cp_db_str(res, i, 10));
        e->created_unix = cp_db_i64(res, i, 11);
        json_t *d = json_loads(cp_db_str(res, i, 12), 0, NULL);
        size_t nd = json_is_array(d) ? json_array_size(d) : 0;
        e->deliveries = cp_arena_ptrs(a, nd);
        for (size_t j = 0; j < nd; j++) {
            json_t *x = json_array_get(d, j);
            Sluice__Admin__V1__AlertDelivery *dl = cp_arena_msg(a, &sluice__admin__v1__alert_delivery__descriptor);
            dl->sink = cp_arena_strdup(a, json_string_value(json_array_get(x, 0)) ?: "");
            dl->status = cp_arena_strdup(a, json_string_value(json_array_get(x, 1)) ?: "");
            dl->attempts = (int32_t)json_integer_value(json_array_get(x, 2));
            dl->next_attempt_unix = json_integer_value(json_array_get(x, 3));
            dl->last_error = cp_arena_strdup(a, json_string_value(json_array_get(x, 4)) ?: "");
            dl->delivered_unix = json_integer_value(json_array_get(x, 5));
            e->deliveries[e->n_deliveries++] = dl;
        }
        json_decref(d);
        r->events[r->n_events++] = e;
    }
    PQclear(res);
    *resp = &r->base;
    return 0;
}
