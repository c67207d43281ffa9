//! Lanes: creating them, reading them one at a time or as a listing, and their metadata.
//!
//! A lane's row carries everything a listing shows (the latest turn, the goal, the last token
//! usage) so that listing is a single indexed scan; [`Registry::record`] keeps those columns
//! up to date as notifications arrive.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::actions::now_ms;
use crate::refs::random_ref;
use crate::{Registry, RegistryError};

/// How many freshly drawn refs [`Registry::create_lane`] tries before giving up.
const REF_ATTEMPTS: u32 = 32;

/// Whether dispatch created the lane's thread or adopted an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// Created by dispatch (`new`); writable.
    Owned,
    /// An existing Codex thread adopted with `attach`; observe-only by default.
    Attached,
}

impl Ownership {
    /// The value stored in the `ownership` column: `"owned"` or `"attached"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Owned => "owned",
            Ownership::Attached => "attached",
        }
    }

    /// Parses a stored value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "owned" => Some(Ownership::Owned),
            "attached" => Some(Ownership::Attached),
            _ => None,
        }
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a lane is doing, as `get` and `list` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneStatus {
    /// No turn in flight.
    Idle,
    /// Running a turn.
    Busy,
    /// Running a turn that Codex is retrying (the model provider failed and Codex tries
    /// again). Never stored: a busy lane with retry attempts shows it.
    Retrying,
    /// Blocked on a server request (an approval) until someone answers it.
    WaitingApproval,
    /// The last turn failed, or the App Server reported a fatal error for the thread.
    Error,
    /// Archived; shown whenever the lane's archived flag is set, whatever its live status.
    Archived,
}

impl LaneStatus {
    /// The wire and column value: `idle`, `busy`, `retrying`, `waiting_approval`, `error`,
    /// `archived`.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneStatus::Idle => "idle",
            LaneStatus::Busy => "busy",
            LaneStatus::Retrying => "retrying",
            LaneStatus::WaitingApproval => "waiting_approval",
            LaneStatus::Error => "error",
            LaneStatus::Archived => "archived",
        }
    }

    /// Parses a wire or column value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "idle" => Some(LaneStatus::Idle),
            "busy" => Some(LaneStatus::Busy),
            "retrying" => Some(LaneStatus::Retrying),
            "waiting_approval" => Some(LaneStatus::WaitingApproval),
            "error" => Some(LaneStatus::Error),
            "archived" => Some(LaneStatus::Archived),
            _ => None,
        }
    }
}

impl fmt::Display for LaneStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// Still running.
    InProgress,
    /// Finished normally.
    Completed,
    /// Stopped by `turn/interrupt`.
    Interrupted,
    /// Ended with an error.
    Failed,
}

impl TurnStatus {
    /// The wire and column value: `in_progress`, `completed`, `interrupted`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::InProgress => "in_progress",
            TurnStatus::Completed => "completed",
            TurnStatus::Interrupted => "interrupted",
            TurnStatus::Failed => "failed",
        }
    }

    /// Parses a wire or column value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "in_progress" => Some(TurnStatus::InProgress),
            "completed" => Some(TurnStatus::Completed),
            "interrupted" => Some(TurnStatus::Interrupted),
            "failed" => Some(TurnStatus::Failed),
            _ => None,
        }
    }

    /// The lane status a lane whose latest turn is in this state has.
    pub fn lane_status(self) -> LaneStatus {
        match self {
            TurnStatus::InProgress => LaneStatus::Busy,
            TurnStatus::Completed | TurnStatus::Interrupted => LaneStatus::Idle,
            TurnStatus::Failed => LaneStatus::Error,
        }
    }
}

impl fmt::Display for TurnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lane to create; the registry assigns the ref and timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLane {
    /// The Codex thread id; at most one lane per thread.
    pub thread_id: String,
    /// The title (the Codex thread name).
    pub title: Option<String>,
    /// The handle, stored without its leading `@` (one given with `@` is stripped).
    pub handle: Option<String>,
    /// Owned or attached.
    pub ownership: Ownership,
    /// The working directory of the thread.
    pub cwd: Option<String>,
    /// The model the thread uses, if known.
    pub model: Option<String>,
}

/// A lane's git worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeRow {
    /// The worktree's directory.
    pub path: String,
    /// The branch checked out there.
    pub branch: String,
    /// The root of the repository it was made from.
    pub repo: String,
}

/// A thread's native goal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalRow {
    /// What the goal asks for.
    pub objective: String,
    /// The goal's status, as the App Server reports it.
    pub status: String,
    /// The token budget, if one was set.
    pub token_budget: Option<i64>,
    /// Tokens spent on the goal so far, if reported.
    pub tokens_used: Option<i64>,
}

/// One turn of a lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRow {
    /// The App Server's turn id.
    pub turn_id: String,
    /// Its state.
    pub status: TurnStatus,
    /// The error message of a failed turn.
    pub error: Option<String>,
    /// When it started (Unix epoch milliseconds).
    pub started_at_ms: Option<i64>,
    /// When it ended (Unix epoch milliseconds).
    pub completed_at_ms: Option<i64>,
    /// How long it ran; computed from the two timestamps when not reported.
    pub duration_ms: Option<i64>,
}

/// Codex retrying a lane's running turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRow {
    /// Retry attempts seen for the turn so far.
    pub attempts: i64,
    /// The last error Codex reported while retrying.
    pub error: Option<String>,
    /// When that error arrived (Unix epoch milliseconds).
    pub at_ms: Option<i64>,
}

/// One lane, with the state derived from its notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneRow {
    /// The lane's six-character ref.
    pub lane_ref: String,
    /// The Codex thread id.
    pub thread_id: String,
    /// The title.
    pub title: Option<String>,
    /// The handle, without `@`.
    pub handle: Option<String>,
    /// Owned or attached.
    pub ownership: Ownership,
    /// The working directory.
    pub cwd: Option<String>,
    /// The model, if known.
    pub model: Option<String>,
    /// The status; [`LaneStatus::Archived`] whenever `archived` is true.
    pub status: LaneStatus,
    /// Whether the lane is archived.
    pub archived: bool,
    /// The most recent turn.
    pub latest_turn: Option<TurnRow>,
    /// Codex retrying the running turn, while it does.
    pub retry: Option<RetryRow>,
    /// The cause of the latest error of the current turn (e.g. `network`, `authentication`),
    /// kept until a new turn starts or one completes.
    pub error_cause: Option<String>,
    /// The thread's goal.
    pub goal: Option<GoalRow>,
    /// The last token usage the App Server reported, as it reported it.
    pub token_usage: Option<Value>,
    /// The git worktree `new` made for the lane, until `worktree remove` removes it.
    pub worktree: Option<WorktreeRow>,
    /// When the lane was created (Unix epoch milliseconds).
    pub created_at_ms: i64,
    /// The last activity (Unix epoch milliseconds); `list` sorts on it.
    pub updated_at_ms: i64,
}

/// Which lanes [`Registry::list_lanes`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneFilter {
    /// Only lanes showing this status. [`LaneStatus::Archived`] lists the archived lanes.
    pub status: Option<LaneStatus>,
    /// Include archived lanes (implied by `status: Some(Archived)`).
    pub include_archived: bool,
    /// At most this many lanes; `0` means no limit.
    pub limit: u32,
}

/// How many lanes there are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneCounts {
    /// All lanes, archived ones included.
    pub total: i64,
    /// Lanes with no turn in flight.
    pub idle: i64,
    /// Lanes running a turn.
    pub busy: i64,
    /// Lanes running a turn that Codex is retrying.
    pub retrying: i64,
    /// Lanes blocked on an approval request.
    pub waiting_approval: i64,
    /// Lanes whose last turn failed.
    pub error: i64,
    /// Lanes that were archived (whatever their live status).
    pub archived: i64,
}

/// How much the registry holds about one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneActivity {
    /// Turns recorded.
    pub turns: i64,
    /// Items recorded.
    pub items: i64,
    /// Stored events (after pruning).
    pub events: i64,
    /// Errors recorded.
    pub errors: i64,
}

/// The `lanes` columns as a `json_array`, in [`LaneRecord`]'s order; `token_usage` is
/// embedded as JSON.
macro_rules! lane_json_array {
    () => {
        "json_array(ref, thread_id, title, handle, ownership, cwd, model, status, archived, \
         latest_turn_id, latest_turn_status, latest_turn_error, latest_turn_started_at_ms, \
         latest_turn_completed_at_ms, latest_turn_duration_ms, goal_objective, goal_status, \
         goal_token_budget, goal_tokens_used, json(token_usage), created_at_ms, updated_at_ms, \
         retry_attempts, retry_error, retry_at_ms, error_cause, worktree_path, worktree_branch, \
         worktree_repo)"
    };
}
pub(crate) use lane_json_array;

/// `WHERE <the lanes a listing shows>`: `?1` the status asked for (`NULL`: any), `?2` whether
/// archived lanes are shown when no status is asked for. Every listing of lanes filters with
/// it, so they agree on what `busy`, `retrying` and `archived` mean.
macro_rules! status_filter {
    () => {
        "WHERE CASE \
           WHEN ?1 IS NULL THEN ?2 OR NOT (archived OR status = 'archived') \
           WHEN ?1 = 'archived' THEN archived OR status = 'archived' \
           ELSE NOT (archived OR status = 'archived') AND CASE ?1 \
             WHEN 'retrying' THEN status = 'busy' AND retry_attempts > 0 \
             WHEN 'busy' THEN status = 'busy' AND retry_attempts = 0 \
             ELSE status = ?1 END \
         END"
    };
}
pub(crate) use status_filter;

/// `SELECT <one JSON array of the matching lanes> FROM (SELECT .. FROM lanes <$rest>)`; the
/// single text column it yields is read by [`parse_lanes`].
///
/// Reading many lanes as one JSON text is several times faster than decoding them row by row.
/// `$rest` may filter, order and limit, but the order of the array is unspecified: callers
/// sort what they read.
macro_rules! select_lanes {
    ($($rest:tt)+) => {
        concat!(
            "SELECT '[' || COALESCE(group_concat(j, ','), '') || ']' FROM (SELECT ",
            $crate::lanes::lane_json_array!(),
            " AS j FROM lanes ",
            $($rest)+,
            ")"
        )
    };
}
pub(crate) use select_lanes;

/// Parses the text selected by [`select_lanes`].
pub(crate) fn parse_lanes(
    registry: &Registry,
    text: &str,
) -> Result<Vec<LaneRecord>, RegistryError> {
    serde_json::from_str(text).map_err(|err| {
        RegistryError::corrupt(registry.path(), format!("lanes did not read back: {err}"))
    })
}

/// An element of a JSON array of lanes: a lane's record, and what comes with it.
pub(crate) trait LaneElement: serde::de::DeserializeOwned {
    /// What comes with the record.
    type With;
    /// The record and what comes with it.
    fn into_parts(self) -> (LaneRecord, Self::With);
}

impl LaneElement for LaneRecord {
    type With = ();

    fn into_parts(self) -> (LaneRecord, ()) {
        (self, ())
    }
}

/// Reads a JSON array of lanes ([`select_lanes`]'s, or one whose elements carry more than the
/// record: `E`), handing each record to `sink` as a row, with what came with it, as soon as it
/// is parsed; a record that does not convert is kept in `failed` and ends the parse.
struct Rows<'r, E: LaneElement> {
    registry: &'r Registry,
    sink: &'r mut dyn FnMut(LaneRow, E::With),
    failed: Option<RegistryError>,
    element: std::marker::PhantomData<E>,
}

impl<'de, E: LaneElement> serde::de::DeserializeSeed<'de> for &mut Rows<'_, E> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        parser.deserialize_seq(self)
    }
}

impl<'de, E: LaneElement> serde::de::Visitor<'de> for &mut Rows<'_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of lanes")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<E>()? {
            let (record, with) = element.into_parts();
            match record.into_row(self.registry) {
                Ok(row) => (self.sink)(row, with),
                Err(err) => {
                    self.failed = Some(err);
                    return Err(serde::de::Error::custom("a lane did not convert"));
                }
            }
        }
        Ok(())
    }
}

/// The order of lane listings, by `(updated_at_ms, lane_ref)`: newest activity first, then
/// by ref.
pub(crate) fn activity_order(a: (i64, &str), b: (i64, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

/// A raw `lanes` row, as [`select_lanes`] reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct LaneRecord {
    lane_ref: String,
    thread_id: String,
    title: Option<String>,
    handle: Option<String>,
    ownership: String,
    cwd: Option<String>,
    model: Option<String>,
    status: String,
    archived: i64,
    latest_turn_id: Option<String>,
    latest_turn_status: Option<String>,
    latest_turn_error: Option<String>,
    latest_turn_started_at_ms: Option<i64>,
    latest_turn_completed_at_ms: Option<i64>,
    latest_turn_duration_ms: Option<i64>,
    goal_objective: Option<String>,
    goal_status: Option<String>,
    goal_token_budget: Option<i64>,
    goal_tokens_used: Option<i64>,
    token_usage: Option<Value>,
    created_at_ms: i64,
    updated_at_ms: i64,
    retry_attempts: i64,
    retry_error: Option<String>,
    retry_at_ms: Option<i64>,
    error_cause: Option<String>,
    worktree_path: Option<String>,
    worktree_branch: Option<String>,
    worktree_repo: Option<String>,
}

impl LaneRecord {
    /// Checks and converts a raw row; anything unparsable means the file was damaged.
    pub(crate) fn into_row(self, registry: &Registry) -> Result<LaneRow, RegistryError> {
        self.into_state(registry).map(|(row, _live)| row)
    }

    /// [`LaneRecord::into_row`], plus the live status kept underneath the archived flag
    /// (never [`LaneStatus::Archived`]).
    pub(crate) fn into_state(
        self,
        registry: &Registry,
    ) -> Result<(LaneRow, LaneStatus), RegistryError> {
        let lane_ref = self.lane_ref;
        let corrupt = |detail: String| RegistryError::corrupt(registry.path(), detail);
        let ownership = Ownership::parse(&self.ownership).ok_or_else(|| {
            corrupt(format!(
                "lane {lane_ref} has unknown ownership {:?}",
                self.ownership
            ))
        })?;
        let live = LaneStatus::parse(&self.status).ok_or_else(|| {
            corrupt(format!(
                "lane {lane_ref} has unknown status {:?}",
                self.status
            ))
        })?;
        // Registries before schema 4 stored archiving as a status; the flag replaced it.
        let archived = self.archived != 0 || live == LaneStatus::Archived;
        let live = match live {
            LaneStatus::Archived => LaneStatus::Idle,
            LaneStatus::Retrying => LaneStatus::Busy,
            live => live,
        };
        let retry = (self.retry_attempts > 0).then_some(RetryRow {
            attempts: self.retry_attempts,
            error: self.retry_error,
            at_ms: self.retry_at_ms,
        });
        let latest_turn = match self.latest_turn_id {
            None => None,
            Some(turn_id) => {
                let stored = self.latest_turn_status.unwrap_or_default();
                let status = TurnStatus::parse(&stored).ok_or_else(|| {
                    corrupt(format!(
                        "lane {lane_ref} has latest turn {turn_id} with unknown status {stored:?}"
                    ))
                })?;
                Some(TurnRow {
                    turn_id,
                    status,
                    error: self.latest_turn_error,
                    started_at_ms: self.latest_turn_started_at_ms,
                    completed_at_ms: self.latest_turn_completed_at_ms,
                    duration_ms: self.latest_turn_duration_ms,
                })
            }
        };
        let goal = self.goal_objective.map(|objective| GoalRow {
            objective,
            status: self.goal_status.unwrap_or_default(),
            token_budget: self.goal_token_budget,
            tokens_used: self.goal_tokens_used,
        });
        let worktree = match (self.worktree_path, self.worktree_branch, self.worktree_repo) {
            (Some(path), Some(branch), Some(repo)) => Some(WorktreeRow { path, branch, repo }),
            _ => None,
        };
        let row = LaneRow {
            lane_ref,
            thread_id: self.thread_id,
            title: self.title,
            handle: self.handle,
            ownership,
            cwd: self.cwd,
            model: self.model,
            status: shown_status(live, archived, retry.is_some()),
            archived,
            latest_turn,
            retry,
            error_cause: self.error_cause,
            goal,
            token_usage: self.token_usage,
            worktree,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        };
        Ok((row, live))
    }
}

/// The status a lane shows: archived over everything, retrying over busy.
pub(crate) fn shown_status(live: LaneStatus, archived: bool, retrying: bool) -> LaneStatus {
    match live {
        _ if archived => LaneStatus::Archived,
        LaneStatus::Busy if retrying => LaneStatus::Retrying,
        live => live,
    }
}

/// `handle` without one leading `@`.
pub(crate) fn bare_handle(handle: &str) -> &str {
    handle.strip_prefix('@').unwrap_or(handle)
}

impl Registry {
    /// Creates an idle lane with a fresh random ref, unique among current lanes and never one
    /// that was retired.
    ///
    /// A second lane for the same thread yields [`RegistryError::Conflict`].
    pub async fn create_lane(&self, lane: &NewLane) -> Result<LaneRow, RegistryError> {
        let path = self.path().to_path_buf();
        self.create_lane_with(lane, &mut || random_ref(&path)).await
    }

    /// [`Registry::create_lane`] with the refs drawn from `next_ref`, so tests can be
    /// deterministic.
    pub(crate) async fn create_lane_with(
        &self,
        lane: &NewLane,
        next_ref: &mut (dyn FnMut() -> Result<String, RegistryError> + Send),
    ) -> Result<LaneRow, RegistryError> {
        if let Some(existing) = self.lane_by_thread(&lane.thread_id).await? {
            return Err(self.thread_conflict(&lane.thread_id, &existing.lane_ref));
        }
        let handle = lane.handle.as_deref().map(bare_handle);
        if let Some(handle) = handle {
            self.check_handle_free(handle, None).await?;
        }
        let now = now_ms();
        for _ in 0..REF_ATTEMPTS {
            let lane_ref = next_ref()?;
            // `ON CONFLICT (ref)` skips a taken ref; a duplicate thread id still fails.
            let inserted = sqlx::query(
                "INSERT INTO lanes (ref, thread_id, title, handle, ownership, cwd, model, status, \
                 created_at_ms, updated_at_ms) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 'idle', ?8, ?8 \
                 WHERE NOT EXISTS (SELECT 1 FROM retired_refs WHERE ref = ?1) \
                 ON CONFLICT (ref) DO NOTHING",
            )
            .bind(&lane_ref)
            .bind(&lane.thread_id)
            .bind(&lane.title)
            .bind(handle)
            .bind(lane.ownership.as_str())
            .bind(&lane.cwd)
            .bind(&lane.model)
            .bind(now)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(done) if done.rows_affected() == 1 => {
                    return self
                        .lane(&lane_ref)
                        .await?
                        .ok_or_else(|| RegistryError::lane_not_found(self.path(), &lane_ref));
                }
                Ok(_) => continue,
                Err(sqlx::Error::Database(db))
                    if db.is_unique_violation() && db.message().contains("lanes.handle") =>
                {
                    return Err(self.handle_conflict(handle.unwrap_or_default(), None));
                }
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    let existing = self
                        .lane_by_thread(&lane.thread_id)
                        .await?
                        .map(|row| row.lane_ref)
                        .unwrap_or_default();
                    return Err(self.thread_conflict(&lane.thread_id, &existing));
                }
                Err(source) => {
                    return Err(RegistryError::db(self.path(), "creating a lane", source));
                }
            }
        }
        Err(RegistryError::RefsExhausted {
            path: self.path().to_path_buf(),
            attempts: REF_ATTEMPTS,
        })
    }

    /// [`RegistryError::Conflict`] unless `handle` is free (or held by `except`).
    pub async fn check_handle_free(
        &self,
        handle: &str,
        except: Option<&str>,
    ) -> Result<(), RegistryError> {
        let holder: Option<String> = sqlx::query_scalar("SELECT ref FROM lanes WHERE handle = ?")
            .bind(bare_handle(handle))
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "looking up a handle"))?;
        match holder {
            Some(holder) if Some(holder.as_str()) != except => {
                Err(self.handle_conflict(handle, Some(&holder)))
            }
            _ => Ok(()),
        }
    }

    fn handle_conflict(&self, handle: &str, holder: Option<&str>) -> RegistryError {
        RegistryError::Conflict {
            path: self.path().to_path_buf(),
            what: match holder {
                Some(holder) => {
                    format!("handle @{} is taken by lane {holder}", bare_handle(handle))
                }
                None => format!("handle @{} is taken", bare_handle(handle)),
            },
        }
    }

    fn thread_conflict(&self, thread_id: &str, lane_ref: &str) -> RegistryError {
        RegistryError::Conflict {
            path: self.path().to_path_buf(),
            what: format!("thread {thread_id} already has lane {lane_ref}"),
        }
    }

    /// The lane with this exact ref.
    pub async fn lane(&self, lane_ref: &str) -> Result<Option<LaneRow>, RegistryError> {
        let text: String = sqlx::query_scalar(select_lanes!("WHERE ref = ?"))
            .bind(lane_ref)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "reading a lane"))?;
        self.one_lane(&text)
    }

    /// The lane of this Codex thread.
    pub async fn lane_by_thread(&self, thread_id: &str) -> Result<Option<LaneRow>, RegistryError> {
        let text: String = sqlx::query_scalar(select_lanes!("WHERE thread_id = ?"))
            .bind(thread_id)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "reading a lane by thread",
            ))?;
        self.one_lane(&text)
    }

    /// The lanes of these Codex threads, in one query (threads that are no lane are left out;
    /// the order is unspecified).
    pub async fn lanes_by_threads(
        &self,
        thread_ids: &[String],
    ) -> Result<Vec<LaneRow>, RegistryError> {
        if thread_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(thread_ids).map_err(|err| {
            RegistryError::corrupt(self.path(), format!("thread ids did not encode: {err}"))
        })?;
        let text: String = sqlx::query_scalar(select_lanes!(
            "WHERE thread_id IN (SELECT value FROM json_each(?))"
        ))
        .bind(ids)
        .fetch_one(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading lanes by thread",
        ))?;
        self.lanes_from(&text)
    }

    /// Converts lanes read with [`select_lanes`], each as it is parsed: a page of 1,000 lanes
    /// holds no vector of raw records besides the rows (over 500 KiB of fresh memory).
    pub(crate) fn lanes_from(&self, text: &str) -> Result<Vec<LaneRow>, RegistryError> {
        let mut lanes = Vec::new();
        self.each_lane(text, &mut |row| lanes.push(row))?;
        Ok(lanes)
    }

    /// Hands each lane read with [`select_lanes`] to `sink` as soon as it is parsed, in the
    /// order of the text.
    pub(crate) fn each_lane(
        &self,
        text: &str,
        sink: &mut dyn FnMut(LaneRow),
    ) -> Result<(), RegistryError> {
        self.each_element::<LaneRecord>(text, &mut |row, ()| sink(row))
    }

    /// [`Registry::each_lane`] for an array whose elements are `E`: each lane with what came
    /// with it.
    pub(crate) fn each_element<E: LaneElement>(
        &self,
        text: &str,
        sink: &mut dyn FnMut(LaneRow, E::With),
    ) -> Result<(), RegistryError> {
        let mut rows = Rows::<E> {
            registry: self,
            sink,
            failed: None,
            element: std::marker::PhantomData,
        };
        let mut parser = serde_json::Deserializer::from_str(text);
        let parsed = serde::de::DeserializeSeed::deserialize(&mut rows, &mut parser)
            .and_then(|()| parser.end());
        match (parsed, rows.failed) {
            (_, Some(err)) => Err(err),
            (Ok(()), None) => Ok(()),
            (Err(err), None) => Err(RegistryError::corrupt(
                self.path(),
                format!("lanes did not read back: {err}"),
            )),
        }
    }

    /// The first lane read with [`select_lanes`], if any.
    fn one_lane(&self, text: &str) -> Result<Option<LaneRow>, RegistryError> {
        Ok(self.lanes_from(text)?.into_iter().next())
    }

    /// Lanes matching `filter`, newest activity first (then by ref).
    ///
    /// Archived lanes are left out unless `include_archived` is set or the filter asks for
    /// [`LaneStatus::Archived`].
    pub async fn list_lanes(&self, filter: &LaneFilter) -> Result<Vec<LaneRow>, RegistryError> {
        let limit = match filter.limit {
            0 => -1,
            limit => i64::from(limit),
        };
        let row = sqlx::query(select_lanes!(concat!(
            status_filter!(),
            " ORDER BY updated_at_ms DESC, ref LIMIT ?3"
        )))
        .bind(filter.status.map(LaneStatus::as_str))
        .bind(filter.include_archived)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "listing lanes"))?;
        // Parsed where sqlx holds it, not copied into a `String` first.
        let text: &str = row
            .try_get(0)
            .map_err(RegistryError::db_with(self.path(), "listing lanes"))?;
        let mut lanes = self.lanes_from(text)?;
        lanes.sort_unstable_by(|a, b| {
            activity_order(
                (a.updated_at_ms, &a.lane_ref),
                (b.updated_at_ms, &b.lane_ref),
            )
        });
        Ok(lanes)
    }

    /// Sets (or with `None` clears) the title.
    pub async fn set_title(
        &self,
        lane_ref: &str,
        title: Option<&str>,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE lanes SET title = ? WHERE ref = ?")
            .bind(title)
            .bind(lane_ref)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "setting a lane title"))?;
        self.expect_lane(done.rows_affected(), lane_ref)
    }

    /// Records (or with `None` forgets) the lane's git worktree.
    pub async fn set_worktree(
        &self,
        lane_ref: &str,
        worktree: Option<&WorktreeRow>,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE lanes SET worktree_path = ?, worktree_branch = ?, worktree_repo = ? \
             WHERE ref = ?",
        )
        .bind(worktree.map(|w| &w.path))
        .bind(worktree.map(|w| &w.branch))
        .bind(worktree.map(|w| &w.repo))
        .bind(lane_ref)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "recording a lane's worktree",
        ))?;
        self.expect_lane(done.rows_affected(), lane_ref)
    }

    /// Sets (or with `None` clears) the handle; a leading `@` is stripped.
    pub async fn set_handle(
        &self,
        lane_ref: &str,
        handle: Option<&str>,
    ) -> Result<(), RegistryError> {
        if let Some(handle) = handle {
            self.check_handle_free(handle, Some(lane_ref)).await?;
        }
        let done = sqlx::query("UPDATE lanes SET handle = ? WHERE ref = ?")
            .bind(handle.map(bare_handle))
            .bind(lane_ref)
            .execute(&self.pool)
            .await
            .map_err(|source| match &source {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    self.handle_conflict(handle.unwrap_or_default(), None)
                }
                _ => RegistryError::db(self.path(), "setting a lane handle", source),
            })?;
        self.expect_lane(done.rows_affected(), lane_ref)
    }

    /// Records activity at `at_ms`: the lane's `updated_at_ms` becomes `at_ms` unless it is
    /// already later.
    pub async fn touch(&self, lane_ref: &str, at_ms: i64) -> Result<(), RegistryError> {
        let done =
            sqlx::query("UPDATE lanes SET updated_at_ms = MAX(updated_at_ms, ?) WHERE ref = ?")
                .bind(at_ms)
                .bind(lane_ref)
                .execute(&self.pool)
                .await
                .map_err(RegistryError::db_with(self.path(), "touching a lane"))?;
        self.expect_lane(done.rows_affected(), lane_ref)
    }

    /// `Ok` if an update touched a row, [`RegistryError::LaneNotFound`] otherwise.
    fn expect_lane(&self, rows_affected: u64, lane_ref: &str) -> Result<(), RegistryError> {
        if rows_affected == 0 {
            return Err(RegistryError::lane_not_found(self.path(), lane_ref));
        }
        Ok(())
    }

    /// Counts lanes by status; archived lanes count as archived, not in their live status.
    pub async fn lane_counts(&self) -> Result<LaneCounts, RegistryError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT CASE WHEN archived THEN 'archived' \
               WHEN status = 'busy' AND retry_attempts > 0 THEN 'retrying' \
               ELSE status END AS shown, COUNT(*) \
             FROM lanes GROUP BY shown",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "counting lanes"))?;

        let mut counts = LaneCounts::default();
        for (status, count) in rows {
            let slot = match LaneStatus::parse(&status) {
                Some(LaneStatus::Idle) => &mut counts.idle,
                Some(LaneStatus::Busy) => &mut counts.busy,
                Some(LaneStatus::Retrying) => &mut counts.retrying,
                Some(LaneStatus::WaitingApproval) => &mut counts.waiting_approval,
                Some(LaneStatus::Error) => &mut counts.error,
                Some(LaneStatus::Archived) => &mut counts.archived,
                None => {
                    return Err(RegistryError::corrupt(
                        self.path(),
                        format!("{count} lane(s) have unknown status {status:?}"),
                    ));
                }
            };
            *slot = count;
            counts.total += count;
        }
        Ok(counts)
    }

    /// How many turns, items, stored events and errors the registry holds for the lane (all
    /// zero for an unknown ref).
    pub async fn counts(&self, lane_ref: &str) -> Result<LaneActivity, RegistryError> {
        let (turns, items, events, errors): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM turns WHERE lane_ref = ?1), \
               (SELECT COUNT(*) FROM items WHERE lane_ref = ?1), \
               (SELECT COUNT(*) FROM events WHERE lane_ref = ?1), \
               (SELECT COUNT(*) FROM lane_errors WHERE lane_ref = ?1)",
        )
        .bind(lane_ref)
        .fetch_one(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "counting lane activity",
        ))?;
        Ok(LaneActivity {
            turns,
            items,
            events,
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn new_lane(thread_id: &str) -> NewLane {
        NewLane {
            thread_id: thread_id.into(),
            title: None,
            handle: None,
            ownership: Ownership::Owned,
            cwd: None,
            model: None,
        }
    }

    /// A generator handing out `refs` in order, and counting how many it handed out.
    fn scripted(refs: &[&str]) -> impl FnMut() -> Result<String, RegistryError> + Send {
        let mut refs: Vec<String> = refs.iter().rev().map(|r| (*r).to_owned()).collect();
        move || Ok(refs.pop().expect("the test ran out of scripted refs"))
    }

    #[tokio::test]
    async fn taken_and_retired_refs_are_skipped_and_exhaustion_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db"))
            .await
            .unwrap();
        sqlx::query("INSERT INTO retired_refs (ref) VALUES ('retird')")
            .execute(&registry.pool)
            .await
            .unwrap();

        let first = registry
            .create_lane_with(&new_lane("t-1"), &mut scripted(&["taken0"]))
            .await
            .unwrap();
        assert_eq!(first.lane_ref, "taken0");

        // The retired ref and the taken one are skipped; the third draw is used.
        let mut next = scripted(&["retird", "taken0", "fresh0"]);
        let second = registry
            .create_lane_with(&new_lane("t-2"), &mut next)
            .await
            .unwrap();
        assert_eq!(second.lane_ref, "fresh0");
        assert!(registry.lane("retird").await.unwrap().is_none());

        // A generator that only ever yields taken refs gives up instead of looping forever.
        let mut stuck = || Ok::<_, RegistryError>("retird".to_owned());
        let err = registry
            .create_lane_with(&new_lane("t-3"), &mut stuck)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::RefsExhausted {
                    attempts: REF_ATTEMPTS,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(registry.lane_by_thread("t-3").await.unwrap().is_none());
        registry.close().await;
    }
}
