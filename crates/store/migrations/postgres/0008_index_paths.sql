-- The recompute looks for users whose mapped view is behind their connection's mapping. Its
-- claim used to sort every candidate by seq, which made PostgreSQL read and sort them all for each
-- batch (and every idle poll): O(directory) work that grew with N. Deleted users never need a
-- view, so they leave the index too, and a claim now reads only the users it hands out.
DROP INDEX resources_mapping_stale;
CREATE INDEX resources_mapping_pending ON resources (connection_id, mapped_generation)
    WHERE kind = 'User' AND deleted_at IS NULL;


