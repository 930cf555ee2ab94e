-- The outbox. SQLite has one writer at a time and a transaction holds the write lock until it
-- commits, so AUTOINCREMENT hands out sequences in commit order: a reader can never see
-- sequence n+1 before n.
CREATE TABLE events (
    sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    connection_id TEXT,
    customer_id   TEXT,
    occurred_at   INTEGER NOT NULL,
    data          TEXT NOT NULL,
    changes       TEXT NOT NULL
);
CREATE INDEX events_connection ON events (connection_id, sequence);
CREATE INDEX events_customer ON events (customer_id, sequence);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE webhook_endpoints (
    id                 TEXT PRIMARY KEY,
    url                TEXT NOT NULL,
    description        TEXT,
    event_types        TEXT NOT NULL,
    connection_id      TEXT,
    enabled            INTEGER NOT NULL,
    disabled_reason    TEXT,
    secret             TEXT NOT NULL,
    -- After a rotation, the old secret also signs until previous_secret_until.
    previous_secret       TEXT,
    previous_secret_until INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    -- Events up to this sequence have been queued for the endpoint (or did not match it).
    fanned_out_through INTEGER NOT NULL
);

-- An endpoint's queue for one connection ('' for events of none): delivered in order, one
-- dispatcher at a time (the lease). next_attempt_at is NULL when nothing is pending.
CREATE TABLE webhook_streams (
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    stream          TEXT NOT NULL,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    lease           TEXT,
    PRIMARY KEY (endpoint_id, stream)
);
CREATE INDEX webhook_streams_due ON webhook_streams (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    stream          TEXT NOT NULL,
    event_sequence  INTEGER NOT NULL REFERENCES events (sequence) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER,
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, stream, event_sequence) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_sequence);

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    success      INTEGER NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    response     TEXT,
    error        TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

-- connection.scim_api_key_expiring is sent once per key.
ALTER TABLE scim_keys ADD COLUMN expiry_warned_at INTEGER;
