-- Schema version 11: a stamp on every lane row, so that a reader can keep what it made of a
-- row (the daemon's cache of encoded `list` entries) and know when it is stale.
--
-- 1. `lanes.version`: bumped by `lanes_version` after every UPDATE of the row that did not
--    itself raise the version, whoever wrote it (this process, another connection, raw SQL),
--    so within an incarnation a row's version only ever rises: an UPDATE that sets it back by
--    hand is bumped past where it was. The trigger's own UPDATE raises the version, so it
--    does not fire again (and recursive triggers are off anyway).
-- 2. `lanes.incarnation`: which INSERT made the row. `lanes_incarnation` takes it from
--    `lanes_epoch`, one row counting every INSERT into `lanes` (`INSERT OR REPLACE` included,
--    which deletes without firing delete triggers). A ref that came back (a retired ref
--    written again by hand) starts a new incarnation, so (ref, incarnation, version) never
--    names two different rows. Rows from before this migration are incarnation 0.

ALTER TABLE lanes ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER lanes_version AFTER UPDATE ON lanes
    WHEN NEW.version <= OLD.version
BEGIN
    UPDATE lanes SET version = OLD.version + 1 WHERE rowid = NEW.rowid;
END;

CREATE TABLE lanes_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    epoch INTEGER NOT NULL
);
INSERT INTO lanes_epoch (id, epoch) VALUES (0, 0);

CREATE TRIGGER lanes_incarnation AFTER INSERT ON lanes
BEGIN
    UPDATE lanes_epoch SET epoch = epoch + 1 WHERE id = 0;
    UPDATE lanes SET incarnation = (SELECT epoch FROM lanes_epoch WHERE id = 0)
        WHERE rowid = NEW.rowid;
END;
