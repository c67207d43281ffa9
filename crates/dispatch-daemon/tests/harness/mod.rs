//! A daemon `Service` over a fresh registry and the scripted fake App Server, run the way the
//! RPC registration runs operations. The test binary that includes this module is its own fake
//! App Server (`harness = false`, with its own `main` calling [`serve_fake_if_asked`]).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch_contract::{DispatchError, ErrorCode, Request, decode_input, run_operation};
use dispatch_daemon::{Service, Supervisor};
use dispatch_home::Config;
use dispatch_registry::{Fact, LaneRow, NewEvent, NewLane, Ownership, Recorded, Registry};
use fake_app_server::Script;
use libtest_mimic::{Failed, Trial};
use serde_json::{Value, json};

/// Runs the fake App Server when this binary was started as `<binary> app-server`.
pub fn serve_fake_if_asked() -> Option<std::process::ExitCode> {
    if std::env::args().nth(1).as_deref() != Some("app-server") {
        return None;
    }
    Some(match fake_app_server::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fake App Server: {err:#}");
            std::process::ExitCode::FAILURE
        }
    })
}

/// A test body.
pub type Test = fn(&Daemon) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>>;

/// A test: a fresh daemon per run, on its own runtime; the fake App Server is stopped after.
pub fn trial(name: &'static str, body: Test) -> Trial {
    trial_with(name, Script::default, body)
}

/// Runs `body` on a daemon with `config` and the fake App Server following `script`, with the
/// event pump running, on a runtime of its own; fails after 60 s. The App Servers are stopped
/// after.
pub fn run_pumped(script: Script, config: Config, body: Test) -> Result<(), Failed> {
    run(script, config, true, body)
}

/// [`trial`] with the fake App Server following `script()`.
pub fn trial_with(name: &'static str, script: fn() -> Script, body: Test) -> Trial {
    Trial::test(name, move || run(script(), Config::default(), false, body))
}

/// Runs `body` on a daemon with `config` and the fake App Server following `script`, on a
/// runtime of its own, with the event pump running when `pumped`; fails after 60 s. The App
/// Servers are stopped after.
pub fn run(script: Script, config: Config, pumped: bool, body: Test) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| Failed::from(format!("runtime: {err}")))?;
    runtime.block_on(async move {
        let daemon = Daemon::start_with(script, &config).await;
        let pump = pumped.then(|| tokio::spawn(dispatch_daemon::pump(Arc::clone(&daemon.service))));
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), body(&daemon)).await;
        daemon.service.app_server().stop().await;
        if let Some(pump) = pump {
            pump.abort();
        }
        outcome.map_err(|_| Failed::from("the test did not finish within 60 s"))
    })
}

/// A `Service` over a fresh registry and the fake App Server.
pub struct Daemon {
    /// The service.
    pub service: Arc<Service>,
    /// The registry file.
    pub db: PathBuf,
    /// The file the fake appends each request's method to.
    pub requests: PathBuf,
    /// The file the fake appends `<pid> <method> <threadId>` of each request to.
    pub process_requests: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the fake App Server with `script` and a service over a fresh registry.
    pub async fn start(script: Script, allow_attached_writes: bool) -> Daemon {
        let mut config = Config::default();
        config.policy.allow_attached_writes = allow_attached_writes;
        Daemon::start_with(script, &config).await
    }

    /// [`Daemon::start`] with the daemon's settings given in full.
    pub async fn start_with(script: Script, config: &Config) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let requests = dir.path().join("requests.log");
        let process_requests = dir.path().join("process-requests.log");
        let script = Script {
            log: Some(requests.display().to_string()),
            inputs_log: Some(dir.path().join("inputs.log").display().to_string()),
            process_log: Some(process_requests.display().to_string()),
            ..script
        };
        let bin = fake_codex(dir.path(), &script);
        let db = dir.path().join("registry.db");
        let registry = Registry::open(&db).await.expect("registry");
        let bin = codex_app_server::CodexBin {
            path: bin,
            source: codex_app_server::CodexBinSource::Env,
        };
        let app_server = Supervisor::start_with_bin(bin, config.app_server.processes)
            .await
            .expect("the fake App Server starts");
        let service = Service::new(registry, app_server, dir.path().join("sock"), config);
        Daemon {
            service: Arc::new(service),
            db,
            requests,
            process_requests,
            _dir: dir,
        }
    }

    /// A second connection to the daemon's registry, as another process would open.
    pub async fn raw_connection(&self) -> sqlx::SqliteConnection {
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            self.db.display()
        ))
        .await
        .expect("a second connection")
    }

    /// Runs an operation as the RPC registration does: decode (validate) the JSON input, then
    /// `run_operation` (lock, operation, action log).
    pub async fn call<R: Request>(&self, input: Value) -> Result<R::Output, DispatchError>
    where
        Service: dispatch_contract::Handle<R>,
    {
        let input: R = decode_input(input)?;
        run_operation(&*self.service, input).await
    }

    /// The pids that were asked `method` about `thread_id`.
    pub fn asked(&self, method: &str, thread_id: &str) -> Vec<u32> {
        self.process_requests()
            .into_iter()
            .filter(|(_, m, t)| m == method && t == thread_id)
            .map(|(pid, _, _)| pid)
            .collect()
    }

    /// `new` without a first message: a lane with a thread, in `/`.
    pub async fn new_lane(&self, name: &str) -> dispatch_contract::types::NewOutput {
        self.call::<dispatch_contract::types::NewInput>(
            json!({ "name": name, "cwd": "/", "no_send": true }),
        )
        .await
        .expect("new")
    }

    /// `send` of `text` to `lane`, which must be accepted.
    pub async fn send(&self, lane: &str, text: &str) -> dispatch_contract::types::SendOutput {
        let sent: dispatch_contract::types::SendOutput = self
            .call::<dispatch_contract::types::SendInput>(json!({ "lane": lane, "text": text }))
            .await
            .expect("send");
        assert!(sent.message_accepted, "{sent:?}");
        sent
    }

    /// A lane in the registry, on a thread of its own (`thread-<name>`).
    pub async fn lane(&self, name: &str, ownership: Ownership) -> LaneRow {
        self.service
            .registry()
            .create_lane(&NewLane {
                thread_id: format!("thread-{name}"),
                title: Some(name.to_owned()),
                handle: None,
                ownership,
                cwd: None,
                model: None,
            })
            .await
            .expect("lane")
    }

    /// Records `facts` about `lane`, with `event` stored alongside when given.
    pub async fn record(&self, lane: &LaneRow, event: Option<NewEvent>, facts: Vec<Fact>) {
        self.service
            .registry()
            .record(&[Recorded {
                lane_ref: lane.lane_ref.as_str().into(),
                event,
                facts: facts.into(),
            }])
            .await
            .expect("facts");
        self.service.events_stored().await;
    }

    /// A whole turn of `lane`: started, one agent message `said`, completed with `status`
    /// (a registry `TurnStatus`), with the `turn/completed` event stored.
    pub async fn turn(
        &self,
        lane: &LaneRow,
        turn_id: &str,
        said: &str,
        status: dispatch_registry::TurnStatus,
    ) {
        self.start_turn(lane, turn_id).await;
        self.say(lane, turn_id, said).await;
        self.end_turn(lane, turn_id, status).await;
    }

    /// `turn/started` of `turn_id` on `lane`.
    pub async fn start_turn(&self, lane: &LaneRow, turn_id: &str) {
        let at_ms = now_ms();
        self.record(
            lane,
            Some(NewEvent {
                method: "turn/started".into(),
                turn_id: Some(turn_id.into()),
                at_ms,
                params: json!({}).to_string().into(),
            }),
            vec![Fact::TurnStarted {
                turn_id: turn_id.to_owned(),
                at_ms,
            }],
        )
        .await;
    }

    /// An agent message of turn `turn_id`.
    pub async fn say(&self, lane: &LaneRow, turn_id: &str, said: &str) {
        self.record(
            lane,
            None,
            vec![Fact::Item {
                turn_id: Some(turn_id.to_owned()),
                item_id: format!("msg-{turn_id}-{}", said.len()),
                kind: "agent_message".into(),
                text: Some(said.to_owned()),
                status: Some("completed".into()),
                at_ms: now_ms(),
            }],
        )
        .await;
    }

    /// `turn/completed` of `turn_id` on `lane`, with `status`.
    pub async fn end_turn(
        &self,
        lane: &LaneRow,
        turn_id: &str,
        status: dispatch_registry::TurnStatus,
    ) {
        let at_ms = now_ms();
        self.record(
            lane,
            Some(NewEvent {
                method: "turn/completed".into(),
                turn_id: Some(turn_id.into()),
                at_ms,
                params: json!({}).to_string().into(),
            }),
            vec![Fact::TurnCompleted {
                turn: dispatch_registry::TurnRow {
                    turn_id: turn_id.to_owned(),
                    status,
                    error: None,
                    started_at_ms: None,
                    completed_at_ms: Some(at_ms),
                    duration_ms: None,
                },
            }],
        )
        .await;
    }

    /// The `input` of every `turn/start` and `turn/steer` the fake App Server was asked, in
    /// order.
    pub fn turn_inputs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.requests.with_file_name("inputs.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("an input"))
            .collect()
    }

    /// The requests the fake App Server processes were asked, in order: (pid, method,
    /// thread id or "").
    pub fn process_requests(&self) -> Vec<(u32, String, String)> {
        std::fs::read_to_string(&self.process_requests)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let pid = parts.next()?.parse().ok()?;
                let method = parts.next()?.to_owned();
                Some((pid, method, parts.next().unwrap_or_default().to_owned()))
            })
            .collect()
    }

    /// The methods the fake App Server was asked, in order.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.requests)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Now, in Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[path = "../../../test-support/executable.rs"]
mod executable;

/// A `codex` script that runs this test binary as the fake App Server with `script`.
fn fake_codex(dir: &Path, script: &Script) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let path = dir.join("codex");
    let body = format!(
        "#!/bin/sh\n{}='{}' exec '{}' \"$@\"\n",
        fake_app_server::SCRIPT_ENV,
        script.to_env(),
        exe.display()
    );
    executable::write_executable(&path, &body);
    path
}

/// The error of `result`, asserted to have `code`.
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, DispatchError>,
    code: ErrorCode,
) -> DispatchError {
    match result {
        Ok(output) => panic!("expected {}, got {output:?}", code.as_str()),
        Err(err) => {
            assert_eq!(err.code, code, "{err:?}");
            err
        }
    }
}
