//! Deliveries: every message dispatch delivers to a lane, with its receipt's lifecycle, and
//! the lanes' queues.
//!
//! A delivery is written before its side effect: `queued` (waits for the lane to be idle) or
//! `submitting` (being handed to the App Server), then `accepted` with its turn, and
//! `completed` or `failed` when that turn ends (see `ingest.rs`). A delivery found
//! `submitting` after a crash is `ambiguous`: it may or may not have reached the thread, and
//! only positive evidence (its id as the `clientId` of a user message in the thread) resolves
//! it. An open delivery (`submitting` or `ambiguous`) holds the lane's queue, so queued
//! messages keep their order and nothing is delivered twice.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::actions::now_ms;
use crate::{Registry, RegistryError};

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for the lane to be idle.
    Queued,
    /// Being handed to the App Server.
    Submitting,
    /// The App Server took it: a turn started (or was steered, or the text was added).
    Accepted,
    /// Its turn completed.
    Completed,
    /// It was refused, or its turn failed or was interrupted.
    Failed,
    /// A crash left it unknown whether it arrived; never resent.
    Ambiguous,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Submitting => "submitting",
            DeliveryState::Accepted => "accepted",
            DeliveryState::Completed => "completed",
            DeliveryState::Failed => "failed",
            DeliveryState::Ambiguous => "ambiguous",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => DeliveryState::Queued,
            "submitting" => DeliveryState::Submitting,
            "accepted" => DeliveryState::Accepted,
            "completed" => DeliveryState::Completed,
            "failed" => DeliveryState::Failed,
            "ambiguous" => DeliveryState::Ambiguous,
            _ => return None,
        })
    }
}

/// How a delivery reaches the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// A new turn on an idle lane.
    Send,
    /// Added to the running turn.
    Steer,
    /// A new turn when the lane is next idle.
    Queue,
    /// The running turn is interrupted, then a new turn starts.
    Interject,
    /// Added to the thread's history without a turn.
    Context,
}

impl DeliveryMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Send => "send",
            DeliveryMode::Steer => "steer",
            DeliveryMode::Queue => "queue",
            DeliveryMode::Interject => "interject",
            DeliveryMode::Context => "context",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "send" => DeliveryMode::Send,
            "steer" => DeliveryMode::Steer,
            "queue" => DeliveryMode::Queue,
            "interject" => DeliveryMode::Interject,
            "context" => DeliveryMode::Context,
            _ => return None,
        })
    }
}

/// A delivery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The receipt id (also the turn's `clientUserMessageId`).
    pub id: String,
    /// The lane.
    pub lane_ref: String,
    /// How it reaches the lane.
    pub mode: DeliveryMode,
    /// The message.
    pub text: String,
    /// Who asked: `send`, `subscription:<id>`, `trigger:<id>`.
    pub source: String,
    /// The sending lane of an attributed message.
    pub sender_ref: Option<String>,
    /// The idempotency key and the hash of the payload it binds.
    pub idempotency: Option<(String, String)>,
    /// `Queued` or `Submitting`.
    pub state: DeliveryState,
    /// The images it carries (recorded by path, size and digest, never their bytes).
    pub images: Vec<ImageRef>,
}

/// An image a message carries, as the registry keeps it: where it was, how big, and its
/// SHA-256, so what was sent can be told apart from what the file holds later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The absolute path Codex reads it from.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// A recorded delivery: the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// The receipt id.
    pub id: String,
    /// The lane.
    pub lane_ref: String,
    /// How it reaches the lane.
    pub mode: DeliveryMode,
    /// The message.
    pub text: String,
    /// Who asked.
    pub source: String,
    /// The sending lane of an attributed message.
    pub sender_ref: Option<String>,
    /// The idempotency key, if one was given.
    pub idempotency_key: Option<String>,
    /// Where it is.
    pub state: DeliveryState,
    /// The turn it started or joined.
    pub turn_id: Option<String>,
    /// Why it failed, or what is unknown.
    pub error: Option<String>,
    /// How many times an ambiguous delivery was looked for in its thread.
    pub checks: i64,
    /// When it was recorded (Unix epoch milliseconds).
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
    /// The images it carries.
    pub images: Vec<ImageRef>,
}

/// What recording a delivery with an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// Recorded now.
    New(DeliveryRow),
    /// The key was used before with the same payload: that receipt, nothing recorded.
    Existing(DeliveryRow),
    /// The key was used before with another payload.
    Conflict(DeliveryRow),
}

const COLUMNS: &str = "id, lane_ref, mode, text, source, sender_ref, idempotency_key, state, \
                       turn_id, error, checks, created_at_ms, updated_at_ms, images";

type DeliveryRecord = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
);

impl Registry {
    fn delivery_row(&self, record: DeliveryRecord) -> Result<DeliveryRow, RegistryError> {
        let (
            id,
            lane_ref,
            mode,
            text,
            source,
            sender_ref,
            key,
            state,
            turn_id,
            error,
            checks,
            created,
            updated,
            images,
        ) = record;
        let corrupt = |what: String| RegistryError::corrupt(self.path(), what);
        let images = match images {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text)
                .map_err(|err| corrupt(format!("delivery {id} has unreadable images: {err}")))?,
        };
        Ok(DeliveryRow {
            images,
            mode: DeliveryMode::parse(&mode)
                .ok_or_else(|| corrupt(format!("delivery {id} has unknown mode {mode:?}")))?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| corrupt(format!("delivery {id} has unknown state {state:?}")))?,
            id,
            lane_ref,
            text,
            source,
            sender_ref,
            idempotency_key: key,
            turn_id,
            error,
            checks,
            created_at_ms: created,
            updated_at_ms: updated,
        })
    }

    /// Records a delivery. With an idempotency key, a key already used returns the stored
    /// receipt (same payload hash) or a conflict (another payload), and records nothing.
    pub async fn record_delivery(&self, new: &NewDelivery) -> Result<Recording, RegistryError> {
        let context = "recording a delivery";
        self.write_tx(context, async |conn| {
            if let Some((key, hash)) = &new.idempotency {
                let found: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT id, payload_hash FROM deliveries WHERE idempotency_key = ?",
                )
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
                if let Some((id, stored_hash)) = found {
                    let row = self.delivery_in(conn, &id).await?;
                    return Ok(if stored_hash.as_deref() == Some(hash.as_str()) {
                        Recording::Existing(row)
                    } else {
                        Recording::Conflict(row)
                    });
                }
            }
            let now = now_ms();
            let images = (!new.images.is_empty())
                .then(|| serde_json::to_string(&new.images))
                .transpose()
                .map_err(|err| RegistryError::corrupt(self.path(), err.to_string()))?;
            sqlx::query(
                "INSERT INTO deliveries (id, lane_ref, mode, text, source, sender_ref, \
                 idempotency_key, payload_hash, state, created_at_ms, updated_at_ms, images) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&new.id)
            .bind(&new.lane_ref)
            .bind(new.mode.as_str())
            .bind(&new.text)
            .bind(&new.source)
            .bind(&new.sender_ref)
            .bind(new.idempotency.as_ref().map(|(key, _)| key))
            .bind(new.idempotency.as_ref().map(|(_, hash)| hash))
            .bind(new.state.as_str())
            .bind(now)
            .bind(now)
            .bind(images)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            Ok(Recording::New(self.delivery_in(conn, &new.id).await?))
        })
        .await
    }

    async fn delivery_in(
        &self,
        conn: &mut SqliteConnection,
        id: &str,
    ) -> Result<DeliveryRow, RegistryError> {
        let record: DeliveryRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE id = ?"
        )))
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading a delivery"))?;
        self.delivery_row(record)
    }

    /// The delivery recorded under an idempotency key.
    pub async fn delivery_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(DeliveryRow, Option<String>)>, RegistryError> {
        let found: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT id, payload_hash FROM deliveries WHERE idempotency_key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(RegistryError::db_with(self.path(), "reading a delivery"))?;
        let Some((id, hash)) = found else {
            return Ok(None);
        };
        Ok(self.delivery(&id).await?.map(|row| (row, hash)))
    }

    /// How many deliveries wait in queues, inbox messages are pending, subscriptions listen
    /// and triggers are set.
    pub async fn orchestration_counts(&self) -> Result<(i64, i64, i64, i64), RegistryError> {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'queued'), \
                    (SELECT COUNT(*) FROM inbox WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM subscriptions WHERE active = 1), \
                    (SELECT COUNT(*) FROM triggers)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "counting orchestration",
        ))
    }

    /// The delivery with this receipt id.
    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRow>, RegistryError> {
        let record: Option<DeliveryRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading a delivery"))?;
        record.map(|r| self.delivery_row(r)).transpose()
    }

    /// Moves a delivery to `state`, with its turn and error when given; `Ok(false)` when it
    /// was not in one of the states `from`.
    pub async fn set_delivery_state(
        &self,
        id: &str,
        from: &[DeliveryState],
        state: DeliveryState,
        turn_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let from = serde_json::to_string(&from).unwrap_or_else(|_| "[]".to_owned());
        let done = sqlx::query(
            "UPDATE deliveries SET state = ?1, turn_id = COALESCE(?2, turn_id), \
             error = COALESCE(?3, error), updated_at_ms = ?4 \
             WHERE id = ?5 AND state IN (SELECT value FROM json_each(?6))",
        )
        .bind(state.as_str())
        .bind(turn_id)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "updating a delivery"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts one more look for an ambiguous delivery in its thread.
    pub async fn count_delivery_check(&self, id: &str) -> Result<(), RegistryError> {
        sqlx::query("UPDATE deliveries SET checks = checks + 1, updated_at_ms = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "counting a delivery check",
            ))?;
        Ok(())
    }

    /// Takes the lane's next queued delivery for submission (`queued` → `submitting`), in the
    /// order they were queued; `None` when the queue is empty or held by an open delivery
    /// (`submitting` or `ambiguous`).
    pub async fn claim_queued(&self, lane_ref: &str) -> Result<Option<DeliveryRow>, RegistryError> {
        let context = "claiming a queued delivery";
        self.write_tx(context, async |conn| {
            let open: Vec<(String, String)> = sqlx::query_as(OPEN_STATES_OF_LANE)
                .bind(lane_ref)
                .fetch_all(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
            let Some(id) = next_claimable(open) else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE deliveries SET state = 'submitting', updated_at_ms = ? WHERE id = ?",
            )
            .bind(now_ms())
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            Ok(Some(self.delivery_in(conn, &id).await?))
        })
        .await
    }

    /// Whether [`Registry::claim_queued`] would take a delivery of the lane now, without
    /// taking it: its queue is not empty and not held by an open delivery.
    pub async fn has_claimable_queued(&self, lane_ref: &str) -> Result<bool, RegistryError> {
        let open: Vec<(String, String)> = sqlx::query_as(OPEN_STATES_OF_LANE)
            .bind(lane_ref)
            .fetch_all(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "reading a lane's queue",
            ))?;
        Ok(next_claimable(open).is_some())
    }

    /// The lane's deliveries that are still open (`queued`, `submitting`, `ambiguous`), oldest
    /// first; every lane's when `lane_ref` is `None`.
    pub async fn open_deliveries(
        &self,
        lane_ref: Option<&str>,
    ) -> Result<Vec<DeliveryRow>, RegistryError> {
        let records: Vec<DeliveryRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries \
             WHERE state IN ('queued', 'submitting', 'ambiguous') \
               AND (?1 IS NULL OR lane_ref = ?1) \
             ORDER BY created_at_ms, id"
        )))
        .bind(lane_ref)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading open deliveries",
        ))?;
        records.into_iter().map(|r| self.delivery_row(r)).collect()
    }

    /// After a crash: every delivery left `submitting` becomes `ambiguous` (it may or may not
    /// have reached its thread). Returns how many.
    pub async fn mark_submitting_ambiguous(&self) -> Result<u64, RegistryError> {
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'ambiguous', updated_at_ms = ?, \
             error = 'the daemon stopped while this message was being submitted; whether it \
             reached the thread is being checked' WHERE state = 'submitting'",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "marking ambiguous deliveries",
        ))?;
        Ok(done.rows_affected())
    }

    /// How many deliveries wait in queues.
    pub async fn queued_count(&self) -> Result<i64, RegistryError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "counting queued deliveries",
            ))
    }
}

/// The ids and states of a lane's open deliveries, oldest first.
const OPEN_STATES_OF_LANE: &str = "SELECT id, state FROM deliveries WHERE lane_ref = ? \
     AND state IN ('queued', 'submitting', 'ambiguous') \
     ORDER BY created_at_ms, id";

/// The id of the delivery a lane's queue gives next, from its open deliveries (`id`, `state`)
/// oldest first: the oldest, if every open one is `queued` (a `submitting` or `ambiguous`
/// one holds the queue).
fn next_claimable(open: Vec<(String, String)>) -> Option<String> {
    if open.iter().any(|(_, state)| state != "queued") {
        return None;
    }
    open.into_iter().next().map(|(id, _)| id)
}
