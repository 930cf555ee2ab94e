-- Timestamps are microseconds since the Unix epoch. Resource bodies are TEXT, not JSONB, so
-- attributes keep the order they are written in.

CREATE TABLE connections (
    id                TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL,
    display_name      TEXT,
    identity_provider TEXT NOT NULL,
    status            TEXT NOT NULL,
    strict_members    BOOLEAN NOT NULL DEFAULT FALSE,
    custom_mapping    TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT connections_customer_unique UNIQUE (customer_id)
);

CREATE TABLE scim_keys (
    hash          BYTEA PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    valid_until   BIGINT,
    replaced_at   BIGINT
);
CREATE INDEX scim_keys_connection ON scim_keys (connection_id);

CREATE TABLE integration_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Users and groups. `seq` gives the stable order that pagination and cursors rely on.
CREATE TABLE resources (
    seq           BIGSERIAL PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    id            TEXT NOT NULL,
    name_lower    TEXT,
    external_id   TEXT,
    active        BOOLEAN,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_modified BIGINT NOT NULL,
    body          TEXT NOT NULL
);
CREATE UNIQUE INDEX resources_id ON resources (connection_id, id);
CREATE UNIQUE INDEX resources_user_name_unique ON resources (connection_id, name_lower) WHERE kind = 'User';
CREATE INDEX resources_name ON resources (connection_id, kind, name_lower);
CREATE INDEX resources_external_id ON resources (connection_id, kind, external_id);
CREATE INDEX resources_last_modified ON resources (connection_id, kind, last_modified);
CREATE INDEX resources_kind_seq ON resources (connection_id, kind, seq);

CREATE TABLE resource_emails (
    resource_seq  BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    value_lower   TEXT NOT NULL
);
CREATE INDEX resource_emails_value ON resource_emails (connection_id, value_lower);
CREATE INDEX resource_emails_resource ON resource_emails (resource_seq);

CREATE TABLE memberships (
    position      BIGSERIAL,
    group_seq     BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
    member_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    member_kind   TEXT NOT NULL,
    display       TEXT,
    CONSTRAINT memberships_unique UNIQUE (group_seq, member_id)
);
CREATE INDEX memberships_member ON memberships (connection_id, member_id);
CREATE INDEX memberships_order ON memberships (group_seq, position);

CREATE TABLE request_log (
    id            BIGSERIAL PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    entry         TEXT NOT NULL
);
CREATE INDEX request_log_connection ON request_log (connection_id, id);
