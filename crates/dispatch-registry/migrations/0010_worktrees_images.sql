-- Schema version 10: per-lane git worktrees and images on messages.
--
-- 1. `lanes.worktree_path`, `worktree_branch`, `worktree_repo`: the git worktree `new`
--    made for the lane (`git worktree add -b <branch> <path>` in the repository whose root
--    is `worktree_repo`); all three NULL when it has none, or once `worktree remove` removed
--    it.
-- 2. `deliveries.images`: the images a message carries, as a JSON array of
--    `{"path", "size", "sha256"}` (never their bytes); NULL when it carries none.

ALTER TABLE lanes ADD COLUMN worktree_path TEXT;
ALTER TABLE lanes ADD COLUMN worktree_branch TEXT;
ALTER TABLE lanes ADD COLUMN worktree_repo TEXT;
ALTER TABLE deliveries ADD COLUMN images TEXT;
