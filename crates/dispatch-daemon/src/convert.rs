//! Registry rows as the contract's shapes.

use crate::view::{Holds, View};
use dispatch_contract::types::{
    Goal, Lane, LaneError, LaneOwnership, LaneRef, LaneStatus, LatestTurn, Retry, TailItem,
    TurnStatus, Worktree,
};
use dispatch_contract::{Hint, operations};
use dispatch_registry as registry;
use serde_json::json;

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

/// The params of an App Server message as the contract shows them: an object (JSON-RPC
/// params that are absent or not an object show as an empty one, which is left out).
pub fn params(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
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

/// A registry turn status as the contract names it.
pub fn turn_status(status: registry::TurnStatus) -> TurnStatus {
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

/// Conversions that say for which readings of the clock they hold.
impl View {
    /// [`lane`], and the readings of the clock it holds for ([`View::with_clock`]): at any of
    /// them, for the same row and settings, it would be made the same.
    pub fn lane_with_clock(&self, row: registry::LaneRow) -> (Lane, Holds) {
        self.with_clock(|view| lane(row, view))
    }
}

/// When a running lane went silent, if it has been silent for the stall limit or longer.
pub fn stalled_since(row: &registry::LaneRow, view: &View) -> Option<i64> {
    let running = matches!(
        row.status,
        registry::LaneStatus::Busy | registry::LaneStatus::Retrying
    );
    (running && view.has_passed(row.updated_at_ms.saturating_add(view.stall_after_ms)))
        .then_some(row.updated_at_ms)
}

/// What to do about a lane that needs attention, rendered in the words of the surface that
/// asked.
fn hint(row: &registry::LaneRow, stalled: Option<i64>, view: &View) -> Option<String> {
    lane_hint(row, stalled, view).map(|hint| hint.to_string())
}

/// What to do about a lane that needs attention, as data: text plus suggested operations.
pub fn lane_hint(row: &registry::LaneRow, stalled: Option<i64>, view: &View) -> Option<Hint> {
    // Built only for a lane that gets a hint: most lanes of a long `list` get none.
    let lane = || json!({ "lane": row.lane_ref });
    let cause = row.error_cause.as_deref();
    // `{0}` is always the operation that ends the turn.
    let stop = |text: &str| Hint::new(text.to_owned()).run(&operations::STOP, lane());
    let send_again = || json!({ "lane": row.lane_ref, "text": "<text>" });
    match row.status {
        registry::LaneStatus::Retrying => Some(match cause {
            Some("authentication") => stop(
                "the model provider refused the credentials: run `codex login` (or fix the \
                 provider's API key); {0} ends the turn",
            ),
            Some("network") => stop(
                "Codex cannot reach the model provider and keeps retrying: check the network \
                 and the provider's base_url in Codex's config.toml; {0} ends the turn",
            ),
            Some("rate_limit") => stop(
                "the model provider is rate limiting; Codex retries by itself; {0} ends the turn",
            ),
            _ => stop("the model provider failed and Codex is retrying; {0} ends the turn"),
        }),
        registry::LaneStatus::Busy => stalled.map(|since| {
            stop(&format!(
                "no event from the App Server for {} s: the model provider may hang; {{1}} \
                 shows whether it moves, {{0}} ends the turn",
                view.now_ms().saturating_sub(since) / 1000
            ))
            .run(&operations::WATCH, lane())
        }),
        registry::LaneStatus::WaitingApproval => Some(
            Hint::new("a request waits for an answer: {0} lists it, {1} answers it")
                .run(&operations::REQUESTS, lane())
                .run(
                    &operations::RESPOND,
                    json!({ "request_id": "<request-id>", "decision": "accept|decline" }),
                ),
        ),
        registry::LaneStatus::Error => Some(match cause {
            Some("authentication") => Hint::new(
                "authentication failed at the model provider: run `codex login` (or fix the \
                 provider's API key), then {0} again",
            )
            .run(&operations::SEND, send_again()),
            Some("network") => {
                Hint::new("the model provider was unreachable: check the network, then {0} again")
                    .run(&operations::SEND, send_again())
            }
            _ => Hint::new("the last turn failed: {0} shows what happened; {1} tries again")
                .run(&operations::TAIL, lane())
                .run(&operations::SEND, send_again()),
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
        worktree: row.worktree.map(worktree),
        created_at: rfc3339(row.created_at_ms),
        updated_at: rfc3339(row.updated_at_ms),
    }
}

/// A lane's worktree as the contract shows it.
pub(crate) fn worktree(row: registry::WorktreeRow) -> Worktree {
    Worktree {
        path: row.path,
        branch: row.branch,
        repo: row.repo,
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

#[cfg(test)]
mod tests {
    use dispatch_contract::{Surface, foreign_words};

    use super::*;

    fn row(status: registry::LaneStatus, cause: Option<&str>) -> registry::LaneRow {
        registry::LaneRow {
            status,
            error_cause: cause.map(str::to_owned),
            ..crate::test_rows::lane_row("0k7M4a", "thr")
        }
    }

    /// A conversion says for which readings of the clock it holds: always for a lane that
    /// does not run, until the stall limit for a running lane not yet stalled, from then on for
    /// a stalled retrying lane (its hint counts nothing), and never for a stalled busy lane
    /// (its hint counts the seconds); at every reading it holds for, it is made the same.
    #[test]
    fn a_conversion_says_until_when_it_holds() {
        let limit = 1_000;
        let holds = |status, now| {
            let mut row = row(status, None);
            row.updated_at_ms = 5_000;
            View::new(false, limit, now).lane_with_clock(row).1
        };
        assert_eq!(holds(registry::LaneStatus::Idle, 5_500), Holds::ALWAYS);
        let running = holds(registry::LaneStatus::Busy, 5_500);
        assert_eq!(running, Holds::between(i64::MIN, 6_000));
        assert!(running.at(5_999) && !running.at(6_000));
        assert_eq!(holds(registry::LaneStatus::Busy, 5_999), running);
        assert_eq!(holds(registry::LaneStatus::Busy, 6_000), Holds::NEVER);
        assert!(!Holds::NEVER.ever() && !Holds::NEVER.at(6_000));
        let retrying = holds(registry::LaneStatus::Retrying, 6_000);
        assert_eq!(retrying, Holds::between(6_000, i64::MAX));
        assert_eq!(retrying, holds(registry::LaneStatus::Retrying, 90_000));
        // Made the same at every reading it holds for.
        let shown = |status, now| {
            let mut row = row(status, None);
            row.updated_at_ms = 5_000;
            lane(row, &View::new(false, limit, now))
        };
        for status in [registry::LaneStatus::Busy, registry::LaneStatus::Retrying] {
            assert_eq!(shown(status, 0), shown(status, 5_999));
            assert_ne!(shown(status, 5_999), shown(status, 6_000));
        }
        assert_eq!(
            shown(registry::LaneStatus::Retrying, 6_000),
            shown(registry::LaneStatus::Retrying, 90_000)
        );
    }

    /// Every lane hint, in every state and cause, speaks each surface's words: command lines
    /// on the CLI, tools with their arguments on MCP.
    #[test]
    fn every_lane_hint_speaks_each_surfaces_words() {
        let view = View::new(false, 1000, 60_000);
        let mut seen = 0;
        for status in [
            registry::LaneStatus::Idle,
            registry::LaneStatus::Busy,
            registry::LaneStatus::Retrying,
            registry::LaneStatus::WaitingApproval,
            registry::LaneStatus::Error,
            registry::LaneStatus::Archived,
        ] {
            for cause in [
                None,
                Some("authentication"),
                Some("network"),
                Some("rate_limit"),
            ] {
                let row = row(status, cause);
                let Some(hint) = lane_hint(&row, stalled_since(&row, &view), &view) else {
                    continue;
                };
                seen += 1;
                let cli = hint.render(Surface::Cli);
                let mcp = hint.render(Surface::Mcp);
                assert!(foreign_words(&cli, Surface::Cli).is_empty(), "{cli}");
                assert!(foreign_words(&mcp, Surface::Mcp).is_empty(), "{mcp}");
                assert!(cli.contains("`dispatch "), "the CLI names a command: {cli}");
                assert!(mcp.contains("`dispatch_"), "MCP names a tool: {mcp}");
                assert!(
                    !cli.contains("{0}") && !mcp.contains("{1}"),
                    "{cli} / {mcp}"
                );
            }
        }
        assert!(seen >= 10, "only {seen} hints were rendered");
        let stalled = row(registry::LaneStatus::Busy, None);
        let hint = lane_hint(&stalled, stalled_since(&stalled, &view), &view)
            .expect("a stalled lane has a hint");
        assert_eq!(
            hint.render(Surface::Mcp),
            "no event from the App Server for 60 s: the model provider may hang; \
             `dispatch_watch` with {\"lane\":\"0k7M4a\"} shows whether it moves, \
             `dispatch_stop` with {\"lane\":\"0k7M4a\"} ends the turn"
        );
        assert!(
            hint.render(Surface::Cli)
                .contains("`dispatch stop 0k7M4a` ends the turn")
        );
    }

    /// A busy lane whose activity time is as far in the past as an `i64` goes (a row written
    /// by hand, a broken clock) is shown as stalled, its silence counted without overflowing,
    /// instead of panicking (overflow checks) or counting a wrapped, negative silence.
    #[test]
    fn a_busy_lane_silent_since_the_earliest_time_is_shown_without_overflow() {
        let row = registry::LaneRow {
            status: registry::LaneStatus::Busy,
            updated_at_ms: i64::MIN,
            ..crate::test_rows::lane_row("0k7M4a", "thr")
        };
        let shown = lane(row, &View::new(false, 60_000, 1_700_000_000_000));
        assert_eq!(
            shown.stalled_since.as_deref(),
            Some(i64::MIN.to_string().as_str())
        );
        let hint = shown.hint.expect("a stalled lane has a hint");
        assert!(
            hint.contains(&format!("for {} s", i64::MAX / 1000)),
            "{hint}"
        );
    }
}
