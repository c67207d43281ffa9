//! The connection to one `codex app-server` child process.
//!
//! Four tasks serve a connection:
//! - the *writer* owns the child's stdin and writes queued lines; it closes stdin on
//!   shutdown, after flushing what was queued (e.g. error replies to held requests);
//! - the *reader* owns stdout, correlates replies, hands server requests to the policy
//!   and fans notifications out; it waits only for a lossless subscriber that is far
//!   behind and still receiving (back-pressure, see [`crate::events`]);
//! - the *stderr logger* forwards stderr lines to `tracing` (target
//!   `codex_app_server::stderr`) and keeps the last few for handshake errors;
//! - the *supervisor* owns the `Child`, reaps it, publishes the exit reason and fails
//!   every pending request at once when it dies. On shutdown (explicit, or when the last
//!   [`AppServer`] handle is dropped) it gives the child a grace period to exit after
//!   stdin closes, then kills it, and always waits for it (no zombies).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::error::{CloseReason, Error, ExitReason, RpcError};
use crate::events::{Event, Fanout, Gauge, Subscription};
use crate::framing::{Incoming, Line, classify, envelope, next_line, strip_ansi, truncate};
use crate::protocol::{
    ClientInfo, ClientMethod, InitializeCapabilities, InitializeParams, InitializeResponse,
    RequestId, ServerNotification,
};
use crate::server_request::{
    HoldPolicy, PolicyDecision, SHUTDOWN_ERROR_CODE, ServerRequest, ServerRequestPolicy,
    ServerRequestReply,
};
use crate::version::CodexVersion;

/// Longest stdout line accepted (a `turn/completed` carries every item of the turn).
const MAX_STDOUT_LINE: usize = 128 * 1024 * 1024;
/// Longest stderr line kept.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;
/// How long the reader keeps reading after the child exited, in case a grandchild
/// holds stdout open.
const STDOUT_LINGER: Duration = Duration::from_secs(2);
/// How long, after stdout closes, to wait for the exit status to report it.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

/// How to start and talk to an App Server. Build with [`SpawnOptions::new`] and the
/// builder methods; every field is public for inspection.
pub struct SpawnOptions {
    /// The Codex binary (see [`crate::CodexLookup`]).
    pub bin: PathBuf,
    /// Extra arguments after `app-server` (e.g. `-c key=value` overrides).
    pub args: Vec<OsString>,
    /// Extra environment variables (e.g. `CODEX_HOME`); the rest is inherited.
    pub envs: Vec<(OsString, OsString)>,
    /// Variables removed from the child's environment (inherited from this process).
    pub env_removed: Vec<OsString>,
    /// Working directory of the child (inherited when `None`).
    pub cwd: Option<PathBuf>,
    /// `clientInfo` sent at `initialize` (Codex puts its name in its user agent).
    pub client_info: ClientInfo,
    /// `capabilities` sent at `initialize`.
    pub capabilities: Option<InitializeCapabilities>,
    /// Bound on spawn → `initialize` answer (default 10 s).
    pub initialize_timeout: Duration,
    /// Default bound on each request (default 60 s; see [`AppServer::request_with_timeout`]).
    pub request_timeout: Duration,
    /// How long the child may take to exit after stdin closes at shutdown before it is
    /// killed (default 3 s).
    pub shutdown_grace: Duration,
    /// Capacity of each subscription (default 8192; see [`crate::events`] on lag).
    pub event_capacity: usize,
    /// The server request policy (default [`HoldPolicy`]).
    pub policy: Arc<dyn ServerRequestPolicy>,
}

impl std::fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("bin", &self.bin)
            .field("args", &self.args)
            .field("envs", &self.envs)
            .field("cwd", &self.cwd)
            .field("client_info", &self.client_info)
            .field("initialize_timeout", &self.initialize_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

impl SpawnOptions {
    /// Defaults for running `bin app-server`, with `clientInfo` `dispatch` and this
    /// crate's version.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            envs: Vec::new(),
            env_removed: Vec::new(),
            cwd: None,
            client_info: ClientInfo {
                name: "dispatch".into(),
                title: None,
                version: env!("CARGO_PKG_VERSION").into(),
            },
            capabilities: None,
            initialize_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(3),
            event_capacity: 8192,
            policy: Arc::new(HoldPolicy),
        }
    }

    /// Set `CODEX_HOME` for the child.
    #[must_use]
    pub fn codex_home(self, path: impl Into<PathBuf>) -> Self {
        self.env("CODEX_HOME", path.into())
    }

    /// Set an environment variable for the child.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Remove an inherited environment variable from the child's environment.
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_removed.push(key.into());
        self
    }

    /// Add an argument after `app-server`.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Set the child's working directory.
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Set `clientInfo`.
    #[must_use]
    pub fn client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_info = ClientInfo {
            name: name.into(),
            title: None,
            version: version.into(),
        };
        self
    }

    /// Set the handshake bound.
    #[must_use]
    pub fn initialize_timeout(mut self, timeout: Duration) -> Self {
        self.initialize_timeout = timeout;
        self
    }

    /// Set the default per-request bound.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Set the shutdown grace period.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Set the subscription capacity.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Set the server request policy.
    #[must_use]
    pub fn policy(mut self, policy: impl ServerRequestPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }
}

/// What was learnt at the handshake.
#[derive(Debug, Clone)]
struct Handshake {
    response: InitializeResponse,
    version: Option<CodexVersion>,
    duration: Duration,
}

type ReplySender = oneshot::Sender<Result<Value, Error>>;

struct PendingRequest {
    method: String,
    tx: ReplySender,
}

#[derive(Default)]
struct Pending {
    next_id: i64,
    requests: HashMap<i64, PendingRequest>,
    closed: Option<CloseReason>,
}

struct HeldRequest {
    request: ServerRequest,
    policy_task: Option<AbortHandle>,
}

/// The shutdown request sent to the writer and the supervisor: `None` while running,
/// else how long the child may take to exit before it is killed.
type ShutdownSignal = Option<Duration>;

struct Shared {
    bin: PathBuf,
    pid: Option<u32>,
    writer: mpsc::UnboundedSender<String>,
    pending: Mutex<Pending>,
    held: Mutex<HashMap<RequestId, HeldRequest>>,
    fanout: Mutex<Fanout>,
    policy: Arc<dyn ServerRequestPolicy>,
    exit: watch::Receiver<Option<ExitReason>>,
    first_bad_line: watch::Sender<Option<String>>,
    stderr_tail: Mutex<VecDeque<String>>,
    request_timeout: Duration,
    handshake: OnceLock<Handshake>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Dropping the last [`AppServer`] handle drops this, which shuts the connection down.
struct Guard {
    shared: Arc<Shared>,
    shutdown: watch::Sender<ShutdownSignal>,
    grace: Duration,
}

impl Guard {
    fn begin_shutdown(&self, grace: Duration) {
        self.shared
            .refuse_held("the dispatch client is shutting down; request not answered");
        self.shared.close(CloseReason::ShutDown);
        self.shutdown.send_if_modified(|signal| {
            // Never lengthen a shorter (e.g. kill-now) request.
            let shorter = signal.is_none_or(|current| grace < current);
            if shorter {
                *signal = Some(grace);
            }
            shorter
        });
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.begin_shutdown(self.grace);
    }
}

/// A live connection to a `codex app-server` child. Cheap to clone; the child is shut
/// down (held requests refused, stdin closed, killed after the grace period, reaped)
/// when [`AppServer::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct AppServer {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for AppServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppServer")
            .field("bin", &self.shared.bin)
            .field("pid", &self.shared.pid)
            .field("exit", &*self.shared.exit.borrow())
            .finish_non_exhaustive()
    }
}

impl AppServer {
    /// Start `bin app-server`, perform the `initialize` handshake (bounded by
    /// [`SpawnOptions::initialize_timeout`]) and send `initialized`.
    ///
    /// A binary that cannot be started gives [`Error::Spawn`]. On any handshake failure
    /// — the child prints something that is not JSON-RPC, exits, or does not answer in
    /// time — the child is killed and reaped before the error ([`Error::Handshake`], with
    /// its last stderr lines) is returned.
    pub async fn spawn(options: SpawnOptions) -> Result<Self, Error> {
        Self::spawn_subscribed(options)
            .await
            .map(|(server, _)| server)
    }

    /// [`AppServer::spawn`], also returning a global subscription made before the
    /// handshake, so that nothing sent right after `initialize` (e.g. `configWarning`,
    /// `remoteControl/status/changed`) is missed.
    pub async fn spawn_subscribed(options: SpawnOptions) -> Result<(Self, Subscription), Error> {
        let started = Instant::now();
        let mut command = Command::new(&options.bin);
        command
            .arg("app-server")
            .args(&options.args)
            .envs(options.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in &options.env_removed {
            command.env_remove(key);
        }
        if let Some(cwd) = &options.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            bin: options.bin.clone(),
            source,
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Cannot happen with piped stdio; still never leave the child behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(Error::Spawn {
                bin: options.bin.clone(),
                source: std::io::Error::other("child stdio was not captured"),
            });
        };

        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            bin: options.bin.clone(),
            pid,
            writer: writer_tx,
            pending: Mutex::new(Pending::default()),
            held: Mutex::new(HashMap::new()),
            fanout: Mutex::new(Fanout::new(options.event_capacity)),
            policy: Arc::clone(&options.policy),
            exit: exit_rx,
            first_bad_line: watch::channel(None).0,
            stderr_tail: Mutex::new(VecDeque::with_capacity(STDERR_TAIL)),
            request_timeout: options.request_timeout,
            handshake: OnceLock::new(),
        });
        tokio::spawn(write_loop(stdin, writer_rx, shutdown_rx.clone()));
        tokio::spawn(read_loop(stdout, Arc::clone(&shared)));
        let stderr_task = tokio::spawn(stderr_loop(stderr, Arc::clone(&shared)));
        tokio::spawn(supervise(child, shutdown_rx, exit_tx, Arc::clone(&shared)));

        let server = Self {
            guard: Arc::new(Guard {
                shared: Arc::clone(&shared),
                shutdown: shutdown_tx,
                grace: options.shutdown_grace,
            }),
            shared,
        };

        let subscription = server.subscribe();
        let params = InitializeParams {
            client_info: options.client_info.clone(),
            capabilities: options.capabilities.clone(),
        };
        let mut bad_line = server.shared.first_bad_line.subscribe();
        let outcome = tokio::select! {
            reply = server.call_with_timeout(&params, options.initialize_timeout) => reply,
            Some(line) = wait_some(&mut bad_line) => Err(Error::NotJsonRpc { line }),
        };
        let outcome = match outcome {
            Ok(response) => server.notify("initialized", json!({})).map(|()| response),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(response) => {
                let version = CodexVersion::from_user_agent(&response.user_agent);
                let duration = started.elapsed();
                tracing::info!(
                    target: "codex_app_server",
                    pid,
                    user_agent = %response.user_agent,
                    version = version.as_ref().map(ToString::to_string),
                    ?duration,
                    "codex app-server initialized"
                );
                let _ = server.shared.handshake.set(Handshake {
                    response,
                    version,
                    duration,
                });
                Ok((server, subscription))
            }
            Err(error) => {
                server.kill().await;
                // Let the stderr logger catch up with what the child printed last.
                let _ = tokio::time::timeout(EXIT_STATUS_WAIT, stderr_task).await;
                Err(Error::Handshake {
                    bin: options.bin,
                    source: Box::new(error),
                    stderr: server.stderr_tail().join("\n"),
                })
            }
        }
    }

    /// The `initialize` result (userAgent, codexHome, platform).
    pub fn initialize_response(&self) -> Option<&InitializeResponse> {
        self.shared.handshake.get().map(|h| &h.response)
    }

    /// The Codex version, parsed from the user agent (`None` if it did not parse).
    pub fn version(&self) -> Option<&CodexVersion> {
        self.shared.handshake.get().and_then(|h| h.version.as_ref())
    }

    /// How long spawn → `initialize` answer took.
    pub fn handshake_duration(&self) -> Option<Duration> {
        self.shared.handshake.get().map(|h| h.duration)
    }

    /// The child's process id (`None` if it had already exited at spawn).
    pub fn pid(&self) -> Option<u32> {
        self.shared.pid
    }

    /// The binary that was started.
    pub fn bin(&self) -> &std::path::Path {
        &self.shared.bin
    }

    /// The last stderr lines of the child (ANSI colours removed), oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.shared.stderr_tail).iter().cloned().collect()
    }

    /// Send a typed request and decode its result, bounded by the default timeout.
    pub async fn call<P: ClientMethod>(&self, params: &P) -> Result<P::Response, Error> {
        self.call_with_timeout(params, self.shared.request_timeout)
            .await
    }

    /// Send a typed request and decode its result, bounded by `timeout`.
    pub async fn call_with_timeout<P: ClientMethod>(
        &self,
        params: &P,
        timeout: Duration,
    ) -> Result<P::Response, Error> {
        let params = serde_json::to_value(params).map_err(|e| Error::InvalidParams {
            method: P::METHOD.into(),
            detail: e.to_string(),
        })?;
        let result = self
            .request_with_timeout(P::METHOD, params, timeout)
            .await?;
        serde_json::from_value(result).map_err(|source| Error::InvalidResult {
            method: P::METHOD.into(),
            source,
        })
    }

    /// Send a raw request, bounded by the default timeout. `params` must be a JSON
    /// object or `null` (sent as `{}`: Codex rejects some methods without params).
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.request_with_timeout(method, params, self.shared.request_timeout)
            .await
    }

    /// Send a raw request bounded by `timeout`. On timeout the request is forgotten (a
    /// late reply is logged and dropped) and [`Error::Timeout`] returned: the request may
    /// still take effect on the server, so do not blindly retry writes.
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let params = object_params(method, params)?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = lock(&self.shared.pending);
            if let Some(reason) = &pending.closed {
                return Err(Error::Closed {
                    method: method.into(),
                    reason: reason.clone(),
                });
            }
            let id = pending.next_id;
            pending.next_id += 1;
            pending.requests.insert(
                id,
                PendingRequest {
                    method: method.into(),
                    tx,
                },
            );
            id
        };
        // Forget the request however this future ends (reply, timeout, or the caller
        // dropping it), so a late reply is recognised as unknown and nothing leaks.
        let _forget = ForgetOnDrop {
            shared: &self.shared,
            id,
        };
        let line =
            json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
        if self.shared.writer.send(line).is_err() {
            return Err(self.closed_error(method));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(self.closed_error(method)),
            Err(_) => {
                tracing::warn!(target: "codex_app_server", method, id, ?timeout, "request timed out");
                Err(Error::Timeout {
                    method: method.into(),
                    timeout,
                })
            }
        }
    }

    /// Send a notification (e.g. `initialized`). `params` as for [`AppServer::request`].
    pub fn notify(&self, method: &str, params: Value) -> Result<(), Error> {
        let params = object_params(method, params)?;
        if let Some(reason) = &lock(&self.shared.pending).closed {
            return Err(Error::Closed {
                method: method.into(),
                reason: reason.clone(),
            });
        }
        let line = json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string();
        self.shared
            .writer
            .send(line)
            .map_err(|_| self.closed_error(method))
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Subscription {
        lock(&self.shared.fanout).subscribe_all()
    }

    /// Every event, never dropped, with each notification's params as sent
    /// ([`Subscription::recv_raw`]): unlike [`AppServer::subscribe`], a subscriber far behind
    /// slows the reader down (back-pressure, see [`crate::events`]). For the one consumer that
    /// must see everything (a store of events); it must keep reading.
    pub fn subscribe_lossless(&self) -> Subscription {
        lock(&self.shared.fanout).subscribe_lossless()
    }

    /// The events about `thread_id` from now on (see [`AppServer::subscribe`] for lag).
    pub fn subscribe_thread(&self, thread_id: &str) -> Subscription {
        lock(&self.shared.fanout).subscribe_thread(thread_id)
    }

    /// Answer a pending server request (held by the policy, or not yet decided).
    /// Errors with [`Error::UnknownServerRequest`] if it is not pending (already
    /// answered, or the connection closed).
    pub fn respond(&self, id: &RequestId, reply: ServerRequestReply) -> Result<(), Error> {
        self.shared.respond(id, reply)
    }

    /// How many of this client's requests wait for their answer now (cheap: a count under
    /// a lock). A caller that must not lose an answer (a recycle of the process) waits for 0.
    pub fn requests_in_flight(&self) -> usize {
        lock(&self.shared.pending).requests.len()
    }

    /// How many server requests wait for an answer now (cheap: a count under a lock).
    pub fn server_requests_waiting(&self) -> usize {
        lock(&self.shared.held).len()
    }

    /// The server requests waiting for an answer, oldest id first.
    pub fn pending_server_requests(&self) -> Vec<ServerRequest> {
        let mut requests: Vec<ServerRequest> = lock(&self.shared.held)
            .values()
            .map(|h| h.request.clone())
            .collect();
        requests.sort_by(|a, b| match (&a.id, &b.id) {
            (RequestId::Integer(x), RequestId::Integer(y)) => x.cmp(y),
            (x, y) => x.to_string().cmp(&y.to_string()),
        });
        requests
    }

    /// Resolves when the child has exited and been reaped, with how it ended.
    /// Does not keep the connection alive.
    pub fn exited(&self) -> impl Future<Output = ExitReason> + Send + 'static {
        let mut exit = self.shared.exit.clone();
        async move {
            wait_some(&mut exit).await.unwrap_or(ExitReason::Unknown {
                detail: "the supervisor task ended without a status (runtime shutting down?)"
                    .into(),
            })
        }
    }

    /// How the child ended, if it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.shared.exit.borrow().clone()
    }

    /// Why the connection is closed, if it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.shared.pending).closed.clone()
    }

    /// Shut down gracefully: answer every pending server request with an error, fail
    /// pending requests, close stdin, give the child the grace period to exit, kill it
    /// otherwise, and return how it ended once reaped.
    pub async fn shutdown(&self) -> ExitReason {
        self.guard.begin_shutdown(self.guard.grace);
        self.exited().await
    }

    /// Like [`AppServer::shutdown`] without a grace period: the child is killed at once.
    pub async fn kill(&self) -> ExitReason {
        self.guard.begin_shutdown(Duration::ZERO);
        self.exited().await
    }

    fn closed_error(&self, method: &str) -> Error {
        let reason = lock(&self.shared.pending)
            .closed
            .clone()
            .or_else(|| {
                self.shared
                    .exit
                    .borrow()
                    .clone()
                    .map(|reason| CloseReason::Exited { reason })
            })
            .unwrap_or(CloseReason::StdoutClosed);
        Error::Closed {
            method: method.into(),
            reason,
        }
    }
}

/// Removes a pending request when dropped.
struct ForgetOnDrop<'a> {
    shared: &'a Shared,
    id: i64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).requests.remove(&self.id);
    }
}

/// Wait until a watched option is set and return a copy of it (`None` if the sender
/// went away first). Copying keeps the non-`Send` watch guard out of callers' futures.
async fn wait_some<T: Clone>(rx: &mut watch::Receiver<Option<T>>) -> Option<T> {
    match rx.wait_for(Option::is_some).await {
        Ok(value) => value.clone(),
        Err(_) => None,
    }
}

fn object_params(method: &str, params: Value) -> Result<Value, Error> {
    match params {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(params),
        other => Err(Error::InvalidParams {
            method: method.into(),
            detail: format!("params must be a JSON object, got {other}"),
        }),
    }
}

impl Shared {
    fn respond(&self, id: &RequestId, reply: ServerRequestReply) -> Result<(), Error> {
        let Some(held) = lock(&self.held).remove(id) else {
            return Err(Error::UnknownServerRequest(id.clone()));
        };
        if let Some(task) = held.policy_task {
            task.abort();
        }
        let line = match reply {
            ServerRequestReply::Result(result) => {
                json!({ "jsonrpc": "2.0", "id": id, "result": result })
            }
            ServerRequestReply::Error(error) => {
                json!({ "jsonrpc": "2.0", "id": id, "error": error })
            }
        };
        tracing::debug!(target: "codex_app_server", %id, method = %held.request.method, "answering server request");
        self.writer
            .send(line.to_string())
            .map_err(|_| Error::Closed {
                method: held.request.method,
                reason: lock(&self.pending)
                    .closed
                    .clone()
                    .unwrap_or(CloseReason::StdoutClosed),
            })
    }

    /// Answer every pending server request with an error.
    fn refuse_held(&self, message: &str) {
        let ids: Vec<RequestId> = lock(&self.held).keys().cloned().collect();
        for id in ids {
            let _ = self.respond(&id, ServerRequestReply::error(SHUTDOWN_ERROR_CODE, message));
        }
    }

    /// Mark the connection closed and fail every pending request (first reason wins).
    fn close(&self, reason: CloseReason) {
        let requests = {
            let mut pending = lock(&self.pending);
            if pending.closed.is_none() {
                pending.closed = Some(reason.clone());
            }
            std::mem::take(&mut pending.requests)
        };
        let reason = lock(&self.pending).closed.clone().unwrap_or(reason);
        for (_, request) in requests {
            let _ = request.tx.send(Err(Error::Closed {
                method: request.method,
                reason: reason.clone(),
            }));
        }
    }

    /// The connection is gone: requests held for an answer can no longer be answered.
    fn drop_held(&self) {
        for (_, held) in lock(&self.held).drain() {
            if let Some(task) = held.policy_task {
                task.abort();
            }
        }
    }

    /// Handles one stdout line; returns the lossless subscriptions to wait for before the
    /// next one (see [`crate::events`]).
    fn handle_line(self: &Arc<Self>, line: &str) -> Vec<Arc<Gauge>> {
        let message = match envelope(line) {
            Some(message) => message,
            None => {
                let shown = truncate(line, 200);
                tracing::warn!(target: "codex_app_server", line = %shown, "stdout line is not a JSON-RPC message; ignored");
                self.first_bad_line.send_if_modified(|bad| {
                    let first = bad.is_none();
                    if first {
                        *bad = Some(shown);
                    }
                    first
                });
                return Vec::new();
            }
        };
        match classify(message) {
            Incoming::Reply { id, outcome } => {
                self.on_reply(id, outcome);
                Vec::new()
            }
            Incoming::Request { id, method, params } => {
                self.on_server_request(ServerRequest { id, method, params })
            }
            Incoming::Notification { method, params } => {
                let notification = ServerNotification::from_raw(&method, params);
                if let ServerNotification::ServerRequestResolved(resolved) = &notification {
                    // Settled on the server side (answered, or moot after an interrupt):
                    // it can no longer be answered here.
                    if let Some(held) = lock(&self.held).remove(&resolved.request_id) {
                        tracing::debug!(target: "codex_app_server", id = %resolved.request_id, method = %held.request.method, "server request resolved by the server");
                        if let Some(task) = held.policy_task {
                            task.abort();
                        }
                    }
                }
                let mut fanout = lock(&self.fanout);
                let raw = if fanout.wants_raw() {
                    Some(params.map_or("null", |p| p.get()))
                } else {
                    None
                };
                fanout.publish(Event::Notification(Arc::new(notification)), raw)
            }
            Incoming::Invalid(why) => {
                tracing::warn!(target: "codex_app_server", why, line = %truncate(line, 200), "ignored message");
                Vec::new()
            }
        }
    }

    fn on_reply(&self, id: RequestId, outcome: Result<Value, RpcError>) {
        let request = match id {
            RequestId::Integer(n) => lock(&self.pending).requests.remove(&n),
            RequestId::String(_) => None,
        };
        let Some(request) = request else {
            tracing::warn!(target: "codex_app_server", %id, "reply to an unknown (or timed-out) request id; ignored");
            return;
        };
        let outcome = outcome.map_err(|error| Error::Rpc {
            method: request.method.clone(),
            error: Box::new(error),
        });
        let _ = request.tx.send(outcome);
    }

    fn on_server_request(self: &Arc<Self>, request: ServerRequest) -> Vec<Arc<Gauge>> {
        tracing::info!(
            target: "codex_app_server",
            id = %request.id,
            method = %request.method,
            thread_id = request.thread_id(),
            "server request"
        );
        let id = request.id.clone();
        let replaced = lock(&self.held).insert(
            id.clone(),
            HeldRequest {
                request: request.clone(),
                policy_task: None,
            },
        );
        if let Some(old) = replaced {
            tracing::warn!(target: "codex_app_server", %id, method = %old.request.method, "server reused a pending request id; the older request is forgotten");
            if let Some(task) = old.policy_task {
                task.abort();
            }
        }
        let full =
            lock(&self.fanout).publish(Event::ServerRequest(Arc::new(request.clone())), None);

        let decision = self.policy.decide(request);
        let weak = Arc::downgrade(self);
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            if let PolicyDecision::Reply(reply) = decision.await
                && let Some(shared) = weak.upgrade()
                && let Err(error) = shared.respond(&task_id, reply)
            {
                tracing::debug!(target: "codex_app_server", %error, "policy reply not sent");
            }
        });
        if let Some(held) = lock(&self.held).get_mut(&id) {
            held.policy_task = Some(task.abort_handle());
        }
        full
    }
}

async fn write_loop(
    mut stdin: ChildStdin,
    mut lines: mpsc::UnboundedReceiver<String>,
    mut shutdown: watch::Receiver<ShutdownSignal>,
) {
    async fn write(stdin: &mut ChildStdin, line: &str) -> std::io::Result<()> {
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }
    loop {
        tokio::select! {
            biased;
            line = lines.recv() => {
                let Some(line) = line else { break };
                if let Err(error) = write(&mut stdin, &line).await {
                    tracing::warn!(target: "codex_app_server", %error, "writing to codex app-server stdin failed");
                    return;
                }
            }
            _ = wait_some(&mut shutdown) => {
                // Flush what is already queued (e.g. refusals of held requests), then
                // close stdin so the child sees end of input.
                while let Ok(line) = lines.try_recv() {
                    if write(&mut stdin, &line).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = stdin.shutdown().await;
}

async fn read_loop(stdout: ChildStdout, shared: Arc<Shared>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut exit = shared.exit.clone();
    let linger = async move {
        let _ = wait_some(&mut exit).await;
        tokio::time::sleep(STDOUT_LINGER).await;
    };
    tokio::pin!(linger);
    // One buffer for every line (see `next_line`).
    let mut buf = Vec::new();
    loop {
        let line = tokio::select! {
            line = next_line(&mut reader, MAX_STDOUT_LINE, &mut buf) => line,
            () = &mut linger => {
                tracing::warn!(target: "codex_app_server", "codex app-server exited but its stdout is still open (a child process holds it?); stop reading");
                break;
            }
        };
        match line {
            Ok(Some(Line::Text(line))) if line.trim().is_empty() => {}
            Ok(Some(Line::Text(line))) => {
                // Back-pressure from lossless subscribers, bounded (see `crate::events`).
                for gauge in shared.handle_line(&line) {
                    gauge.wait_drained().await;
                }
            }
            Ok(Some(Line::TooLong(len))) => {
                tracing::error!(target: "codex_app_server", len, "stdout line longer than {MAX_STDOUT_LINE} bytes skipped");
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(target: "codex_app_server", %error, "reading codex app-server stdout failed");
                break;
            }
        }
    }
    // Prefer reporting the exit status over a bare "stdout closed".
    let mut exit = shared.exit.clone();
    let reason = match tokio::time::timeout(EXIT_STATUS_WAIT, wait_some(&mut exit)).await {
        Ok(Some(reason)) => CloseReason::Exited { reason },
        _ => CloseReason::StdoutClosed,
    };
    tracing::debug!(target: "codex_app_server", %reason, "stdout closed");
    shared.close(reason);
    shared.drop_held();
    lock(&shared.fanout).close();
}

async fn stderr_loop(stderr: ChildStderr, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match next_line(&mut reader, MAX_STDERR_LINE, &mut buf).await {
            Ok(Some(Line::Text(line))) => {
                let line = strip_ansi(&line);
                if line.trim().is_empty() {
                    continue;
                }
                tracing::info!(target: "codex_app_server::stderr", pid = shared.pid, "{line}");
                let mut tail = lock(&shared.stderr_tail);
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Ok(Some(Line::TooLong(len))) => {
                tracing::info!(target: "codex_app_server::stderr", pid = shared.pid, "<{len} bytes skipped>");
            }
            Ok(None) | Err(_) => return,
        }
    }
}

async fn supervise(
    mut child: Child,
    mut shutdown: watch::Receiver<ShutdownSignal>,
    exit: watch::Sender<Option<ExitReason>>,
    shared: Arc<Shared>,
) {
    let early = tokio::select! {
        status = child.wait() => Some(status),
        _ = wait_some(&mut shutdown) => None,
    };
    let status = match early {
        Some(status) => status,
        None => loop {
            let grace = shutdown.borrow_and_update().unwrap_or(Duration::ZERO);
            tokio::select! {
                status = child.wait() => break status,
                () = tokio::time::sleep(grace) => {
                    if let Err(error) = child.start_kill() {
                        tracing::warn!(target: "codex_app_server", %error, "killing codex app-server failed");
                    }
                    break child.wait().await;
                }
                // A shorter grace (kill) was asked for meanwhile: re-arm.
                Ok(()) = shutdown.changed() => {}
            }
        },
    };
    let reason = match status {
        Ok(status) => ExitReason::from_status(status),
        Err(error) => ExitReason::Unknown {
            detail: error.to_string(),
        },
    };
    tracing::info!(target: "codex_app_server", pid = shared.pid, %reason, "codex app-server ended");
    shared.close(CloseReason::Exited {
        reason: reason.clone(),
    });
    exit.send_replace(Some(reason));
}
