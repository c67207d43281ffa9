-- Schema version 8: thread operations (fork, compact).
--
-- 1. A forked lane records the ref of the lane it was forked from (`parent_ref`; refs are
--    never reused, so it stays meaningful after the parent is deleted).
-- 2. Compaction: when `compact` asked for it and when Codex reported the context compacted.

ALTER TABLE lanes ADD COLUMN parent_ref TEXT;
ALTER TABLE lanes ADD COLUMN compact_requested_at_ms INTEGER;
ALTER TABLE lanes ADD COLUMN compacted_at_ms INTEGER;
CREATE INDEX lanes_parent ON lanes (parent_ref) WHERE parent_ref IS NOT NULL;
