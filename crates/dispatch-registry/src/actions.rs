//! The append-only action log: what dispatch did, to which lane, and how it went.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// Whether a logged action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action succeeded.
    Ok,
    /// The action failed; see the entry's `error_code` and `detail`.
    Error,
}

impl Outcome {
    /// The value stored in the `outcome` column: `"ok"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }

    fn from_column(value: &str) -> Option<Self> {
        match value {
            "ok" => Some(Outcome::Ok),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action to append to the log; the registry assigns the id and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAction {
    /// The operation, e.g. `"lane.create"`.
    pub op: String,
    /// The lane ref the action concerned, if any.
    pub lane: Option<String>,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// A stable error code when `outcome` is [`Outcome::Error`].
    pub error_code: Option<String>,
    /// Free-form detail for humans.
    pub detail: Option<String>,
}

/// One entry of the action log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Row id; increases with every append.
    pub id: i64,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The operation, e.g. `"lane.create"`.
    pub op: String,
    /// The lane ref the action concerned, if any.
    pub lane: Option<String>,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// A stable error code when `outcome` is [`Outcome::Error`].
    pub error_code: Option<String>,
    /// Free-form detail for humans.
    pub detail: Option<String>,
}

/// A raw `action_log` row, in column order.
type ActionRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

impl Registry {
    /// Appends `action` to the action log, stamped with the current time; returns the new row id.
    pub async fn record_action(&self, action: &NewAction) -> Result<i64, RegistryError> {
        let result = sqlx::query(
            "INSERT INTO action_log (at_ms, op, lane, outcome, error_code, detail) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(now_ms())
        .bind(&action.op)
        .bind(&action.lane)
        .bind(action.outcome.as_str())
        .bind(&action.error_code)
        .bind(&action.detail)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "recording an action"))?;
        Ok(result.last_insert_rowid())
    }

    /// The action log, newest first (by time, then by id), at most `limit` entries.
    pub async fn actions(&self, limit: u32) -> Result<Vec<Action>, RegistryError> {
        let rows: Vec<ActionRow> = sqlx::query_as(
            "SELECT id, at_ms, op, lane, outcome, error_code, detail FROM action_log \
             ORDER BY at_ms DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading the action log",
        ))?;

        rows.into_iter()
            .map(|(id, at_ms, op, lane, outcome, error_code, detail)| {
                let outcome = Outcome::from_column(&outcome).ok_or_else(|| {
                    RegistryError::corrupt(
                        self.path(),
                        format!("action {id} has unknown outcome {outcome:?}"),
                    )
                })?;
                Ok(Action {
                    id,
                    at_ms,
                    op,
                    lane,
                    outcome,
                    error_code,
                    detail,
                })
            })
            .collect()
    }
}

/// The current time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
