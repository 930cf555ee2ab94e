-- Links that let a customer's IT admin set up one connection without an account: only the
-- token's hash is kept.
CREATE TABLE setup_links (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX setup_links_connection ON setup_links (connection_id);
