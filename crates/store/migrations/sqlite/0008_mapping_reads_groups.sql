-- Whether the connection's custom mapping derives anything from groups (role rules). Only then
-- does a membership change make a user's mapped view stale: an initial sync adds about ten
-- memberships per user, and recomputing every member each time cost more than the sync itself.
ALTER TABLE connections ADD COLUMN mapping_reads_groups INTEGER NOT NULL DEFAULT 0;
UPDATE connections SET mapping_reads_groups = 1
    WHERE json_array_length(custom_mapping, '$.group_role_mappings') > 0;
