-- 0003_report_views.sql - SQL reporting: the `report` schema.
--
-- Read-only views over the ledger (usage_minute) for operators and BI
-- tools. Tables keep integer nano-USD; the views add `cost_usd`, a numeric
-- USD amount (cost_nano / 10^9, exact). Days and months are the tenant's
-- calendar days and months (tenants.time_zone, UTC by default), the same
-- boundaries as quota windows and Admin.GetSpend. Ledger rows whose tenant
-- is unknown count in UTC.
--
--   SELECT day, cost_usd FROM report.tenant_spend_daily
--    WHERE tenant_id = 'acme_corp' AND day >= '2026-03-01' ORDER BY day;
--   SELECT billing_code, sum(cost_usd) FROM report.billing_code_spend_monthly
--    WHERE month = '2026-02-01' GROUP BY 1 ORDER BY 2 DESC;
--   SELECT scope_id, metric, "window", remaining, remaining_usd FROM report.quota_remaining;

CREATE SCHEMA report;

-- Every ledger row with its tenant's local day and month.
CREATE VIEW report.usage_local AS
SELECT u.minute, u.tenant_id, u.key_id, u.provider, u.model,
       u.requests, u.errors, u.input_tokens, u.cached_input_tokens, u.output_tokens, u.cost_nano,
       (u.minute AT TIME ZONE COALESCE(NULLIF(t.time_zone, ''), 'UTC'))::date AS day,
       date_trunc('month', u.minute AT TIME ZONE COALESCE(NULLIF(t.time_zone, ''), 'UTC'))::date AS month
FROM usage_minute u
LEFT JOIN tenants t ON t.id = u.tenant_id;

CREATE VIEW report.tenant_spend_daily AS
SELECT tenant_id, day,
       sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens, sum(cost_nano)::bigint AS cost_nano,
       sum(cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local
GROUP BY tenant_id, day;

CREATE VIEW report.tenant_spend_monthly AS
SELECT tenant_id, month,
       sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens, sum(cost_nano)::bigint AS cost_nano,
       sum(cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local
GROUP BY tenant_id, month;

CREATE VIEW report.key_spend_daily AS
SELECT tenant_id, key_id, day,
       sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens, sum(cost_nano)::bigint AS cost_nano,
       sum(cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local
GROUP BY tenant_id, key_id, day;

CREATE VIEW report.key_spend_monthly AS
SELECT tenant_id, key_id, month,
       sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens, sum(cost_nano)::bigint AS cost_nano,
       sum(cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local
GROUP BY tenant_id, key_id, month;

-- Per provider and model per (tenant-local) day.
CREATE VIEW report.model_spend AS
SELECT tenant_id, provider, model, day,
       sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(output_tokens)::bigint AS output_tokens, sum(cost_nano)::bigint AS cost_nano,
       sum(cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local
GROUP BY tenant_id, provider, model, day;

-- The billing code is the key's metadata billing_code, else the tenant's,
-- else '' (legacy billing codes live in metadata).
CREATE VIEW report.billing_code_spend_monthly AS
SELECT COALESCE(NULLIF(k.metadata ->> 'billing_code', ''), NULLIF(t.metadata ->> 'billing_code', ''), '') AS billing_code,
       u.tenant_id, u.month,
       sum(u.requests)::bigint AS requests, sum(u.errors)::bigint AS errors,
       sum(u.input_tokens)::bigint AS input_tokens, sum(u.cached_input_tokens)::bigint AS cached_input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens, sum(u.cost_nano)::bigint AS cost_nano,
       sum(u.cost_nano) / 1000000000::numeric AS cost_usd
FROM report.usage_local u
LEFT JOIN virtual_keys k ON k.id = u.key_id
LEFT JOIN tenants t ON t.id = u.tenant_id
GROUP BY 1, u.tenant_id, u.month;

-- The current window of every quota (concurrency limits have no window and
-- are left out): limit, settled use, grants outstanding on data planes and
-- what is left, in the metric's unit; for cost quotas also in USD.
CREATE VIEW report.quota_remaining AS
SELECT z.id AS quota_id, z.scope_kind, z.scope_id, z.tenant_id, z.provider, z.metric, z."window", z.time_zone,
       z.ws AS window_start, z.we AS window_end, z.limit_value,
       s.used, s.outstanding, greatest(z.limit_value - s.used - s.outstanding, 0) AS remaining,
       CASE WHEN z.metric = 'cost_nano' THEN z.limit_value / 1000000000::numeric END AS limit_usd,
       CASE WHEN z.metric = 'cost_nano' THEN s.used / 1000000000::numeric END AS used_usd,
       CASE WHEN z.metric = 'cost_nano' THEN greatest(z.limit_value - s.used - s.outstanding, 0) / 1000000000::numeric
       END AS remaining_usd
FROM (SELECT z.*, b.ws, sluice_window_end(z."window", z.time_zone, b.ws) AS we
      FROM sluice_quota_zones z
      CROSS JOIN LATERAL (SELECT sluice_window_start(z."window", z.time_zone, now()) AS ws) b
      WHERE z.metric <> 'concurrent') z
LEFT JOIN quota_windows w ON w.quota_id = z.id AND w.window_start = z.ws
CROSS JOIN LATERAL (SELECT COALESCE(w.used, sluice_quota_ledger_sum(z.id, z.ws, z.we)) AS used,
                           COALESCE(w.outstanding, 0) AS outstanding) s;
