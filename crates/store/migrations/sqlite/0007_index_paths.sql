-- The recompute looks for users whose mapped view is behind their connection's mapping. Its
-- claim used to sort every candidate by seq, which made SQLite scan the whole table for each
-- batch (and every idle poll): O(directory) work that grew with N. Deleted users never need a
-- view, so they leave the index too, and a claim now reads only the users it hands out.
DROP INDEX resources_mapping_stale;
CREATE INDEX resources_mapping_pending ON resources (connection_id, mapped_generation)
    WHERE kind = 'User' AND deleted_at IS NULL;

-- Pages of a kind walk in seq order. Without an index whose order is seq after
-- (connection_id, kind, deleted_at), SQLite sorted every user of the connection for each page;
-- and with deleted_at in it, a page's totalResults is counted from the index alone.
CREATE INDEX resources_kind_seq ON resources (connection_id, kind, deleted_at);
