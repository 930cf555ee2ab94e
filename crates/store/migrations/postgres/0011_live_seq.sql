-- Pages of a kind walk the connection's live resources in seq order. The index in seq order
-- had no deleted_at, so PostgreSQL had to read each row to skip deleted ones: it chose a
-- sequential scan and a sort instead, 150 ms for page 500 of a 100,000-user walk. With the
-- predicate, picking a page's seqs (OFFSET included) reads the index alone once VACUUM has
-- marked the pages all-visible: 13 ms for that page. Lookups by name still take their own
-- index (their order is `seq + 0`, which no index serves).
CREATE INDEX resources_live_seq ON resources (connection_id, kind, seq) WHERE deleted_at IS NULL;
