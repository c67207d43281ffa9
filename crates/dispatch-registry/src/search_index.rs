//! The items' full-text index, kept apart from the transactions that store the items
//! (migration 0012): a write to an item's text marks the item pending, and
//! [`Registry::index_pending`] folds what is pending into `items_fts` in one go. A flood of
//! output thus pays for the index once, after it, and not inside each of its batches.
//!
//! The index is brought up to date before every search ([`Registry::search_filtered`]), on
//! the ingest connection, so a search finds every item stored before it began; the event
//! pump does it whenever it has drained what arrived, and [`Registry::open`] after a crash.

use sqlx::SqliteConnection;

use crate::{Registry, RegistryError};

/// What [`Registry::index_pending`] is doing, for error messages.
const CONTEXT: &str = "indexing items for search";

/// Removes from the index the texts of pending items that it holds (`indexed_text`).
const UNINDEX_OLD: &str = "INSERT INTO items_fts (items_fts, rowid, text) \
     SELECT 'delete', item, indexed_text FROM items_fts_pending WHERE indexed_text IS NOT NULL";

/// Indexes the pending items' current texts.
const INDEX_NEW: &str = "INSERT INTO items_fts (rowid, text) \
     SELECT i.id, i.text FROM items_fts_pending p JOIN items i ON i.id = p.item \
     WHERE i.text IS NOT NULL";

/// One pending item, if any.
const ANY_PENDING: &str = "SELECT item FROM items_fts_pending LIMIT 1";

/// Nothing is pending any more.
const CLEAR_PENDING: &str = "DELETE FROM items_fts_pending";

impl Registry {
    /// Brings the items' full-text index up to date with every item stored so far; returns
    /// how many items were pending. Runs on the ingest connection, so it waits for a batch
    /// being stored and no batch is stored meanwhile; costs one query when nothing is pending.
    pub async fn index_pending(&self) -> Result<u64, RegistryError> {
        let path = self.path().to_path_buf();
        self.write_tx(CONTEXT, async |conn: &mut SqliteConnection| {
            let any: Option<i64> = sqlx::query_scalar(ANY_PENDING)
                .fetch_optional(&mut *conn)
                .await
                .map_err(RegistryError::db_with(&path, CONTEXT))?;
            if any.is_none() {
                return Ok(0);
            }
            for statement in [UNINDEX_OLD, INDEX_NEW] {
                sqlx::query(statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(RegistryError::db_with(&path, CONTEXT))?;
            }
            let done = sqlx::query(CLEAR_PENDING)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(&path, CONTEXT))?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// Whether some item waits to be indexed (read on the pool, without the ingest
    /// connection).
    pub(crate) async fn search_index_pending(&self) -> Result<bool, RegistryError> {
        let any: Option<i64> = sqlx::query_scalar(ANY_PENDING)
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), CONTEXT))?;
        Ok(any.is_some())
    }
}
