//! Test support: a private DISPATCH_HOME per test and the real binaries, driven as a user
//! would drive them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use serde_json::{Value, json};

/// Fake executables ([`executable::write_executable`]).
#[path = "../../../test-support/executable.rs"]
pub mod executable;

/// The `dispatch` binary under test.
pub fn dispatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dispatch"))
}

/// The `dispatchd` binary under test.
pub fn dispatchd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dispatchd"))
}

/// The real Codex CLI the tests drive: `DISPATCH_CODEX_BIN` (as `scripts/test` sets it), else
/// the pinned copy `scripts/install-codex` installs under the data directory.
pub fn codex_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DISPATCH_CODEX_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let bin = codex_app_server::installed_codex_bin(
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
    .filter(|bin| bin.is_file());
    bin.expect(
        "the pinned Codex CLI is missing: run scripts/install-codex (scripts/test does) or set DISPATCH_CODEX_BIN",
    )
}

/// A private runtime layout (DISPATCH_HOME) and Codex home (CODEX_HOME, configured for the
/// offline recipe); stops its daemon when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:?}"))
    }

    /// Asserts success and returns the JSON output.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self.json()
    }

    /// Asserts a `--json` error with `code` and returns the error body.
    pub fn error(&self, code: &str) -> Value {
        let body = self.json()["error"].clone();
        assert_eq!(body["code"], code, "unexpected outcome: {self:?}");
        body
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Home {
    /// A fresh, empty DISPATCH_HOME (not yet created on disk).
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("dh")
            .tempdir()
            .expect("tempdir");
        let home = Home { dir };
        // Nothing listens on the discard port: a turn would fail fast, not reach the network.
        home.use_model_provider("http://127.0.0.1:9/v1");
        home
    }

    /// Points Codex at the Responses API at `base_url` (a stub of the test's).
    pub fn use_model_provider(&self, base_url: &str) {
        responses_stub::write_codex_config(
            &self.codex_home(),
            base_url,
            &responses_stub::CodexConfig::default(),
        )
        .expect("write CODEX_HOME/config.toml");
    }

    /// Points Codex at the Responses API at `base_url` with `config` (retries and the like).
    pub fn use_model_provider_with(&self, base_url: &str, config: &responses_stub::CodexConfig) {
        responses_stub::write_codex_config(&self.codex_home(), base_url, config)
            .expect("write CODEX_HOME/config.toml");
    }

    /// Writes DISPATCH_HOME/config.toml (the daemon reads it when it starts).
    pub fn write_config(&self, toml: &str) {
        std::fs::create_dir_all(self.path()).expect("DISPATCH_HOME");
        std::fs::write(self.file("config.toml"), toml).expect("write config.toml");
    }

    /// CODEX_HOME.
    pub fn codex_home(&self) -> PathBuf {
        self.dir.path().join("codex")
    }

    /// DISPATCH_HOME.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A file in DISPATCH_HOME.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// A command for `bin` with this layout and the binaries' directory first on PATH.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        let bin_dir = dispatch_bin()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin_dir];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("DISPATCH_HOME", self.path())
            .env("CODEX_HOME", self.codex_home())
            .env("DISPATCH_CODEX_BIN", codex_bin())
            .env("PATH", std::env::join_paths(dirs).expect("PATH"))
            .env_remove("DISPATCH_SOCKET")
            .env_remove("DISPATCH_DB")
            .env_remove("DISPATCH_PIDFILE")
            .env_remove("DISPATCH_DAEMON_BIN")
            // The tests may run inside a Codex session: they are no lane's caller unless they
            // say so.
            .env_remove("CODEX_THREAD_ID")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `dispatch args...`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(&dispatch_bin())
            .args(args)
            .output()
            .expect("run dispatch")
            .into()
    }

    /// Runs `dispatch args... --json` with `env` on top of the layout's environment.
    pub fn json_with_env(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Run {
        let mut cmd = self.command(&dispatch_bin());
        cmd.args(args).arg("--json");
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.output().expect("run dispatch").into()
    }

    /// Polls `dispatch daemon status --json` until `done` holds or `within` passes; returns the
    /// last status. For state the daemon reaches on its own (a restart), not for ordering.
    pub fn status_until(
        &self,
        within: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let status = self.json(&["daemon", "status"]).ok_json();
            if done(&status) || std::time::Instant::now() > deadline {
                return status;
            }
            std::thread::yield_now();
        }
    }

    /// Runs `dispatch args... --json`.
    pub fn json(&self, args: &[&str]) -> Run {
        let mut args = args.to_vec();
        args.push("--json");
        self.run(&args)
    }

    /// The operations in `dispatch daemon log`, newest first.
    pub fn logged_ops(&self) -> Vec<String> {
        let log = self.json(&["daemon", "log"]).ok_json();
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["op"].as_str().map(str::to_owned))
            .collect()
    }

    /// `dispatch up --json`, asserted to succeed.
    pub fn up(&self) -> Value {
        self.json(&["up"]).ok_json()
    }

    /// The pid in the pidfile, if any.
    pub fn pidfile_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.file("dispatchd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts `dispatch mcp` as an MCP client would by default: the default toolsets.
    pub fn mcp(&self) -> Mcp {
        self.mcp_with(&[], &[])
    }

    /// Starts `dispatch mcp --toolsets all`: every MCP operation is a tool.
    pub fn mcp_all(&self) -> Mcp {
        self.mcp_with(&["--toolsets", "all"], &[])
    }

    /// Starts `dispatch mcp` with `env` on top of the layout's environment (Codex starts it
    /// with `CODEX_THREAD_ID` set to the thread it serves).
    pub fn mcp_with_env(&self, env: &[(&str, &str)]) -> Mcp {
        self.mcp_with(&[], env)
    }

    /// Starts `dispatch mcp ARGS...` with `env` on top of the layout's environment.
    pub fn mcp_with(&self, args: &[&str], env: &[(&str, &str)]) -> Mcp {
        let mut cmd = self.command(&dispatch_bin());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd
            .arg("mcp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn dispatch mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Mcp {
            child,
            stdin,
            stdout,
            next_id: 1,
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let stopped = self.run(&["down", "--json"]);
        if stopped.code != 0
            && let Some(pid) = self.pidfile_pid()
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // DISPATCH_TEST_KEEP=1 keeps the homes of failed tests for a post-mortem.
        if std::thread::panicking() && std::env::var_os("DISPATCH_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept the test home {}", kept.keep().display());
        }
    }
}

/// The error body of an MCP error result: `isError`, no `structuredContent` (which would
/// have to match the tool's output schema), and `{"error": body}` as the text content.
pub fn mcp_error_body(result: &Value) -> Value {
    assert_eq!(result["isError"], true, "not an error result: {result}");
    assert!(
        result.get("structuredContent").is_none(),
        "an error result carries no structuredContent: {result}"
    );
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let parsed: Value = serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("the error text is not JSON ({err}): {result}"));
    parsed["error"].clone()
}

/// A `dispatch mcp` child speaking newline-delimited JSON-RPC.
pub struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Mcp {
    /// Sends one message.
    pub fn send(&mut self, message: &Value) {
        writeln!(self.stdin, "{message}").expect("write to dispatch mcp");
        self.stdin.flush().expect("flush");
    }

    /// Sends a request and returns its response, skipping notifications.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let read = self
                .stdout
                .read_line(&mut line)
                .expect("read from dispatch mcp");
            assert!(read > 0, "dispatch mcp closed its stdout");
            let message: Value = serde_json::from_str(&line).expect("a JSON line");
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// `initialize` + `notifications/initialized`.
    pub fn initialize(&mut self) -> Value {
        let answer = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "dispatch-tests", "version": "0"}
            }),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer
    }

    /// `tools/call` of `name` with `arguments`; returns the call result.
    pub fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))["result"].clone()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stub Responses API on loopback, with the runtime that serves it.
pub struct Stub {
    stub: responses_stub::ResponsesStub,
    _runtime: tokio::runtime::Runtime,
}

impl Stub {
    /// Starts the stub with `script`.
    pub fn start(script: responses_stub::Script) -> Stub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let stub = runtime
            .block_on(responses_stub::ResponsesStub::start(script))
            .expect("start the stub");
        Stub {
            stub,
            _runtime: runtime,
        }
    }

    /// Its base URL for Codex.
    pub fn base_url(&self) -> String {
        self.stub.base_url()
    }

    /// Queues a behaviour for the next request.
    pub fn push(&self, behaviour: responses_stub::Behaviour) {
        self.stub.push(behaviour);
    }

    /// Waits (bounded) until it has received `n` requests.
    pub fn wait_for_requests(&self, n: usize) {
        self._runtime
            .block_on(
                self.stub
                    .wait_for_requests(n, std::time::Duration::from_secs(60)),
            )
            .expect("the stub received the requests");
    }

    /// The requests it received.
    pub fn requests(&self) -> Vec<responses_stub::RecordedRequest> {
        self.stub.requests()
    }
}

impl Home {
    /// A layout whose Codex talks to a fresh stub running `script`; the daemon is up.
    pub fn with_stub(script: responses_stub::Script) -> (Home, Stub) {
        let stub = Stub::start(script);
        let home = Home::new();
        home.use_model_provider(&stub.base_url());
        home.up();
        (home, stub)
    }

    /// `dispatch new --name <name> --cwd <fresh dir> <extra...>`: the lane's ref, and the
    /// directory (kept alive by the caller).
    pub fn new_lane(&self, name: &str, extra: &[&str]) -> (String, tempfile::TempDir) {
        let work = tempfile::tempdir().expect("cwd");
        let cwd = work.path().display().to_string();
        let mut args = vec!["new", "--name", name, "--cwd", &cwd];
        args.extend_from_slice(extra);
        let created = self.json(&args).ok_json();
        let lane = created["lane"]["ref"]
            .as_str()
            .expect("a lane ref")
            .to_owned();
        (lane, work)
    }

    /// Waits (bounded) until nobody holds the daemon's pidfile lock: the daemon exited.
    pub fn wait_daemon_gone(&self) {
        let released = Command::new("flock")
            .args(["-s", "-w", "30"])
            .arg(self.file("dispatchd.pid"))
            .arg("true")
            .status()
            .expect("flock");
        assert!(released.success(), "the daemon did not exit within 30 s");
    }

    /// Polls `dispatch get <lane> --json` until `done` holds (bounded); returns the last answer.
    pub fn get_until(
        &self,
        lane: &str,
        within: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let got = self.json(&["get", lane]).ok_json();
            if done(&got) || std::time::Instant::now() > deadline {
                return got;
            }
            // Let the daemon's pump make progress; `watch` is tested on its own.
            let _ = self.json(&["watch", lane, "--timeout", "0.5", "--max-events", "1"]);
        }
    }
}

/// Makes a thread with one completed turn directly with codex (no dispatch), named `name` when
/// given, and returns its id: a thread the way another Codex client leaves it.
pub fn codex_thread(home: &Home, cwd: &str, text: &str, name: Option<&str>) -> String {
    use codex_app_server::protocol::{
        ServerNotification, ThreadSetNameParams, ThreadStartParams, TurnStartParams, UserInput,
    };
    use codex_app_server::{AppServer, Event, SpawnOptions};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = AppServer::spawn(SpawnOptions::new(codex_bin()).codex_home(home.codex_home()))
            .await
            .expect("codex app-server");
        let started = server
            .call(&ThreadStartParams {
                cwd: Some(cwd.to_owned()),
                ..Default::default()
            })
            .await
            .expect("thread/start");
        let id = started.thread.id.clone();
        let mut events = server.subscribe_thread(&id);
        server
            .call(&TurnStartParams {
                thread_id: id.clone(),
                input: vec![UserInput::text(text)],
                ..Default::default()
            })
            .await
            .expect("turn/start");
        tokio::time::timeout(std::time::Duration::from_secs(90), async {
            while let Some(event) = events.recv().await {
                if let Event::Notification(n) = event
                    && matches!(n.as_ref(), ServerNotification::TurnCompleted(_))
                {
                    return;
                }
            }
        })
        .await
        .expect("the turn completes");
        if let Some(name) = name {
            server
                .call(&ThreadSetNameParams {
                    thread_id: id.clone(),
                    name: name.to_owned(),
                })
                .await
                .expect("thread/name/set");
        }
        server.shutdown().await;
        id
    })
}
