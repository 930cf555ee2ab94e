-- Mapped users are stored with the generation of the connection's mapping they were computed
-- with; a mapping change bumps the connection's generation and the background recompute brings
-- every user up to it. A lease (claimed with FOR UPDATE SKIP LOCKED) keeps two instances off the
-- same user.
ALTER TABLE connections ADD COLUMN mapping_generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE resources ADD COLUMN mapped TEXT;
ALTER TABLE resources ADD COLUMN mapped_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN mapping_lease_until BIGINT;
CREATE INDEX resources_mapping_stale ON resources (connection_id, mapped_generation) WHERE kind = 'User';
