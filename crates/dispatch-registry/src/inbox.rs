//! The inbox: messages for lanes (or the operator) that are not turns: subscription updates,
//! direct messages, trigger results and approval requests. Messages are stored once per origin
//! (see [`crate::NewInboxMessage`]) and stay until acknowledged.

use serde::{Deserialize, Serialize};

use crate::actions::now_ms;
use crate::{Registry, RegistryError};

/// One inbox message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxRow {
    /// Its id.
    pub id: i64,
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
    /// `pending` or `acked`.
    pub state: String,
    /// When it was stored (Unix epoch milliseconds).
    pub created_at_ms: i64,
    /// When it was acknowledged.
    pub acked_at_ms: Option<i64>,
}

/// Which inbox messages [`Registry::inbox`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    /// Only the messages of this lane.
    pub lane_ref: Option<String>,
    /// Only `pending` or `acked` ones; both when `None`.
    pub state: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

type InboxRecord = (
    i64,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);

const COLUMNS: &str = "id, lane_ref, kind, subject, body, about_ref, turn_id, data, state, \
                       created_at_ms, acked_at_ms";

impl Registry {
    fn inbox_row(&self, record: InboxRecord) -> Result<InboxRow, RegistryError> {
        let (id, lane_ref, kind, subject, body, about_ref, turn_id, data, state, created, acked) =
            record;
        let data = match data {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|err| {
                RegistryError::corrupt(
                    self.path(),
                    format!("inbox message {id} has data that is not JSON: {err}"),
                )
            })?),
        };
        Ok(InboxRow {
            id,
            lane_ref,
            kind,
            subject,
            body,
            about_ref,
            turn_id,
            data,
            state,
            created_at_ms: created,
            acked_at_ms: acked,
        })
    }

    /// Inbox messages matching `filter`, newest first.
    pub async fn inbox(&self, filter: &InboxFilter) -> Result<Vec<InboxRow>, RegistryError> {
        let records: Vec<InboxRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM inbox \
             WHERE (?1 IS NULL OR lane_ref = ?1) AND (?2 IS NULL OR state = ?2) \
               AND (?3 IS NULL OR kind = ?3) \
             ORDER BY id DESC LIMIT ?4"
        )))
        .bind(&filter.lane_ref)
        .bind(&filter.state)
        .bind(&filter.kind)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading the inbox"))?;
        records.into_iter().map(|r| self.inbox_row(r)).collect()
    }

    /// The inbox message `id`.
    pub async fn inbox_message(&self, id: i64) -> Result<Option<InboxRow>, RegistryError> {
        let record: Option<InboxRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM inbox WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading an inbox message",
        ))?;
        record.map(|r| self.inbox_row(r)).transpose()
    }

    /// Acknowledges pending messages: message `id`, or every pending message (to `lane_ref`
    /// when given) when `id` is `None`. Returns the ids acknowledged, in id order; a message
    /// that was acknowledged before is not among them.
    pub async fn ack_inbox(
        &self,
        id: Option<i64>,
        lane_ref: Option<&str>,
    ) -> Result<Vec<i64>, RegistryError> {
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE inbox SET state = 'acked', acked_at_ms = ?1 \
             WHERE state = 'pending' AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR lane_ref = ?3) \
             RETURNING id",
        )
        .bind(now_ms())
        .bind(id)
        .bind(lane_ref)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "acknowledging inbox messages",
        ))?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// How many inbox messages are pending.
    pub async fn pending_inbox_count(&self) -> Result<i64, RegistryError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "counting the inbox"))
    }
}
