//! Supervision of the Codex App Server child: start it (a failure is `app_server_unavailable`),
//! notice its death at once, record why, and restart it with capped exponential backoff.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex_app_server::{AppServer, CODEX_INSTALL_HINT, CodexBin, CodexLookup, SpawnOptions};
use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use serde_json::json;

use crate::convert::lock;
use tokio::sync::watch;

/// First delay before a restart; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest delay between restart attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An App Server that lived this long resets the backoff when it dies.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Where the App Server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initialized and serving.
    Ready,
    /// It died; a restart is scheduled or running.
    Restarting,
    /// Stopped with the daemon.
    Stopped,
}

/// What `daemon status` reports of the App Server.
#[derive(Debug, Clone)]
pub struct Status {
    /// Where it is.
    pub state: State,
    /// Its process id, while it runs.
    pub pid: Option<u32>,
    /// The Codex version it reported.
    pub version: Option<String>,
    /// Successful restarts since the daemon started.
    pub restarts: u64,
    /// Why it last died or failed to start.
    pub last_error: Option<String>,
}

struct Shared {
    bin: CodexBin,
    status: Mutex<Status>,
    current: Mutex<Option<AppServer>>,
    stop: watch::Sender<bool>,
    /// Bumped each time a new App Server process is ready (1 for the first).
    generation: watch::Sender<u64>,
}

/// The supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

fn unavailable(message: String) -> DispatchError {
    DispatchError::new(ErrorCode::AppServerUnavailable, message)
}

async fn spawn(bin: &Path) -> Result<AppServer, String> {
    let options = SpawnOptions::new(bin).client_info("dispatch", env!("CARGO_PKG_VERSION"));
    AppServer::spawn(options)
        .await
        .map_err(|err| dispatch_contract::error_chain(&err))
}

impl Supervisor {
    /// Finds the Codex binary ([`CodexLookup`]: `DISPATCH_CODEX_BIN`, else `configured`, the
    /// `[codex] bin` of config.toml, else `codex` on PATH, else the installed pinned copy),
    /// starts and initializes the App Server, and starts watching it.
    pub async fn start(configured: Option<PathBuf>) -> Result<Supervisor, DispatchError> {
        let bin = CodexLookup::from_env(configured).resolve().map_err(|err| {
            unavailable(err.to_string()).with_hint(format!(
                "{CODEX_INSTALL_HINT}; or name a binary with DISPATCH_CODEX_BIN or `[codex] bin` in config.toml"
            ))
        })?;
        tracing::info!(bin = %bin.path.display(), source = %bin.source, "starting the App Server");
        Supervisor::start_with_bin(bin).await
    }

    /// Starts and initializes `bin app-server` (the daemon's tests give a fake), and starts
    /// watching it.
    pub async fn start_with_bin(bin: CodexBin) -> Result<Supervisor, DispatchError> {
        let server = spawn(&bin.path).await.map_err(|err| {
            unavailable(format!(
                "the Codex App Server did not start: {err} (binary from {})",
                bin.source
            ))
            .with_hint(
                Hint::new(format!(
                    "check `{} app-server` by hand and {{0}}; set DISPATCH_CODEX_BIN to a working codex binary",
                    bin.command_name()
                ))
                .run(&operations::DOCTOR, json!({})),
            )
        })?;
        tracing::info!(pid = ?server.pid(), version = ?server.version().map(ToString::to_string), "App Server ready");
        let status = Status {
            state: State::Ready,
            pid: server.pid(),
            version: server.version().map(ToString::to_string),
            restarts: 0,
            last_error: None,
        };
        let (stop, _) = watch::channel(false);
        let (generation, _) = watch::channel(1);
        let supervisor = Supervisor {
            shared: Arc::new(Shared {
                bin,
                status: Mutex::new(status),
                current: Mutex::new(Some(server.clone())),
                stop,
                generation,
            }),
        };
        tokio::spawn(supervisor.clone().watch(server));
        Ok(supervisor)
    }

    /// The Codex binary it runs and where it was found (for hints such as `<bin> login`).
    pub fn codex_bin(&self) -> &CodexBin {
        &self.shared.bin
    }

    /// Follows the App Server processes: the value is bumped when a new one is ready.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The running App Server and its generation, together.
    pub fn current(&self) -> Option<(AppServer, u64)> {
        let current = lock(&self.shared.current);
        current
            .clone()
            .map(|server| (server, *self.shared.generation.borrow()))
    }

    /// What `daemon status` shows.
    pub fn status(&self) -> Status {
        lock(&self.shared.status).clone()
    }

    /// The running App Server, or `app_server_unavailable` while it restarts.
    pub fn server(&self) -> Result<AppServer, DispatchError> {
        lock(&self.shared.current).clone().ok_or_else(|| {
            let status = self.status();
            unavailable(format!(
                "the Codex App Server is restarting{}",
                status
                    .last_error
                    .map(|e| format!(" (it {e})"))
                    .unwrap_or_default()
            ))
            .with_hint(
                Hint::new("retry in a moment; {0} shows its state")
                    .run(&operations::DAEMON_STATUS, json!({})),
            )
        })
    }

    /// Stops supervising and shuts the App Server down.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let current = lock(&self.shared.current).take();
        if let Some(server) = current {
            let reason = server.shutdown().await;
            tracing::info!(%reason, "App Server stopped");
        }
        let mut status = lock(&self.shared.status);
        status.state = State::Stopped;
        status.pid = None;
    }

    /// Waits for `server` to die, then restarts it, for as long as the daemon runs.
    async fn watch(self, mut server: AppServer) {
        let mut stop = self.shared.stop.subscribe();
        loop {
            let started = Instant::now();
            let reason = tokio::select! {
                reason = server.exited() => reason,
                _ = stop.wait_for(|stopping| *stopping) => return,
            };
            if *stop.borrow() {
                return;
            }
            tracing::warn!(%reason, "the App Server exited; restarting it");
            {
                *lock(&self.shared.current) = None;
                let mut status = lock(&self.shared.status);
                status.state = State::Restarting;
                status.pid = None;
                status.last_error = Some(format!("exited ({reason})"));
            }
            let mut delay = if started.elapsed() >= HEALTHY_AFTER {
                Duration::ZERO
            } else {
                FIRST_BACKOFF
            };
            server = loop {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                match spawn(&self.shared.bin.path).await {
                    Ok(server) => break server,
                    Err(err) => {
                        tracing::warn!(%err, "restarting the App Server failed");
                        lock(&self.shared.status).last_error =
                            Some(format!("failed to restart: {err}"));
                        delay = (delay * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    }
                }
            };
            tracing::info!(pid = ?server.pid(), "App Server restarted");
            {
                let mut current = lock(&self.shared.current);
                *current = Some(server.clone());
                self.shared.generation.send_modify(|g| *g += 1);
            }
            let mut status = lock(&self.shared.status);
            status.state = State::Ready;
            status.pid = server.pid();
            status.version = server.version().map(ToString::to_string);
            status.restarts += 1;
        }
    }
}
