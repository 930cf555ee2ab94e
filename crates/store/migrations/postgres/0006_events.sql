-- The outbox. Writers insert events with no sequence, in their own transactions; the
-- sequencer numbers committed events while holding the one row of event_sequencer. Two
-- writers can commit in any order, but sequences are handed out only to what is already
-- committed, under one lock, so a reader can never see sequence n+1 before n.
CREATE TABLE events (
    seq           BIGSERIAL PRIMARY KEY,
    sequence      BIGINT UNIQUE,
    id            TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    connection_id TEXT,
    customer_id   TEXT,
    occurred_at   BIGINT NOT NULL,
    data          TEXT NOT NULL,
    changes       TEXT NOT NULL
);
CREATE INDEX events_unsequenced ON events (seq) WHERE sequence IS NULL;
CREATE INDEX events_connection ON events (connection_id, sequence);
CREATE INDEX events_customer ON events (customer_id, sequence);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE event_sequencer (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO event_sequencer (id, last) VALUES (1, 0);

CREATE TABLE webhook_endpoints (
    id                 TEXT PRIMARY KEY,
    url                TEXT NOT NULL,
    description        TEXT,
    event_types        TEXT NOT NULL,
    connection_id      TEXT,
    enabled            BOOLEAN NOT NULL,
    disabled_reason    TEXT,
    secret             TEXT NOT NULL,
    -- After a rotation, the old secret also signs until previous_secret_until.
    previous_secret       TEXT,
    previous_secret_until BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    -- Events up to this sequence have been queued for the endpoint (or did not match it).
    fanned_out_through BIGINT NOT NULL
);

-- An endpoint's queue for one connection ('' for events of none): delivered in order, one
-- dispatcher at a time (the lease). next_attempt_at is NULL when nothing is pending.
CREATE TABLE webhook_streams (
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    stream          TEXT NOT NULL,
    next_attempt_at BIGINT,
    lease_until     BIGINT,
    lease           TEXT,
    PRIMARY KEY (endpoint_id, stream)
);
CREATE INDEX webhook_streams_due ON webhook_streams (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    stream          TEXT NOT NULL,
    event_sequence  BIGINT NOT NULL REFERENCES events (sequence) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    first_failed_at BIGINT,
    next_attempt_at BIGINT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, stream, event_sequence) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_sequence);

CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    success      BOOLEAN NOT NULL,
    status_code  INTEGER,
    latency_ms   BIGINT NOT NULL,
    response     TEXT,
    error        TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

-- connection.scim_api_key_expiring is sent once per key.
ALTER TABLE scim_keys ADD COLUMN expiry_warned_at BIGINT;
