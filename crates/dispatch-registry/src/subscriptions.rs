//! Subscriptions: a subscriber lane hears about a target lane's events (a turn done,
//! completed or failed, the lane idle, an approval asked, new activity), in its inbox and, with
//! turn delivery, as a queued turn. Firing is part of handling a lane event (see
//! `lane_events.rs`), so a subscription fires once per event even across crashes.

use serde::{Deserialize, Serialize};

use crate::actions::now_ms;
use crate::{Registry, RegistryError};

/// A subscription to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// The lane whose events are heard.
    pub target_ref: String,
    /// The lane that hears them.
    pub subscriber_ref: String,
    /// `done`, `completed`, `failed`, `idle`, `approval` or `activity`.
    pub event: String,
    /// `turn` or `inbox`.
    pub delivery: String,
    /// How many of the target's last agent messages the update carries.
    pub tail: u32,
    /// Whether it ends after firing once.
    pub once: bool,
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    /// Its id.
    pub id: i64,
    /// The lane whose events are heard.
    pub target_ref: String,
    /// The lane that hears them.
    pub subscriber_ref: String,
    /// The event.
    pub event: String,
    /// `turn` or `inbox`.
    pub delivery: String,
    /// Agent messages carried.
    pub tail: u32,
    /// Whether it ends after firing once.
    pub once: bool,
    /// Whether it still listens.
    pub active: bool,
    /// How often it fired.
    pub fired: i64,
    /// When it last fired (Unix epoch milliseconds).
    pub last_fired_at_ms: Option<i64>,
    /// When it was made.
    pub created_at_ms: i64,
}

type SubscriptionRecord = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    bool,
    bool,
    i64,
    Option<i64>,
    i64,
);

const COLUMNS: &str = "id, target_ref, subscriber_ref, event, delivery, tail, once, active, \
                       fired, last_fired_at_ms, created_at_ms";

fn row(record: SubscriptionRecord) -> SubscriptionRow {
    let (id, target_ref, subscriber_ref, event, delivery, tail, once, active, fired, last, created) =
        record;
    SubscriptionRow {
        id,
        target_ref,
        subscriber_ref,
        event,
        delivery,
        tail: u32::try_from(tail).unwrap_or(0),
        once,
        active,
        fired,
        last_fired_at_ms: last,
        created_at_ms: created,
    }
}

impl Registry {
    /// Stores a subscription, unless an active one with the same target, subscriber, event,
    /// delivery, tail and once is there: then that one, and `true` (nothing stored).
    pub async fn add_subscription(
        &self,
        new: &NewSubscription,
    ) -> Result<(SubscriptionRow, bool), RegistryError> {
        let context = "storing a subscription";
        self.write_tx(context, async |conn| {
            let same: Option<SubscriptionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE active = 1 AND target_ref = ? \
                 AND subscriber_ref = ? AND event = ? AND delivery = ? AND tail = ? AND once = ? \
                 ORDER BY id LIMIT 1"
            )))
            .bind(&new.target_ref)
            .bind(&new.subscriber_ref)
            .bind(&new.event)
            .bind(&new.delivery)
            .bind(i64::from(new.tail))
            .bind(new.once)
            .fetch_optional(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            if let Some(same) = same {
                return Ok((row(same), true));
            }
            let record: SubscriptionRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO subscriptions (target_ref, subscriber_ref, event, delivery, tail, \
                 once, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
            )))
            .bind(&new.target_ref)
            .bind(&new.subscriber_ref)
            .bind(&new.event)
            .bind(&new.delivery)
            .bind(i64::from(new.tail))
            .bind(new.once)
            .bind(now_ms())
            .fetch_one(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            Ok((row(record), false))
        })
        .await
    }

    /// Subscriptions, optionally of one target and/or one subscriber; active ones only unless
    /// `all`. Oldest first.
    pub async fn subscriptions(
        &self,
        target_ref: Option<&str>,
        subscriber_ref: Option<&str>,
        all: bool,
    ) -> Result<Vec<SubscriptionRow>, RegistryError> {
        let records: Vec<SubscriptionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM subscriptions \
             WHERE (?1 IS NULL OR target_ref = ?1) AND (?2 IS NULL OR subscriber_ref = ?2) \
               AND (?3 OR active = 1) ORDER BY id"
        )))
        .bind(target_ref)
        .bind(subscriber_ref)
        .bind(all)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading subscriptions"))?;
        Ok(records.into_iter().map(row).collect())
    }

    /// The subscription `id`.
    pub async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRow>, RegistryError> {
        let record: Option<SubscriptionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a subscription",
        ))?;
        Ok(record.map(row))
    }

    /// Ends subscription `id`: it fires no more, and stays listed as ended. Returns it as it
    /// is now and whether it was active, or `None` when there is no such subscription.
    pub async fn end_subscription(
        &self,
        id: i64,
    ) -> Result<Option<(SubscriptionRow, bool)>, RegistryError> {
        let context = "ending a subscription";
        self.write_tx(context, async |conn| {
            let active: Option<bool> =
                sqlx::query_scalar("SELECT active FROM subscriptions WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
            let Some(active) = active else {
                return Ok(None);
            };
            let record: SubscriptionRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE subscriptions SET active = 0 WHERE id = ? RETURNING {COLUMNS}"
            )))
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            Ok(Some((row(record), active)))
        })
        .await
    }

    /// How many subscriptions listen.
    pub async fn active_subscription_count(&self) -> Result<i64, RegistryError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE active = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "counting subscriptions",
            ))
    }
}
