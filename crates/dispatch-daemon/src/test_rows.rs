//! Registry rows for the unit tests of this crate, built in one place.

use dispatch_registry::{LaneRow, LaneStatus, Ownership};

/// An owned, idle, unarchived lane `lane_ref` on thread `thread_id`, with every optional
/// field unset and both timestamps 0; set what a test needs with struct update syntax.
pub(crate) fn lane_row(lane_ref: &str, thread_id: &str) -> LaneRow {
    LaneRow {
        lane_ref: lane_ref.to_owned(),
        thread_id: thread_id.to_owned(),
        title: None,
        handle: None,
        ownership: Ownership::Owned,
        cwd: None,
        model: None,
        status: LaneStatus::Idle,
        archived: false,
        latest_turn: None,
        retry: None,
        error_cause: None,
        goal: None,
        token_usage: None,
        worktree: None,
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}
