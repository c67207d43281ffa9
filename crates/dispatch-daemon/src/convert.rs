//! Registry rows as the contract's shapes.

use dispatch_contract::types::{
    Goal, Lane, LaneError, LaneOwnership, LaneRef, LaneStatus, LatestTurn, Retry, TailItem,
    TurnStatus,
};
use dispatch_registry as registry;

/// RFC 3339 of Unix epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// How a protocol value (an enum, mostly) is spelled on the wire.
pub fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A Codex thread goal as the registry stores it.
pub fn goal_row(goal: &codex_app_server::protocol::ThreadGoal) -> registry::GoalRow {
    registry::GoalRow {
        objective: goal.objective.clone(),
        status: wire_name(&goal.status),
        token_budget: goal.token_budget,
        tokens_used: Some(goal.tokens_used),
    }
}

/// A stored goal as the contract shows it.
pub fn goal(row: registry::GoalRow) -> Goal {
    Goal {
        objective: row.objective,
        status: row.status,
        token_budget: row.token_budget,
        tokens_used: row.tokens_used,
    }
}

/// Locks `mutex`; a panic while it was held leaves plain data behind, which stays usable.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Now, in Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The contract's lane status.
pub fn status(status: registry::LaneStatus) -> LaneStatus {
    match status {
        registry::LaneStatus::Idle => LaneStatus::Idle,
        registry::LaneStatus::Busy => LaneStatus::Busy,
        registry::LaneStatus::Retrying => LaneStatus::Retrying,
        registry::LaneStatus::WaitingApproval => LaneStatus::WaitingApproval,
        registry::LaneStatus::Error => LaneStatus::Error,
        registry::LaneStatus::Archived => LaneStatus::Archived,
    }
}

/// The registry's lane status.
pub fn registry_status(status: LaneStatus) -> registry::LaneStatus {
    match status {
        LaneStatus::Idle => registry::LaneStatus::Idle,
        LaneStatus::Busy => registry::LaneStatus::Busy,
        LaneStatus::Retrying => registry::LaneStatus::Retrying,
        LaneStatus::WaitingApproval => registry::LaneStatus::WaitingApproval,
        LaneStatus::Error => registry::LaneStatus::Error,
        LaneStatus::Archived => registry::LaneStatus::Archived,
    }
}

fn turn_status(status: registry::TurnStatus) -> TurnStatus {
    match status {
        registry::TurnStatus::InProgress => TurnStatus::InProgress,
        registry::TurnStatus::Completed => TurnStatus::Completed,
        registry::TurnStatus::Interrupted => TurnStatus::Interrupted,
        registry::TurnStatus::Failed => TurnStatus::Failed,
    }
}

/// Why a lane refuses writes of turns and history, if it does.
pub fn write_lock(row: &registry::LaneRow, allow_attached_writes: bool) -> Option<String> {
    (row.ownership == registry::Ownership::Attached && !allow_attached_writes).then(|| {
        "attached lane: dispatch observes it but does not write turns or history into a \
         conversation it does not own"
            .to_owned()
    })
}

/// What showing a lane depends on besides its row.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// `[policy] allow_attached_writes`.
    pub allow_attached_writes: bool,
    /// `[lanes] stall_after_s`, in milliseconds.
    pub stall_after_ms: i64,
    /// Now (Unix epoch milliseconds).
    pub now_ms: i64,
}

/// When a running lane went silent, if it has been silent longer than the stall limit.
pub fn stalled_since(row: &registry::LaneRow, view: &View) -> Option<i64> {
    let running = matches!(
        row.status,
        registry::LaneStatus::Busy | registry::LaneStatus::Retrying
    );
    (running && view.now_ms - row.updated_at_ms >= view.stall_after_ms).then_some(row.updated_at_ms)
}

/// What to do about a lane that needs attention, in the words of the CLI.
fn hint(row: &registry::LaneRow, stalled: Option<i64>, view: &View) -> Option<String> {
    let lane = &row.lane_ref;
    let cause = row.error_cause.as_deref();
    let stop = format!("`dispatch stop {lane}` ends the turn");
    match row.status {
        registry::LaneStatus::Retrying => Some(match cause {
            Some("authentication") => format!(
                "the model provider refused the credentials: run `codex login` (or fix the \
                 provider's API key); {stop}"
            ),
            Some("network") => format!(
                "Codex cannot reach the model provider and keeps retrying: check the network \
                 and the provider's base_url in Codex's config.toml; {stop}"
            ),
            Some("rate_limit") => {
                format!("the model provider is rate limiting; Codex retries by itself; {stop}")
            }
            _ => format!("the model provider failed and Codex is retrying; {stop}"),
        }),
        registry::LaneStatus::Busy => stalled.map(|since| {
            format!(
                "no event from the App Server for {} s: the model provider may hang; \
                 `dispatch watch {lane}` shows whether it moves, {stop}",
                (view.now_ms - since) / 1000
            )
        }),
        registry::LaneStatus::WaitingApproval => Some(format!(
            "a request waits for an answer: `dispatch requests --lane {lane}` lists it, \
             `dispatch respond <request-id> accept|decline` answers it"
        )),
        registry::LaneStatus::Error => Some(match cause {
            Some("authentication") => format!(
                "authentication failed at the model provider: run `codex login` (or fix the \
                 provider's API key), then `dispatch send {lane} ...` again"
            ),
            Some("network") => format!(
                "the model provider was unreachable: check the network, then \
                 `dispatch send {lane} ...` again"
            ),
            _ => format!(
                "the last turn failed: `dispatch tail {lane}` shows what happened; \
                 `dispatch send {lane} ...` tries again"
            ),
        }),
        registry::LaneStatus::Idle | registry::LaneStatus::Archived => None,
    }
}

/// A lane as `get`, `list` and `new` show it.
pub fn lane(row: registry::LaneRow, view: &View) -> Lane {
    let write_locked_reason = write_lock(&row, view.allow_attached_writes);
    let stalled = stalled_since(&row, view);
    let hint = hint(&row, stalled, view);
    Lane {
        ref_: row.lane_ref,
        id: row.thread_id,
        title: row.title,
        handle: row.handle,
        ownership: match row.ownership {
            registry::Ownership::Owned => LaneOwnership::Owned,
            registry::Ownership::Attached => LaneOwnership::Attached,
        },
        writable: write_locked_reason.is_none(),
        write_locked_reason,
        cwd: row.cwd,
        model: row.model,
        status: status(row.status),
        retry: row.retry.map(|r| Retry {
            attempts: u64::try_from(r.attempts)
                .ok()
                .and_then(std::num::NonZeroU64::new)
                .unwrap_or(std::num::NonZeroU64::MIN),
            last_error: r.error,
            at: r.at_ms.map(rfc3339),
        }),
        stalled_since: stalled.map(rfc3339),
        hint,
        latest_turn: row.latest_turn.map(|t| LatestTurn {
            id: t.turn_id,
            status: turn_status(t.status),
            error: t.error,
            started_at: t.started_at_ms.map(rfc3339),
            completed_at: t.completed_at_ms.map(rfc3339),
            duration_ms: t.duration_ms,
        }),
        goal: row.goal.map(goal),
        created_at: rfc3339(row.created_at_ms),
        updated_at: rfc3339(row.updated_at_ms),
    }
}

/// `{ref, id}` of a lane.
pub fn lane_ref(row: &registry::LaneRow) -> LaneRef {
    LaneRef {
        ref_: row.lane_ref.clone(),
        id: row.thread_id.clone(),
    }
}

/// A persisted error as `get` shows it.
pub fn error(row: registry::ErrorRow) -> LaneError {
    LaneError {
        turn_id: row.turn_id,
        message: row.message,
        will_retry: row.will_retry,
        cause: row.cause,
        at: rfc3339(row.at_ms),
    }
}

/// An item as `tail` shows it.
pub fn item(row: registry::ItemRow) -> TailItem {
    TailItem {
        turn_id: row.turn_id,
        item_id: row.item_id,
        type_: row.kind,
        text: row.text,
        status: row.status,
        at: Some(rfc3339(row.at_ms)),
    }
}
