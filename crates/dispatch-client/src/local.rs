//! [`LocalOps`]: the client-side operations, run in the calling process.

use std::time::{Duration, Instant};

use dispatch_contract::types::{
    AssetsInput, AssetsOutput, DoctorInput, DoctorOutput, DownInput, DownOutput, DownOutputStatus,
    RegistryMigrateInput, RegistryMigrateOutput, RegistryMigrateOutputStatus, SchemaInput,
    SchemaOutput, UpInput, UpOutput, UpOutputStatus,
};
use dispatch_contract::{
    ClientOps, DispatchError, ErrorCode, OPERATIONS, find_operation, operations,
};
use dispatch_home::{
    DaemonProbe, Paths, probe, remove_stale_pidfile, remove_stale_socket, signal_kill,
    signal_terminate, wait_released,
};
use dispatch_registry::{MigrationStatus, NewAction, Outcome, Registry};
use dispatch_rpc::DaemonClient;
use serde_json::{Map, Value, json};

use crate::assets;
use crate::daemon_process::{self, DaemonLaunch};
use crate::doctor;

/// How long `down` waits for a graceful exit before it kills the daemon.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `up` waits for a running daemon (one another `up` is starting) to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between two attempts to reach a daemon that is starting.
const ANSWER_POLL_MAX: Duration = Duration::from_millis(100);

/// The client-side operations over one layout.
pub struct LocalOps {
    paths: Paths,
    launch: DaemonLaunch,
}

impl LocalOps {
    /// Operations on `paths`; `up` starts the daemon as `launch` says.
    pub fn new(paths: Paths, launch: DaemonLaunch) -> LocalOps {
        LocalOps { paths, launch }
    }

    /// The layout.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    fn probe(&self) -> Result<DaemonProbe, DispatchError> {
        Ok(probe(&self.paths.pidfile)?)
    }

    /// Removes a dead daemon's socket and pidfile; returns what it removed. Only a socket and
    /// a pidfile (empty, or holding a pid) are removed: anything else at those paths is left.
    fn clean_stale(&self) -> Vec<String> {
        let mut cleaned = Vec::new();
        if remove_stale_socket(&self.paths.socket).unwrap_or(false) {
            cleaned.push(self.paths.socket.display().to_string());
        }
        if remove_stale_pidfile(&self.paths.pidfile).unwrap_or(false) {
            cleaned.push(self.paths.pidfile.display().to_string());
        }
        cleaned
    }
}

fn schema_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn pid_of(probe: &DaemonProbe) -> Option<u32> {
    match probe {
        DaemonProbe::Running { pid } | DaemonProbe::Stale { pid } => *pid,
        DaemonProbe::Absent => None,
    }
}

impl ClientOps for LocalOps {
    async fn assets(&self, input: AssetsInput) -> Result<AssetsOutput, DispatchError> {
        let out = input.out.as_ref().map(|out| out.to_string());
        assets::run(out.as_deref(), input.force)
    }

    async fn doctor(&self, input: DoctorInput) -> Result<DoctorOutput, DispatchError> {
        Ok(doctor::run(&self.paths, input.no_app_server).await)
    }

    async fn down(&self, _input: DownInput) -> Result<DownOutput, DispatchError> {
        let probe = self.probe()?;
        let DaemonProbe::Running { pid } = probe else {
            let socket_left = self.paths.socket.exists();
            let cleaned = if matches!(probe, DaemonProbe::Stale { .. }) || socket_left {
                self.clean_stale()
            } else {
                Vec::new()
            };
            return Ok(DownOutput {
                status: DownOutputStatus::NotRunning,
                pid: pid_of(&probe).map(i64::from),
                cleaned,
            });
        };
        let pid = pid.ok_or_else(|| {
            DispatchError::internal(format!(
                "a daemon holds {} but its pid is unreadable",
                self.paths.pidfile.display()
            ))
            .with_hint("stop it by hand (`fuser` or `lsof` on the pidfile names it)")
        })?;
        let signal_failed = |err: std::io::Error| {
            DispatchError::internal(format!("cannot signal dispatchd (pid {pid}): {err}"))
        };
        signal_terminate(pid).map_err(signal_failed)?;
        let status = if wait_released(&self.paths.pidfile, STOP_TIMEOUT).await {
            DownOutputStatus::Stopped
        } else {
            signal_kill(pid).map_err(signal_failed)?;
            if !wait_released(&self.paths.pidfile, STOP_TIMEOUT).await {
                return Err(DispatchError::internal(format!(
                    "dispatchd (pid {pid}) survived SIGKILL for {} s",
                    STOP_TIMEOUT.as_secs()
                )));
            }
            DownOutputStatus::Killed
        };
        let cleaned = self.clean_stale();
        Ok(DownOutput {
            status,
            pid: Some(i64::from(pid)),
            cleaned,
        })
    }

    async fn registry_migrate(
        &self,
        input: RegistryMigrateInput,
    ) -> Result<RegistryMigrateOutput, DispatchError> {
        if let DaemonProbe::Running { pid } = self.probe()?
            && !input.allow_running
        {
            return Err(DispatchError::new(
                ErrorCode::DaemonRunning,
                format!(
                    "the daemon (pid {}) has the registry open",
                    pid.map_or("unknown".into(), |p| p.to_string())
                ),
            ));
        }
        self.paths.prepare()?;
        let report = dispatch_registry::migrate(&self.paths.db).await?;
        let status = match report.status {
            MigrationStatus::Created => RegistryMigrateOutputStatus::Created,
            MigrationStatus::Migrated => RegistryMigrateOutputStatus::Migrated,
            MigrationStatus::UpToDate => RegistryMigrateOutputStatus::UpToDate,
        };
        let output = RegistryMigrateOutput {
            status,
            from_version: report.from_version,
            to_version: report.to_version,
            backup: report.backup.map(|b| b.display().to_string()),
            path: self.paths.db.display().to_string(),
        };
        if report.status == MigrationStatus::Migrated {
            let registry = Registry::open(&self.paths.db).await?;
            let detail = format!(
                "schema {} -> {}, backup {}",
                output.from_version.unwrap_or_default(),
                output.to_version,
                output.backup.as_deref().unwrap_or("none")
            );
            registry
                .record_action(&NewAction {
                    op: "registry_migrate".into(),
                    lane: None,
                    outcome: Outcome::Ok,
                    error_code: None,
                    detail: Some(detail),
                })
                .await?;
            registry.close().await;
        }
        Ok(output)
    }

    async fn schema(&self, input: SchemaInput) -> Result<SchemaOutput, DispatchError> {
        let name: &str = &input.op;
        let op = find_operation(name).ok_or_else(|| {
            let known: Vec<&str> = OPERATIONS.iter().map(|op| op.id).collect();
            DispatchError::new(ErrorCode::NotFound, format!("no operation named `{name}`"))
                .with_hint(format!("operations: {}", known.join(", ")))
                .with_details(json!({ "operations": known }))
        })?;
        Ok(SchemaOutput {
            op: op.id.to_owned(),
            summary: op.summary.to_owned(),
            contract_hash: op.contract_hash.to_owned(),
            input: schema_object(op.input_schema),
            output: schema_object(op.output_schema),
        })
    }

    async fn up(&self, _input: UpInput) -> Result<UpOutput, DispatchError> {
        self.paths.prepare()?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            // A daemon that holds the lock may still be starting (another `up` started it):
            // report it only once it answers. If it dies first, start one here, so every
            // concurrent `up` ends with that start's own outcome.
            if let DaemonProbe::Running { pid } = self.probe()?
                && let Some(running) = self.wait_answer(pid, deadline).await?
            {
                return Ok(running);
            }
            // A dead daemon's pidfile and socket need no cleaning here: the new daemon takes
            // the pidfile's lock and, holding it, replaces the socket.
            match daemon_process::start(&self.paths, &self.launch).await {
                Ok(started) => {
                    return Ok(UpOutput {
                        status: UpOutputStatus::Started,
                        pid: started.pid,
                        socket: started.socket,
                    });
                }
                // Another `up` won the race: wait for the daemon it started.
                Err(err) if err.code == ErrorCode::DaemonRunning && Instant::now() < deadline => {}
                Err(err) => return Err(err),
            }
        }
    }
}

impl LocalOps {
    /// Waits until the daemon holding the pidfile answers `daemon status` on the socket:
    /// `Some` once it does, `None` if it dies first, and `daemon_unreachable` if it neither
    /// answers nor dies before `deadline`.
    async fn wait_answer(
        &self,
        pid: Option<u32>,
        deadline: Instant,
    ) -> Result<Option<UpOutput>, DispatchError> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.ask_status().await {
                Ok(answered) => {
                    return Ok(Some(UpOutput {
                        status: UpOutputStatus::Running,
                        pid: answered.or(pid.map(i64::from)).unwrap_or(0),
                        socket: self.paths.socket.display().to_string(),
                    }));
                }
                Err(err) if err.code != ErrorCode::DaemonUnreachable => return Err(err),
                Err(_not_yet) => {}
            }
            if !matches!(self.probe()?, DaemonProbe::Running { .. }) {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(DispatchError::new(
                    ErrorCode::DaemonUnreachable,
                    format!(
                        "dispatchd (pid {}) holds {} but did not answer on {} within {} s",
                        pid.map_or("unknown".into(), |p| p.to_string()),
                        self.paths.pidfile.display(),
                        self.paths.socket.display(),
                        ANSWER_TIMEOUT.as_secs()
                    ),
                )
                .with_hint(format!(
                    "`dispatch down` stops it (it kills a daemon that does not exit), then `dispatch up`; its log is {}",
                    self.paths.log.display()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(ANSWER_POLL_MAX);
        }
    }

    /// One `daemon status` round trip, without the contract check (a stale daemon answers
    /// too); the daemon's pid. `daemon_unreachable` while nothing answers on the socket; a
    /// daemon that answers with an error has answered.
    async fn ask_status(&self) -> Result<Option<i64>, DispatchError> {
        let client = DaemonClient::connect(&self.paths.socket).await?;
        match client
            .call_json_unchecked(&operations::DAEMON_STATUS, json!({}))
            .await
        {
            Ok(status) => Ok(status["pid"].as_i64()),
            Err(err) if err.code == ErrorCode::DaemonUnreachable => Err(err),
            Err(_answered) => Ok(None),
        }
    }
}
