-- Timestamps are microseconds since the Unix epoch.

CREATE TABLE connections (
    id                TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL,
    display_name      TEXT,
    identity_provider TEXT NOT NULL,
    status            TEXT NOT NULL,
    strict_members    INTEGER NOT NULL DEFAULT 0,
    custom_mapping    TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT connections_customer_unique UNIQUE (customer_id)
);

CREATE TABLE scim_keys (
    hash          BLOB PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    valid_until   INTEGER,
    replaced_at   INTEGER
);
CREATE INDEX scim_keys_connection ON scim_keys (connection_id);

CREATE TABLE integration_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Users and groups. `seq` gives the stable order that pagination and cursors rely on.
CREATE TABLE resources (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    id            TEXT NOT NULL,
    name_lower    TEXT,
    external_id   TEXT,
    active        INTEGER,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE UNIQUE INDEX resources_id ON resources (connection_id, id);
CREATE UNIQUE INDEX resources_user_name_unique ON resources (connection_id, name_lower) WHERE kind = 'User';
CREATE INDEX resources_name ON resources (connection_id, kind, name_lower);
CREATE INDEX resources_external_id ON resources (connection_id, kind, external_id);
CREATE INDEX resources_last_modified ON resources (connection_id, kind, last_modified);

CREATE TABLE resource_emails (
    resource_seq  INTEGER NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    value_lower   TEXT NOT NULL
);
CREATE INDEX resource_emails_value ON resource_emails (connection_id, value_lower);
CREATE INDEX resource_emails_resource ON resource_emails (resource_seq);

CREATE TABLE memberships (
    group_seq     INTEGER NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
    member_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    member_kind   TEXT NOT NULL,
    display       TEXT,
    CONSTRAINT memberships_unique UNIQUE (group_seq, member_id)
);
CREATE INDEX memberships_member ON memberships (connection_id, member_id);

CREATE TABLE request_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    entry         TEXT NOT NULL
);
CREATE INDEX request_log_connection ON request_log (connection_id, id);
