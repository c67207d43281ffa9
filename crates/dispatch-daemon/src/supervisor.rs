//! Supervision of the pool of Codex App Server children (`[app_server] processes`, default
//! 1): start them (a failure is `app_server_unavailable`), notice a death at once, record
//! why, and restart that process with capped exponential backoff. Which lane lives on which
//! process is the service's business (`placement.rs`); the supervisor only knows processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// What `daemon status` reports of an App Server process.
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
    /// Times it was replaced by a fresh process because it had grown too big
    /// (`[app_server] recycle_above_mib`); not restarts.
    pub recycles: u64,
    /// Why it last died or failed to start.
    pub last_error: Option<String>,
}

/// One App Server process of the pool, in one of its lives: which process (`process`, an
/// index into the pool) and which start of it (`incarnation`, 1 for the first). Threads
/// loaded in one incarnation are not loaded in the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    /// The process's index in the pool.
    pub process: usize,
    /// Bumped each time that process is ready again after a restart (1 for the first).
    pub incarnation: u64,
}

/// One process of the pool.
struct Process {
    status: Mutex<Status>,
    current: Mutex<Option<AppServer>>,
    /// Bumped each time a new App Server process is ready in this slot (1 for the first).
    generation: watch::Sender<u64>,
    /// The latest incarnation that replaced a live process (a recycle), 0 if none did.
    recycled: AtomicU64,
    /// Tells the watch task that `current` was replaced while it lived (a recycle).
    replaced: tokio::sync::Notify,
}

struct Shared {
    bin: CodexBin,
    processes: Vec<Process>,
    stop: watch::Sender<bool>,
    /// Spreads the operations that need no particular process over the ready ones.
    next: AtomicUsize,
}

/// The supervisor of the pool of App Server processes (`[app_server] processes`); cheap to
/// clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

fn unavailable(message: String) -> DispatchError {
    DispatchError::new(ErrorCode::AppServerUnavailable, message)
}

async fn spawn(bin: &Path) -> Result<AppServer, String> {
    let mut options = SpawnOptions::new(bin).client_info("dispatch", env!("CARGO_PKG_VERSION"));
    // The daemon's own allocator settings (set by `dispatch up`, ADR 0021) are not passed on to
    // Codex and the commands it runs for the user.
    if std::env::var_os(dispatch_home::DAEMON_TUNABLES_MARKER).is_some() {
        options = options
            .env_remove("GLIBC_TUNABLES")
            .env_remove(dispatch_home::DAEMON_TUNABLES_MARKER);
    }
    AppServer::spawn(options)
        .await
        .map_err(|err| dispatch_contract::error_chain(&err))
}

/// Whether `server` can still be asked anything (its connection is open).
fn serving(server: &AppServer) -> bool {
    server.close_reason().is_none() && server.exit_reason().is_none()
}

impl Supervisor {
    /// Finds the Codex binary ([`CodexLookup`]: `DISPATCH_CODEX_BIN`, else `configured`, the
    /// `[codex] bin` of config.toml, else `codex` on PATH, else the installed pinned copy),
    /// starts and initializes `processes` App Servers, and starts watching them.
    pub async fn start(
        configured: Option<PathBuf>,
        processes: usize,
    ) -> Result<Supervisor, DispatchError> {
        let bin = CodexLookup::from_env(configured).resolve().map_err(|err| {
            unavailable(err.to_string()).with_hint(format!(
                "{CODEX_INSTALL_HINT}; or name a binary with DISPATCH_CODEX_BIN or `[codex] bin` in config.toml"
            ))
        })?;
        tracing::info!(bin = %bin.path.display(), source = %bin.source, processes, "starting the App Server");
        Supervisor::start_with_bin(bin, processes).await
    }

    /// Starts and initializes `processes` (at least 1) `bin app-server` children at once (the
    /// daemon's tests give a fake), and starts watching them. One that fails to start fails
    /// the whole start, and the others are stopped.
    pub async fn start_with_bin(
        bin: CodexBin,
        processes: usize,
    ) -> Result<Supervisor, DispatchError> {
        let processes = processes.max(1);
        let mut starting = tokio::task::JoinSet::new();
        for index in 0..processes {
            let path = bin.path.clone();
            starting.spawn(async move { (index, spawn(&path).await) });
        }
        let mut servers: Vec<Option<AppServer>> = vec![None; processes];
        let mut failure = None;
        while let Some(joined) = starting.join_next().await {
            match joined {
                Ok((index, Ok(server))) => {
                    if let Some(slot) = servers.get_mut(index) {
                        *slot = Some(server);
                    }
                }
                Ok((_, Err(err))) => failure = failure.or(Some(err)),
                Err(err) => failure = failure.or(Some(err.to_string())),
            }
        }
        let servers: Vec<AppServer> = servers.into_iter().flatten().collect();
        let failure = failure
            .or_else(|| (servers.len() < processes).then(|| "a start did not finish".to_owned()));
        if let Some(err) = failure {
            for server in &servers {
                let _reason = server.shutdown().await;
            }
            return Err(unavailable(format!(
                "the Codex App Server did not start: {err} (binary from {})",
                bin.source
            ))
            .with_hint(
                Hint::new(format!(
                    "check `{} app-server` by hand and {{0}}; set DISPATCH_CODEX_BIN to a working codex binary",
                    bin.command_name()
                ))
                .run(&operations::DOCTOR, json!({})),
            ));
        }
        let (stop, _) = watch::channel(false);
        let supervisor = Supervisor {
            shared: Arc::new(Shared {
                bin,
                processes: servers
                    .iter()
                    .map(|server| Process {
                        status: Mutex::new(Status {
                            state: State::Ready,
                            pid: server.pid(),
                            version: server.version().map(ToString::to_string),
                            restarts: 0,
                            recycles: 0,
                            last_error: None,
                        }),
                        current: Mutex::new(Some(server.clone())),
                        generation: watch::channel(1).0,
                        recycled: AtomicU64::new(0),
                        replaced: tokio::sync::Notify::new(),
                    })
                    .collect(),
                stop,
                next: AtomicUsize::new(0),
            }),
        };
        for (index, server) in servers.into_iter().enumerate() {
            tracing::info!(process = index, pid = ?server.pid(), version = ?server.version().map(ToString::to_string), "App Server ready");
            tokio::spawn(supervisor.clone().watch(index, server));
        }
        Ok(supervisor)
    }

    /// The Codex binary it runs and where it was found (for hints such as `<bin> login`).
    pub fn codex_bin(&self) -> &CodexBin {
        &self.shared.bin
    }

    /// How many App Server processes the pool has.
    pub fn processes(&self) -> usize {
        self.shared.processes.len()
    }

    /// Follows process `process`: the value is bumped when a new one is ready in its place.
    pub fn generations(&self, process: usize) -> watch::Receiver<u64> {
        match self.shared.processes.get(process) {
            Some(slot) => slot.generation.subscribe(),
            None => watch::channel(0).1,
        }
    }

    /// Process `process`, while it serves, and its generation, together.
    pub fn current_of(&self, process: usize) -> Option<(AppServer, Generation)> {
        let slot = self.shared.processes.get(process)?;
        let current = lock(&slot.current);
        current.clone().filter(serving).map(|server| {
            (
                server,
                Generation {
                    process,
                    incarnation: *slot.generation.borrow(),
                },
            )
        })
    }

    /// The processes that serve now, by index.
    pub fn ready(&self) -> Vec<usize> {
        (0..self.processes())
            .filter(|p| self.current_of(*p).is_some())
            .collect()
    }

    /// A serving App Server for an operation that needs no particular process (the ready
    /// ones in turn), and its generation.
    pub fn current(&self) -> Option<(AppServer, Generation)> {
        let count = self.processes();
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        (0..count).find_map(|offset| self.current_of((start + offset) % count))
    }

    /// What `daemon status` shows of the pool as one App Server: ready when every process
    /// is, the first process's pid and version, every restart, the latest error.
    pub fn status(&self) -> Status {
        let statuses = self.statuses();
        let mut all = statuses.first().cloned().unwrap_or(Status {
            state: State::Stopped,
            pid: None,
            version: None,
            restarts: 0,
            recycles: 0,
            last_error: None,
        });
        for other in statuses.iter().skip(1) {
            if other.state != State::Ready && all.state == State::Ready {
                all.state = other.state;
            }
            all.restarts += other.restarts;
            all.recycles += other.recycles;
            if other.last_error.is_some() {
                all.last_error.clone_from(&other.last_error);
            }
        }
        all
    }

    /// What `daemon status` shows of each process, by index.
    pub fn statuses(&self) -> Vec<Status> {
        self.shared
            .processes
            .iter()
            .map(|slot| lock(&slot.status).clone())
            .collect()
    }

    /// The error of an operation that finds no App Server serving.
    pub fn unavailable(&self) -> DispatchError {
        let last_error = self.statuses().into_iter().find_map(|s| s.last_error);
        unavailable(format!(
            "the Codex App Server is restarting{}",
            last_error.map(|e| format!(" (it {e})")).unwrap_or_default()
        ))
        .with_hint(
            Hint::new("retry in a moment; {0} shows its state")
                .run(&operations::DAEMON_STATUS, json!({})),
        )
    }

    /// A serving App Server, or `app_server_unavailable` while none serves.
    pub fn server(&self) -> Result<AppServer, DispatchError> {
        self.current()
            .map(|(server, _)| server)
            .ok_or_else(|| self.unavailable())
    }

    /// Whether the daemon is stopping the pool.
    pub fn stopping(&self) -> bool {
        *self.shared.stop.borrow()
    }

    /// Stops supervising and shuts every App Server down, all at once.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let mut stopping = tokio::task::JoinSet::new();
        for (index, slot) in self.shared.processes.iter().enumerate() {
            let current = lock(&slot.current).take();
            if let Some(server) = current {
                stopping.spawn(async move {
                    let reason = server.shutdown().await;
                    tracing::info!(process = index, %reason, "App Server stopped");
                });
            }
            let mut status = lock(&slot.status);
            status.state = State::Stopped;
            status.pid = None;
        }
        while stopping.join_next().await.is_some() {}
    }

    /// Starts a fresh App Server, to take the place of a live one ([`Supervisor::replace`]).
    pub async fn spawn_fresh(&self) -> Result<AppServer, String> {
        spawn(&self.shared.bin.path).await
    }

    /// Puts `fresh` in the place of process `index` if `old` is still the one serving there
    /// (a recycle, ADR 0022): a new incarnation, as after a restart (the generation is bumped,
    /// so its lanes resume their threads on their next operation), counted as a recycle, not
    /// a restart. Returns `fresh` back when `old` is no longer there (it died meanwhile, or
    /// the daemon stops); the caller shuts it down. The caller shuts `old` down after.
    pub fn replace(
        &self,
        index: usize,
        old: &AppServer,
        fresh: AppServer,
    ) -> Result<(), AppServer> {
        let Some(slot) = self.shared.processes.get(index) else {
            return Err(fresh);
        };
        if self.stopping() {
            return Err(fresh);
        }
        {
            let mut current = lock(&slot.current);
            let same = current
                .as_ref()
                .is_some_and(|now| serving(now) && now.pid() == old.pid());
            if !same {
                return Err(fresh);
            }
            *current = Some(fresh.clone());
            slot.generation.send_modify(|g| {
                *g += 1;
                slot.recycled.store(*g, Ordering::SeqCst);
            });
        }
        {
            let mut status = lock(&slot.status);
            status.state = State::Ready;
            status.pid = fresh.pid();
            status.version = fresh.version().map(ToString::to_string);
            status.recycles += 1;
        }
        slot.replaced.notify_one();
        Ok(())
    }

    /// Whether incarnation `incarnation` of process `index` came from a recycle (it replaced
    /// a live, quiescent process: nothing of the previous one needs reconciling or resuming).
    pub fn is_recycled(&self, index: usize, incarnation: u64) -> bool {
        self.shared.processes.get(index).is_some_and(|slot| {
            incarnation != 0 && slot.recycled.load(Ordering::SeqCst) == incarnation
        })
    }

    /// Waits for process `index` to die, then restarts it, for as long as the daemon runs.
    /// A process replaced by a recycle is not a death: the task follows its successor.
    async fn watch(self, index: usize, mut server: AppServer) {
        let Some(slot) = self.shared.processes.get(index) else {
            return;
        };
        let mut stop = self.shared.stop.subscribe();
        let mut started = Instant::now();
        loop {
            let reason = tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => return,
                () = slot.replaced.notified() => None,
                reason = server.exited() => Some(reason),
            };
            if *stop.borrow() {
                return;
            }
            // Replaced while it lived (the old one's exit is expected): follow the new one.
            let successor = lock(&slot.current)
                .clone()
                .filter(|now| now.pid() != server.pid());
            if let Some(successor) = successor {
                server = successor;
                started = Instant::now();
                continue;
            }
            let Some(reason) = reason else {
                continue;
            };
            tracing::warn!(process = index, %reason, "the App Server exited; restarting it");
            {
                *lock(&slot.current) = None;
                let mut status = lock(&slot.status);
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
                        tracing::warn!(process = index, %err, "restarting the App Server failed");
                        lock(&slot.status).last_error = Some(format!("failed to restart: {err}"));
                        delay = (delay * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    }
                }
            };
            tracing::info!(process = index, pid = ?server.pid(), "App Server restarted");
            {
                let mut current = lock(&slot.current);
                *current = Some(server.clone());
                slot.generation.send_modify(|g| *g += 1);
            }
            started = Instant::now();
            let mut status = lock(&slot.status);
            status.state = State::Ready;
            status.pid = server.pid();
            status.version = server.version().map(ToString::to_string);
            status.restarts += 1;
        }
    }
}
