-- Every change that can alter a user's mapped view bumps its epoch; the background recompute
-- saves a view only if the epoch it read is still current, so no change is overwritten.
ALTER TABLE resources ADD COLUMN mapping_epoch BIGINT NOT NULL DEFAULT 0;
