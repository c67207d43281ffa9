-- Schema version 1: key/value metadata and the append-only action log.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE action_log (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    op         TEXT NOT NULL,
    lane       TEXT,
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error_code TEXT,
    detail     TEXT
);

CREATE INDEX action_log_at_ms ON action_log (at_ms);
