-- Schema version 9: topology, history and structural search.
--
-- 1. `parent_thread_id`: the Codex thread Codex itself names as a lane's parent
--    (`forkedFromId`, `parentThreadId`), which may be no lane at all. The parent dispatch
--    recorded (`fork`) is `lanes.parent_ref`, added in schema 8.
-- 2. `item_files`: the files each file-change item touched, one row per path, kept in step
--    with `items` by triggers (the item's text is its paths joined with ", "), so `history`
--    and `search --file` count and filter files with an index instead of parsing text.
-- 3. `lane_kinds`: per-lane item counts by kind, for the `history` overview.

ALTER TABLE lanes ADD COLUMN parent_thread_id TEXT;
CREATE INDEX lanes_parent_thread ON lanes (parent_thread_id) WHERE parent_thread_id IS NOT NULL;

CREATE TABLE item_files (
    item     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    lane_ref TEXT NOT NULL,
    path     TEXT NOT NULL,
    PRIMARY KEY (item, path)
) WITHOUT ROWID;

CREATE INDEX item_files_by_lane ON item_files (lane_ref, path);
CREATE INDEX item_files_by_path ON item_files (path);

-- The paths of a file change: its text as a JSON array, split on ", ".
CREATE TRIGGER item_files_insert AFTER INSERT ON items
WHEN new.kind = 'file_change' AND new.text IS NOT NULL AND new.text <> '' BEGIN
    INSERT OR IGNORE INTO item_files (item, lane_ref, path)
        SELECT new.id, new.lane_ref, value
        FROM json_each('[' || replace(json_quote(new.text), ', ', '","') || ']')
        WHERE value <> '';
END;
CREATE TRIGGER item_files_update AFTER UPDATE OF text ON items
WHEN new.kind = 'file_change' AND old.text IS NOT new.text BEGIN
    DELETE FROM item_files WHERE item = new.id;
    INSERT OR IGNORE INTO item_files (item, lane_ref, path)
        SELECT new.id, new.lane_ref, value
        FROM json_each('[' || replace(json_quote(COALESCE(new.text, '')), ', ', '","') || ']')
        WHERE value <> '';
END;

INSERT OR IGNORE INTO item_files (item, lane_ref, path)
    SELECT items.id, items.lane_ref, j.value
    FROM items, json_each('[' || replace(json_quote(items.text), ', ', '","') || ']') AS j
    WHERE items.kind = 'file_change' AND items.text IS NOT NULL AND j.value <> '';

-- `lane_kinds`: how many items of each kind a lane has and when the first and the last were
-- seen, kept in step with `items` by triggers, so the `history` overview reads a few rows per
-- lane instead of every item. (A removed item lowers the count; the times stay.)
CREATE TABLE lane_kinds (
    lane_ref    TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    items       INTEGER NOT NULL,
    first_at_ms INTEGER NOT NULL,
    last_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (lane_ref, kind)
) WITHOUT ROWID;

CREATE TRIGGER lane_kinds_insert AFTER INSERT ON items BEGIN
    INSERT INTO lane_kinds (lane_ref, kind, items, first_at_ms, last_at_ms)
        VALUES (new.lane_ref, new.kind, 1, new.at_ms, new.at_ms)
    ON CONFLICT (lane_ref, kind) DO UPDATE SET
        items = items + 1,
        first_at_ms = MIN(first_at_ms, excluded.first_at_ms),
        last_at_ms = MAX(last_at_ms, excluded.last_at_ms);
END;
CREATE TRIGGER lane_kinds_delete AFTER DELETE ON items BEGIN
    UPDATE lane_kinds SET items = items - 1 WHERE lane_ref = old.lane_ref AND kind = old.kind;
END;
CREATE TRIGGER lane_kinds_rekind AFTER UPDATE OF kind ON items
WHEN old.kind IS NOT new.kind BEGIN
    UPDATE lane_kinds SET items = items - 1 WHERE lane_ref = old.lane_ref AND kind = old.kind;
    INSERT INTO lane_kinds (lane_ref, kind, items, first_at_ms, last_at_ms)
        VALUES (new.lane_ref, new.kind, 1, new.at_ms, new.at_ms)
    ON CONFLICT (lane_ref, kind) DO UPDATE SET
        items = items + 1,
        first_at_ms = MIN(first_at_ms, excluded.first_at_ms),
        last_at_ms = MAX(last_at_ms, excluded.last_at_ms);
END;

INSERT INTO lane_kinds (lane_ref, kind, items, first_at_ms, last_at_ms)
    SELECT lane_ref, kind, COUNT(*), MIN(at_ms), MAX(at_ms) FROM items GROUP BY lane_ref, kind;
