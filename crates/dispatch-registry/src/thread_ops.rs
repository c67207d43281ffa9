//! What the thread operations (`fork`, `revert`, `compact`, `delete`) record about a lane:
//! its fork parent, its compaction, the turns a revert dropped, and the lane's removal.
//!
//! These columns are read on their own ([`Registry::lineage`]) rather than with every lane, so
//! listings keep their single scan.

use serde::{Deserialize, Serialize};

use crate::lanes::TurnRow;
use crate::{Registry, RegistryError};

/// A lane's fork parent and compaction, as `get` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The ref of the lane it was forked from.
    pub parent_ref: Option<String>,
    /// When `compact` last asked Codex to compact its context (Unix epoch milliseconds).
    pub compact_requested_at_ms: Option<i64>,
    /// When Codex last reported the context compacted (Unix epoch milliseconds).
    pub compacted_at_ms: Option<i64>,
}

impl Registry {
    /// Records that `lane_ref` was forked from `parent_ref`.
    pub async fn set_parent(&self, lane_ref: &str, parent_ref: &str) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE lanes SET parent_ref = ?2 WHERE ref = ?1")
            .bind(lane_ref)
            .bind(parent_ref)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "recording a fork parent",
            ))?;
        self.one_lane_changed(done.rows_affected(), lane_ref)
    }

    /// The lane's fork parent and compaction; `None` when there is no such lane.
    pub async fn lineage(&self, lane_ref: &str) -> Result<Option<Lineage>, RegistryError> {
        let row: Option<(Option<String>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT parent_ref, compact_requested_at_ms, compacted_at_ms FROM lanes WHERE ref = ?",
        )
        .bind(lane_ref)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's lineage",
        ))?;
        Ok(row.map(
            |(parent_ref, compact_requested_at_ms, compacted_at_ms)| Lineage {
                parent_ref,
                compact_requested_at_ms,
                compacted_at_ms,
            },
        ))
    }

    /// Records that compaction of `lane_ref` was asked for at `at_ms`.
    pub async fn note_compaction_requested(
        &self,
        lane_ref: &str,
        at_ms: i64,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE lanes SET compact_requested_at_ms = ?2 WHERE ref = ?1")
            .bind(lane_ref)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "recording a compaction",
            ))?;
        self.one_lane_changed(done.rows_affected(), lane_ref)
    }

    /// Records that Codex reported the context of `lane_ref` compacted at `at_ms`.
    pub async fn note_compacted(&self, lane_ref: &str, at_ms: i64) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE lanes SET compacted_at_ms = ?2 WHERE ref = ?1")
            .bind(lane_ref)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "recording a compaction",
            ))?;
        self.one_lane_changed(done.rows_affected(), lane_ref)
    }

    /// Forgets the turns `dropped` of `lane_ref` and their items (a revert took them out of
    /// the thread), and makes `latest` the lane's latest turn. One transaction.
    pub async fn drop_turns(
        &self,
        lane_ref: &str,
        dropped: &[String],
        latest: Option<&TurnRow>,
    ) -> Result<(), RegistryError> {
        let path = self.path().to_path_buf();
        self.write_tx("forgetting reverted turns", async |conn| {
            let db = || RegistryError::db_with(&path, "forgetting reverted turns");
            for turn_id in dropped {
                sqlx::query("DELETE FROM items WHERE lane_ref = ?1 AND turn_id = ?2")
                    .bind(lane_ref)
                    .bind(turn_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db())?;
                sqlx::query("DELETE FROM turns WHERE lane_ref = ?1 AND turn_id = ?2")
                    .bind(lane_ref)
                    .bind(turn_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db())?;
            }
            sqlx::query(
                "UPDATE lanes SET latest_turn_id = ?2, latest_turn_status = ?3, \
                 latest_turn_error = ?4, latest_turn_started_at_ms = ?5, \
                 latest_turn_completed_at_ms = ?6, latest_turn_duration_ms = ?7 WHERE ref = ?1",
            )
            .bind(lane_ref)
            .bind(latest.map(|t| t.turn_id.as_str()))
            .bind(latest.map(|t| t.status.as_str()))
            .bind(latest.and_then(|t| t.error.as_deref()))
            .bind(latest.and_then(|t| t.started_at_ms))
            .bind(latest.and_then(|t| t.completed_at_ms))
            .bind(latest.and_then(|t| t.duration_ms))
            .execute(&mut *conn)
            .await
            .map_err(db())?;
            Ok(())
        })
        .await
    }

    /// Removes the lane and everything recorded about it; its ref is retired (never used
    /// again). `false` when there was no such lane.
    pub async fn delete_lane(&self, lane_ref: &str) -> Result<bool, RegistryError> {
        let path = self.path().to_path_buf();
        self.write_tx("deleting a lane", async |conn| {
            let db = || RegistryError::db_with(&path, "deleting a lane");
            sqlx::query("INSERT INTO retired_refs (ref) VALUES (?1) ON CONFLICT (ref) DO NOTHING")
                .bind(lane_ref)
                .execute(&mut *conn)
                .await
                .map_err(db())?;
            let done = sqlx::query("DELETE FROM lanes WHERE ref = ?1")
                .bind(lane_ref)
                .execute(&mut *conn)
                .await
                .map_err(db())?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    fn one_lane_changed(&self, rows: u64, lane_ref: &str) -> Result<(), RegistryError> {
        if rows == 1 {
            Ok(())
        } else {
            Err(RegistryError::lane_not_found(self.path(), lane_ref))
        }
    }
}
