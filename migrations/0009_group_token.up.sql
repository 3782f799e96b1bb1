-- Pipelined group commit (docs/PERFORMANCE.md, "Batches of 100"): the
-- appender sends a group while the one before it is still committing, and
-- the later group checks, under the head row lock, that the head it was
-- planned on was written by that earlier group's transaction: each group
-- sent that way writes a random token here, and its successor requires
-- it. Without it, a successor whose predecessor rolled back could find the
-- same head number written by another process and commit on top of a log
-- it did not plan for.
ALTER TABLE fossil_head ADD COLUMN group_token bigint NOT NULL DEFAULT 0;
