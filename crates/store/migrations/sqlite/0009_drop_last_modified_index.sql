-- Membership changes give each member a new version and lastModified, and this index made each
-- such touch two more random page writes (the old entry out, the new one in) besides the row's
-- own: a 100-member PATCH wrote about twice the pages it needed, and the WAL checkpoints that
-- copy them back stalled the commits behind them. `meta.lastModified` filters are rare (no IdP
-- sends them); they now read the connection's resources of that kind in order, filtering, as
-- on PostgreSQL.
DROP INDEX resources_last_modified;
