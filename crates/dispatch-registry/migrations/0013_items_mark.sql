-- Schema version 13: new items are folded into what is derived from them (the search index,
-- `lane_kinds`) per fold, not per row.
--
-- Two `AFTER INSERT` triggers on `items` (`items_fts_insert`, marking each new item pending
-- for search, and `lane_kinds_insert`, counting it) cost about as much as storing the items
-- themselves in a flood of output (ADR 0020, "Ingest, eleventh round"). Both go. Instead,
-- `items_mark.upto` is the highest item id that the search index and `lane_kinds` have seen:
--
-- * an item above the mark is new to both: the index holds nothing for it, `lane_kinds` does
--   not count it, and it has no `items_fts_pending` row; changing or deleting it needs no
--   bookkeeping (the triggers below only act on items at or below the mark);
-- * `Registry::fold_items` indexes the items above the mark and adds them to `lane_kinds`,
--   re-indexes the changed texts of items at or below it (the pending rows of migration
--   0012), and moves the mark to the highest id, in one transaction; `history` adds the
--   items above the mark to `lane_kinds`'s counts when it reads them;
-- * SQLite gives a new item the highest id plus one (`items.id` is an `INTEGER PRIMARY KEY`;
--   only once an id reached 2^63 - 1 would it pick another), so a new item is always above
--   the mark as long as an item with the mark's id exists. The
--   delete trigger keeps that true: deleting the item at the mark moves the mark down to the
--   highest id below it (everything below was seen, and nothing above it was).
--
-- Every item that exists now was indexed or is pending (migration 0012) and is counted, so the
-- mark starts at the highest id.

CREATE TABLE items_mark (
    id   INTEGER PRIMARY KEY CHECK (id = 0),
    upto INTEGER NOT NULL
);
INSERT INTO items_mark (id, upto) VALUES (0, (SELECT COALESCE(MAX(id), 0) FROM items));

DROP TRIGGER items_fts_insert;
DROP TRIGGER items_fts_update;
DROP TRIGGER items_fts_delete;
DROP TRIGGER lane_kinds_insert;
DROP TRIGGER lane_kinds_delete;
DROP TRIGGER lane_kinds_rekind;

CREATE TRIGGER items_fts_update AFTER UPDATE OF text ON items
WHEN old.text IS NOT new.text
    AND old.id <= (SELECT upto FROM items_mark WHERE id = 0)
    AND NOT EXISTS (SELECT 1 FROM items_fts_pending WHERE item = old.id) BEGIN
    INSERT INTO items_fts_pending (item, indexed_text) VALUES (old.id, old.text);
END;

CREATE TRIGGER lane_kinds_rekind AFTER UPDATE OF kind ON items
WHEN old.kind IS NOT new.kind AND old.id <= (SELECT upto FROM items_mark WHERE id = 0) BEGIN
    UPDATE lane_kinds SET items = items - 1 WHERE lane_ref = old.lane_ref AND kind = old.kind;
    INSERT INTO lane_kinds (lane_ref, kind, items, first_at_ms, last_at_ms)
        VALUES (new.lane_ref, new.kind, 1, new.at_ms, new.at_ms)
    ON CONFLICT (lane_ref, kind) DO UPDATE SET
        items = items + 1,
        first_at_ms = MIN(first_at_ms, excluded.first_at_ms),
        last_at_ms = MAX(last_at_ms, excluded.last_at_ms);
END;

CREATE TRIGGER items_delete AFTER DELETE ON items
WHEN old.id <= (SELECT upto FROM items_mark WHERE id = 0) BEGIN
    INSERT INTO items_fts (items_fts, rowid, text)
        SELECT 'delete', old.id, indexed FROM (
            SELECT indexed_text AS indexed FROM items_fts_pending WHERE item = old.id
            UNION ALL
            SELECT old.text AS indexed
            WHERE NOT EXISTS (SELECT 1 FROM items_fts_pending WHERE item = old.id)
        ) WHERE indexed IS NOT NULL;
    DELETE FROM items_fts_pending WHERE item = old.id;
    UPDATE lane_kinds SET items = items - 1 WHERE lane_ref = old.lane_ref AND kind = old.kind;
    UPDATE items_mark SET upto = (SELECT COALESCE(MAX(id), 0) FROM items WHERE id < old.id)
        WHERE id = 0 AND upto = old.id;
END;
