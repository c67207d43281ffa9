//! What the daemon records about a lane's notifications, and how it is read back.
//!
//! Writing happens in batches through [`Registry::record`] (see `ingest.rs`); this module has
//! the types a batch is made of and the read side: items (`tail`), errors, the stored events
//! (`watch` paging) and pruning.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lanes::{GoalRow, LaneStatus, TurnRow};
use crate::{Registry, RegistryError};

/// One notification's worth of changes to one lane, applied in one transaction with the rest
/// of its batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The lane the notification belongs to; it must exist. Shared, so that a batch's records
    /// of one lane, and the rows they bind, hold one copy of it.
    #[serde(with = "shared_text")]
    pub lane_ref: Arc<str>,
    /// The notification to store, or `None` for one that is only folded into state (deltas).
    pub event: Option<NewEvent>,
    /// The state changes it implies, applied in order (most notifications imply one, held
    /// without an allocation of its own).
    pub facts: Facts,
}

/// The facts of one notification: one is held inline.
pub type Facts = smallvec::SmallVec<[Fact; 1]>;

/// A notification to store in the lane's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The App Server method, e.g. `"item/completed"` (static text for the methods a flood is
    /// made of).
    pub method: Cow<'static, str>,
    /// The turn it belongs to, if any.
    pub turn_id: Option<String>,
    /// When it arrived (Unix epoch milliseconds).
    pub at_ms: i64,
    /// Its params as JSON text, as received (stored as they are, not encoded again). Shared,
    /// so that storing them binds the text without copying it.
    #[serde(with = "shared_text")]
    pub params: Arc<str>,
}

/// Serde for shared text (`Arc<str>`), as a plain string.
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// A change to a lane's derived state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A turn started: it is upserted as in progress (a finished turn stays finished), becomes
    /// the latest turn, and the lane becomes [`LaneStatus::Busy`].
    TurnStarted {
        /// The turn id.
        turn_id: String,
        /// When it started.
        at_ms: i64,
    },
    /// A turn's final (or refreshed) state: upserted, and if it is the lane's latest turn the
    /// lane becomes idle (completed, interrupted), error (failed) or busy (in progress).
    TurnCompleted {
        /// The turn; a missing `duration_ms` is computed from the timestamps.
        turn: TurnRow,
    },
    /// An item started, changed or completed: upserted by `(lane, turn_id, item_id)`. A text replaces the
    /// stored one; `None` keeps what deltas folded so far. `at_ms` of a new item is kept as the
    /// time it was first seen.
    Item {
        /// The turn it belongs to.
        turn_id: Option<String>,
        /// The item id.
        item_id: String,
        /// Its type, e.g. `"agent_message"`, `"command"`.
        kind: Cow<'static, str>,
        /// Its text, if the notification carries it.
        text: Option<String>,
        /// Its status, if the notification carries it.
        status: Option<String>,
        /// When it was seen.
        at_ms: i64,
    },
    /// A streamed fragment of an item's text, appended to it (the item is created if needed).
    /// Deltas are folded into the item, never stored as events.
    ItemDelta {
        /// The turn it belongs to.
        turn_id: Option<String>,
        /// The item id.
        item_id: String,
        /// The item's type.
        kind: Cow<'static, str>,
        /// The text to append.
        delta: String,
        /// When it arrived.
        at_ms: i64,
    },
    /// An App Server error for the lane; recorded in the lane's error list. A failed turn
    /// arrives as [`Fact::TurnCompleted`]; an error the App Server retries on the lane's
    /// running turn counts one more retry attempt (the lane shows
    /// [`LaneStatus::Retrying`] until the turn makes progress or ends), and every error sets
    /// the lane's error cause.
    Error {
        /// The turn it concerns.
        turn_id: Option<String>,
        /// The message.
        message: String,
        /// Whether the App Server is retrying.
        will_retry: bool,
        /// What kind of failure it is (e.g. `network`, `authentication`), if known.
        cause: Option<String>,
        /// When it arrived.
        at_ms: i64,
    },
    /// An explicit status, e.g. [`LaneStatus::WaitingApproval`], or [`LaneStatus::Error`] on a
    /// system error. [`LaneStatus::Archived`] sets the archived flag; no status clears it (use
    /// `Archived(false)`).
    Status(LaneStatus),
    /// Sets or clears the archived flag; the live status is kept underneath.
    Archived(bool),
    /// Sets or clears the goal.
    Goal(Option<GoalRow>),
    /// Sets or clears the title.
    Title(Option<String>),
    /// The latest token usage, as reported: JSON text, stored as it is (it must be valid
    /// JSON: the column's `CHECK` refuses anything else, and with it the whole batch).
    TokenUsage(#[serde(with = "shared_text")] Arc<str>),
}

/// One item of a lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRow {
    /// The turn it belongs to.
    pub turn_id: Option<String>,
    /// The item id.
    pub item_id: String,
    /// Its type, e.g. `"agent_message"`.
    pub kind: String,
    /// Its text, with deltas folded in.
    pub text: Option<String>,
    /// Its last reported status.
    pub status: Option<String>,
    /// When it was first seen (Unix epoch milliseconds).
    pub at_ms: i64,
}

/// One App Server error recorded for a lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The turn it concerned.
    pub turn_id: Option<String>,
    /// The message.
    pub message: String,
    /// Whether the App Server was retrying.
    pub will_retry: bool,
    /// What kind of failure it was, if known.
    pub cause: Option<String>,
    /// When it arrived (Unix epoch milliseconds).
    pub at_ms: i64,
}

/// One stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Its id: increasing in arrival order, never reused; use it as a paging cursor.
    pub id: i64,
    /// The App Server method.
    pub method: String,
    /// The turn it belongs to.
    pub turn_id: Option<String>,
    /// When it arrived (Unix epoch milliseconds).
    pub at_ms: i64,
    /// Its params.
    pub params: Value,
}

/// A raw `lane_errors` row: turn, message, will retry, cause, at.
type ErrorRecord = (Option<String>, String, bool, Option<String>, i64);

/// A raw `items` row: turn, item, kind, text, status, first seen.
type ItemRecord = (
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

impl Registry {
    /// The lane's last `limit` items, oldest first (by first-seen time, then arrival).
    pub async fn tail(&self, lane_ref: &str, limit: u32) -> Result<Vec<ItemRow>, RegistryError> {
        let rows: Vec<ItemRecord> = sqlx::query_as(
            "SELECT NULLIF(turn_id, ''), item_id, kind, text, status, at_ms FROM ( \
                   SELECT id, turn_id, item_id, kind, text, status, at_ms FROM items \
                   WHERE lane_ref = ? ORDER BY at_ms DESC, id DESC LIMIT ?) \
                 ORDER BY at_ms, id",
        )
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading lane items"))?;
        Ok(rows
            .into_iter()
            .map(|(turn_id, item_id, kind, text, status, at_ms)| ItemRow {
                turn_id,
                item_id,
                kind,
                text,
                status,
                at_ms,
            })
            .collect())
    }

    /// The lane's last `limit` errors, most recent first.
    pub async fn lane_errors(
        &self,
        lane_ref: &str,
        limit: u32,
    ) -> Result<Vec<ErrorRow>, RegistryError> {
        let rows: Vec<ErrorRecord> = sqlx::query_as(
            "SELECT turn_id, message, will_retry, cause, at_ms FROM lane_errors \
             WHERE lane_ref = ? ORDER BY at_ms DESC, id DESC LIMIT ?",
        )
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading lane errors"))?;
        Ok(rows
            .into_iter()
            .map(|(turn_id, message, will_retry, cause, at_ms)| ErrorRow {
                turn_id,
                message,
                will_retry,
                cause,
                at_ms,
            })
            .collect())
    }

    /// Up to `limit` of the lane's stored events with an id above `after_id`, ascending.
    ///
    /// Start with `after_id = 0` (or [`Registry::last_event_id`] to see only new ones) and pass
    /// the last id received to get the next page.
    pub async fn events_after(
        &self,
        lane_ref: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>, RegistryError> {
        let rows: Vec<(i64, String, Option<String>, i64, String)> = sqlx::query_as(
            "SELECT id, method, turn_id, at_ms, params FROM events \
             WHERE lane_ref = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(lane_ref)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading lane events"))?;
        rows.into_iter()
            .map(|(id, method, turn_id, at_ms, params)| {
                let params = serde_json::from_str(&params).map_err(|err| {
                    RegistryError::corrupt(
                        self.path(),
                        format!("event {id} has params that are not JSON: {err}"),
                    )
                })?;
                Ok(EventRow {
                    id,
                    method,
                    turn_id,
                    at_ms,
                    params,
                })
            })
            .collect()
    }

    /// The first of the lane's stored events after `after_id` whose method is one of
    /// `methods` (e.g. the ends of turns): its id and turn. One indexed lookup, for `wait`.
    pub async fn first_event_after(
        &self,
        lane_ref: &str,
        after_id: i64,
        methods: &[&str],
    ) -> Result<Option<(i64, Option<String>)>, RegistryError> {
        let methods = serde_json::to_string(methods).unwrap_or_else(|_| "[]".to_owned());
        sqlx::query_as(
            "SELECT id, turn_id FROM events WHERE lane_ref = ? AND id > ? \
             AND method IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT 1",
        )
        .bind(lane_ref)
        .bind(after_id)
        .bind(methods)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading lane events"))
    }

    /// The lane's last `n` agent messages, oldest first; with `through_turn`, none seen after
    /// that turn's last item (what the lane had said when that turn ended).
    pub async fn last_agent_messages(
        &self,
        lane_ref: &str,
        n: u32,
        through_turn: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut texts: Vec<String> = sqlx::query_scalar(
            "SELECT text FROM items WHERE lane_ref = ?1 AND kind = 'agent_message' \
               AND text IS NOT NULL AND text != '' \
               AND (?2 IS NULL OR id <= COALESCE( \
                 (SELECT MAX(id) FROM items WHERE lane_ref = ?1 AND turn_id = ?2), id)) \
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(lane_ref)
        .bind(through_turn)
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading agent messages",
        ))?;
        texts.reverse();
        Ok(texts)
    }

    /// The id of the lane's newest stored event, or 0 if it has none.
    pub async fn last_event_id(&self, lane_ref: &str) -> Result<i64, RegistryError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events WHERE lane_ref = ?")
            .bind(lane_ref)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "reading the last event id",
            ))
    }

    /// Deletes all but the newest `max_per_lane` events of every lane; returns how many rows
    /// were deleted. Items, turns and errors are kept.
    pub async fn prune_events(&self, max_per_lane: u32) -> Result<u64, RegistryError> {
        let done = sqlx::query(
            "WITH cutoff AS MATERIALIZED ( \
               SELECT lanes.ref AS lane_ref, \
                 (SELECT id FROM events WHERE events.lane_ref = lanes.ref \
                  ORDER BY id DESC LIMIT 1 OFFSET ?) AS last_doomed \
               FROM lanes) \
             DELETE FROM events WHERE id IN ( \
               SELECT events.id FROM cutoff JOIN events \
               ON events.lane_ref = cutoff.lane_ref AND events.id <= cutoff.last_doomed)",
        )
        .bind(i64::from(max_per_lane))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "pruning events"))?;
        Ok(done.rows_affected())
    }
}
