//! The lane-event outbox: transitions of lanes (a turn started, a turn ended, an approval is
//! asked) written by [`Registry::record`] in the same transaction as the facts that caused
//! them, and consumed once by orchestration, whose effects (inbox messages, deliveries,
//! subscription updates) are written in the same transaction that removes the event.
//! A crash at any point thus loses no event and applies none twice.

use serde::{Deserialize, Serialize};

use crate::actions::now_ms;
use crate::deliveries::NewDelivery;
use crate::lanes::TurnStatus;
use crate::triggers::{TriggerFire, insert_fire};
use crate::{Registry, RegistryError};

/// What happened to a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneEventKind {
    /// A new turn started.
    TurnStarted,
    /// The running turn ended (its status says how).
    TurnEnded,
    /// A turn waits for an answer to an approval request.
    Approval,
}

impl LaneEventKind {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "turn_started" => LaneEventKind::TurnStarted,
            "turn_ended" => LaneEventKind::TurnEnded,
            "approval" => LaneEventKind::Approval,
            _ => return None,
        })
    }
}

/// One stored transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneEvent {
    /// Its id, increasing.
    pub id: i64,
    /// The lane.
    pub lane_ref: String,
    /// What happened.
    pub kind: LaneEventKind,
    /// The turn it concerns.
    pub turn_id: Option<String>,
    /// How the turn ended, for [`LaneEventKind::TurnEnded`].
    pub status: Option<TurnStatus>,
    /// When (Unix epoch milliseconds).
    pub at_ms: i64,
}

/// A message for a lane's inbox (or the operator's, with no lane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInboxMessage {
    /// The recipient lane; `None` for the operator.
    pub lane_ref: Option<String>,
    /// `subscription_update`, `direct_message`, `trigger_result` or `approval_request`.
    pub kind: String,
    /// One line.
    pub subject: String,
    /// The message.
    pub body: String,
    /// The lane it is about.
    pub about_ref: Option<String>,
    /// The turn it is about.
    pub turn_id: Option<String>,
    /// Structured details.
    pub data: Option<serde_json::Value>,
    /// What produced it; a second message with the same origin is not stored.
    pub origin: Option<String>,
}

/// What handling a lane event does, written in one transaction with marking it handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Inbox messages to store.
    pub inbox: Vec<NewInboxMessage>,
    /// Deliveries to record (queued turns for subscribers, for instance).
    pub deliveries: Vec<NewDelivery>,
    /// Subscriptions that fired: id, and whether it is now done (`--once`).
    pub fired_subscriptions: Vec<(i64, bool)>,
    /// Fires of `on` triggers, stored unfinished for the trigger scheduler to carry out.
    pub trigger_fires: Vec<TriggerFire>,
}

type EventRecord = (i64, String, String, Option<String>, Option<String>, i64);

impl Registry {
    /// Up to `limit` lane events waiting to be handled, oldest first.
    pub async fn unhandled_lane_events(&self, limit: u32) -> Result<Vec<LaneEvent>, RegistryError> {
        let records: Vec<EventRecord> = sqlx::query_as(
            "SELECT id, lane_ref, kind, turn_id, status, at_ms FROM lane_events \
             ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading lane events"))?;
        records
            .into_iter()
            .map(|(id, lane_ref, kind, turn_id, status, at_ms)| {
                let corrupt = |what: String| RegistryError::corrupt(self.path(), what);
                Ok(LaneEvent {
                    kind: LaneEventKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("lane event {id} has kind {kind:?}")))?,
                    status: match status {
                        None => None,
                        Some(status) => Some(TurnStatus::parse(&status).ok_or_else(|| {
                            corrupt(format!("lane event {id} has status {status:?}"))
                        })?),
                    },
                    id,
                    lane_ref,
                    turn_id,
                    at_ms,
                })
            })
            .collect()
    }

    /// Removes lane event `id` and writes the `effects` of handling it, in one transaction.
    /// `Ok(false)` (and nothing written) when it was handled already.
    pub async fn handle_lane_event(
        &self,
        id: i64,
        effects: &Effects,
    ) -> Result<bool, RegistryError> {
        let context = "handling a lane event";
        self.write_tx(context, async |conn| {
            let marked = sqlx::query("DELETE FROM lane_events WHERE id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
            if marked.rows_affected() == 0 {
                return Ok(false);
            }
            let now = now_ms();
            for message in &effects.inbox {
                insert_inbox(&mut *conn, message, now)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
            }
            for delivery in &effects.deliveries {
                sqlx::query(
                    "INSERT INTO deliveries (id, lane_ref, mode, text, source, sender_ref, \
                     state, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&delivery.id)
                .bind(&delivery.lane_ref)
                .bind(delivery.mode.as_str())
                .bind(&delivery.text)
                .bind(&delivery.source)
                .bind(&delivery.sender_ref)
                .bind(delivery.state.as_str())
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
            }
            for (subscription, done) in &effects.fired_subscriptions {
                sqlx::query(
                    "UPDATE subscriptions SET fired = fired + 1, last_fired_at_ms = ?, \
                     active = CASE WHEN ? THEN 0 ELSE active END WHERE id = ?",
                )
                .bind(now)
                .bind(done)
                .bind(subscription)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
            }
            for fire in &effects.trigger_fires {
                insert_fire(&mut *conn, fire)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
                sqlx::query("UPDATE triggers SET last_fired_at_ms = ? WHERE id = ?")
                    .bind(fire.claimed_at_ms)
                    .bind(fire.trigger_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
            }
            Ok(true)
        })
        .await
    }

    /// Stores one inbox message (once per origin); returns its id, or `None` when a message
    /// with the same origin exists.
    pub async fn add_inbox_message(
        &self,
        message: &NewInboxMessage,
    ) -> Result<Option<i64>, RegistryError> {
        let mut conn = self.pool.acquire().await.map_err(RegistryError::db_with(
            self.path(),
            "storing an inbox message",
        ))?;
        insert_inbox(&mut conn, message, now_ms())
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "storing an inbox message",
            ))
    }
}

pub(crate) async fn insert_inbox(
    conn: &mut sqlx::SqliteConnection,
    message: &NewInboxMessage,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let inserted = sqlx::query_scalar(
        "INSERT INTO inbox (lane_ref, kind, subject, body, about_ref, turn_id, data, origin, \
         created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (origin) DO NOTHING RETURNING id",
    )
    .bind(&message.lane_ref)
    .bind(&message.kind)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(&message.about_ref)
    .bind(&message.turn_id)
    .bind(message.data.as_ref().map(ToString::to_string))
    .bind(&message.origin)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(inserted)
}
