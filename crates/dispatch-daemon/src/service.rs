//! [`Service`]: the state behind every daemon operation, and its [`Dispatch`] hooks (the
//! attached-lane lock and the action log). Each operation is implemented once, as
//! `impl Handle<<Op>Input> for Service`, in the module that owns it (`lanes.rs`, `threads.rs`,
//! ...; see the crate's documentation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use dispatch_contract::types::{
    AppServerProcess, AppServerProcessState, DaemonStatusOutputAppServer,
    DaemonStatusOutputAppServerState,
};
use dispatch_contract::{
    Dispatch, DispatchError, ErrorCode, Intent, LaneArg, Operation, WriteRecord,
};
use dispatch_home::{ApprovalPolicy, Config, Policy};
use dispatch_registry::{NewAction, Outcome, Registry};
use tokio::sync::watch;

use crate::convert::{lock, now_ms, write_lock};
use crate::idle_flag::IdleFlag;
use crate::lane_texts::LaneTexts;
use crate::supervisor::{Generation, State, Supervisor};
use crate::view::View;
use crate::work_gate::{Busy, Stopping, WorkGate, WorkGuard};

/// Threads loaded in one App Server process of the pool, with when each was last used.
#[derive(Default)]
struct Loaded {
    generation: u64,
    /// thread id → the `clock` of its last use.
    threads: HashMap<String, u64>,
    clock: u64,
    /// Threads loaded in this incarnation so far (unloading does not free Codex's memory;
    /// a process that loaded none is not worth recycling).
    loads: u64,
}

impl Loaded {
    /// Notes that incarnation `incarnation` of this process loaded `thread_id`. A newer
    /// incarnation starts afresh; an older one (a process already replaced, whose answer came
    /// late) is ignored, so that it never hides what the current one has loaded.
    fn loaded_by(&mut self, incarnation: u64, thread_id: &str) {
        if incarnation < self.generation {
            return;
        }
        self.enter(incarnation);
        self.loads += 1;
        self.touch(thread_id);
    }

    /// Starts following incarnation `incarnation`, if it is not the one followed: nothing is
    /// loaded in it yet.
    fn enter(&mut self, incarnation: u64) {
        if self.generation != incarnation {
            self.generation = incarnation;
            self.threads.clear();
            self.loads = 0;
        }
    }

    /// Marks `thread_id` used now.
    fn touch(&mut self, thread_id: &str) {
        self.clock += 1;
        match self.threads.get_mut(thread_id) {
            Some(used) => *used = self.clock,
            None => {
                self.threads.insert(thread_id.to_owned(), self.clock);
            }
        }
    }
}

/// A thread being made in a process of the pool ([`Service::placing`]); it counts towards
/// that process's load until dropped.
pub(crate) struct Placing<'a> {
    counts: &'a Mutex<Vec<usize>>,
    process: usize,
}

impl Drop for Placing<'_> {
    fn drop(&mut self) {
        if let Some(count) = lock(self.counts).get_mut(self.process) {
            *count = count.saturating_sub(1);
        }
    }
}

/// The state behind every daemon operation.
pub struct Service {
    registry: Registry,
    app_server: Supervisor,
    socket: PathBuf,
    started: Instant,
    /// Per App Server process of the pool, by index.
    loaded: Mutex<Vec<Loaded>>,
    /// thread id → the process of the pool its lane lives on (see `placement.rs`).
    homes: Mutex<HashMap<String, usize>>,
    /// Per process: threads being made in it now (`new` chose it, the thread is not loaded
    /// yet), so that lanes made at the same time spread out.
    placing: Mutex<Vec<usize>>,
    /// `[app_server] max_loaded_idle`, shared out between the processes (rounded up).
    max_loaded_idle: usize,
    /// `[app_server] recycle_above_mib` in bytes (0: never recycle; see `recycle.rs`).
    pub(crate) recycle_above: u64,
    /// Per process: when its size was last checked for a recycle.
    pub(crate) recycle_checked: Mutex<Vec<Option<Instant>>>,
    /// Per process: the incarnation a recycle is putting in place while the one it replaces
    /// is still alive (0: none), so that no thread is resumed in the fresh process while the
    /// old one still holds it (Codex refuses a second writer; see `recycle.rs`).
    pub(crate) replacing: Vec<watch::Sender<u64>>,
    stored: watch::Sender<u64>,
    idle: IdleFlag,
    /// Model work in flight that the idle flag cannot see yet, and the conditional stop.
    work: WorkGate,
    policy: Policy,
    stall_after: Duration,
    /// `list`'s lanes as last shown, with their text (see `lane_texts.rs`).
    lane_texts: LaneTexts,
    /// One lock per lane: turn-starting writes to a lane run one at a time.
    lane_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Lanes whose queue may move, for the orchestration task (see [`Service::wake_queue`]).
    queue_wakeups: tokio::sync::mpsc::UnboundedSender<String>,
    /// The receiving end, until orchestration takes it.
    queue_wakeups_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// Changes whenever triggers or their unfinished fires changed (the scheduler reloads).
    triggers: watch::Sender<u64>,
    /// How many lanes were removed (`delete`): the event pump forgets its lane cache.
    lanes_removed: AtomicU64,
    /// The account's latest rate limits from `account/rateLimits/updated`, and when.
    rate_limits: Mutex<Option<(i64, codex_app_server::protocol::RateLimitSnapshot)>>,
    /// Where lanes' git worktrees go by default (`$DISPATCH_HOME/worktrees`).
    worktrees: PathBuf,
    /// The global `config.toml`, whose `[defaults]` and `[presets]` `new` reads on every call.
    global_config: Option<PathBuf>,
}

impl Service {
    /// A service over an open registry and a supervised App Server, serving on `socket`, with
    /// the settings of `config`.
    pub fn new(
        registry: Registry,
        app_server: Supervisor,
        socket: PathBuf,
        config: &Config,
    ) -> Service {
        let (queue_wakeups, queue_wakeups_rx) = tokio::sync::mpsc::unbounded_channel();
        let worktrees = socket
            .parent()
            .map(|dir| dir.join("worktrees"))
            .unwrap_or_else(|| PathBuf::from("worktrees"));
        Service {
            worktrees,
            queue_wakeups,
            queue_wakeups_rx: Mutex::new(Some(queue_wakeups_rx)),
            registry,
            socket,
            started: Instant::now(),
            loaded: Mutex::new(
                (0..app_server.processes())
                    .map(|_| Loaded::default())
                    .collect(),
            ),
            homes: Mutex::new(HashMap::new()),
            placing: Mutex::new(vec![0; app_server.processes()]),
            max_loaded_idle: config
                .app_server
                .max_loaded_idle
                .div_ceil(app_server.processes().max(1)),
            recycle_above: config
                .app_server
                .recycle_above_mib
                .saturating_mul(1024 * 1024),
            recycle_checked: Mutex::new(vec![None; app_server.processes()]),
            replacing: (0..app_server.processes())
                .map(|_| watch::Sender::new(0))
                .collect(),
            stored: watch::channel(0).0,
            idle: IdleFlag::new(),
            work: WorkGate::new(),
            policy: config.policy.clone(),
            stall_after: Duration::from_secs(config.lanes.stall_after_s),
            lane_texts: LaneTexts::default(),
            lane_locks: Mutex::new(HashMap::new()),
            triggers: watch::channel(0).0,
            lanes_removed: AtomicU64::new(0),
            rate_limits: Mutex::new(None),
            global_config: None,
            app_server,
        }
    }

    /// The service with lanes' worktrees going under `root` by default (the daemon passes
    /// `$DISPATCH_HOME/worktrees`; without it they go next to the socket).
    pub fn with_worktrees_root(mut self, root: PathBuf) -> Service {
        self.worktrees = root;
        self
    }

    /// Where lanes' git worktrees go by default.
    pub fn worktrees_root(&self) -> &std::path::Path {
        &self.worktrees
    }

    /// The same service reading launch defaults and presets from the global `config.toml`
    /// at `path` (read on every `new` and `config show`, so edits apply without a restart).
    pub fn with_global_config(mut self, path: PathBuf) -> Service {
        self.global_config = Some(path);
        self
    }

    /// The global `config.toml`, if this service reads one.
    pub(crate) fn global_config(&self) -> Option<&std::path::Path> {
        self.global_config.as_deref()
    }

    /// Notes that a lane was removed from the registry.
    pub fn lane_removed(&self) {
        self.lanes_removed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many lanes were removed so far (a cache of lanes is stale when it changed).
    pub fn lanes_removed(&self) -> u64 {
        self.lanes_removed.load(Ordering::Relaxed)
    }

    /// Keeps the account's rate limits Codex reported at `at_ms`.
    pub fn note_rate_limits(
        &self,
        at_ms: i64,
        limits: codex_app_server::protocol::RateLimitSnapshot,
    ) {
        *lock(&self.rate_limits) = Some((at_ms, limits));
    }

    /// The latest rate limits Codex reported, and when.
    pub fn rate_limits(&self) -> Option<(i64, codex_app_server::protocol::RateLimitSnapshot)> {
        lock(&self.rate_limits).clone()
    }

    /// Asks orchestration to deliver the lane's next queued message if the lane is idle.
    pub fn wake_queue(&self, lane_ref: &str) {
        // Orchestration ends only with the daemon; a wakeup then has nobody to wake.
        let _daemon_stopping = self.queue_wakeups.send(lane_ref.to_owned());
    }

    /// The wakeups of [`Service::wake_queue`]; orchestration takes them once.
    pub fn take_queue_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        lock(&self.queue_wakeups_rx).take()
    }

    /// Tells the trigger scheduler that triggers, or their unfinished fires, changed.
    pub fn triggers_changed(&self) {
        self.triggers.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever triggers changed.
    pub fn trigger_notifications(&self) -> watch::Receiver<u64> {
        self.triggers.subscribe()
    }

    /// How long a running turn may stay silent before it counts as stalled.
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// `list`'s cache of lanes as last shown.
    pub fn lane_texts(&self) -> &LaneTexts {
        &self.lane_texts
    }

    /// What showing a lane depends on, now.
    pub fn view(&self) -> View {
        View::new(
            self.policy.allow_attached_writes,
            i64::try_from(self.stall_after.as_millis()).unwrap_or(i64::MAX),
            now_ms(),
        )
    }

    /// Takes the lane's write lock: turn-starting writes (and the busy check before them) run
    /// one at a time per lane, so of N concurrent plain sends to an idle lane exactly one
    /// starts a turn.
    pub async fn lane_lock(&self, lane_ref: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            lock(&self.lane_locks)
                .entry(lane_ref.to_owned())
                .or_default(),
        );
        lock.lock_owned().await
    }

    /// The lane's write lock if nobody holds it.
    pub(crate) fn try_lane_lock(&self, lane_ref: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = Arc::clone(
            lock(&self.lane_locks)
                .entry(lane_ref.to_owned())
                .or_default(),
        );
        lock.try_lock_owned().ok()
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The App Server supervisor.
    pub fn app_server(&self) -> &Supervisor {
        &self.app_server
    }

    /// Whether `[policy] allow_attached_writes` is set.
    pub fn allow_attached_writes(&self) -> bool {
        self.policy.allow_attached_writes
    }

    /// `[policy] approvals`.
    pub fn approval_policy(&self) -> ApprovalPolicy {
        self.policy.approvals
    }

    /// Gives the registry back, to close it at shutdown.
    pub fn into_registry(self) -> Registry {
        self.registry
    }

    /// Whether `thread_id` is loaded in App Server `generation`; if it is, it counts as used
    /// now (least recently used idle threads are unloaded first).
    pub fn is_loaded(&self, generation: Generation, thread_id: &str) -> bool {
        let mut processes = lock(&self.loaded);
        let Some(loaded) = processes.get_mut(generation.process) else {
            return false;
        };
        let known =
            loaded.generation == generation.incarnation && loaded.threads.contains_key(thread_id);
        if known {
            loaded.touch(thread_id);
        }
        known
    }

    /// Notes that `thread_id` is loaded in App Server `generation`, used now: its lane lives
    /// on that process from now on, and no longer on another.
    pub fn mark_loaded(&self, generation: Generation, thread_id: &str) {
        {
            let mut processes = lock(&self.loaded);
            for (process, loaded) in processes.iter_mut().enumerate() {
                if process == generation.process {
                    loaded.loaded_by(generation.incarnation, thread_id);
                } else {
                    loaded.threads.remove(thread_id);
                }
            }
        }
        lock(&self.homes).insert(thread_id.to_owned(), generation.process);
    }

    /// The threads loaded in the App Server processes, process by process, each least
    /// recently used first.
    pub fn loaded_threads(&self) -> Vec<String> {
        let processes = lock(&self.loaded);
        let mut all = Vec::new();
        for loaded in processes.iter() {
            let mut threads: Vec<(&String, &u64)> = loaded.threads.iter().collect();
            threads.sort_by_key(|(_, used)| **used);
            all.extend(threads.into_iter().map(|(t, _)| t.clone()));
        }
        all
    }

    /// Notes that `thread_id` is no longer loaded in App Server `generation`.
    fn forget_loaded(&self, generation: Generation, thread_id: &str) {
        let mut processes = lock(&self.loaded);
        if let Some(loaded) = processes.get_mut(generation.process)
            && loaded.generation == generation.incarnation
        {
            loaded.threads.remove(thread_id);
        }
    }

    /// Forgets `thread_id` (its thread was deleted): no process has it, no lane lives on it.
    pub(crate) fn forget_thread(&self, thread_id: &str) {
        for loaded in lock(&self.loaded).iter_mut() {
            loaded.threads.remove(thread_id);
        }
        lock(&self.homes).remove(thread_id);
    }

    /// How many threads process `process` has loaded in incarnation `incarnation` since it
    /// started (0 for another incarnation).
    pub(crate) fn loads_since_start(&self, generation: Generation) -> u64 {
        lock(&self.loaded)
            .get(generation.process)
            .filter(|loaded| loaded.generation == generation.incarnation)
            .map_or(0, |loaded| loaded.loads)
    }

    /// Notes that `generation` replaced its process's previous incarnation (a recycle): the
    /// threads that one had loaded are not loaded any more.
    pub(crate) fn fresh_incarnation(&self, generation: Generation) {
        if let Some(loaded) = lock(&self.loaded).get_mut(generation.process) {
            loaded.enter(generation.incarnation);
        }
    }

    /// The threads being made in each process now (`new`), by index; locked while a
    /// recycle decides, so that no new lane is placed meanwhile.
    pub(crate) fn placing_counts(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        lock(&self.placing)
    }

    /// Counts a thread being made in process `process` until the guard is dropped.
    pub(crate) fn placing(&self, process: usize) -> Placing<'_> {
        if let Some(count) = lock(&self.placing).get_mut(process) {
            *count += 1;
        }
        Placing {
            counts: &self.placing,
            process,
        }
    }

    /// How many threads each serving process (`(index, incarnation)`) has loaded (or is
    /// making) now, and
    /// how many lanes live on it, given the homes `homes`.
    pub(crate) fn loads(
        &self,
        serving: &[Generation],
        homes: &HashMap<String, usize>,
    ) -> Vec<(usize, usize)> {
        let placing = lock(&self.placing).clone();
        let processes = lock(&self.loaded);
        serving
            .iter()
            .map(|generation| {
                let loaded = processes
                    .get(generation.process)
                    .filter(|loaded| loaded.generation == generation.incarnation)
                    .map_or(0, |loaded| loaded.threads.len())
                    + placing.get(generation.process).copied().unwrap_or(0);
                let lanes = homes.values().filter(|p| **p == generation.process).count();
                (loaded, lanes)
            })
            .collect()
    }

    /// The homes of lanes in the pool: thread id → process index. Taken before the loaded
    /// threads when both are needed.
    pub(crate) fn homes(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        lock(&self.homes)
    }

    /// Unloads (`thread/unsubscribe`) the least recently used idle threads beyond
    /// `[app_server] max_loaded_idle`, never `keep` (just used) nor the thread of a busy or
    /// waiting lane. A lane whose write lock is held is skipped: something is about to start
    /// a turn on it. An operation that needs an unloaded thread loads it again
    /// ([`Service::ensure_loaded`]).
    pub(crate) async fn unload_idle_excess(
        &self,
        server: &codex_app_server::AppServer,
        generation: Generation,
        keep: &str,
    ) {
        let oldest_first: Vec<String> = {
            let processes = lock(&self.loaded);
            let Some(loaded) = processes.get(generation.process) else {
                return;
            };
            if loaded.generation != generation.incarnation
                || loaded.threads.len() <= self.max_loaded_idle
            {
                return;
            }
            let mut threads: Vec<(&String, &u64)> = loaded.threads.iter().collect();
            threads.sort_by_key(|(_, used)| **used);
            threads
                .into_iter()
                .filter(|(thread, _)| thread.as_str() != keep)
                .map(|(thread, _)| thread.clone())
                .collect()
        };
        if oldest_first.len() < self.max_loaded_idle {
            return;
        }
        // The loaded threads' lanes in one query, not one per thread (a large
        // `max_loaded_idle` stays cheap).
        let mut lanes: HashMap<String, dispatch_registry::LaneRow> =
            match self.registry.lanes_by_threads(&oldest_first).await {
                Ok(rows) => rows.into_iter().map(|l| (l.thread_id.clone(), l)).collect(),
                Err(err) => {
                    tracing::warn!(%err, "reading the loaded threads' lanes");
                    return;
                }
            };
        let mut idle = Vec::new();
        for thread_id in oldest_first {
            if let Some(lane) = lanes.remove(&thread_id)
                && unloadable(lane.status)
            {
                idle.push((thread_id, lane.lane_ref));
            }
        }
        // `keep` counts as idle (it is at least loaded), but is never the one unloaded.
        let excess = (idle.len() + 1).saturating_sub(self.max_loaded_idle);
        for (thread_id, lane_ref) in idle.into_iter().take(excess) {
            let Some(_writer) = self.try_lane_lock(&lane_ref) else {
                continue;
            };
            // Still idle now that no turn can start on it?
            match self.registry.lane(&lane_ref).await {
                Ok(Some(lane)) if unloadable(lane.status) => {}
                _ => continue,
            }
            self.forget_loaded(generation, &thread_id);
            let params = codex_app_server::protocol::ThreadUnsubscribeParams {
                thread_id: thread_id.clone(),
            };
            match server.call(&params).await {
                Ok(answer) => {
                    tracing::debug!(thread_id, status = ?answer.status, "unloaded an idle thread")
                }
                Err(err) => {
                    tracing::warn!(%err, thread_id, "unloading an idle thread");
                    self.mark_loaded(generation, &thread_id);
                }
            }
        }
    }

    /// Resumes, in App Server process `process`, the threads its previous incarnation had
    /// loaded whose lanes still live on it (none moved to another process meanwhile).
    pub async fn resume_loaded(&self, process: usize) {
        let Some((server, generation)) = self.app_server.current_of(process) else {
            return;
        };
        let threads: Vec<String> = {
            let processes = lock(&self.loaded);
            let Some(loaded) = processes.get(process) else {
                return;
            };
            if loaded.generation == generation.incarnation {
                return;
            }
            loaded.threads.keys().cloned().collect()
        };
        let threads: Vec<String> = {
            let homes = lock(&self.homes);
            threads
                .into_iter()
                .filter(|thread| homes.get(thread) == Some(&process))
                .collect()
        };
        for thread_id in threads {
            let params = codex_app_server::protocol::ThreadResumeParams {
                thread_id: thread_id.clone(),
                ..Default::default()
            };
            match server.call(&params).await {
                Ok(_) => self.mark_loaded(generation, &thread_id),
                Err(err) => tracing::warn!(%err, thread_id, "resuming a thread after a restart"),
            }
        }
    }

    /// Admits one piece of model work (a `turn/start`) until the guard is dropped; refused
    /// with `daemon_stopping` once a conditional stop was accepted.
    pub(crate) fn admit_model_work(&self) -> Result<WorkGuard<'_>, DispatchError> {
        self.work.admit().map_err(stopping)
    }

    /// Stops admitting model work and lets the daemon shut down, if it is idle (no lane busy
    /// or waiting on an approval, nothing admitted in flight); otherwise `daemon_busy`.
    pub(crate) fn stop_if_idle(&self) -> Result<(), DispatchError> {
        self.work
            .stop_if_idle(|| self.idle.get())
            .map_err(|busy| busy_error(&busy))
    }

    /// Resolves once a conditional stop was accepted ([`Self::stop_if_idle`]): the daemon
    /// then shuts down as on SIGTERM.
    pub async fn stop_requested(&self) {
        self.work.stopped().await;
    }

    /// Wakes watchers after events were stored, and refreshes the idle flag. A count that
    /// fails says "not idle": what the lanes are doing is then unknown, and a stale daemon
    /// must not be restarted over a turn the failed count could not see. The next count that
    /// succeeds sets the flag again.
    pub async fn events_stored(&self) {
        let ticket = self.idle.ticket();
        let idle = match self.registry.lane_counts().await {
            Ok(counts) => counts.busy == 0 && counts.retrying == 0 && counts.waiting_approval == 0,
            Err(err) => {
                tracing::warn!(%err, "counting the lanes for the idle flag; taken as not idle");
                false
            }
        };
        self.idle.settle(ticket, idle);
        self.wake_watchers();
    }

    /// Wakes watchers after events were stored that changed no lane's status (so the idle
    /// flag, a count over all lanes, stays as it is).
    pub fn wake_watchers(&self) {
        self.stored.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever events were stored.
    pub fn event_notifications(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The socket it serves on.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// What `daemon status` shows of the App Server.
    pub fn app_server_status(&self) -> DaemonStatusOutputAppServer {
        let status = self.app_server.status();
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

    /// What `daemon status` shows of each App Server process of the pool.
    pub fn app_server_processes(&self) -> Vec<AppServerProcess> {
        let lanes = self.lanes_per_process();
        let loaded: Vec<usize> = {
            let processes = lock(&self.loaded);
            (0..self.app_server.processes())
                .map(|process| {
                    let incarnation = self
                        .app_server
                        .current_of(process)
                        .map(|(_, g)| g.incarnation);
                    processes
                        .get(process)
                        .filter(|loaded| Some(loaded.generation) == incarnation)
                        .map_or(0, |loaded| loaded.threads.len())
                })
                .collect()
        };
        self.app_server
            .statuses()
            .into_iter()
            .enumerate()
            .map(|(process, status)| AppServerProcess {
                process: process as u64,
                state: match status.state {
                    State::Ready => AppServerProcessState::Ready,
                    State::Restarting => AppServerProcessState::Restarting,
                    State::Stopped => AppServerProcessState::Stopped,
                },
                pid: status.pid.map(i64::from),
                loaded_threads: loaded.get(process).copied().unwrap_or(0) as u64,
                lanes: lanes.get(process).copied().unwrap_or(0) as u64,
                restarts: status.restarts,
                recycles: status.recycles,
                last_error: status.last_error,
            })
            .collect()
    }
}

impl Dispatch for Service {
    fn idle(&self) -> bool {
        // The gate first: work admitted then is busy; work that ended before had its turn
        // counted by the flag before its admission ended, so the flag read after sees it.
        // (Read the other way round, a turn recorded between the two reads was missed.)
        self.work.quiet() && self.idle.get()
    }

    fn model_work_begins(&self, _op: &'static Operation) -> Result<(), DispatchError> {
        self.work.begin().map_err(stopping)
    }

    fn model_work_ends(&self) {
        self.work.end();
    }

    async fn authorize_history_write(
        &self,
        op: &'static Operation,
        lane: LaneArg<'_>,
    ) -> Result<Option<String>, DispatchError> {
        let lane = match lane {
            LaneArg::Selector(selector) => self.resolve(selector).await?,
            // A request that does not exist (or whose lane is gone) is the operation's own
            // `not_found` to report.
            LaneArg::Request(id) => match self.registry.request(id_i64(id)).await? {
                Some(request) => match self.registry.lane(&request.lane_ref).await? {
                    Some(lane) => lane,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
            // The lane does not exist yet; the operation makes it, owned.
            LaneArg::Created => return Ok(None),
        };
        match write_lock(&lane, self.policy.allow_attached_writes) {
            None => Ok(Some(lane.lane_ref)),
            Some(reason) => Err(DispatchError::new(
                ErrorCode::AttachedLaneWriteBlocked,
                format!(
                    "`{}` is refused on lane {}: {reason}",
                    op.title, lane.lane_ref
                ),
            )),
        }
    }

    async fn record_write(&self, record: WriteRecord<'_>) {
        debug_assert!(record.op.intent != Intent::Read);
        let action = NewAction {
            op: record.op.id.to_owned(),
            lane: record.lane,
            outcome: if record.outcome.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
            error_code: record
                .outcome
                .as_ref()
                .err()
                .map(|e| e.code.as_str().to_owned()),
            detail: Some(match record.outcome {
                Ok(detail) => detail,
                Err(err) => err.message.clone(),
            }),
        };
        if let Err(err) = self.registry.record_action(&action).await {
            tracing::warn!(%err, op = record.op.id, "recording an action");
        }
    }
}

/// `daemon_stopping`: model work refused because the daemon agreed to stop.
fn stopping(_: Stopping) -> DispatchError {
    DispatchError::new(
        ErrorCode::DaemonStopping,
        "the daemon is stopping (it was idle and agreed to stop) and starts no new model work; \
         nothing was done",
    )
}

/// `daemon_busy`: a conditional stop refused, with what was in flight.
fn busy_error(busy: &Busy) -> DispatchError {
    let why = match (busy.lanes_busy, busy.in_flight) {
        (true, 0) => "a lane is running a turn or waiting on an approval".to_owned(),
        (true, n) => format!(
            "a lane is running a turn or waiting on an approval, and model work is starting \
             ({n} admission(s): calls that can start it, and their turn starts)"
        ),
        (false, n) => format!(
            "model work is starting ({n} admission(s): calls that can start it, and their \
             turn starts)"
        ),
    };
    DispatchError::new(
        ErrorCode::DaemonBusy,
        format!("the daemon did not stop: {why}"),
    )
    .with_details(serde_json::json!({
        "in_flight": busy.in_flight,
        "lanes_busy": busy.lanes_busy,
    }))
}

/// A request id as the registry stores it.
fn id_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Whether a lane in `status` may have its thread unloaded: no turn running, no request
/// waiting for an answer.
pub(crate) fn unloadable(status: dispatch_registry::LaneStatus) -> bool {
    use dispatch_registry::LaneStatus;
    !matches!(
        status,
        LaneStatus::Busy | LaneStatus::Retrying | LaneStatus::WaitingApproval
    )
}

#[cfg(test)]
mod tests {
    use super::Loaded;

    #[test]
    fn a_late_load_by_a_replaced_incarnation_does_not_hide_the_current_ones() {
        let mut loaded = Loaded::default();
        loaded.loaded_by(1, "a");
        loaded.loaded_by(2, "b");
        assert_eq!(loaded.generation, 2);
        assert_eq!(loaded.threads.keys().collect::<Vec<_>>(), ["b"]);
        // Incarnation 1's answer arrives after incarnation 2 took over: ignored.
        loaded.loaded_by(1, "c");
        assert_eq!(
            (loaded.generation, loaded.loads),
            (2, 1),
            "{:?}",
            loaded.threads
        );
        assert_eq!(loaded.threads.keys().collect::<Vec<_>>(), ["b"]);
        loaded.loaded_by(2, "c");
        assert_eq!(loaded.threads.len(), 2);
    }
}
