-- Schema version 2: lanes (one per Codex thread) and the refs that may never be reused.

CREATE TABLE lanes (
    ref           TEXT PRIMARY KEY CHECK (length(ref) = 6),
    thread_id     TEXT NOT NULL UNIQUE,
    title         TEXT,
    handle        TEXT,
    ownership     TEXT NOT NULL CHECK (ownership IN ('owned', 'attached')),
    cwd           TEXT,
    status        TEXT NOT NULL DEFAULT 'idle'
                  CHECK (status IN ('idle', 'busy', 'waiting_approval', 'error', 'archived')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE INDEX lanes_updated_at_ms ON lanes (updated_at_ms);

CREATE TABLE retired_refs (
    ref TEXT PRIMARY KEY
);
