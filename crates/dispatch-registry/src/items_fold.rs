//! What is derived from items, kept apart from the transactions that store them (migrations
//! 0012 and 0013): the full-text index (`items_fts`) and the per-lane counts by kind
//! (`lane_kinds`). Items above `items_mark.upto` are new to both, and a changed text of an
//! item at or below it is marked pending (`items_fts_pending`); [`Registry::fold_items`]
//! folds all of it in at once. A flood of output thus pays for the index and the counts once,
//! after it, and not per row inside each of its batches.
//!
//! The index is brought up to date before every search ([`Registry::search_filtered`]), on
//! the ingest connection, so a search finds every item stored before it began; the event
//! pump does it whenever it has drained what arrived, and [`Registry::open`] after a crash.
//! `history` reads the counts of items above the mark from `items` itself.

use sqlx::SqliteConnection;

use crate::{Registry, RegistryError};

/// What [`Registry::fold_items`] is doing, for error messages.
const CONTEXT: &str = "folding new items into search and history";

/// Removes from the index the texts of pending items that it holds (`indexed_text`).
const UNINDEX_OLD: &str = "INSERT INTO items_fts (items_fts, rowid, text) \
     SELECT 'delete', item, indexed_text FROM items_fts_pending WHERE indexed_text IS NOT NULL";

/// Indexes the pending items' current texts. `CROSS JOIN` keeps the pending rows outside, so
/// the items are looked up by id: with no statistics (the registry never runs `ANALYZE`)
/// SQLite would otherwise read every item and look each up among the pending ones.
const INDEX_CHANGED: &str = "INSERT INTO items_fts (rowid, text) \
     SELECT i.id, i.text FROM items_fts_pending p CROSS JOIN items i ON i.id = p.item \
     WHERE i.text IS NOT NULL";

/// Indexes the items above the mark.
const INDEX_NEW: &str = "INSERT INTO items_fts (rowid, text) \
     SELECT id, text FROM items \
     WHERE id > (SELECT upto FROM items_mark WHERE id = 0) AND text IS NOT NULL";

/// The items above the mark counted as `lane_kinds` counts them: lane, kind, items, first and
/// last `at_ms`. `COUNT_NEW` folds these rows in; `history` adds them to `lane_kinds`'s until
/// then. `NOT INDEXED`: the items are read by their ids, not by a scan of an index that the
/// grouping would otherwise pick.
macro_rules! unfolded_kinds_sql {
    () => {
        "SELECT lane_ref, kind, COUNT(*), MIN(at_ms), MAX(at_ms) FROM items NOT INDEXED \
         WHERE id > (SELECT upto FROM items_mark WHERE id = 0) GROUP BY lane_ref, kind"
    };
}
pub(crate) use unfolded_kinds_sql;

/// Counts the items above the mark in `lane_kinds`.
const COUNT_NEW: &str = concat!(
    "INSERT INTO lane_kinds (lane_ref, kind, items, first_at_ms, last_at_ms) ",
    unfolded_kinds_sql!(),
    " ON CONFLICT (lane_ref, kind) DO UPDATE SET \
       items = items + excluded.items, \
       first_at_ms = MIN(first_at_ms, excluded.first_at_ms), \
       last_at_ms = MAX(last_at_ms, excluded.last_at_ms)"
);

/// Nothing is pending any more.
const CLEAR_PENDING: &str = "DELETE FROM items_fts_pending";

/// Every item stored so far has been seen.
const RAISE_MARK: &str =
    "UPDATE items_mark SET upto = (SELECT COALESCE(MAX(id), 0) FROM items) WHERE id = 0";

/// Whether anything waits to be folded: a pending text or an item above the mark.
const ANY_TO_FOLD: &str = "SELECT EXISTS (SELECT 1 FROM items_fts_pending) \
     OR EXISTS (SELECT 1 FROM items WHERE id > (SELECT upto FROM items_mark WHERE id = 0))";

/// Pending texts, and items above the mark.
const TO_FOLD: &str = "SELECT (SELECT COUNT(*) FROM items_fts_pending), \
     (SELECT COUNT(*) FROM items WHERE id > (SELECT upto FROM items_mark WHERE id = 0))";

impl Registry {
    /// Folds the items stored and the texts changed since the last fold into the full-text
    /// index and `lane_kinds`; returns how many items it folded. Runs on the ingest
    /// connection, so it waits for a batch being stored and no batch is stored meanwhile;
    /// costs one query when there is nothing to fold, and runs only the statements for what
    /// there is (changed texts, new items).
    pub async fn fold_items(&self) -> Result<u64, RegistryError> {
        let path = self.path().to_path_buf();
        self.write_tx(CONTEXT, async |conn: &mut SqliteConnection| {
            let (changed, new): (i64, i64) = sqlx::query_as(TO_FOLD)
                .fetch_one(&mut *conn)
                .await
                .map_err(RegistryError::db_with(&path, CONTEXT))?;
            // Only what there is to do: a fold runs whenever the event pump has drained.
            let mut statements = Vec::with_capacity(6);
            if changed > 0 {
                statements.extend([UNINDEX_OLD, INDEX_CHANGED, CLEAR_PENDING]);
            }
            if new > 0 {
                statements.extend([INDEX_NEW, COUNT_NEW, RAISE_MARK]);
            }
            for statement in statements {
                sqlx::query(statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(RegistryError::db_with(&path, CONTEXT))?;
            }
            Ok(u64::try_from(changed + new).unwrap_or(0))
        })
        .await
    }

    /// Whether something waits to be folded (read on the pool, without the ingest
    /// connection).
    pub(crate) async fn items_to_fold(&self) -> Result<bool, RegistryError> {
        let any: bool = sqlx::query_scalar(ANY_TO_FOLD)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), CONTEXT))?;
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fold costs what it folds, not what the registry holds: none of its statements reads
    /// every item (the plans SQLite picks without statistics, as the registry runs them).
    #[tokio::test]
    async fn no_fold_statement_reads_every_item() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let registry = Registry::open(&dir.path().join("registry.db"))
            .await
            .expect("open");
        for statement in [
            UNINDEX_OLD,
            INDEX_CHANGED,
            INDEX_NEW,
            COUNT_NEW,
            CLEAR_PENDING,
            RAISE_MARK,
            ANY_TO_FOLD,
            TO_FOLD,
        ] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {statement}"
            )))
            .fetch_all(&registry.pool)
            .await
            .expect("the statement's plan");
            for (_, _, _, step) in &plan {
                let mut words = step.split_whitespace();
                let scanned = match (words.next(), words.next()) {
                    (Some("SCAN"), Some(table)) => table,
                    _ => "",
                };
                assert!(
                    scanned != "items" && scanned != "i",
                    "{statement}\nreads every item: {plan:?}"
                );
            }
        }
        registry.close().await;
    }
}
