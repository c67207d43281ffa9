-- Schema version 12: items are indexed for search apart from the transactions that store them.
--
-- The triggers of migration 0006 indexed an item's text (FTS5, `items_fts`) in the statement
-- that stored it, about a third of SQLite's work in a flood of output. Now a write to an
-- item's text only marks the item pending (`items_fts_pending`), and `Registry::index_pending`
-- folds the pending items into the index in one transaction: when the event pump has drained
-- what arrived, when the registry is opened (after a crash), and before every search, on the
-- ingest connection (serialized with ingest), so a search never misses a stored item.
--
-- `items_fts` is external content: removing an entry needs the text that was indexed. A
-- pending row keeps it: `indexed_text` is the item's text as the index holds it (`NULL` when
-- the index holds nothing for the item), recorded by the first change after the item was last
-- indexed; later changes leave it (the update trigger's `WHEN`; an `OR IGNORE` in the trigger
-- would give way to the conflict policy of the upsert that fired it, and a `NOT EXISTS` in
-- its `SELECT` costs SQLite a temporary table per row). A new item cannot be pending already:
-- a pending row belongs to an item that exists, and a deleted item leaves the index and the
-- pending rows at once.

CREATE TABLE items_fts_pending (
    item         INTEGER PRIMARY KEY,
    indexed_text TEXT
);

DROP TRIGGER items_fts_insert;
DROP TRIGGER items_fts_update;
DROP TRIGGER items_fts_delete;

CREATE TRIGGER items_fts_insert AFTER INSERT ON items WHEN new.text IS NOT NULL BEGIN
    INSERT INTO items_fts_pending (item, indexed_text) VALUES (new.rowid, NULL);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF text ON items
WHEN old.text IS NOT new.text
    AND NOT EXISTS (SELECT 1 FROM items_fts_pending WHERE item = old.rowid) BEGIN
    INSERT INTO items_fts_pending (item, indexed_text) VALUES (old.rowid, old.text);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, text)
        SELECT 'delete', old.rowid, indexed FROM (
            SELECT indexed_text AS indexed FROM items_fts_pending WHERE item = old.rowid
            UNION ALL
            SELECT old.text AS indexed
            WHERE NOT EXISTS (SELECT 1 FROM items_fts_pending WHERE item = old.rowid)
        ) WHERE indexed IS NOT NULL;
    DELETE FROM items_fts_pending WHERE item = old.rowid;
END;
