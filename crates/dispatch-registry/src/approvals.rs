//! Server requests (approvals, user input) persisted until someone answers them.
//!
//! The registry only keeps the requests; the caller decides the lane's status (record
//! [`crate::Fact::Status`] with [`crate::LaneStatus::WaitingApproval`] when one arrives, and
//! the live status again once none is pending) and answers the JSON-RPC request itself.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Registry, RegistryError};

/// A server request to persist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRequest {
    /// The lane it belongs to; it must exist.
    pub lane_ref: String,
    /// The lane's thread id.
    pub thread_id: String,
    /// The turn it belongs to.
    pub turn_id: Option<String>,
    /// The item it is about.
    pub item_id: Option<String>,
    /// The App Server method, e.g. `"item/commandExecution/requestApproval"`.
    pub method: String,
    /// The JSON-RPC id to answer.
    pub rpc_id: Value,
    /// Its params, as received.
    pub params: Value,
    /// When it arrived (Unix epoch milliseconds).
    pub at_ms: i64,
}

/// The `origin` of the `approval_request` inbox message about request `id`: it is stored
/// once, and acknowledged when the request is answered, withdrawn or resolved elsewhere.
pub fn approval_origin(id: i64) -> String {
    format!("approval:request:{id}")
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for an answer.
    Pending,
    /// Answered by dispatch (an operator, an agent or the configured policy).
    Answered,
    /// The App Server reported it resolved by someone else.
    ResolvedElsewhere,
    /// Withdrawn: the turn ended, the App Server restarted, and so on.
    Cancelled,
}

impl RequestStatus {
    /// The wire and column value: `pending`, `answered`, `resolved_elsewhere`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Answered => "answered",
            RequestStatus::ResolvedElsewhere => "resolved_elsewhere",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a wire or column value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(RequestStatus::Pending),
            "answered" => Some(RequestStatus::Answered),
            "resolved_elsewhere" => Some(RequestStatus::ResolvedElsewhere),
            "cancelled" => Some(RequestStatus::Cancelled),
            _ => None,
        }
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A persisted server request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    /// The request id users answer with; never reused.
    pub id: i64,
    /// The lane it belongs to.
    pub lane_ref: String,
    /// The lane's thread id.
    pub thread_id: String,
    /// The turn it belongs to.
    pub turn_id: Option<String>,
    /// The item it is about.
    pub item_id: Option<String>,
    /// The App Server method.
    pub method: String,
    /// The JSON-RPC id to answer.
    pub rpc_id: Value,
    /// Its params.
    pub params: Value,
    /// Where it stands.
    pub status: RequestStatus,
    /// The decision given, e.g. `"accept"`.
    pub decision: Option<String>,
    /// When it arrived (Unix epoch milliseconds).
    pub created_at_ms: i64,
    /// When it stopped being pending.
    pub resolved_at_ms: Option<i64>,
}

/// The `requests` columns, in [`RequestRecord`]'s order.
macro_rules! request_columns {
    () => {
        "id, lane_ref, thread_id, turn_id, item_id, method, rpc_id, params, status, decision, \
         created_at_ms, resolved_at_ms"
    };
}

/// A raw `requests` row.
#[derive(Debug, sqlx::FromRow)]
struct RequestRecord {
    id: i64,
    lane_ref: String,
    thread_id: String,
    turn_id: Option<String>,
    item_id: Option<String>,
    method: String,
    rpc_id: String,
    params: String,
    status: String,
    decision: Option<String>,
    created_at_ms: i64,
    resolved_at_ms: Option<i64>,
}

impl RequestRecord {
    fn into_row(self, registry: &Registry) -> Result<RequestRow, RegistryError> {
        let id = self.id;
        let corrupt = |detail: String| RegistryError::corrupt(registry.path(), detail);
        let json = |what: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|err| corrupt(format!("request {id} has {what} that is not JSON: {err}")))
        };
        let status = RequestStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("request {id} has unknown status {:?}", self.status)))?;
        Ok(RequestRow {
            id,
            rpc_id: json("an rpc id", &self.rpc_id)?,
            params: json("params", &self.params)?,
            lane_ref: self.lane_ref,
            thread_id: self.thread_id,
            turn_id: self.turn_id,
            item_id: self.item_id,
            method: self.method,
            status,
            decision: self.decision,
            created_at_ms: self.created_at_ms,
            resolved_at_ms: self.resolved_at_ms,
        })
    }
}

impl Registry {
    /// Persists a server request as pending.
    pub async fn insert_request(&self, request: &NewRequest) -> Result<RequestRow, RegistryError> {
        let inserted = sqlx::query_scalar(
            "INSERT INTO requests (lane_ref, thread_id, turn_id, item_id, method, rpc_id, params, \
             status, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
        )
        .bind(&request.lane_ref)
        .bind(&request.thread_id)
        .bind(&request.turn_id)
        .bind(&request.item_id)
        .bind(&request.method)
        .bind(request.rpc_id.to_string())
        .bind(request.params.to_string())
        .bind(request.at_ms)
        .fetch_one(&self.pool)
        .await;
        let id: i64 = match inserted {
            Ok(id) => id,
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Err(RegistryError::lane_not_found(
                    self.path(),
                    &request.lane_ref,
                ));
            }
            Err(source) => return Err(RegistryError::db(self.path(), "storing a request", source)),
        };
        Ok(RequestRow {
            id,
            lane_ref: request.lane_ref.clone(),
            thread_id: request.thread_id.clone(),
            turn_id: request.turn_id.clone(),
            item_id: request.item_id.clone(),
            method: request.method.clone(),
            rpc_id: request.rpc_id.clone(),
            params: request.params.clone(),
            status: RequestStatus::Pending,
            decision: None,
            created_at_ms: request.at_ms,
            resolved_at_ms: None,
        })
    }

    /// Pending requests, of one lane or of all, oldest first.
    pub async fn pending_requests(
        &self,
        lane_ref: Option<&str>,
    ) -> Result<Vec<RequestRow>, RegistryError> {
        let records: Vec<RequestRecord> = sqlx::query_as(concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE status = 'pending' AND (?1 IS NULL OR lane_ref = ?1) \
             ORDER BY created_at_ms, id"
        ))
        .bind(lane_ref)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading pending requests",
        ))?;
        records
            .into_iter()
            .map(|record| record.into_row(self))
            .collect()
    }

    /// The request with this id, whatever its status.
    pub async fn request(&self, id: i64) -> Result<Option<RequestRow>, RegistryError> {
        let record: Option<RequestRecord> = sqlx::query_as(concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading a request"))?;
        record.map(|record| record.into_row(self)).transpose()
    }

    /// Moves a pending request to `status` with the decision given, and acknowledges its
    /// `approval_request` inbox message; returns `false` (and changes nothing) if it is not
    /// pending any more, does not exist, or `status` is [`RequestStatus::Pending`]. Only one of
    /// several concurrent answers wins.
    pub async fn finish_request(
        &self,
        id: i64,
        status: RequestStatus,
        decision: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, RegistryError> {
        if status == RequestStatus::Pending {
            return Ok(false);
        }
        let context = "finishing a request";
        self.write_tx(context, async |conn| {
            let done = sqlx::query(
                "UPDATE requests SET status = ?, decision = ?, resolved_at_ms = ? \
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(status.as_str())
            .bind(decision)
            .bind(at_ms)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            // Its inbox message asks for an answer nobody needs to give any more.
            sqlx::query(
                "UPDATE inbox SET state = 'acked', acked_at_ms = ? \
                 WHERE origin = ? AND state = 'pending'",
            )
            .bind(at_ms)
            .bind(approval_origin(id))
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// The newest pending request of the thread with this JSON-RPC id (ids compare as JSON:
    /// `5` and `"5"` differ).
    pub async fn pending_request_by_rpc_id(
        &self,
        thread_id: &str,
        rpc_id: &Value,
    ) -> Result<Option<RequestRow>, RegistryError> {
        let record: Option<RequestRecord> = sqlx::query_as(concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE status = 'pending' AND thread_id = ? AND rpc_id = ? \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(thread_id)
        .bind(rpc_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a request by rpc id",
        ))?;
        record.map(|record| record.into_row(self)).transpose()
    }
}
