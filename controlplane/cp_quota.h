/*
 * cp_quota.h - the quota vocabulary: proto enums <-> the text stored in
 * PostgreSQL (quotas.metric, quotas."window", quotas.on_unavailable) and the
 * words shown to operators in diffs.
 */
#ifndef CP_QUOTA_H
#define CP_QUOTA_H

#include <stddef.h>

#include "cp_pb.h"
#include "sl_err.h"

/* Database text of an enum value, or NULL when unspecified/unknown. */
const char *cp_quota_metric_str(int metric);
const char *cp_quota_window_str(int window);
const char *cp_quota_on_unavailable_str(int policy);

/* Inverse mappings; 0 (unspecified) for unknown text. */
int cp_quota_metric_parse(const char *s);
int cp_quota_window_parse(const char *s);
int cp_quota_on_unavailable_parse(const char *s);

/* Checks a quota: metric and window set and known, policy known, limit
 * >= 0. what names the owner for the message ("virtual key \"vk\""). */
int cp_quota_validate(const cp_quota_pb *q, const char *what, sl_err_t *err);

/* A stable key naming what a quota limits ("requests/minute",
 * "openai:cost_nano/month"); two quotas of one scope with the same key are
 * the same quota. Writes at most cap bytes. */
void cp_quota_key(const cp_quota_pb *q, char *buf, size_t cap);

/* The limit as an operator reads it: USD for cost quotas ("12000"), a
 * plain number otherwise, with " (closed)"/" (open)" for a set policy. */
void cp_quota_value(const cp_quota_pb *q, char *buf, size_t cap);

#endif
