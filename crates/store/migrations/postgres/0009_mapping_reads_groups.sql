-- Whether the connection's custom mapping derives anything from groups (role rules). Only then
-- does a membership change make a user's mapped view stale: an initial sync adds about ten
-- memberships per user, and recomputing every member each time cost more than the sync itself.
ALTER TABLE connections ADD COLUMN mapping_reads_groups BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE connections SET mapping_reads_groups = TRUE
    WHERE jsonb_typeof(custom_mapping::jsonb -> 'group_role_mappings') = 'array'
      AND jsonb_array_length(custom_mapping::jsonb -> 'group_role_mappings') > 0;
