/*
 * cp_quota.h - quotas as the control plane checks them and shows them to
 * operators in diffs. The names of metrics, windows and policies (the text
 * stored in PostgreSQL) are in sl_quota_names.h.
 */
#ifndef CP_QUOTA_H
#define CP_QUOTA_H

#include <stddef.h>

#include "cp_pb.h"
#include "sl_err.h"

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
