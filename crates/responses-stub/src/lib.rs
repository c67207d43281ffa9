//! A scriptable fake of the OpenAI Responses API for offline Codex App Server tests.
//!
//! [`ResponsesStub::start`] binds `127.0.0.1` on an ephemeral port and answers
//! `POST …/responses` with server-sent events in the shape Codex expects. Each request
//! is recorded (path, headers, JSON body, and which behaviour answered it) and answered
//! by the first rule that applies:
//!
//! 1. a request that is not `POST …/responses` gets `404`; a body that is not JSON `400`;
//! 2. the next queued [`Behaviour`] (queued by [`Script::then`] or [`ResponsesStub::push`]);
//! 3. a request whose last input item is a `function_call_output` gets
//!    [`Script::follow_up_reply`] as a text reply (the model "answers" the tool result);
//! 4. a goal continuation (input after the model's last output carries
//!    `<codex_internal_context source="goal">`) gets an `update_goal` call with
//!    `{"status":"complete"}`, so a goal ends instead of looping (unless
//!    [`Script::auto_complete_goals`] was turned off);
//! 5. anything else gets [`Script::default_reply`] as a text reply.
//!
//! Every connection is closed after its response; an event stream ends when the
//! connection closes. Dropping the stub stops the listener and closes every open
//! connection, including never-ending streams.
//!
//! [`write_codex_config`] (or [`ResponsesStub::write_codex_config`]) writes the matching
//! `CODEX_HOME/config.toml`.

mod config;
mod http;
mod sse;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use config::{CodexConfig, write_codex_config};

/// The text Codex puts at the start of the input of a goal continuation turn.
pub const GOAL_CONTINUATION_MARKER: &str = "<codex_internal_context source=\"goal\">";

/// Errors of the stub.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// The listener could not be bound on 127.0.0.1.
    #[error("could not bind the responses stub on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// [`ResponsesStub::wait_for_requests`] ran out of time.
    #[error(
        "timed out after {timeout:?} waiting for {wanted} request(s) to the responses stub; got {got}"
    )]
    Timeout {
        /// How many requests were awaited.
        wanted: usize,
        /// How many had arrived.
        got: usize,
        /// The bound that expired.
        timeout: Duration,
    },
    /// The `config.toml` could not be written.
    #[error("could not write Codex config {path}: {source}")]
    WriteConfig {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A semaphore-like gate a test opens to let a [`Behaviour::SlowText`] stream go on.
///
/// Each permit released lets exactly one more delta be sent.
#[derive(Debug, Clone)]
pub struct StreamGate(Arc<Semaphore>);

impl StreamGate {
    /// A closed gate (no permits).
    pub fn new() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Let `n` more deltas through.
    pub fn release(&self, n: usize) {
        self.0.add_permits(n);
    }

    /// Let every remaining delta through, now and for every stream using this gate.
    pub fn release_all(&self) {
        // A closed semaphore fails every acquire at once, which the stream treats as
        // "released".
        self.0.close();
    }
}

impl Default for StreamGate {
    fn default() -> Self {
        Self::new()
    }
}

/// How a [`Behaviour::SlowText`] spaces its deltas.
#[derive(Debug, Clone)]
pub enum Pace {
    /// Each delta waits for one permit of the gate (released by the test).
    Gate(StreamGate),
    /// Each delta waits this long (prefer [`Pace::Gate`] to synchronise tests).
    Every(Duration),
}

/// How the stub answers one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A complete assistant message streamed at once: created, item added, one delta,
    /// item done, completed.
    Text(String),
    /// An assistant message streamed chunk by chunk (one `output_text.delta` each),
    /// then item done and completed.
    SlowText {
        /// The deltas, in order; the final message is their concatenation.
        chunks: Vec<String>,
        /// What releases each delta.
        pace: Pace,
    },
    /// Starts a message (created, item added) and then never ends: the connection is held
    /// open until the client closes it or the stub is dropped.
    Hang,
    /// Accepts the request and never answers at all (no status line): a provider that hangs
    /// before it says anything. The connection is held open like [`Behaviour::Hang`].
    Silent,
    /// A plain HTTP error status with a JSON error body and no stream.
    HttpError {
        /// The status code, e.g. 500.
        status: u16,
        /// The error message put in the body.
        message: String,
    },
    /// A function call output item (then completed), e.g. `exec_command`.
    FunctionCall {
        /// The tool name.
        name: String,
        /// The arguments object (sent as a JSON string, as the real API does).
        arguments: Value,
    },
}

impl Behaviour {
    /// A text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// A text reply streamed in `chunks`, each released by one permit of `gate`.
    pub fn slow_text(
        chunks: impl IntoIterator<Item = impl Into<String>>,
        gate: &StreamGate,
    ) -> Self {
        Self::SlowText {
            chunks: chunks.into_iter().map(Into::into).collect(),
            pace: Pace::Gate(gate.clone()),
        }
    }

    /// HTTP 500 with an error body.
    pub fn http_500() -> Self {
        Self::HttpError {
            status: 500,
            message: "responses stub: internal server error".into(),
        }
    }

    /// An `exec_command` call running `cmd`.
    pub fn exec_command(cmd: impl Into<String>) -> Self {
        Self::FunctionCall {
            name: "exec_command".into(),
            arguments: json!({ "cmd": cmd.into() }),
        }
    }

    /// An `exec_command` call asking to run `cmd` outside the sandbox
    /// (`sandbox_permissions: "require_escalated"`): under approval policy `on-request`
    /// Codex asks the client (`item/commandExecution/requestApproval`) first.
    pub fn exec_command_escalated(
        cmd: impl Into<String>,
        justification: impl Into<String>,
    ) -> Self {
        Self::FunctionCall {
            name: "exec_command".into(),
            arguments: json!({
                "cmd": cmd.into(),
                "sandbox_permissions": "require_escalated",
                "justification": justification.into(),
            }),
        }
    }

    /// An `update_goal` call with `{"status":"complete"}`, which ends an active goal.
    pub fn update_goal_complete() -> Self {
        Self::FunctionCall {
            name: "update_goal".into(),
            arguments: json!({ "status": "complete" }),
        }
    }

    /// A short name for the behaviour, recorded in [`RecordedRequest::behaviour`].
    pub fn label(&self) -> String {
        match self {
            Self::Text(_) => "text".into(),
            Self::SlowText { .. } => "slow_text".into(),
            Self::Hang => "hang".into(),
            Self::Silent => "silent".into(),
            Self::HttpError { status, .. } => format!("http_{status}"),
            Self::FunctionCall { name, .. } => format!("function_call:{name}"),
        }
    }
}

/// The stub's initial queue and defaults.
#[derive(Debug, Clone)]
pub struct Script {
    queue: VecDeque<Behaviour>,
    default_reply: String,
    follow_up_reply: String,
    auto_complete_goals: bool,
    reuse_item_ids: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            default_reply: "ok".into(),
            follow_up_reply: "done".into(),
            auto_complete_goals: true,
            reuse_item_ids: false,
        }
    }
}

impl Script {
    /// An empty queue: every turn gets the default text reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `behaviour` after those already queued.
    #[must_use]
    pub fn then(mut self, behaviour: Behaviour) -> Self {
        self.queue.push_back(behaviour);
        self
    }

    /// The text answered when nothing is queued (default `"ok"`).
    #[must_use]
    pub fn default_reply(mut self, text: impl Into<String>) -> Self {
        self.default_reply = text.into();
        self
    }

    /// The text answered to a tool result when nothing is queued (default `"done"`).
    #[must_use]
    pub fn follow_up_reply(mut self, text: impl Into<String>) -> Self {
        self.follow_up_reply = text.into();
        self
    }

    /// Whether every reply's message item is called `msg_1`, as a provider that reuses item
    /// ids would (default false: `msg_<n>`, unique).
    #[must_use]
    pub fn reuse_item_ids(mut self, on: bool) -> Self {
        self.reuse_item_ids = on;
        self
    }

    /// Whether goal continuations get an automatic `update_goal` complete (default true).
    #[must_use]
    pub fn auto_complete_goals(mut self, on: bool) -> Self {
        self.auto_complete_goals = on;
        self
    }
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The request target, e.g. `/v1/responses`.
    pub path: String,
    /// The headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// The [`Behaviour::label`] of the answer, or `not_found` / `bad_request`.
    pub behaviour: String,
}

impl RecordedRequest {
    /// The `input` array of a Responses API request (empty if absent).
    pub fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether the last input item is a `function_call_output` (a tool result).
    pub fn is_tool_result(&self) -> bool {
        is_tool_result(&self.body)
    }

    /// Whether this is a goal continuation (see [`GOAL_CONTINUATION_MARKER`]).
    pub fn is_goal_continuation(&self) -> bool {
        is_goal_continuation(&self.body)
    }

    /// The content parts of the user-role messages of the input, in order.
    fn user_parts(&self) -> Vec<Value> {
        self.input()
            .iter()
            .filter(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .flat_map(|item| {
                item.get("content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The texts of the user-role messages of the input, in order.
    pub fn user_texts(&self) -> Vec<String> {
        self.user_parts()
            .into_iter()
            .filter_map(|c| c.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// The images of the user-role messages of the input, in order: each `input_image`
    /// part's `image_url` (Codex sends a local image as a `data:` URL).
    pub fn user_images(&self) -> Vec<String> {
        self.user_parts()
            .into_iter()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("input_image"))
            .filter_map(|c| {
                c.get("image_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_tool_result(body: &Value) -> bool {
    body.get("input")
        .and_then(Value::as_array)
        .and_then(|items| items.last())
        .and_then(|item| item.get("type"))
        .and_then(Value::as_str)
        == Some("function_call_output")
}

fn is_goal_continuation(body: &Value) -> bool {
    let Some(items) = body.get("input").and_then(Value::as_array) else {
        return false;
    };
    // Only look at what came after the model's last output.
    items
        .iter()
        .rev()
        .take_while(|item| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
            let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
            !(role == "assistant" || kind == "function_call" || kind == "reasoning")
        })
        .any(|item| contains_text(item, GOAL_CONTINUATION_MARKER))
}

/// Whether any string inside `value` contains `needle`.
fn contains_text(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|v| contains_text(v, needle)),
        Value::Object(map) => map.values().any(|v| contains_text(v, needle)),
        _ => false,
    }
}

struct State {
    script: Script,
    requests: Vec<RecordedRequest>,
}

struct Shared {
    state: Mutex<State>,
    count: watch::Sender<usize>,
    ids: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A running stub. Dropping it stops the listener and closes all connections.
pub struct ResponsesStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ResponsesStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsesStub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ResponsesStub {
    /// Bind 127.0.0.1 on an ephemeral port and start answering with `script`.
    pub async fn start(script: Script) -> Result<Self, StubError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(StubError::Bind)?;
        let addr = listener.local_addr().map_err(StubError::Bind)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script,
                requests: Vec::new(),
            }),
            count: watch::channel(0).0,
            ids: AtomicU64::new(0),
            shutdown: shutdown_rx,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            shutdown,
            accept,
        })
    }

    /// The provider base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue `behaviour` after those already queued.
    pub fn push(&self, behaviour: Behaviour) {
        self.shared.lock().script.queue.push_back(behaviour);
    }

    /// How many queued behaviours have not been used yet.
    pub fn queued(&self) -> usize {
        self.shared.lock().script.queue.len()
    }

    /// A copy of every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Wait until at least `n` requests arrived (bounded by `timeout`) and return them all.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>, StubError> {
        let mut rx = self.shared.count.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await {
            Ok(Ok(_)) => Ok(self.requests()),
            _ => Err(StubError::Timeout {
                wanted: n,
                got: self.request_count(),
                timeout,
            }),
        }
    }

    /// Write `codex_home/config.toml` pointing Codex at this stub.
    pub fn write_codex_config(
        &self,
        codex_home: &Path,
        config: &CodexConfig,
    ) -> Result<PathBuf, StubError> {
        write_codex_config(codex_home, &self.base_url(), config)
    }
}

impl Drop for ResponsesStub {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Aborting the accept loop drops its JoinSet, which aborts every connection task
        // and so closes every socket, including never-ending streams.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    tracing::warn!(target: "responses_stub", %error, "accept failed");
                    // Back off briefly so a persistent error (e.g. EMFILE) does not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What to send for one request, decided under the lock.
enum Answer {
    Behaviour(Behaviour),
    NotFound,
    BadRequest,
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let request = match http::read_request(&mut stream).await {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(target: "responses_stub", %error, "dropping connection");
            return;
        }
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let answer = {
        let mut state = shared.lock();
        let answer = if request.method != "POST"
            || !request.path.trim_end_matches('/').ends_with("/responses")
        {
            Answer::NotFound
        } else if body.is_null() {
            Answer::BadRequest
        } else if let Some(queued) = state.script.queue.pop_front() {
            Answer::Behaviour(queued)
        } else if is_tool_result(&body) {
            Answer::Behaviour(Behaviour::Text(state.script.follow_up_reply.clone()))
        } else if state.script.auto_complete_goals && is_goal_continuation(&body) {
            Answer::Behaviour(Behaviour::update_goal_complete())
        } else {
            Answer::Behaviour(Behaviour::Text(state.script.default_reply.clone()))
        };
        let label = match &answer {
            Answer::Behaviour(b) => b.label(),
            Answer::NotFound => "not_found".into(),
            Answer::BadRequest => "bad_request".into(),
        };
        tracing::debug!(target: "responses_stub", path = %request.path, behaviour = %label, "request");
        state.requests.push(RecordedRequest {
            method: request.method,
            path: request.path,
            headers: request.headers,
            body,
            behaviour: label,
        });
        let n = state.requests.len();
        shared.count.send_replace(n);
        answer
    };
    let result = match answer {
        Answer::NotFound => send_json(&mut stream, 404, "not found").await,
        Answer::BadRequest => send_json(&mut stream, 400, "body is not JSON").await,
        Answer::Behaviour(behaviour) => run(&mut stream, &shared, behaviour).await,
    };
    if let Err(error) = result {
        tracing::debug!(target: "responses_stub", %error, "client went away");
    }
    let _ = stream.shutdown().await;
}

async fn send_json(stream: &mut TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    let body =
        json!({ "error": { "message": message, "type": "stub_error", "code": null } }).to_string();
    let head = http::response_head(status, "application/json", Some(body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

async fn send_events(stream: &mut TcpStream, events: &[String]) -> std::io::Result<()> {
    for event in events {
        stream.write_all(event.as_bytes()).await?;
    }
    stream.flush().await
}

/// Resolve when the client closes its side (or errors), ignoring anything it sends.
async fn client_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn run(stream: &mut TcpStream, shared: &Shared, behaviour: Behaviour) -> std::io::Result<()> {
    if let Behaviour::HttpError { status, message } = &behaviour {
        return send_json(stream, *status, message).await;
    }
    if let Behaviour::Silent = behaviour {
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {}
            () = client_closed(stream) => {}
        }
        return Ok(());
    }
    let n = shared.next_id();
    let response_id = format!("resp_{n}");
    let item_id = if shared.lock().script.reuse_item_ids {
        "msg_1".to_owned()
    } else {
        format!("msg_{n}")
    };
    stream
        .write_all(http::response_head(200, "text/event-stream", None).as_bytes())
        .await?;
    let mut shutdown = shared.shutdown.clone();
    match behaviour {
        Behaviour::HttpError { .. } | Behaviour::Silent => Ok(()),
        Behaviour::Text(text) => {
            send_events(
                stream,
                &[
                    sse::created(&response_id),
                    sse::message_added(&item_id),
                    sse::text_delta(&item_id, &text),
                    sse::message_done(&item_id, &text),
                    sse::completed(&response_id),
                ],
            )
            .await
        }
        Behaviour::SlowText { chunks, pace } => {
            send_events(
                stream,
                &[sse::created(&response_id), sse::message_added(&item_id)],
            )
            .await?;
            for chunk in &chunks {
                let released = async {
                    match &pace {
                        Pace::Gate(gate) => {
                            if let Ok(permit) = gate.0.acquire().await {
                                permit.forget();
                            }
                        }
                        Pace::Every(interval) => tokio::time::sleep(*interval).await,
                    }
                };
                tokio::select! {
                    () = released => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                    () = client_closed(stream) => return Ok(()),
                }
                send_events(stream, &[sse::text_delta(&item_id, chunk)]).await?;
            }
            let text: String = chunks.concat();
            send_events(
                stream,
                &[
                    sse::message_done(&item_id, &text),
                    sse::completed(&response_id),
                ],
            )
            .await
        }
        Behaviour::Hang => {
            send_events(
                stream,
                &[
                    sse::created(&response_id),
                    sse::message_added(&item_id),
                    sse::text_delta(&item_id, "working"),
                ],
            )
            .await?;
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => {}
                () = client_closed(stream) => {}
            }
            Ok(())
        }
        Behaviour::FunctionCall { name, arguments } => {
            let call = sse::function_call_done(
                &format!("fc_{n}"),
                &format!("call_{n}"),
                &name,
                &arguments.to_string(),
            );
            send_events(
                stream,
                &[
                    sse::created(&response_id),
                    call,
                    sse::completed(&response_id),
                ],
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_tool_results_and_goal_continuations() {
        let tool = json!({ "input": [
            { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": "hi" }] },
            { "type": "function_call", "call_id": "c" },
            { "type": "function_call_output", "call_id": "c", "output": "x" }
        ]});
        assert!(is_tool_result(&tool));
        assert!(!is_goal_continuation(&tool));

        let goal = json!({ "input": [
            { "type": "message", "role": "assistant", "content": [] },
            { "type": "message", "role": "user", "content": [
                { "type": "input_text", "text": format!("{GOAL_CONTINUATION_MARKER}\ncontinue") }
            ]}
        ]});
        assert!(is_goal_continuation(&goal));
        assert!(!is_tool_result(&goal));

        let old_goal = json!({ "input": [
            { "type": "message", "role": "user", "content": [
                { "type": "input_text", "text": GOAL_CONTINUATION_MARKER }
            ]},
            { "type": "message", "role": "assistant", "content": [] },
            { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": "plain" }] }
        ]});
        assert!(!is_goal_continuation(&old_goal));
    }
}
