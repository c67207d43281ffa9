-- Schema version 5: full-text search (FTS5) over item text and lane titles.
--
-- Both indexes are external-content tables kept in step by triggers, so every write path
-- (the event pump, sync, rename) indexes without knowing about search. `items` has a stable
-- integer id (its rowid); `lanes_fts` follows the implicit rowid of `lanes`, which the
-- registry never renumbers (backups use VACUUM INTO, which leaves the original as it is).

CREATE VIRTUAL TABLE items_fts USING fts5 (
    text,
    content = 'items',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO items_fts (items_fts) VALUES ('rebuild');

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

CREATE VIRTUAL TABLE lanes_fts USING fts5 (
    title,
    content = 'lanes',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO lanes_fts (lanes_fts) VALUES ('rebuild');

CREATE TRIGGER lanes_fts_insert AFTER INSERT ON lanes WHEN new.title IS NOT NULL BEGIN
    INSERT INTO lanes_fts (rowid, title) VALUES (new.rowid, new.title);
END;
CREATE TRIGGER lanes_fts_delete AFTER DELETE ON lanes WHEN old.title IS NOT NULL BEGIN
    INSERT INTO lanes_fts (lanes_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
END;
CREATE TRIGGER lanes_fts_update AFTER UPDATE OF title ON lanes
WHEN old.title IS NOT new.title BEGIN
    INSERT INTO lanes_fts (lanes_fts, rowid, title)
        SELECT 'delete', old.rowid, old.title WHERE old.title IS NOT NULL;
    INSERT INTO lanes_fts (rowid, title) SELECT new.rowid, new.title WHERE new.title IS NOT NULL;
END;
