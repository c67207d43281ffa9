//! `daemon status`, `daemon log` and `daemon stop-if-idle`: the daemon describing itself and
//! its action log, and stopping when it has no work in flight.

use std::num::NonZeroU64;

use dispatch_contract::types::{
    ActionEntry, ActionEntryOutcome, DaemonLogInput, DaemonLogOutput, DaemonStatusInput,
    DaemonStatusOutput, DaemonStatusOutputLanes, DaemonStopIfIdleInput, DaemonStopIfIdleOutput,
    DaemonStopIfIdleOutputStatus, OrchestrationCounts, Timestamp,
};
use dispatch_contract::{DispatchError, Handle, Logged};
use dispatch_registry::{Action, Outcome};

use crate::service::Service;

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn entry(action: Action) -> ActionEntry {
    ActionEntry {
        id: action.id,
        at: Timestamp(crate::convert::rfc3339(action.at_ms)),
        op: action.op,
        lane: action.lane,
        outcome: match action.outcome {
            Outcome::Ok => ActionEntryOutcome::Ok,
            Outcome::Error => ActionEntryOutcome::Error,
        },
        error_code: action.error_code,
        detail: action.detail,
    }
}

/// `daemon log`: the action log, newest first.
impl Handle<DaemonLogInput> for Service {
    async fn handle(&self, input: DaemonLogInput) -> Result<DaemonLogOutput, DispatchError> {
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let actions = self.registry().actions(limit).await?;
        Ok(DaemonLogOutput {
            entries: actions.into_iter().map(entry).collect(),
        })
    }
}

/// `daemon stop-if-idle`: the daemon decides in one step whether it is idle and, if so,
/// admits no more model work and shuts down (see `work_gate.rs`).
impl Handle<DaemonStopIfIdleInput> for Service {
    async fn handle(
        &self,
        _input: DaemonStopIfIdleInput,
    ) -> Result<DaemonStopIfIdleOutput, DispatchError> {
        self.stop_if_idle()?;
        Ok(DaemonStopIfIdleOutput {
            pid: NonZeroU64::new(u64::from(std::process::id())).unwrap_or(NonZeroU64::MIN),
            status: DaemonStopIfIdleOutputStatus::Stopping,
        })
    }

    fn logged(output: &DaemonStopIfIdleOutput) -> Logged {
        Logged::detail(format!("idle: stopping pid {}", output.pid))
    }
}

/// `daemon status`: pid, uptime, socket, App Server state (the pool as one, and each
/// process), lane and orchestration counts.
impl Handle<DaemonStatusInput> for Service {
    async fn handle(&self, _input: DaemonStatusInput) -> Result<DaemonStatusOutput, DispatchError> {
        let lanes = self.registry().lane_counts().await?;
        let schema_version = self.registry().schema_version().await?;
        let (queued, inbox_pending, subscriptions, triggers) =
            self.registry().orchestration_counts().await?;
        Ok(DaemonStatusOutput {
            pid: NonZeroU64::new(u64::from(std::process::id())).unwrap_or(NonZeroU64::MIN),
            uptime_s: self.uptime().as_secs(),
            socket: self.socket().display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            app_server: self.app_server_status(),
            app_servers: self.app_server_processes(),
            lanes: DaemonStatusOutputLanes {
                total: count(lanes.total),
                idle: count(lanes.idle),
                busy: count(lanes.busy),
                retrying: count(lanes.retrying),
                waiting_approval: count(lanes.waiting_approval),
                error: count(lanes.error),
                archived: count(lanes.archived),
            },
            orchestration: OrchestrationCounts {
                queued: count(queued),
                inbox_pending: count(inbox_pending),
                subscriptions: count(subscriptions),
                triggers: count(triggers),
            },
        })
    }
}
