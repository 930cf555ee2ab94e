-- Membership changes give each member a new version and lastModified. PostgreSQL can make such
-- an update "heap-only" (no new entry in any index, the old version pruned from its page
-- without VACUUM) only if no indexed column changes and the page has room. The lastModified
-- index defeated both: every touch wrote a new entry into all eight indexes of resources and
-- left the old ones for VACUUM, so reads by name or id walked a growing trail of dead entries
-- (about ten per user after an initial sync). `meta.lastModified` filters are rare (no IdP
-- sends them); they now read the connection's resources of that kind in order, filtering.
DROP INDEX resources_last_modified;
ALTER TABLE resources SET (fillfactor = 70);

-- Without statistics, a lookup by userName (connection_id, kind = 'User', deleted_at IS NULL)
-- matched this partial index's predicate exactly and the planner took it, reading every live
-- user of the connection. Leading with mapped_generation, which no lookup constrains, keeps it
-- to the recompute's claim.
DROP INDEX resources_mapping_pending;
CREATE INDEX resources_mapping_pending ON resources (mapped_generation, connection_id)
    WHERE kind = 'User' AND deleted_at IS NULL;
