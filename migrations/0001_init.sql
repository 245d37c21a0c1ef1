-- 0001_init.sql - the initial schema.
--
-- PostgreSQL is the source of truth and the control plane its only writer.
-- Money is integer: prices in micro-USD per million tokens, spend and limits
-- in nano-USD. Secrets never appear in clear: virtual keys as
-- HMAC-SHA-256(pepper, secret), provider credentials as AES-256-GCM
-- ciphertext with the id of the key that sealed them.
--
-- Every admin write runs in one transaction that calls sluice_bump_version(),
-- records one config_changes row per changed entity at the new version, and
-- NOTIFYs sluice_config (done by sluice_bump_version) so every control-plane
-- replica pushes the version to its data planes.

CREATE TABLE config_state (
    id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_state (id, version) VALUES (1, 0);

-- Change log: which entity changed at which version. Deltas for data planes
-- are built from it; rows older than the retention may be pruned, and a data
-- plane whose version predates the oldest row gets a full snapshot.
CREATE TABLE config_changes (
    version      bigint NOT NULL,
    entity_kind  text NOT NULL CHECK (entity_kind IN ('tenant', 'virtual_key', 'provider', 'model')),
    entity_id    text NOT NULL,   -- for models: 'provider/model'
    op           text NOT NULL CHECK (op IN ('upsert', 'delete')),
    actor        text NOT NULL DEFAULT 'admin',
    detail       jsonb NOT NULL DEFAULT '{}',
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, entity_kind, entity_id)
);

-- Increments the global version (row lock: admin writes serialize here),
-- notifies listeners at commit, and returns the new version.
CREATE FUNCTION sluice_bump_version() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE config_state SET version = version + 1, updated_at = now() WHERE id = 1 RETURNING version INTO v;
    PERFORM pg_notify('sluice_config', v::text);
    RETURN v;
END
$$;

CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    name        text NOT NULL DEFAULT '',
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    time_zone   text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL
);

CREATE TABLE virtual_keys (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    tenant_id          text NOT NULL REFERENCES tenants (id),
    key_hash           bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix         text NOT NULL,          -- e.g. 'sk-sluice-AbCd', for humans
    allowed_providers  text[] NOT NULL DEFAULT '{}',   -- empty: all
    allowed_models     text[] NOT NULL DEFAULT '{}',   -- empty: all
    fallbacks          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(fallbacks) = 'array'),  -- [{"provider","model"}]
    metadata           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    budget_reset       text NOT NULL DEFAULT '',
    expires_at         timestamptz,
    revoked_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    version            bigint NOT NULL
);
CREATE INDEX virtual_keys_tenant ON virtual_keys (tenant_id);

-- Every limit is a quota (DESIGN 5). A key quota with a provider applies to
-- key x provider.
CREATE TABLE quotas (
    id              bigserial PRIMARY KEY,
    scope_kind      text NOT NULL CHECK (scope_kind IN ('tenant', 'virtual_key')),
    scope_id        text NOT NULL,
    provider        text NOT NULL DEFAULT '',
    metric          text NOT NULL CHECK (metric IN ('cost_nano', 'requests', 'tokens', 'concurrent')),
    "window"        text NOT NULL CHECK ("window" IN ('minute', 'hour', 'day', 'week', 'month', 'total')),
    limit_value     bigint NOT NULL CHECK (limit_value >= 0),
    on_unavailable  text NOT NULL DEFAULT 'default' CHECK (on_unavailable IN ('default', 'closed', 'open')),
    UNIQUE (scope_kind, scope_id, provider, metric, "window")
);

CREATE TABLE providers (
    name                   text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    kind                   text NOT NULL CHECK (kind IN ('openai', 'azure_openai', 'openai_compatible', 'anthropic', 'bedrock', 'vertex')),
    base_url               text NOT NULL,
    params                 jsonb NOT NULL DEFAULT '{}',
    connect_timeout_ms     int NOT NULL DEFAULT 0,   -- 0: the data plane's default
    first_byte_timeout_ms  int NOT NULL DEFAULT 0,
    idle_timeout_ms        int NOT NULL DEFAULT 0,
    total_timeout_ms       int NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    version                bigint NOT NULL
);

CREATE TABLE provider_credentials (
    provider    text NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    id          text NOT NULL,
    ciphertext  bytea NOT NULL,      -- nonce || AES-256-GCM(secret) || tag, AAD 'provider/id'
    key_id      text NOT NULL,       -- which master key sealed it (rotation)
    weight      int NOT NULL DEFAULT 1 CHECK (weight > 0),
    secret_env  text NOT NULL DEFAULT '',
    params      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (provider, id)
);

-- Prices need not name a configured provider: files apply in any order.
CREATE TABLE model_prices (
    provider                     text NOT NULL,
    model                        text NOT NULL,
    input_micro_per_mtok         bigint NOT NULL CHECK (input_micro_per_mtok >= 0),
    output_micro_per_mtok        bigint NOT NULL CHECK (output_micro_per_mtok >= 0),
    cached_input_micro_per_mtok  bigint NOT NULL DEFAULT 0 CHECK (cached_input_micro_per_mtok >= 0),
    max_output_tokens            bigint NOT NULL DEFAULT 0,
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    version                      bigint NOT NULL,
    PRIMARY KEY (provider, model)
);

-- Exactly-once usage: a report's first statement inserts its identity here;
-- a duplicate violates the key, is acknowledged, and changes nothing.
CREATE TABLE usage_reports (
    node_id     text NOT NULL,
    boot_id     text NOT NULL,
    seq         bigint NOT NULL,
    entries     int NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, boot_id, seq)
);

-- The ledger: usage per (minute, key, provider, model), partitioned by month.
-- Partitions are made by sluice_ensure_usage_partition() before inserting.
CREATE TABLE usage_minute (
    minute               timestamptz NOT NULL,
    tenant_id            text NOT NULL,
    key_id               text NOT NULL,
    provider             text NOT NULL,
    model                text NOT NULL,
    requests             bigint NOT NULL DEFAULT 0,
    errors               bigint NOT NULL DEFAULT 0,
    input_tokens         bigint NOT NULL DEFAULT 0,
    cached_input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens        bigint NOT NULL DEFAULT 0,
    cost_nano            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, key_id, provider, model)
) PARTITION BY RANGE (minute);
CREATE INDEX usage_minute_tenant ON usage_minute (tenant_id, minute);

-- Creates the monthly partition holding ts if it does not exist yet. Safe
-- under concurrency (advisory lock) and idempotent.
CREATE FUNCTION sluice_ensure_usage_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := lo + interval '1 month';
    name text := 'usage_minute_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('sluice_usage_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF usage_minute FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    END IF;
END
$$;

SELECT sluice_ensure_usage_partition(now());
SELECT sluice_ensure_usage_partition(now() + interval '1 month');
