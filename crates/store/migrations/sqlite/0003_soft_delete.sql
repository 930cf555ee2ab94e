-- Users deleted through SCIM stay readable by the app (state "deleted") until the retention
-- period ends; SCIM no longer sees them, and their userName is free again.
ALTER TABLE resources ADD COLUMN deleted_at INTEGER;
DROP INDEX resources_user_name_unique;
CREATE UNIQUE INDEX resources_user_name_unique ON resources (connection_id, name_lower) WHERE kind = 'User' AND deleted_at IS NULL;
CREATE INDEX resources_deleted ON resources (deleted_at) WHERE deleted_at IS NOT NULL;
