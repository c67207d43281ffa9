-- Schema version 6: lane state that never lies.
--
-- 1. Items are identified by (lane, turn, item id): providers may reuse item ids across
--    turns (a stub answering `msg_1` every time), which overwrote earlier replies. Items
--    without a turn have turn_id ''. The table is rebuilt with its ids kept, so `items_fts`
--    (external content keyed by that id) stays valid; its triggers are re-created.
-- 2. Handles are unique. Duplicates from older versions keep the oldest lane's handle; the
--    others become `<handle>-<ref>`.
-- 3. Lanes carry their retry state (Codex retrying a turn: attempts, last error, when) and
--    the cause of the latest error, so `get` and `list` can say what is wrong and what to do.
--    Errors carry their cause too.

CREATE TABLE items_v6 (
    id       INTEGER PRIMARY KEY,
    lane_ref TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    item_id  TEXT NOT NULL,
    turn_id  TEXT NOT NULL DEFAULT '',
    kind     TEXT NOT NULL,
    text     TEXT,
    status   TEXT,
    at_ms    INTEGER NOT NULL,
    UNIQUE (lane_ref, turn_id, item_id)
);
INSERT INTO items_v6 (id, lane_ref, item_id, turn_id, kind, text, status, at_ms)
    SELECT id, lane_ref, item_id, COALESCE(turn_id, ''), kind, text, status, at_ms FROM items;
DROP TABLE items;
ALTER TABLE items_v6 RENAME TO items;
CREATE INDEX items_by_time ON items (lane_ref, at_ms);

CREATE TRIGGER items_fts_insert AFTER INSERT ON items WHEN new.text IS NOT NULL BEGIN
    INSERT INTO items_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items WHEN old.text IS NOT NULL BEGIN
    INSERT INTO items_fts (items_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF text ON items
WHEN old.text IS NOT new.text BEGIN
    INSERT INTO items_fts (items_fts, rowid, text)
        SELECT 'delete', old.rowid, old.text WHERE old.text IS NOT NULL;
    INSERT INTO items_fts (rowid, text) SELECT new.rowid, new.text WHERE new.text IS NOT NULL;
END;

UPDATE lanes SET handle = handle || '-' || ref
WHERE handle IS NOT NULL AND EXISTS (
    SELECT 1 FROM lanes AS older
    WHERE older.handle = lanes.handle
      AND (older.created_at_ms < lanes.created_at_ms
           OR (older.created_at_ms = lanes.created_at_ms AND older.ref < lanes.ref))
);
DROP INDEX lanes_handle;
CREATE UNIQUE INDEX lanes_handle ON lanes (handle) WHERE handle IS NOT NULL;

ALTER TABLE lanes ADD COLUMN retry_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN retry_error TEXT;
ALTER TABLE lanes ADD COLUMN retry_at_ms INTEGER;
ALTER TABLE lanes ADD COLUMN error_cause TEXT;
ALTER TABLE lane_errors ADD COLUMN cause TEXT;
