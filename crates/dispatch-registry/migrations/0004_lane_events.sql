-- Schema version 4: lane state derived from App Server notifications.
--
-- `lanes` gains the columns every listing shows (model, archived flag, the latest turn, the
-- goal, the last token usage), kept denormalised so that listing lanes is a single scan.
-- `lanes.status` now holds the live status only; being archived is the separate `archived`
-- flag, so that restoring a lane brings its live status back.
--
-- New tables: `turns`, `items`, `lane_errors`, `events` (the stored notifications) and
-- `requests` (approvals and other server requests awaiting an answer).

ALTER TABLE lanes ADD COLUMN model TEXT;
ALTER TABLE lanes ADD COLUMN archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1));
ALTER TABLE lanes ADD COLUMN latest_turn_id TEXT;
ALTER TABLE lanes ADD COLUMN latest_turn_status TEXT
    CHECK (latest_turn_status IN ('in_progress', 'completed', 'interrupted', 'failed'));
ALTER TABLE lanes ADD COLUMN latest_turn_error TEXT;
ALTER TABLE lanes ADD COLUMN latest_turn_started_at_ms INTEGER;
ALTER TABLE lanes ADD COLUMN latest_turn_completed_at_ms INTEGER;
ALTER TABLE lanes ADD COLUMN latest_turn_duration_ms INTEGER;
ALTER TABLE lanes ADD COLUMN goal_objective TEXT;
ALTER TABLE lanes ADD COLUMN goal_status TEXT;
ALTER TABLE lanes ADD COLUMN goal_token_budget INTEGER;
ALTER TABLE lanes ADD COLUMN goal_tokens_used INTEGER;
ALTER TABLE lanes ADD COLUMN token_usage TEXT CHECK (token_usage IS NULL OR json_valid(token_usage));

UPDATE lanes SET archived = 1, status = 'idle' WHERE status = 'archived';

-- `list`: newest activity first, ties by ref.
DROP INDEX lanes_updated_at_ms;
CREATE INDEX lanes_activity ON lanes (updated_at_ms DESC, ref);
-- Selectors: `@handle` and exact title.
CREATE INDEX lanes_handle ON lanes (handle) WHERE handle IS NOT NULL;
CREATE INDEX lanes_title ON lanes (title) WHERE title IS NOT NULL;

CREATE TABLE turns (
    lane_ref        TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    turn_id         TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('in_progress', 'completed', 'interrupted', 'failed')),
    error           TEXT,
    started_at_ms   INTEGER,
    completed_at_ms INTEGER,
    duration_ms     INTEGER,
    PRIMARY KEY (lane_ref, turn_id)
);

-- Identified by (lane_ref, item_id); `id` gives every item a stable rowid (an implicit rowid
-- may change on VACUUM), in the order items were first seen.
CREATE TABLE items (
    id       INTEGER PRIMARY KEY,
    lane_ref TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    item_id  TEXT NOT NULL,
    turn_id  TEXT,
    kind     TEXT NOT NULL,
    text     TEXT,
    status   TEXT,
    at_ms    INTEGER NOT NULL,
    UNIQUE (lane_ref, item_id)
);

-- `tail`: the lane's items in the order they were first seen.
CREATE INDEX items_by_time ON items (lane_ref, at_ms);

CREATE TABLE lane_errors (
    id         INTEGER PRIMARY KEY,
    lane_ref   TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    turn_id    TEXT,
    message    TEXT NOT NULL,
    will_retry INTEGER NOT NULL CHECK (will_retry IN (0, 1)),
    at_ms      INTEGER NOT NULL
);

CREATE INDEX lane_errors_by_time ON lane_errors (lane_ref, at_ms);

-- AUTOINCREMENT: event ids are cursors (`events_after`), so they are never reused, not even
-- after pruning every event.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    lane_ref TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    method   TEXT NOT NULL,
    turn_id  TEXT,
    at_ms    INTEGER NOT NULL,
    params   TEXT NOT NULL
);

CREATE INDEX events_by_lane ON events (lane_ref, id);

-- AUTOINCREMENT: request ids are shown to users (`respond <request-id>`) and never reused.
CREATE TABLE requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    lane_ref       TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    thread_id      TEXT NOT NULL,
    turn_id        TEXT,
    item_id        TEXT,
    method         TEXT NOT NULL,
    rpc_id         TEXT NOT NULL CHECK (json_valid(rpc_id)),
    params         TEXT NOT NULL CHECK (json_valid(params)),
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'answered', 'resolved_elsewhere', 'cancelled')),
    decision       TEXT,
    created_at_ms  INTEGER NOT NULL,
    resolved_at_ms INTEGER
);

CREATE INDEX requests_pending ON requests (lane_ref, id) WHERE status = 'pending';
CREATE INDEX requests_pending_rpc ON requests (thread_id, rpc_id) WHERE status = 'pending';
CREATE INDEX requests_by_lane ON requests (lane_ref);
