-- A user is read with its groups, found through this index; with the group in it, an index-only
-- scan answers without visiting the memberships' heap pages (where VACUUM has marked them
-- all-visible), instead of a heap page per membership, ten per lookup and a thousand per page of
-- 100 users.
DROP INDEX memberships_member;
CREATE INDEX memberships_member ON memberships (connection_id, member_id) INCLUDE (group_seq);
