-- 0002_quota_leases.sql - quota windows and leases (DESIGN 5).
--
-- A quota instance is (quota id, window start). quota_windows holds, per
-- instance, the settled usage `used` and the sum of the grants data planes
-- hold and have not consumed yet, `outstanding`. The control plane never
-- grants beyond limit - used - outstanding.
--
-- The invariant every writer keeps: for every quota window, `used` equals
-- the sum of the ledger rows (usage_minute) whose minute falls in the window,
-- in the quota's metric (sluice_quota_ledger_sum). A window row is created
-- with used = that sum at creation time, and afterwards every report adds
-- exactly what it adds to the ledger, in the same transaction. Reports take
-- sluice_quota_lock() in shared mode and writers of quotas take it in
-- exclusive mode, so a quota can never appear while a report that touches
-- its scope is half applied.
--
-- Windows are calendar-aligned in the time zone of the quota's tenant (UTC
-- unless the tenant sets one); 'total' is one window from the epoch to
-- 9999-01-01. Window bounds are computed here, never in the data plane.

CREATE TABLE quota_windows (
    quota_id      bigint NOT NULL REFERENCES quotas (id) ON DELETE CASCADE,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    used          bigint NOT NULL DEFAULT 0,
    outstanding   bigint NOT NULL DEFAULT 0 CHECK (outstanding >= 0),
    PRIMARY KEY (quota_id, window_start),
    CHECK (window_end > window_start)
);

-- One lease per (instance, data plane process). outstanding: granted to the
-- node and not yet consumed (it counts against the limit); reserved: the part
-- the node last said was held by requests in flight. A lease the node keeps
-- listing in its reports is renewed (expires_at, reclaim_at); one it stops
-- listing is released; one nobody renews is reclaimed after reclaim_at.
-- seq is the report that last touched the lease, so an older report that
-- arrives late cannot release a lease a newer one renewed.
CREATE TABLE quota_leases (
    quota_id      bigint NOT NULL,
    window_start  timestamptz NOT NULL,
    node_id       text NOT NULL,
    boot_id       text NOT NULL,
    outstanding   bigint NOT NULL DEFAULT 0 CHECK (outstanding >= 0),
    reserved      bigint NOT NULL DEFAULT 0,
    expires_at    timestamptz NOT NULL,
    reclaim_at    timestamptz NOT NULL,
    seq           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (quota_id, window_start, node_id, boot_id),
    FOREIGN KEY (quota_id, window_start) REFERENCES quota_windows (quota_id, window_start) ON DELETE CASCADE
);
CREATE INDEX quota_leases_reclaim ON quota_leases (reclaim_at);
CREATE INDEX quota_leases_node ON quota_leases (node_id, boot_id);

-- The packed ReportAck of an applied report, returned again for a duplicate
-- so grants are never lost nor given twice.
ALTER TABLE usage_reports ADD COLUMN ack bytea;

-- Window sums of key quotas read the ledger by key.
CREATE INDEX usage_minute_key ON usage_minute (key_id, minute);

-- Every quota with the time zone of the tenant it belongs to.
CREATE VIEW sluice_quota_zones AS
SELECT q.id, q.scope_kind, q.scope_id, q.provider, q.metric, q."window", q.limit_value, q.on_unavailable,
       CASE WHEN q.scope_kind = 'tenant' THEN q.scope_id ELSE k.tenant_id END AS tenant_id,
       COALESCE(NULLIF(t.time_zone, ''), 'UTC') AS time_zone
FROM quotas q
LEFT JOIN virtual_keys k ON q.scope_kind = 'virtual_key' AND k.id = q.scope_id
LEFT JOIN tenants t ON t.id = CASE WHEN q.scope_kind = 'tenant' THEN q.scope_id ELSE k.tenant_id END;

-- The start of the window of kind win that contains ts, in time zone tz.
-- Minutes and hours are cut at the local clock's minute/hour without a round
-- trip through local time, so the repeated hour when clocks go back is two
-- distinct windows; days, weeks (ISO, Monday) and months start at local
-- midnight.
CREATE FUNCTION sluice_window_start(win text, tz text, ts timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE win
        WHEN 'total' THEN timestamptz '1970-01-01 00:00:00+00'
        WHEN 'minute' THEN ts - ((ts AT TIME ZONE tz) - date_trunc('minute', ts AT TIME ZONE tz))
        WHEN 'hour' THEN ts - ((ts AT TIME ZONE tz) - date_trunc('hour', ts AT TIME ZONE tz))
        ELSE date_trunc(win, ts AT TIME ZONE tz) AT TIME ZONE tz
    END
$$;

-- The end (exclusive) of the window of kind win that starts at start.
CREATE FUNCTION sluice_window_end(win text, tz text, start timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE win
        WHEN 'total' THEN timestamptz '9999-01-01 00:00:00+00'
        WHEN 'minute' THEN start + interval '1 minute'
        WHEN 'hour' THEN start + interval '1 hour'
        ELSE ((start AT TIME ZONE tz) + ('1 ' || win)::interval) AT TIME ZONE tz
    END
$$;

-- What one ledger row counts in a quota of the given metric.
CREATE FUNCTION sluice_quota_amount(metric text, requests bigint, input_tokens bigint, output_tokens bigint,
                                    cost_nano bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE metric
        WHEN 'cost_nano' THEN cost_nano
        WHEN 'requests' THEN requests
        WHEN 'tokens' THEN input_tokens + output_tokens
        ELSE 0
    END
$$;

-- The ledger's total for one quota instance: what `used` must equal.
-- One branch per scope kind, so each can use its ledger index ((key_id,
-- minute) or (tenant_id, minute)) instead of scanning the window.
CREATE FUNCTION sluice_quota_ledger_sum(qid bigint, ws timestamptz, we timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    q quotas%ROWTYPE;
    s numeric;
BEGIN
    SELECT * INTO q FROM quotas WHERE id = qid;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF q.scope_kind = 'virtual_key' THEN
        SELECT sum(sluice_quota_amount(q.metric, u.requests, u.input_tokens, u.output_tokens, u.cost_nano)) INTO s
        FROM usage_minute u
        WHERE u.key_id = q.scope_id AND u.minute >= ws AND u.minute < we
          AND (q.provider = '' OR u.provider = q.provider);
    ELSE
        SELECT sum(sluice_quota_amount(q.metric, u.requests, u.input_tokens, u.output_tokens, u.cost_nano)) INTO s
        FROM usage_minute u
        WHERE u.tenant_id = q.scope_id AND u.minute >= ws AND u.minute < we
          AND (q.provider = '' OR u.provider = q.provider);
    END IF;
    RETURN COALESCE(s, 0)::bigint;
END
$$;

-- The lock that orders reports against quota writes (see the top).
CREATE FUNCTION sluice_quota_lock_key() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 7305318846412311601::bigint $$;
