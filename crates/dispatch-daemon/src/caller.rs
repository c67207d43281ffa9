//! The caller's own lane: what `self` means in `subscribe --to self`, `inbox list --lane self`
//! and the like. The calling process (`dispatch`, `dispatch mcp`) fills the input's `caller`
//! field from `CODEX_THREAD_ID`, which Codex sets for the commands and MCP servers it starts
//! (the contract's `client_defaults`, `env:CODEX_THREAD_ID`); the daemon finds the lane of that
//! thread. A caller outside any Codex thread, or in a thread that is not a lane, gets
//! `unmanaged_caller` with a hint.

use dispatch_contract::types::{CallerThread, Selector};
use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use dispatch_registry::LaneRow;
use serde_json::json;

use crate::service::Service;

/// The selector that names the caller's own lane.
pub const SELF: &str = "self";

impl Service {
    /// The lane `selector` names, `self` being the caller's own lane. `unnamed` is the hint for
    /// a caller with no thread: how to name the lane instead.
    pub async fn resolve_or_self(
        &self,
        selector: &Selector,
        caller: Option<&CallerThread>,
        unnamed: impl FnOnce() -> Hint,
    ) -> Result<LaneRow, DispatchError> {
        if selector.as_str() == SELF {
            self.caller_lane(caller, unnamed).await
        } else {
            self.resolve(selector).await
        }
    }

    /// The lane of the calling Codex thread.
    pub async fn caller_lane(
        &self,
        caller: Option<&CallerThread>,
        unnamed: impl FnOnce() -> Hint,
    ) -> Result<LaneRow, DispatchError> {
        let Some(thread_id) = caller.map(|c| c.as_str()) else {
            return Err(DispatchError::new(
                ErrorCode::UnmanagedCaller,
                "`self` is the caller's own lane, and the caller runs in no Codex thread \
                 (CODEX_THREAD_ID is not set)",
            )
            .with_hint(unnamed()));
        };
        match self.registry().lane_by_thread(thread_id).await? {
            Some(lane) => Ok(lane),
            None => Err(DispatchError::new(
                ErrorCode::UnmanagedCaller,
                format!(
                    "`self` is the caller's own lane, and the calling thread {thread_id} is not \
                     a dispatch lane"
                ),
            )
            .with_hint(
                Hint::new(
                    "name the lane instead of `self`, or adopt the calling thread as a lane \
                     first ({0}; attached lanes take inbox delivery only)",
                )
                .run(&operations::ATTACH, json!({ "thread_id": thread_id })),
            )
            .with_details(json!({ "thread_id": thread_id }))),
        }
    }
}
