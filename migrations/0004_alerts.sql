-- 0004_alerts.sql - alerting: sinks, rules, their state, the outbox of
-- events and the deliveries of each event to each sink.
--
-- Sinks and rules are configuration: written by Apply like every other
-- entity (one version bump, one config_changes row each). Sink secrets (a
-- webhook's HMAC secret, a PagerDuty routing key, a Slack webhook URL) are
-- sealed like provider credentials: AES-256-GCM under the credential key,
-- additional data 'alert_sink/<name>', the sealing key's id beside them.
--
-- The invariants the evaluator keeps:
--   * alert_state changes and the alert_events rows they cause are written
--     in one transaction, and each event gets one alert_deliveries row per
--     sink of its rule in that same transaction (the outbox). A state change
--     is a conditional write (insert-if-absent, update-if-firing), so an
--     event is recorded once per transition however many evaluators run.
--   * deliveries are at least once: a delivery is claimed (attempts + 1,
--     next_attempt_at pushed past the send timeout) in a committed
--     transaction before it is sent, and marked delivered after the receiver
--     answered 2xx. A crash between the send and the mark sends it again
--     once the claim expires; nothing else can send an event twice.
--   * per sink, events are delivered in id order (a sink whose oldest pending
--     delivery is backing off gets nothing newer), so a resolve never
--     overtakes its fire.

ALTER TABLE config_changes DROP CONSTRAINT config_changes_entity_kind_check;
ALTER TABLE config_changes ADD CONSTRAINT config_changes_entity_kind_check
    CHECK (entity_kind IN ('tenant', 'virtual_key', 'provider', 'model', 'alert_sink', 'alert_rule'));

CREATE TABLE alert_sinks (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'slack', 'pagerduty', 'alertmanager')),
    url         text NOT NULL DEFAULT '',       -- '' for slack (its URL is the secret) and default PagerDuty
    ciphertext  bytea,                          -- sealed secret, NULL: none
    key_id      text NOT NULL DEFAULT '',       -- which master key sealed it
    secret_env  text NOT NULL DEFAULT '',       -- the variable sluicectl read the secret from
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL
);

-- Ratios are integers in millionths (0.8 -> 800000), money in nano-USD.
CREATE TABLE alert_rules (
    name               text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    kind               text NOT NULL CHECK (kind IN ('budget_threshold', 'spend_anomaly', 'error_rate',
                                                     'circuit_open')),
    scope_kind         text NOT NULL CHECK (scope_kind IN ('virtual_key', 'tenant', 'all_tenants', 'provider')),
    scope_id           text NOT NULL DEFAULT '',   -- '' for all_tenants
    thresholds_micro   bigint[] NOT NULL DEFAULT '{}',  -- budget_threshold
    sensitivity_micro  bigint NOT NULL DEFAULT 0,       -- spend_anomaly (0: the detector's default)
    min_hourly_nano    bigint NOT NULL DEFAULT 0,       -- spend_anomaly
    threshold_micro    bigint NOT NULL DEFAULT 0,       -- error_rate
    window_seconds     bigint NOT NULL DEFAULT 0,       -- error_rate, circuit_open (0: default)
    min_requests       bigint NOT NULL DEFAULT 0,       -- error_rate (0: default)
    severity           text NOT NULL DEFAULT '' CHECK (severity IN ('', 'critical', 'error', 'warning', 'info')),
    sinks              text[] NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    version            bigint NOT NULL
);

-- One row per rule x scope instance x period/threshold that ever fired.
-- scope: 'virtual_key/<id>', 'tenant/<id>', 'provider/<name>'. instance:
-- for budget_threshold '[<provider>:]<window>/<window start>/<threshold>'
-- (one row per threshold per budget period, resolved once period_end has
-- passed), else ''. last_values: the numbers of the last evaluation.
CREATE TABLE alert_state (
    rule          text NOT NULL REFERENCES alert_rules (name) ON DELETE CASCADE,
    scope         text NOT NULL,
    instance      text NOT NULL DEFAULT '',
    status        text NOT NULL CHECK (status IN ('firing', 'resolved')),
    severity      text NOT NULL DEFAULT '',
    summary       text NOT NULL DEFAULT '',     -- of the last transition
    fired_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    period_end    timestamptz,
    last_values   jsonb NOT NULL DEFAULT '{}',
    evaluated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, scope, instance)
);
CREATE INDEX alert_state_firing ON alert_state (rule) WHERE status = 'firing';

-- The outbox. uid is the event's identity for receivers; dedup_key is
-- stable per rule x scope x instance (PagerDuty's dedup_key, the
-- Alertmanager label set), so a fire and its resolve share it.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    uid         uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    rule        text NOT NULL,
    rule_kind   text NOT NULL,
    scope       text NOT NULL,
    instance    text NOT NULL DEFAULT '',
    kind        text NOT NULL CHECK (kind IN ('fire', 'resolve')),
    severity    text NOT NULL,
    dedup_key   text NOT NULL,
    summary     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    fired_at    timestamptz NOT NULL,         -- when the incident started (= created_at for fire)
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_rule ON alert_events (rule, id);

CREATE TABLE alert_deliveries (
    event_id         bigint NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    sink             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text NOT NULL DEFAULT '',
    delivered_at     timestamptz,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX alert_deliveries_pending ON alert_deliveries (sink, event_id) WHERE status = 'pending';

-- Circuit breaker states as data planes report them (one row per node,
-- provider and credential; '' for the provider as a whole). The circuit_open
-- rule reads it; rows older than the rule's window are ignored. Nothing
-- fills it yet: data planes will report circuit states on the Sync stream.
CREATE TABLE provider_health (
    node_id      text NOT NULL,
    provider     text NOT NULL,
    credential   text NOT NULL DEFAULT '',
    state        text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    reported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, provider, credential)
);
CREATE INDEX provider_health_provider ON provider_health (provider, reported_at);
