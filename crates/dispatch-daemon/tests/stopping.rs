//! A stale daemon is never restarted over work that just started (ADR 0027): while a call
//! that can start model work is between its first side effect and its recorded outcome the
//! daemon is not idle, a conditional stop (`daemon stop-if-idle`) is refused then, and once a
//! stop is accepted no model work starts.
//!
//! This test binary is its own fake App Server (`harness = false`; see `harness`). The fake
//! holds `turn/start` on a named pipe, so the test sees the daemon while Codex has the
//! request and before the started turn is recorded, without sleeping.

mod harness;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use dispatch_contract::types::{
    CompactInput, CompactOutput, DaemonStopIfIdleInput, DaemonStopIfIdleOutput, SendInput,
    SendOutput,
};
use dispatch_contract::{Dispatch, ErrorCode};
use dispatch_home::Config;
use dispatch_registry::{Ownership, TurnStatus};
use fake_app_server::Script;
use harness::{Daemon, expect_error};
use libtest_mimic::{Arguments, Trial};
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        Trial::test(
            "a_send_between_turn_start_and_its_record_keeps_the_daemon_from_stopping",
            || {
                harness::run(
                    held_turn_start(),
                    Config::default(),
                    false,
                    a_send_between_turn_start_and_its_record_keeps_the_daemon_from_stopping,
                )
            },
        ),
        harness::trial_with(
            "a_compaction_being_started_keeps_the_daemon_from_stopping",
            held_compact_start,
            a_compaction_being_started_keeps_the_daemon_from_stopping,
        ),
        harness::trial(
            "an_idle_daemon_stops_and_then_starts_no_model_work",
            an_idle_daemon_stops_and_then_starts_no_model_work,
        ),
        harness::trial(
            "a_stopping_daemon_leaves_a_queued_message_queued",
            a_stopping_daemon_leaves_a_queued_message_queued,
        ),
        harness::trial(
            "a_lane_count_that_fails_leaves_the_daemon_not_idle",
            a_lane_count_that_fails_leaves_the_daemon_not_idle,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// The directory of the named pipes that hold a method.
static HOLD: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

/// The named pipe that holds `method`.
fn hold_pipe(method: &str) -> PathBuf {
    HOLD.path().join(method.replace('/', "-"))
}

/// The fake App Server holding every `turn/start` until the test releases it.
fn held_turn_start() -> Script {
    held("turn/start")
}

/// The fake App Server holding every `thread/compact/start` until the test releases it.
fn held_compact_start() -> Script {
    held("thread/compact/start")
}

/// The fake App Server holding every request of `method` until the test releases it.
fn held(method: &str) -> Script {
    let pipe = hold_pipe(method);
    if !pipe.exists() {
        let made = std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", pipe.display());
    }
    Script {
        hold: Some((method.to_owned(), pipe.display().to_string())),
        ..Script::default()
    }
}

/// Waits until the fake holds a request of `method` (it opened the pipe), and returns the
/// pipe's writing end, which releases it.
async fn fake_holds(method: &'static str) -> std::fs::File {
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(hold_pipe(method))
            .expect("open the hold pipe")
    })
    .await
    .expect("the opening thread")
}

async fn stop_if_idle(
    d: &Daemon,
) -> Result<DaemonStopIfIdleOutput, dispatch_contract::DispatchError> {
    d.call::<DaemonStopIfIdleInput>(json!({})).await
}

/// Once the fake holds a request of `method`: the daemon is not idle, and a stop is refused
/// with `in_flight` admissions; then releases the request.
async fn busy_while_held(d: &Daemon, method: &'static str, in_flight: u64) {
    let mut release = fake_holds(method).await;
    assert!(
        !d.service.idle(),
        "reported idle while Codex holds {method}"
    );
    let refused = expect_error(stop_if_idle(d).await, ErrorCode::DaemonBusy);
    assert_eq!(
        refused.details["in_flight"], in_flight,
        "{}",
        refused.message
    );
    writeln!(release, "go").unwrap_or_else(|err| panic!("release {method}: {err}"));
}

fn a_send_between_turn_start_and_its_record_keeps_the_daemon_from_stopping(
    d: &Daemon,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let lane = d.lane("held", Ownership::Owned).await;
        assert!(d.service.idle(), "no lane runs a turn yet");
        let send = d.call::<SendInput>(json!({"lane": "held", "text": "start"}));
        // Codex has the `turn/start`; the registry does not know the turn yet. In flight: the
        // send (run_operation) and its turn/start (start_turn).
        let while_held = busy_while_held(d, "turn/start", 2);
        let (sent, ()) = tokio::join!(send, while_held);
        let sent: SendOutput = sent.expect("the send's turn started");
        assert!(sent.message_accepted, "{sent:?}");
        let turn_id = sent.turn_id.clone().expect("a turn");
        // Recorded: the flag sees the running turn, and a stop is still refused.
        assert!(!d.service.idle());
        let refused = expect_error(stop_if_idle(d).await, ErrorCode::DaemonBusy);
        assert_eq!(refused.details["lanes_busy"], true, "{}", refused.message);
        // The turn ends: now the daemon stops.
        d.end_turn(&lane, &turn_id, TurnStatus::Completed).await;
        assert!(d.service.idle());
        stop_if_idle(d).await.expect("an idle daemon stops");
        assert_eq!(d.turn_inputs().len(), 1, "one turn/start, the send's");
    })
}

/// Compaction is model work too: while Codex has `thread/compact/start`, the daemon is not
/// idle and a stop (whose SIGTERM would end Codex) is refused.
fn a_compaction_being_started_keeps_the_daemon_from_stopping(
    d: &Daemon,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        d.lane("compacted", Ownership::Owned).await;
        assert!(d.service.idle(), "nothing runs yet");
        let compact = d.call::<CompactInput>(json!({"lane": "compacted"}));
        let while_held = busy_while_held(d, "thread/compact/start", 1);
        let (compacted, ()) = tokio::join!(compact, while_held);
        let compacted: CompactOutput = compacted.expect("the compaction started");
        assert!(compacted.started, "{compacted:?}");
    })
}

fn an_idle_daemon_stops_and_then_starts_no_model_work(
    d: &Daemon,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let lane = d.lane("idle", Ownership::Owned).await;
        let stopping = stop_if_idle(d).await.expect("an idle daemon stops");
        assert_eq!(u64::from(stopping.pid), u64::from(std::process::id()));
        // The daemon's serving loop ends on this.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            d.service.stop_requested(),
        )
        .await
        .expect("the stop was signalled");
        // Asking again while stopping is no error.
        stop_if_idle(d).await.expect("still stopping");
        let refused = expect_error(
            d.call::<SendInput>(json!({"lane": "idle", "text": "too late"}))
                .await,
            ErrorCode::DaemonStopping,
        );
        assert!(refused.message.contains("nothing was done"), "{refused:?}");
        // Nothing was half started: no turn/start, no receipt, the lane idle.
        assert!(d.turn_inputs().is_empty(), "{:?}", d.turn_inputs());
        let receipts = d
            .service
            .registry()
            .open_deliveries(None)
            .await
            .expect("deliveries");
        assert!(receipts.is_empty(), "{receipts:?}");
        let now = d
            .service
            .registry()
            .lane(&lane.lane_ref)
            .await
            .expect("registry")
            .expect("lane");
        assert_eq!(now.status, dispatch_registry::LaneStatus::Idle);
    })
}

fn a_stopping_daemon_leaves_a_queued_message_queued(
    d: &Daemon,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let lane = d.lane("queue", Ownership::Owned).await;
        d.start_turn(&lane, "turn-1").await;
        let queued: SendOutput = d
            .call::<SendInput>(json!({"lane": "queue", "text": "next", "mode": "queue"}))
            .await
            .expect("queued behind the running turn");
        assert_eq!(queued.state.to_string(), "queued", "{queued:?}");
        d.end_turn(&lane, "turn-1", TurnStatus::Completed).await;
        stop_if_idle(d).await.expect("an idle daemon stops");
        // Orchestration's delivery of the queue (the lane went idle) starts nothing and
        // leaves the message queued for the next daemon, rather than failing it.
        d.service
            .pump_queue(&lane.lane_ref)
            .await
            .expect("left queued");
        assert!(d.turn_inputs().is_empty(), "{:?}", d.turn_inputs());
        let receipt = d
            .service
            .registry()
            .delivery(&queued.receipt)
            .await
            .expect("registry")
            .expect("the receipt");
        assert_eq!(receipt.state.as_str(), "queued", "{receipt:?}");
    })
}

/// When the idle flag's count of the lanes fails, what the lanes do is unknown: the daemon
/// is not idle (a stop is refused) until a count succeeds again.
fn a_lane_count_that_fails_leaves_the_daemon_not_idle(
    d: &Daemon,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        d.lane("counted", Ownership::Owned).await;
        d.service.events_stored().await;
        assert!(d.service.idle(), "an idle lane, counted");
        let mut conn = d.raw_connection().await;
        // The count reads `lanes`; without it, it fails.
        sqlx::query("ALTER TABLE lanes RENAME TO lanes_hidden")
            .execute(&mut conn)
            .await
            .expect("hide the lanes");
        d.service.events_stored().await;
        assert!(!d.service.idle(), "a failed count was taken as idle");
        let refused = expect_error(stop_if_idle(d).await, ErrorCode::DaemonBusy);
        assert_eq!(refused.details["lanes_busy"], true, "{}", refused.message);
        sqlx::query("ALTER TABLE lanes_hidden RENAME TO lanes")
            .execute(&mut conn)
            .await
            .expect("restore the lanes");
        d.service.events_stored().await;
        assert!(d.service.idle(), "counted again");
    })
}
