//! [`Runner`]: the one entry point both front ends call with an operation and JSON input.

use dispatch_contract::types::{DaemonStatusInput, DaemonStopIfIdleInput, DownInput, UpInput};
use dispatch_contract::{
    ClientOps, DispatchError, ErrorCode, Hint, Operation, RunsIn, call_client_op, operations,
    validate_input,
};
use dispatch_home::{DaemonProbe, Paths};
use dispatch_rpc::{DaemonClient, EncodedCall};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::daemon_process::DaemonLaunch;
use crate::local::LocalOps;
use crate::prepare::apply_client_defaults;

/// What an operation answered: a client-side operation's output, or the daemon's JSON text.
enum Output {
    Local(Value),
    Daemon(Box<RawValue>),
}

/// Runs operations against the layout of one `DISPATCH_HOME`.
pub struct Runner {
    local: LocalOps,
}

impl Runner {
    /// A runner for the layout that the environment variables name (`DISPATCH_HOME`, else
    /// `$HOME/.dispatch`; never the user database, which the statically linked CLI must not
    /// ask: [`Paths::from_env_vars`]).
    pub fn from_env() -> Result<Runner, DispatchError> {
        let paths = Paths::from_env_vars().map_err(DispatchError::from)?;
        Ok(Runner::new(paths))
    }

    /// A runner for `paths`, starting the daemon binary found next to this executable or on
    /// PATH.
    pub fn new(paths: Paths) -> Runner {
        Runner::with_launch(paths, DaemonLaunch::default())
    }

    /// A runner for `paths` whose `up` starts the daemon as `launch` says.
    pub fn with_launch(paths: Paths, launch: DaemonLaunch) -> Runner {
        Runner {
            local: LocalOps::new(paths, launch),
        }
    }

    /// The layout this runner works on.
    pub fn paths(&self) -> &Paths {
        self.local.paths()
    }

    /// Runs `op` with `input`: validates it against the contract (the input the operation
    /// takes, the same on every surface), fills the client defaults, then runs it here or in
    /// the daemon. It never reads files or standard input: the CLI reads its file inputs
    /// before calling this.
    pub async fn run(&self, op: &'static Operation, input: Value) -> Result<Value, DispatchError> {
        value_of(op, self.run_output(op, input).await?)
    }

    /// [`Self::run`], answering the output as JSON text: the daemon's answer exactly as it
    /// wrote it (never parsed into a tree here), or a client-side operation's output encoded.
    /// What `--json` prints.
    pub async fn run_text(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Box<RawValue>, DispatchError> {
        text_of(op, self.run_output(op, input).await?)
    }

    /// [`Self::run`] for a caller without an async runtime (the CLI, which makes one call and
    /// exits): a daemon operation that does not stream is one blocking HTTP POST, with no
    /// runtime started; anything else (a client-side or streaming operation, restarting a
    /// stale daemon) runs on a current-thread runtime started for it. Same checks, same
    /// answers, same errors.
    pub fn run_blocking(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Value, DispatchError> {
        value_of(op, self.run_output_blocking(op, input)?)
    }

    /// [`Self::run_text`] without an async runtime, as [`Self::run_blocking`].
    pub fn run_text_blocking(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Box<RawValue>, DispatchError> {
        self.run_output_blocking(op, input)
            .and_then(|output| text_of(op, output))
    }

    #[cfg(target_os = "linux")]
    fn run_output_blocking(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Output, DispatchError> {
        if op.runs_in == RunsIn::Client || op.streaming.is_some() {
            return block_on(self.run_output(op, input));
        }
        let call = daemon_call(op, input)?;
        let first = dispatch_rpc::call_text_blocking(&self.paths().socket, &call);
        let answer = match after_first_call(op, call.input(), first)? {
            First::Answer(answer) => answer,
            First::Stale(stale) => block_on(self.call_after_restart(&call, stale)),
        };
        answer.map(Output::Daemon)
    }

    /// Elsewhere the async path, on a runtime started for it.
    #[cfg(not(target_os = "linux"))]
    fn run_output_blocking(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Output, DispatchError> {
        block_on(self.run_output(op, input))
    }

    /// The call again, after restarting the stale daemon (when it is idle).
    async fn call_after_restart(
        &self,
        call: &EncodedCall<'_>,
        stale: DispatchError,
    ) -> Result<Box<RawValue>, DispatchError> {
        self.restart_if_idle(stale).await?;
        self.call_daemon(call).await
    }

    async fn run_output(
        &self,
        op: &'static Operation,
        input: Value,
    ) -> Result<Output, DispatchError> {
        match op.runs_in {
            RunsIn::Client => call_client_op(&self.local, op, input)
                .await
                .map(Output::Local),
            RunsIn::Daemon => {
                let call = daemon_call(op, input)?;
                let first = self.call_daemon(&call).await;
                let answer = match after_first_call(op, call.input(), first)? {
                    First::Answer(answer) => answer,
                    First::Stale(stale) => self.call_after_restart(&call, stale).await,
                };
                answer.map(Output::Daemon)
            }
        }
    }

    /// One call: a plain HTTP/1.1 POST, or the WebSocket for a streaming operation.
    async fn call_daemon(&self, call: &EncodedCall<'_>) -> Result<Box<RawValue>, DispatchError> {
        let client = DaemonClient::connect_for(&self.paths().socket, call.op()).await?;
        client.send(call).await
    }

    /// Restarts a stale daemon that has no work in flight; a busy one is left alone and the
    /// error says how to restart it. The daemon decides (`daemon stop-if-idle`, asked without
    /// the contract check): idle, it admits no new model work and stops, so no turn that
    /// starts after the check is interrupted. A daemon older than that operation is judged
    /// from its `idle` answer, then stopped (the check and the stop are then two steps).
    async fn restart_if_idle(&self, stale: DispatchError) -> Result<(), DispatchError> {
        let answer = self.stop_if_idle().await;
        let idle = match answer {
            StopAnswer::Stopping { .. } => true,
            StopAnswer::Busy => false,
            StopAnswer::Unknown => match stale.details.get("idle").and_then(Value::as_bool) {
                Some(idle) => idle,
                None => self.daemon_is_idle().await,
            },
        };
        if !idle {
            return Err(stale.with_hint(
                Hint::new(
                    "the daemon has work in flight, so it was not restarted; restart it ({0}, \
                     then {1}) when its lanes are idle",
                )
                .run(&operations::DOWN, serde_json::json!({}))
                .run(&operations::UP, serde_json::json!({})),
            ));
        }
        self.end_stale_daemon(answer).await?;
        self.local.up(UpInput::default()).await?;
        Ok(())
    }

    /// Ends the stale daemon before the restart's `up`. A daemon that agreed to stop exits by
    /// itself: `down` waits for that, but only while that daemon (its pid) holds the pidfile;
    /// once it has exited, a daemon holding it now was started after it (another client's
    /// restart, whose turn may already run) and is left alone. An older daemon, which does not
    /// stop by itself, is stopped outright.
    async fn end_stale_daemon(&self, answer: StopAnswer) -> Result<(), DispatchError> {
        if let StopAnswer::Stopping { pid: Some(pid) } = answer
            && !self.holds_pidfile(pid)?
        {
            return Ok(());
        }
        self.local.down(DownInput::default()).await?;
        Ok(())
    }

    /// Whether the daemon `pid` is running and holds the pidfile.
    fn holds_pidfile(&self, pid: u32) -> Result<bool, DispatchError> {
        let probe = dispatch_home::probe(&self.paths().pidfile)?;
        Ok(matches!(probe, DaemonProbe::Running { pid: Some(running) } if running == pid))
    }

    /// Asks the daemon, whatever its contract, to stop if it is idle.
    async fn stop_if_idle(&self) -> StopAnswer {
        let Ok(client) = DaemonClient::connect(&self.paths().socket).await else {
            return StopAnswer::Unknown;
        };
        match client.call_unchecked(&DaemonStopIfIdleInput {}).await {
            Ok(stopping) => StopAnswer::Stopping {
                pid: u32::try_from(u64::from(stopping.pid)).ok(),
            },
            Err(err) => StopAnswer::of_error(&err),
        }
    }

    /// Asks a daemon too old to know the operation whether it is idle (no busy lane, no pending
    /// approval), without the contract check.
    async fn daemon_is_idle(&self) -> bool {
        let Ok(client) = DaemonClient::connect(&self.paths().socket).await else {
            return false;
        };
        // An answer this client cannot decode says nothing: the daemon is not known idle.
        match client.call_unchecked(&DaemonStatusInput {}).await {
            Ok(status) => status.lanes.busy == 0 && status.lanes.waiting_approval == 0,
            Err(_) => false,
        }
    }
}

/// What a stale daemon answered when asked to stop if idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopAnswer {
    /// It was idle and is stopping (or was already stopping): it starts no new model work.
    Stopping {
        /// Its pid, when it said (`daemon_stopping` does not).
        pid: Option<u32>,
    },
    /// It has work in flight and stays up.
    Busy,
    /// It does not know the request (older than it) or did not answer it: no decision.
    Unknown,
}

impl StopAnswer {
    fn of_error(err: &DispatchError) -> StopAnswer {
        match err.code {
            ErrorCode::DaemonBusy => StopAnswer::Busy,
            ErrorCode::DaemonStopping => StopAnswer::Stopping { pid: None },
            _ => StopAnswer::Unknown,
        }
    }
}

/// An output as a `Value`: a client-side operation's as it is, the daemon's text parsed.
fn value_of(op: &Operation, output: Output) -> Result<Value, DispatchError> {
    match output {
        Output::Local(value) => Ok(value),
        Output::Daemon(text) => dispatch_rpc::parse_output(op, &text),
    }
}

/// An output as JSON text: the daemon's as it wrote it, a client-side operation's encoded.
fn text_of(op: &Operation, output: Output) -> Result<Box<RawValue>, DispatchError> {
    match output {
        Output::Local(value) => serde_json::value::to_raw_value(&value).map_err(|err| {
            DispatchError::internal(format!("encoding the output of `{}`: {err}", op.title))
        }),
        Output::Daemon(text) => Ok(text),
    }
}

/// A call of a daemon operation as it is sent, encoded once: the input with the client
/// defaults, refused (after the contract check, so that a bad field is named first) when it
/// cannot be sent, too large for the daemon to read.
///
/// The daemon validates every input before it acts, with validators it compiled once.
/// Compiling the schema here as well would be most of the cost of a call from a short-lived
/// CLI process, so the input is checked here only when the daemon does not take it: too large
/// to send, unreachable, or stale (about to be restarted).
fn daemon_call(
    op: &'static Operation,
    input: Value,
) -> Result<EncodedCall<'static>, DispatchError> {
    let input = apply_client_defaults(op, input)?;
    EncodedCall::new(op, input).map_err(|refused| {
        validate_input(op, &refused.input)
            .err()
            .unwrap_or(refused.error)
    })
}

/// What the first call to the daemon leaves to do.
enum First {
    /// Its answer, or the error to report.
    Answer(Result<Box<RawValue>, DispatchError>),
    /// The daemon is stale (and the input valid): restart it if idle, then call again.
    Stale(DispatchError),
}

/// The first call's outcome: a stale or unreachable daemon did not check the input, so it is
/// checked here before the daemon's error stands (or the daemon is restarted).
fn after_first_call(
    op: &'static Operation,
    input: &Value,
    first: Result<Box<RawValue>, DispatchError>,
) -> Result<First, DispatchError> {
    match first {
        Err(err) if err.code == ErrorCode::DaemonStale => {
            validate_input(op, input)?;
            Ok(First::Stale(err))
        }
        Err(err) if err.code == ErrorCode::DaemonUnreachable => {
            validate_input(op, input)?;
            Ok(First::Answer(Err(err)))
        }
        other => Ok(First::Answer(other)),
    }
}

/// Runs `future` to completion on a current-thread runtime started for it (timers and I/O
/// enabled): for the calls of [`Runner::run_blocking`] that need one, and for a CLI command
/// that needs one (a stream, `mcp`).
pub fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, DispatchError>>,
) -> Result<T, DispatchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| DispatchError::internal(format!("cannot start the async runtime: {err}")))?
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use dispatch_contract::{ErrorCode, operations};
    use serde_json::json;

    use super::*;

    /// An input too large to send is refused with the size error, after the contract check:
    /// a bad field in it is named first.
    #[test]
    fn a_call_too_large_to_send_is_refused_after_the_contract_check() {
        // Valid, and over the request limit once encoded: each character is `\u0001`.
        let long = "\u{1}".repeat(1024 * 1024);
        let big = json!({"name": "n", "developer_instructions": long, "base_instructions": long});
        let err = daemon_call(&operations::NEW, big.clone()).expect_err("too large");
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(
            err.message.starts_with("the request for `new` is 12.0 MiB"),
            "{}",
            err.message
        );
        let mut invalid = big;
        invalid["no_such_field"] = json!(1);
        let err = daemon_call(&operations::NEW, invalid).expect_err("invalid");
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(err.message.contains("no_such_field"), "{}", err.message);
        let call = daemon_call(&operations::NEW, json!({"name": "n"})).expect("sent as it is");
        assert_eq!(call.input()["name"], "n");
    }

    /// Another client's restart may have replaced the daemon that agreed to stop before this
    /// client stops it: the replacement (which may already run that client's turn) is left
    /// alone, since the daemon that agreed to stop exits by itself.
    #[test]
    fn a_daemon_that_replaced_the_stopping_one_is_not_stopped() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let home = tempfile::tempdir().expect("tempdir");
        let pidfile = home.path().join("dispatchd.pid");
        std::fs::write(&pidfile, "").expect("pidfile");
        // The replacement daemon: a process holding the pidfile's lock until its stdin closes.
        let mut replacement = Command::new("flock")
            .arg("-x")
            .arg(&pidfile)
            .args(["-c", "echo locked; read _"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock");
        let mut line = String::new();
        BufReader::new(replacement.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the lock is held");
        std::fs::write(&pidfile, format!("{}\n", replacement.id())).expect("its pid");
        let paths = Paths::from_lookup(|key| (key == "DISPATCH_HOME").then(|| home.path().into()))
            .expect("paths");
        let runner = Runner::new(paths);
        let stopped_before = replacement.id() + 1;
        block_on(runner.end_stale_daemon(StopAnswer::Stopping {
            pid: Some(stopped_before),
        }))
        .expect("nothing to stop");
        assert!(
            replacement.try_wait().expect("try_wait").is_none(),
            "the replacement daemon was signalled"
        );
        drop(replacement.stdin.take());
        replacement.wait().expect("the replacement exits");
    }

    /// What the stale daemon's answer to `daemon stop-if-idle` makes of the restart: a busy
    /// one stays up, an older one that does not know the request is judged as before.
    #[test]
    fn a_stop_answer_decides_the_restart_only_when_the_daemon_knows_the_request() {
        let of = |code| StopAnswer::of_error(&DispatchError::new(code, "x"));
        assert_eq!(of(ErrorCode::DaemonBusy), StopAnswer::Busy);
        assert_eq!(
            of(ErrorCode::DaemonStopping),
            StopAnswer::Stopping { pid: None }
        );
        // What an older daemon's unknown method becomes (`from_error_object`).
        assert_eq!(of(ErrorCode::DaemonStale), StopAnswer::Unknown);
        assert_eq!(of(ErrorCode::DaemonUnreachable), StopAnswer::Unknown);
    }
}
