//! `new` with an idempotency key: the key binds the settings to the lane the first call made,
//! so a retry returns that lane and makes nothing new, also after a restart.

use crate::actions::now_ms;
use crate::{Registry, RegistryError};

/// A recorded creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationRow {
    /// The idempotency key.
    pub key: String,
    /// The hash of the settings it binds.
    pub payload_hash: String,
    /// The lane it made, once recorded.
    pub lane_ref: Option<String>,
    /// The Codex thread it made, once known.
    pub thread_id: Option<String>,
    /// The receipt of its first message, if one was sent.
    pub receipt: Option<String>,
}

/// A raw `creations` row: key, hash, lane, thread, receipt.
type CreationRecord = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Registry {
    /// The creation recorded under `key`.
    pub async fn creation(&self, key: &str) -> Result<Option<CreationRow>, RegistryError> {
        let row: Option<CreationRecord> = sqlx::query_as(
            "SELECT idempotency_key, payload_hash, lane_ref, thread_id, receipt \
                 FROM creations WHERE idempotency_key = ?",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading a creation"))?;
        Ok(row.map(
            |(key, payload_hash, lane_ref, thread_id, receipt)| CreationRow {
                key,
                payload_hash,
                lane_ref,
                thread_id,
                receipt,
            },
        ))
    }

    /// Claims `key` for a new creation; `Ok(Some(existing))` when it is taken (nothing
    /// recorded).
    pub async fn begin_creation(
        &self,
        key: &str,
        payload_hash: &str,
    ) -> Result<Option<CreationRow>, RegistryError> {
        let inserted = sqlx::query(
            "INSERT INTO creations (idempotency_key, payload_hash, created_at_ms) \
             VALUES (?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(payload_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "recording a creation"))?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        self.creation(key).await
    }

    /// Records what the creation under `key` made so far.
    pub async fn note_creation(
        &self,
        key: &str,
        thread_id: Option<&str>,
        lane_ref: Option<&str>,
        receipt: Option<&str>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE creations SET thread_id = COALESCE(?, thread_id), \
             lane_ref = COALESCE(?, lane_ref), receipt = COALESCE(?, receipt) \
             WHERE idempotency_key = ?",
        )
        .bind(thread_id)
        .bind(lane_ref)
        .bind(receipt)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "recording a creation"))?;
        Ok(())
    }

    /// Forgets a creation that made nothing (it failed before creating a thread), so the key
    /// can be used again.
    pub async fn forget_creation(&self, key: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM creations WHERE idempotency_key = ? AND thread_id IS NULL")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "forgetting a creation"))?;
        Ok(())
    }
}
