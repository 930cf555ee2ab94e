-- Directories grow from nothing in minutes when an IdP first syncs; refresh the planner's
-- statistics of the directory tables after 2% of their rows change instead of 10%.
ALTER TABLE resources SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE resource_emails SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE memberships SET (autovacuum_analyze_scale_factor = 0.02);
