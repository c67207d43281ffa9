//! [`Service`]: the daemon's implementation of the contract's [`Dispatch`] trait.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Instant;

use dispatch_contract::types::{
    ActionEntry, ActionEntryOutcome, DaemonLogInput, DaemonLogOutput, DaemonStatusInput,
    DaemonStatusOutput, DaemonStatusOutputAppServer, DaemonStatusOutputAppServerState,
    DaemonStatusOutputLanes, ModelsInput, ModelsOutput, Timestamp,
};
use dispatch_contract::{Dispatch, DispatchError};
use dispatch_registry::{Action, Outcome, Registry};

use crate::models;
use crate::supervisor::{State, Supervisor};

/// The state behind every daemon operation.
pub struct Service {
    registry: Registry,
    app_server: Supervisor,
    socket: PathBuf,
    started: Instant,
}

impl Service {
    /// A service over an open registry and a supervised App Server, serving on `socket`.
    pub fn new(registry: Registry, app_server: Supervisor, socket: PathBuf) -> Service {
        Service {
            registry,
            app_server,
            socket,
            started: Instant::now(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Gives the registry back, to close it at shutdown.
    pub fn into_registry(self) -> Registry {
        self.registry
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn entry(action: Action) -> ActionEntry {
    let at = jiff::Timestamp::from_millisecond(action.at_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| action.at_ms.to_string());
    ActionEntry {
        id: action.id,
        at: Timestamp(at),
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

fn app_server_status(supervisor: &Supervisor) -> DaemonStatusOutputAppServer {
    let status = supervisor.status();
    DaemonStatusOutputAppServer {
        state: match status.state {
            State::Ready => DaemonStatusOutputAppServerState::Ready,
            State::Restarting => DaemonStatusOutputAppServerState::Restarting,
            State::Stopped => DaemonStatusOutputAppServerState::Stopped,
        },
        pid: status.pid.map(i64::from),
        version: status.version,
        restarts: status.restarts,
        last_error: status.last_error,
    }
}

impl Dispatch for Service {
    async fn models(&self, input: ModelsInput) -> Result<ModelsOutput, DispatchError> {
        if input.no_refresh {
            return models::cached(&self.registry).await;
        }
        models::refresh(&self.app_server.server()?, &self.registry).await
    }

    async fn daemon_log(&self, input: DaemonLogInput) -> Result<DaemonLogOutput, DispatchError> {
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let actions = self.registry.actions(limit).await?;
        Ok(DaemonLogOutput {
            entries: actions.into_iter().map(entry).collect(),
        })
    }

    async fn daemon_status(
        &self,
        _input: DaemonStatusInput,
    ) -> Result<DaemonStatusOutput, DispatchError> {
        let lanes = self.registry.lane_counts().await?;
        let schema_version = self.registry.schema_version().await?;
        Ok(DaemonStatusOutput {
            pid: NonZeroU64::new(u64::from(std::process::id())).unwrap_or(NonZeroU64::MIN),
            uptime_s: self.started.elapsed().as_secs(),
            socket: self.socket.display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            app_server: app_server_status(&self.app_server),
            lanes: DaemonStatusOutputLanes {
                total: count(lanes.total),
                idle: count(lanes.idle),
                busy: count(lanes.busy),
                waiting_approval: count(lanes.waiting_approval),
                error: count(lanes.error),
                archived: count(lanes.archived),
            },
        })
    }
}
