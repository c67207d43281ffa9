//! A minimal, scripted Codex App Server: the fake that the ingest benchmark floods the daemon
//! with (`dispatch-bench app-server`), and that the daemon's own tests run it against
//! (`crates/dispatch-daemon/tests/service.rs`), with a [`Script`] in [`SCRIPT_ENV`].
//!
//! It speaks newline-delimited JSON-RPC on stdin/stdout like `codex app-server` 0.169.0:
//! `initialize`, `thread/start`, `thread/name/set` and `turn/start` are answered with valid
//! results (the daemon decodes them strictly); `initialized` and other notifications are
//! ignored; any other request gets a JSON-RPC error. After answering `turn/start` it floods
//! that thread with [`FloodPlan`]'s notifications (`DISPATCH_BENCH_FLOOD` of them, default
//! 100,000), rendered before the answer so that the fake is never the bottleneck.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Notifications sent per turn when `DISPATCH_BENCH_FLOOD` is not set.
pub const DEFAULT_FLOOD: usize = 100_000;

/// The environment variable holding the number of notifications per turn.
pub const FLOOD_ENV: &str = "DISPATCH_BENCH_FLOOD";

/// The shape of one flooded turn: `turn/started`; the `item/completed` of the user message
/// (carrying the client's `clientUserMessageId`, as Codex records it, so `new` and `send`
/// see their message accepted); then for each agent message item
/// `item/started`, one `item/agentMessage/delta` and `item/completed`, with a
/// `thread/tokenUsage/updated` after every 10th item; `pad` more token usage updates so the
/// total is exact; and `turn/completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodPlan {
    /// Every notification sent, `turn/started`, the user message and `turn/completed`
    /// included.
    pub total: usize,
    /// Agent message items (each started, one delta, completed).
    pub items: usize,
    /// `thread/tokenUsage/updated` notifications sent to fill the total up exactly.
    pub pad: usize,
}

impl FloodPlan {
    /// The plan for `total` notifications (at least 3).
    pub fn new(total: usize) -> FloodPlan {
        let total = total.max(3);
        let budget = total - 3;
        let (mut items, mut used) = (0, 0);
        loop {
            let cost = if (items + 1) % 10 == 0 { 4 } else { 3 };
            if used + cost > budget {
                break;
            }
            used += cost;
            items += 1;
        }
        FloodPlan {
            total,
            items,
            pad: budget - used,
        }
    }

    /// Deltas: folded into their item by the daemon, not stored as events.
    pub fn deltas(&self) -> usize {
        self.items
    }

    /// The items the daemon stores: the agent messages and the user message.
    pub fn stored_items(&self) -> usize {
        self.items + 1
    }

    /// The notifications the daemon stores as events (all but the deltas).
    pub fn stored(&self) -> usize {
        self.total - self.deltas()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A UUIDv7-shaped id unique to this process and `n`.
fn uuid_like(n: u64) -> String {
    let ms = u64::try_from(now_ms()).unwrap_or(0);
    format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        std::process::id() & 0xfff,
        (n >> 48) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// The `initialize` result.
pub fn initialize_result(codex_home: &str) -> Value {
    json!({
        "userAgent": "fake/0.169.0 (bench)",
        "codexHome": codex_home,
        "platformFamily": "unix",
        "platformOs": "linux",
    })
}

/// A `Thread` as `thread/start` returns it.
fn thread(id: &str, cwd: &str, now_s: i64) -> Value {
    json!({
        "id": id,
        "sessionId": id,
        "cliVersion": "0.169.0",
        "createdAt": now_s,
        "updatedAt": now_s,
        "cwd": cwd,
        "ephemeral": false,
        "modelProvider": "fake",
        "preview": "",
        "projectId": null,
        "source": "appServer",
        "status": {"type": "idle"},
        "turns": [],
    })
}

/// The `thread/start` result (a full `ThreadStartResponse`).
pub fn thread_start_result(id: &str, cwd: &str, model: &str) -> Value {
    let now_s = now_ms() / 1000;
    json!({
        "approvalPolicy": "never",
        "approvalsReviewer": "user",
        "cwd": cwd,
        "model": model,
        "modelProvider": "fake",
        "sandbox": {"type": "readOnly", "networkAccess": false},
        "thread": thread(id, cwd, now_s),
    })
}

/// A `Turn` in progress.
fn turn_in_progress(id: &str, started_s: i64) -> Value {
    json!({"id": id, "items": [], "status": "inProgress", "startedAt": started_s})
}

/// Items the `thread/read` of a fake thread holds (env override).
pub const SYNC_ITEMS_ENV: &str = "DISPATCH_BENCH_SYNC_ITEMS";

/// The `thread/read` result: the thread with one completed turn of `items` agent messages.
pub fn thread_read_result(id: &str, items: usize) -> Value {
    let now_s = now_ms() / 1000;
    let items: Vec<Value> = (0..items)
        .map(|i| json!({"type": "agentMessage", "id": format!("sync-item-{i}"), "text": format!("synced item {i}")}))
        .collect();
    let mut thread = thread(id, "/", now_s);
    thread["turns"] = json!([{
        "id": "sync-turn",
        "items": items,
        "status": "completed",
        "startedAt": now_s,
        "completedAt": now_s,
        "durationMs": 1,
    }]);
    json!({ "thread": thread })
}

/// The `turn/start` result (a `TurnStartResponse` whose turn is in progress).
pub fn turn_start_result(turn_id: &str, started_s: i64) -> Value {
    json!({ "turn": turn_in_progress(turn_id, started_s) })
}

/// Renders the flood of one turn as newline-delimited notifications.
///
/// Plain formatting (no serde) keeps it fast in an unoptimised build; the ids are
/// plain ASCII, so no escaping is needed. The user message (`client_id`, `text`) is
/// serialized properly.
pub fn render_flood(
    plan: &FloodPlan,
    thread_id: &str,
    turn_id: &str,
    started_ms: i64,
    client_id: &Value,
    input: &Value,
) -> String {
    let mut out = String::with_capacity(plan.total * 260);
    let ids = format!(r#""threadId":"{thread_id}","turnId":"{turn_id}""#);
    let started_s = started_ms / 1000;
    let _ = writeln!(
        out,
        r#"{{"method":"turn/started","params":{{"threadId":"{thread_id}","turn":{{"id":"{turn_id}","items":[],"status":"inProgress","startedAt":{started_s}}}}}}}"#
    );
    let user_message = json!({"method": "item/completed", "params": {
        "threadId": thread_id, "turnId": turn_id, "completedAtMs": started_ms,
        "item": {"type": "userMessage", "id": format!("user-{turn_id}"), "content": input, "clientId": client_id},
    }});
    let _ = writeln!(out, "{user_message}");
    let mut tokens = 0_u64;
    let mut token_usage = |out: &mut String| {
        tokens += 1;
        let (input, output) = (tokens * 1200, tokens * 80);
        let _ = writeln!(
            out,
            r#"{{"method":"thread/tokenUsage/updated","params":{{{ids},"tokenUsage":{{"last":{{"cachedInputTokens":1000,"inputTokens":1200,"outputTokens":80,"reasoningOutputTokens":0,"totalTokens":1280}},"total":{{"cachedInputTokens":{cached},"inputTokens":{input},"outputTokens":{output},"reasoningOutputTokens":0,"totalTokens":{total}}},"modelContextWindow":272000}}}}}}"#,
            cached = tokens * 1000,
            total = input + output,
        );
    };
    for i in 1..=plan.items {
        let at = started_ms + i64::try_from(i / 100).unwrap_or(0);
        let item = format!("msg_{i:07}");
        let text = format!("agent message {i}: the quick brown fox jumps over the lazy dog");
        let _ = writeln!(
            out,
            r#"{{"method":"item/started","params":{{{ids},"startedAtMs":{at},"item":{{"type":"agentMessage","id":"{item}","text":""}}}}}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"method":"item/agentMessage/delta","params":{{{ids},"itemId":"{item}","delta":"{text}"}}}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"method":"item/completed","params":{{{ids},"completedAtMs":{at},"item":{{"type":"agentMessage","id":"{item}","text":"{text}"}}}}}}"#
        );
        if i % 10 == 0 {
            token_usage(&mut out);
        }
    }
    for _ in 0..plan.pad {
        token_usage(&mut out);
    }
    let completed_ms = now_ms().max(started_ms);
    let _ = writeln!(
        out,
        r#"{{"method":"turn/completed","params":{{"threadId":"{thread_id}","turn":{{"id":"{turn_id}","items":[],"status":"completed","startedAt":{started_s},"completedAt":{completed_s},"durationMs":{duration}}}}}}}"#,
        completed_s = completed_ms / 1000,
        duration = completed_ms - started_ms,
    );
    out
}

fn reply(out: &mut impl Write, id: &Value, result: Value) -> std::io::Result<()> {
    writeln!(out, "{}", json!({"id": id, "result": result}))
}

fn error(out: &mut impl Write, id: &Value, code: i64, message: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        json!({"id": id, "error": {"code": code, "message": message}})
    )
}

/// The environment variable holding a [`Script`] as JSON. When it is set, the fake is the
/// daemon tests' App Server: `turn/start` records the user message instead of flooding, and
/// the thread state is what the script says.
pub const SCRIPT_ENV: &str = "FAKE_APP_SERVER_SCRIPT";

/// What the fake says about threads in test mode. Every field has a default, so `{}` is an
/// App Server whose threads are idle and not loaded, with no turns.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Script {
    /// Whether `thread/read` reports every thread active (running a turn).
    pub active: bool,
    /// The turns `thread/turns/list` reports, newest first: `(id, status)` with a Codex
    /// `TurnStatus` (`inProgress`, `completed`, `interrupted`, `failed`).
    pub turns: Vec<(String, String)>,
    /// The threads `thread/loaded/list` reports loaded.
    pub loaded: Vec<String>,
    /// Whether `thread/loaded/list` also reports the threads this process started or
    /// resumed, as Codex does (each process of a pool its own).
    pub track_loaded: bool,
    /// Whether `turn/interrupt` fails with Codex's "no active turn" error.
    pub no_active_turn: bool,
    /// A file to which every request's method is appended, one per line.
    pub log: Option<String>,
    /// A file to which every request is appended as `<pid> <method> <threadId>` (an empty
    /// thread id when it has none), one per line: which process of a pool was asked what.
    pub process_log: Option<String>,
    /// The threads `thread/list` reports, newest first, paged by its `limit` (the cursor is
    /// the index of the next thread).
    pub threads: Vec<String>,
    /// The thread `thread/read` names as every thread's fork parent (`forkedFromId`).
    pub forked_from: Option<String>,
    /// A file to which the `input` of every `turn/start` and `turn/steer` is appended, one
    /// JSON array per line.
    pub inputs_log: Option<String>,
    /// Whether `thread/start` fails (as Codex does for a cwd it cannot use).
    pub fail_thread_start: bool,
    /// When set, `turn/start` floods the turn with this many notifications ([`FloodPlan`])
    /// instead of the scripted two.
    pub flood: Option<usize>,
    /// A method the fake never answers: its requests stay in flight.
    pub unanswered: Option<String>,
    /// `(method, fifo)`: before answering each request of `method`, the fake opens the named
    /// pipe `fifo` and reads one line from it. A test that opens the pipe for writing is
    /// let through once the fake holds such a request; the line it writes releases it.
    pub hold: Option<(String, String)>,
    /// How long the fake takes to exit once its stdin is closed, in milliseconds (Codex
    /// finishing its writes); with a `process_log`, `<pid> exit` is logged as it exits.
    pub linger_ms: u64,
    /// Whether `turn/start` completes its turn at once without sending its user message's
    /// `item/completed` (as a subscriber that fell behind misses it); `thread/turns/list`
    /// then shows the turn, completed, holding the message.
    pub missed_user_message: bool,
}

/// The catalog `model/list` answers in test mode: [`VISION_MODEL`] (the default) takes text
/// and images, [`TEXT_MODEL`] text only.
pub fn model_list_result() -> Value {
    let model = |id: &str, is_default: bool, modalities: &[&str]| {
        json!({
            "id": id, "model": id, "displayName": id, "description": "", "hidden": false,
            "isDefault": is_default, "inputModalities": modalities,
            "defaultReasoningEffort": "medium",
            "supportedReasoningEfforts": [{"reasoningEffort": "medium", "description": ""}],
        })
    };
    json!({ "data": [
        model(VISION_MODEL, true, &["text", "image"]),
        model(TEXT_MODEL, false, &["text"]),
    ]})
}

/// The test catalog's model that takes images (its default).
pub const VISION_MODEL: &str = "fake-vision";
/// The test catalog's model that takes text only.
pub const TEXT_MODEL: &str = "fake-text";

/// Appends `input` as one line to the script's inputs log, if it has one.
fn log_input(script: &Script, input: &Value) -> std::io::Result<()> {
    if let Some(path) = &script.inputs_log {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{input}")?;
    }
    Ok(())
}

impl Script {
    /// The script as the value of [`SCRIPT_ENV`].
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A `Turn` as `thread/turns/list` returns it.
fn scripted_turn(id: &str, status: &str, now_s: i64) -> Value {
    let mut turn = json!({"id": id, "items": [], "status": status, "startedAt": now_s});
    if status != "inProgress" {
        turn["completedAt"] = json!(now_s);
        turn["durationMs"] = json!(1);
    }
    turn
}

/// What a fake process remembers between requests in test mode.
#[derive(Default)]
struct State {
    /// The threads this process started or resumed (`Script::track_loaded`).
    loaded: Vec<String>,
    /// The turns this process completed with their items (`Script::missed_user_message`).
    completed: Vec<Value>,
}

/// Answers a request in test mode; `false` when test mode does not handle `method`.
fn scripted(
    script: &Script,
    state: &mut State,
    method: &str,
    params: &Value,
    next_id: &mut u64,
    out: &mut impl Write,
    id: &Value,
) -> std::io::Result<bool> {
    let now_s = now_ms() / 1000;
    let thread_id = params["threadId"].as_str().unwrap_or_default();
    if script.unanswered.as_deref() == Some(method) {
        return Ok(true);
    }
    if let Some((held, fifo)) = &script.hold
        && held == method
    {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(std::fs::File::open(fifo)?),
            &mut line,
        )?;
    }
    match method {
        "thread/resume" => {
            if script.track_loaded && !state.loaded.iter().any(|t| t == thread_id) {
                state.loaded.push(thread_id.to_owned());
            }
            reply(out, id, thread_start_result(thread_id, "/", "fake-model"))?;
        }
        "thread/read" => {
            let mut thread = thread(thread_id, "/", now_s);
            if let Some(parent) = &script.forked_from {
                thread["forkedFromId"] = json!(parent);
            }
            if script.active {
                thread["status"] = json!({"type": "active", "activeFlags": []});
            }
            reply(out, id, json!({ "thread": thread }))?;
        }
        "thread/turns/list" => {
            let data: Vec<Value> = state
                .completed
                .iter()
                .rev()
                .cloned()
                .chain(
                    script
                        .turns
                        .iter()
                        .map(|(turn, status)| scripted_turn(turn, status, now_s)),
                )
                .collect();
            reply(out, id, json!({ "data": data }))?;
        }
        "thread/loaded/list" => {
            let data: Vec<&String> = script.loaded.iter().chain(state.loaded.iter()).collect();
            reply(out, id, json!({ "data": data }))?;
        }
        "thread/list" => {
            let from = params["cursor"]
                .as_str()
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0);
            let limit = params["limit"]
                .as_u64()
                .and_then(|l| usize::try_from(l).ok())
                .unwrap_or(25);
            let end = script.threads.len().min(from.saturating_add(limit));
            let data: Vec<Value> = script
                .threads
                .get(from..end)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let mut thread = thread(t, "/", now_s);
                    thread["preview"] = json!(format!("first message of {t}"));
                    thread
                })
                .collect();
            let next = (end < script.threads.len()).then(|| end.to_string());
            reply(out, id, json!({ "data": data, "nextCursor": next }))?;
        }
        "account/read" => reply(out, id, json!({ "requiresOpenaiAuth": false }))?,
        "permissionProfile/list" => {
            let data: Vec<Value> = [":read-only", ":workspace", ":danger-full-access"]
                .iter()
                .map(|id| json!({"id": id, "description": null, "allowed": true}))
                .collect();
            reply(out, id, json!({ "data": data, "nextCursor": null }))?;
        }
        "thread/start" if script.fail_thread_start => {
            error(out, id, -32600, "thread/start failed (scripted)")?;
        }
        "thread/archive" | "thread/unarchive" => reply(out, id, json!({}))?,
        "thread/compact/start" => reply(out, id, json!({}))?,
        "model/list" => reply(out, id, model_list_result())?,
        "config/read" => reply(out, id, json!({ "config": {}, "origins": {} }))?,
        "turn/steer" => {
            log_input(script, &params["input"])?;
            reply(out, id, json!({ "turnId": params["expectedTurnId"] }))?;
        }
        "turn/interrupt" if script.no_active_turn => {
            error(out, id, -32600, "no active turn to interrupt")?;
        }
        "turn/interrupt" => reply(out, id, json!({}))?,
        "turn/start" if script.flood.is_none() => {
            log_input(script, &params["input"])?;
            *next_id += 1;
            let turn_id = uuid_like(*next_id);
            reply(out, id, turn_start_result(&turn_id, now_s))?;
            // Codex records the user message (with the client's id) once the turn starts.
            let item = json!({
                "type": "userMessage",
                "id": format!("user-{turn_id}"),
                "content": params["input"],
                "clientId": params["clientUserMessageId"],
            });
            let started = json!({"method": "turn/started", "params": {
                "threadId": thread_id, "turn": turn_in_progress(&turn_id, now_s)}});
            writeln!(out, "{started}")?;
            if script.missed_user_message {
                let mut turn = scripted_turn(&turn_id, "completed", now_s);
                turn["items"] = json!([item]);
                let done = json!({"method": "turn/completed", "params": {
                    "threadId": thread_id, "turn": turn}});
                writeln!(out, "{done}")?;
                state.completed.push(turn);
            } else {
                let recorded = json!({"method": "item/completed", "params": {
                    "threadId": thread_id, "turnId": turn_id, "completedAtMs": now_ms(), "item": item}});
                writeln!(out, "{recorded}")?;
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Serves stdin/stdout until stdin closes.
pub fn run() -> anyhow::Result<()> {
    let script: Option<Script> = std::env::var(SCRIPT_ENV)
        .ok()
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|err| anyhow::anyhow!("{SCRIPT_ENV} is not a script: {err}"))?;
    let flood = std::env::var(FLOOD_ENV)
        .ok()
        .and_then(|n| n.trim().replace('_', "").parse().ok())
        .or(script.as_ref().and_then(|s| s.flood))
        .unwrap_or(DEFAULT_FLOOD);
    let plan = FloodPlan::new(flood);
    let codex_home = std::env::var("CODEX_HOME").unwrap_or_else(|_| "/tmp/fake-codex".into());
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut next_id = 0_u64;
    let mut state = State::default();
    for line in stdin.lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        // Notifications (`initialized`) and replies to server requests need no answer.
        let (Some(method), Some(id)) = (message["method"].as_str(), message.get("id")) else {
            continue;
        };
        let params = &message["params"];
        if let Some(script) = &script {
            if let Some(log) = &script.log {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                writeln!(file, "{method}")?;
            }
            if let Some(log) = &script.process_log {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                let thread_id = params["threadId"].as_str().unwrap_or_default();
                writeln!(file, "{} {method} {thread_id}", std::process::id())?;
            }
            if scripted(
                script,
                &mut state,
                method,
                params,
                &mut next_id,
                &mut out,
                id,
            )? {
                out.flush()?;
                continue;
            }
        }
        match method {
            "initialize" => reply(&mut out, id, initialize_result(&codex_home))?,
            "thread/start" => {
                next_id += 1;
                let cwd = params["cwd"].as_str().map_or_else(
                    || {
                        std::env::current_dir()
                            .map(|d| d.display().to_string())
                            .unwrap_or_else(|_| "/".into())
                    },
                    str::to_owned,
                );
                let model = params["model"].as_str().unwrap_or("fake-model");
                let thread_id = uuid_like(next_id);
                if script.as_ref().is_some_and(|s| s.track_loaded) {
                    state.loaded.push(thread_id.clone());
                }
                reply(&mut out, id, thread_start_result(&thread_id, &cwd, model))?;
            }
            "thread/name/set" => reply(&mut out, id, json!({}))?,
            "thread/unsubscribe" => reply(&mut out, id, json!({ "status": "unsubscribed" }))?,
            "thread/goal/get" => reply(&mut out, id, json!({ "goal": null }))?,
            "thread/read" => {
                let items = std::env::var(SYNC_ITEMS_ENV)
                    .ok()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(1000);
                let thread_id = params["threadId"].as_str().unwrap_or_default();
                reply(&mut out, id, thread_read_result(thread_id, items))?;
            }
            "turn/start" => {
                let Some(thread_id) = params["threadId"].as_str() else {
                    error(&mut out, id, -32602, "turn/start needs a threadId")?;
                    out.flush()?;
                    continue;
                };
                next_id += 1;
                let turn_id = uuid_like(next_id);
                let started_ms = now_ms();
                let flood = render_flood(
                    &plan,
                    thread_id,
                    &turn_id,
                    started_ms,
                    &params["clientUserMessageId"],
                    &params["input"],
                );
                reply(&mut out, id, turn_start_result(&turn_id, started_ms / 1000))?;
                out.flush()?;
                out.write_all(flood.as_bytes())?;
            }
            other => error(
                &mut out,
                id,
                -32601,
                &format!("the fake App Server does not implement `{other}`"),
            )?,
        }
        out.flush()?;
    }
    if let Some(script) = &script {
        std::thread::sleep(std::time::Duration::from_millis(script.linger_ms));
        if let Some(log) = &script.process_log {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            writeln!(file, "{} exit", std::process::id())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_app_server::protocol::{
        InitializeResponse, ServerNotification, ThreadStartResponse, TurnStartResponse, TurnStatus,
    };

    #[test]
    fn plans_are_exact() {
        for n in [3, 4, 6, 7, 40, 41, 42, 43, 44, 100_000, 100_001] {
            let plan = FloodPlan::new(n);
            let tokens = plan.items / 10 + plan.pad;
            assert_eq!(3 + plan.items * 3 + tokens, n, "{plan:?}");
            assert!(plan.pad < 4, "{plan:?}");
        }
        let plan = FloodPlan::new(100_000);
        assert_eq!(plan.stored() + plan.deltas(), 100_000);
    }

    #[test]
    fn the_test_catalog_decodes() {
        let models: codex_app_server::protocol::ModelListResponse =
            serde_json::from_value(model_list_result()).expect("model/list");
        assert_eq!(models.data.len(), 2);
        assert_eq!(models.data[1].input_modalities.len(), 1);
        let _: codex_app_server::protocol::ConfigReadResponse =
            serde_json::from_value(json!({ "config": {}, "origins": {} })).expect("config/read");
    }

    #[test]
    fn results_decode_strictly() {
        let _: InitializeResponse =
            serde_json::from_value(initialize_result("/tmp/x")).expect("initialize");
        let started: ThreadStartResponse =
            serde_json::from_value(thread_start_result(&uuid_like(1), "/tmp", "fake-model"))
                .expect("thread/start");
        assert_eq!(started.thread.cwd.display().to_string(), "/tmp");
        let turn: TurnStartResponse =
            serde_json::from_value(turn_start_result("t", 1)).expect("turn/start");
        let _: codex_app_server::protocol::ThreadReadResponse =
            serde_json::from_value(thread_read_result("t", 3)).expect("thread/read");
        assert_eq!(turn.turn.status, TurnStatus::InProgress);
    }

    #[test]
    fn the_flood_is_typed_notifications() {
        let plan = FloodPlan::new(47);
        let input = json!([{"type": "text", "text": "go"}]);
        let flood = render_flood(&plan, "th", "tu", now_ms(), &json!("client-1"), &input);
        let lines: Vec<&str> = flood.lines().collect();
        assert_eq!(lines.len(), 47);
        for line in &lines {
            let message: Value = serde_json::from_str(line).expect("JSON");
            let method = message["method"].as_str().expect("method").to_owned();
            let n = ServerNotification::from_parts(method.clone(), message["params"].clone());
            assert!(
                !matches!(n, ServerNotification::Other { .. }),
                "{method} did not decode: {line}"
            );
            assert_eq!(n.thread_id(), Some("th"));
        }
        let user: Value = serde_json::from_str(lines[1]).expect("JSON");
        assert_eq!(user["params"]["item"]["type"], "userMessage");
        assert_eq!(user["params"]["item"]["clientId"], "client-1");
        let last: Value = serde_json::from_str(lines[46]).expect("JSON");
        assert_eq!(last["method"], "turn/completed");
        assert_eq!(last["params"]["turn"]["status"], "completed");
        let deltas = lines.iter().filter(|l| l.contains("/delta")).count();
        assert_eq!(deltas, plan.deltas());
    }
}
