//! [`Service`]: the daemon's implementation of the contract's [`Dispatch`] trait. Each method
//! delegates to the module that owns the operation.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use dispatch_contract::types::*;
use dispatch_contract::{Dispatch, DispatchError, ErrorCode, Intent, Operation};
use dispatch_home::{ApprovalPolicy, Config, Policy};
use dispatch_registry::{Action, NewAction, Outcome, Registry};
use serde_json::Value;
use tokio::sync::watch;

use crate::convert::{View, lock, now_ms, write_lock};
use crate::models;
use crate::supervisor::{State, Supervisor};

/// Threads loaded in the current App Server process.
struct Loaded {
    generation: u64,
    threads: HashSet<String>,
}

/// The state behind every daemon operation.
pub struct Service {
    registry: Registry,
    app_server: Supervisor,
    socket: PathBuf,
    started: Instant,
    loaded: Mutex<Loaded>,
    stored: watch::Sender<u64>,
    idle: AtomicBool,
    policy: Policy,
    stall_after: Duration,
    /// One lock per lane: turn-starting writes to a lane run one at a time.
    lane_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        Service {
            registry,
            app_server,
            socket,
            started: Instant::now(),
            loaded: Mutex::new(Loaded {
                generation: 0,
                threads: HashSet::new(),
            }),
            stored: watch::channel(0).0,
            idle: AtomicBool::new(true),
            policy: config.policy.clone(),
            stall_after: Duration::from_secs(config.lanes.stall_after_s),
            lane_locks: Mutex::new(HashMap::new()),
        }
    }

    /// How long a running turn may stay silent before it counts as stalled.
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// What showing a lane depends on, now.
    pub fn view(&self) -> View {
        View {
            allow_attached_writes: self.policy.allow_attached_writes,
            stall_after_ms: i64::try_from(self.stall_after.as_millis()).unwrap_or(i64::MAX),
            now_ms: now_ms(),
        }
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

    /// Whether `thread_id` is loaded in App Server `generation`.
    pub fn is_loaded(&self, generation: u64, thread_id: &str) -> bool {
        let loaded = lock(&self.loaded);
        loaded.generation == generation && loaded.threads.contains(thread_id)
    }

    /// Notes that `thread_id` is loaded in App Server `generation`.
    pub fn mark_loaded(&self, generation: u64, thread_id: &str) {
        let mut loaded = lock(&self.loaded);
        if loaded.generation != generation {
            loaded.generation = generation;
            loaded.threads.clear();
        }
        loaded.threads.insert(thread_id.to_owned());
    }

    /// Resumes, in the current App Server, the threads the previous one had loaded.
    pub async fn resume_loaded(&self) {
        let Some((server, generation)) = self.app_server.current() else {
            return;
        };
        let threads: Vec<String> = {
            let loaded = lock(&self.loaded);
            if loaded.generation == generation {
                return;
            }
            loaded.threads.iter().cloned().collect()
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

    /// Wakes watchers after events were stored, and refreshes the idle flag.
    pub async fn events_stored(&self) {
        if let Ok(counts) = self.registry.lane_counts().await {
            self.idle.store(
                counts.busy == 0 && counts.retrying == 0 && counts.waiting_approval == 0,
                Ordering::Relaxed,
            );
        }
        self.stored.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever events were stored.
    pub fn event_notifications(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    fn app_server_status(&self) -> DaemonStatusOutputAppServer {
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
}

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

/// A short description of a write for the action log.
fn detail(op: &Operation, input: &Value, outcome: Result<&Value, &DispatchError>) -> String {
    match outcome {
        Err(err) => err.message.clone(),
        Ok(output) => match op.id {
            "new" => format!(
                "created {}{}",
                output["lane"]["title"].as_str().unwrap_or("a lane"),
                if output["message_accepted"] == true {
                    ", first message accepted"
                } else {
                    ""
                }
            ),
            "send" if output["steered"] == true => "message steered into the running turn".into(),
            "send" => format!(
                "message accepted, turn {}",
                output["turn_id"].as_str().unwrap_or("?")
            ),
            "stop" if output["interrupted"] == true => format!(
                "interrupted turn {}",
                output["turn_id"].as_str().unwrap_or("?")
            ),
            "stop" => "nothing was running".into(),
            "respond" => format!(
                "request {} answered {}",
                input["request_id"],
                output["decision"].as_str().unwrap_or("?")
            ),
            "goal_set" => format!("goal: {}", input["objective"].as_str().unwrap_or_default()),
            _ => op.summary.to_owned(),
        },
    }
}

impl Dispatch for Service {
    fn idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    async fn authorize_history_write(
        &self,
        op: &'static Operation,
        input: &Value,
    ) -> Result<(), DispatchError> {
        let lane = match input.get("lane").and_then(Value::as_str) {
            Some(selector) => self.resolve(selector).await?,
            None => match input.get("request_id").and_then(Value::as_i64) {
                Some(id) => match self.registry.request(id).await? {
                    Some(request) => match self.registry.lane(&request.lane_ref).await? {
                        Some(lane) => lane,
                        None => return Ok(()),
                    },
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        match write_lock(&lane, self.policy.allow_attached_writes) {
            None => Ok(()),
            Some(reason) => Err(DispatchError::new(
                ErrorCode::AttachedLaneWriteBlocked,
                format!(
                    "`{}` is refused on lane {}: {reason}",
                    op.title, lane.lane_ref
                ),
            )),
        }
    }

    async fn record_write(
        &self,
        op: &'static Operation,
        input: &Value,
        outcome: Result<&Value, &DispatchError>,
    ) {
        debug_assert!(op.intent != Intent::Read);
        // The lane the write concerned: the answer's, or the one a partly done write
        // created (`details.lane_ref`), or the selector given.
        let lane = match outcome {
            Ok(output) => output["lane"]["ref"].as_str().map(str::to_owned),
            Err(err) => err.details["lane_ref"].as_str().map(str::to_owned),
        }
        .or_else(|| input.get("lane").and_then(Value::as_str).map(str::to_owned));
        let action = NewAction {
            op: op.id.to_owned(),
            lane,
            outcome: if outcome.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
            error_code: outcome.err().map(|e| e.code.as_str().to_owned()),
            detail: Some(detail(op, input, outcome)),
        };
        if let Err(err) = self.registry.record_action(&action).await {
            tracing::warn!(%err, op = op.id, "recording an action");
        }
    }

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
            app_server: self.app_server_status(),
            lanes: DaemonStatusOutputLanes {
                total: count(lanes.total),
                idle: count(lanes.idle),
                busy: count(lanes.busy),
                retrying: count(lanes.retrying),
                waiting_approval: count(lanes.waiting_approval),
                error: count(lanes.error),
                archived: count(lanes.archived),
            },
        })
    }

    async fn new(&self, input: NewInput) -> Result<NewOutput, DispatchError> {
        self.lane_new(input).await
    }

    async fn send(&self, input: SendInput) -> Result<SendOutput, DispatchError> {
        self.lane_send(input).await
    }

    async fn stop(&self, input: StopInput) -> Result<StopOutput, DispatchError> {
        self.lane_stop(input).await
    }

    async fn get(&self, input: GetInput) -> Result<GetOutput, DispatchError> {
        self.lane_get(input).await
    }

    async fn list(&self, input: ListInput) -> Result<ListOutput, DispatchError> {
        self.lane_list(input).await
    }

    async fn tail(&self, input: TailInput) -> Result<TailOutput, DispatchError> {
        self.lane_tail(input).await
    }

    async fn watch(&self, input: WatchInput) -> Result<WatchOutput, DispatchError> {
        self.lane_watch(input).await
    }

    async fn goal_set(&self, input: GoalSetInput) -> Result<GoalSetOutput, DispatchError> {
        Service::goal_set(self, input).await
    }

    async fn goal_get(&self, input: GoalGetInput) -> Result<GoalGetOutput, DispatchError> {
        Service::goal_get(self, input).await
    }

    async fn goal_clear(&self, input: GoalClearInput) -> Result<GoalClearOutput, DispatchError> {
        Service::goal_clear(self, input).await
    }

    async fn requests(&self, input: RequestsInput) -> Result<RequestsOutput, DispatchError> {
        Service::requests(self, input).await
    }

    async fn respond(&self, input: RespondInput) -> Result<RespondOutput, DispatchError> {
        Service::respond(self, input).await
    }

    async fn attach(&self, input: AttachInput) -> Result<AttachOutput, DispatchError> {
        Service::attach(self, input).await
    }

    async fn sync(&self, input: SyncInput) -> Result<SyncOutput, DispatchError> {
        Service::sync(self, input).await
    }

    async fn rename(&self, input: RenameInput) -> Result<RenameOutput, DispatchError> {
        Service::rename(self, input).await
    }

    async fn archive(&self, input: ArchiveInput) -> Result<ArchiveOutput, DispatchError> {
        Service::archive(self, input).await
    }

    async fn restore(&self, input: RestoreInput) -> Result<RestoreOutput, DispatchError> {
        Service::restore(self, input).await
    }

    async fn search(&self, input: SearchInput) -> Result<SearchOutput, DispatchError> {
        Service::search(self, input).await
    }
}
