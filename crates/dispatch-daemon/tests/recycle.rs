//! Recycling an App Server process that grew too big (`[app_server] recycle_above_mib`, ADR
//! 0022) against the scripted fake, with a threshold of 1 MiB (every fake is above it): an
//! idle process is replaced by a fresh one (a new pid, not a restart) and its lanes reload
//! their threads on their next operation; a process with a busy lane, a lane waiting for an
//! approval, a lane's write lock held, or a request in flight is never recycled while so.
//!
//! This test binary is its own fake App Server (see `harness`).

mod harness;

use std::process::ExitCode;
use std::time::Duration;

use dispatch_contract::types::{GetInput, GoalGetInput};
use dispatch_daemon::Recycled;
use dispatch_home::Config;
use dispatch_registry::{Fact, LaneStatus, Recorded};
use fake_app_server::Script;
use harness::{Daemon, Test};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial(
            "an_idle_process_above_the_threshold_is_recycled_and_its_lanes_reload",
            1,
            |d| Box::pin(an_idle_process_above_the_threshold_is_recycled_and_its_lanes_reload(d)),
        ),
        trial(
            "a_lane_with_nothing_queued_is_not_loaded_again_after_a_recycle",
            1,
            |d| Box::pin(a_lane_with_nothing_queued_is_not_loaded_again_after_a_recycle(d)),
        ),
        trial("a_process_with_a_busy_lane_is_not_recycled", 1, |d| {
            Box::pin(a_process_with_a_busy_lane_is_not_recycled(d))
        }),
        trial(
            "a_process_with_a_lane_waiting_for_an_approval_is_not_recycled",
            1,
            |d| Box::pin(a_process_with_a_lane_waiting_for_an_approval_is_not_recycled(d)),
        ),
        trial(
            "a_process_whose_lane_write_lock_is_held_is_not_recycled",
            1,
            |d| Box::pin(a_process_whose_lane_write_lock_is_held_is_not_recycled(d)),
        ),
        trial(
            "a_process_with_a_request_in_flight_is_not_recycled",
            1,
            |d| Box::pin(a_process_with_a_request_in_flight_is_not_recycled(d)),
        ),
        trial(
            "only_the_idle_process_of_a_pool_is_recycled_and_a_fresh_one_never",
            2,
            |d| Box::pin(only_the_idle_process_of_a_pool_is_recycled_and_a_fresh_one_never(d)),
        ),
        Trial::test("recycling_is_off_with_zero", || {
            run(1, 0, |d| Box::pin(recycling_is_off_with_zero(d)))
        }),
        Trial::test(
            "a_read_during_a_recycle_resumes_the_thread_once_the_old_process_is_gone",
            || {
                let script = Script {
                    linger_ms: 500,
                    ..recycled_script()
                };
                harness::run_pumped(script, recycled_config(1, 1), |d| {
                    Box::pin(
                        a_read_during_a_recycle_resumes_the_thread_once_the_old_process_is_gone(d),
                    )
                })
            },
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// A test on a daemon with `processes` fake App Servers recycled above 1 MiB, with the event
/// pump running; `model/list` is never answered.
fn trial(name: &'static str, processes: usize, body: Test) -> Trial {
    Trial::test(name, move || run(processes, 1, body))
}

fn run(processes: usize, recycle_above_mib: u64, body: Test) -> Result<(), Failed> {
    harness::run_pumped(
        recycled_script(),
        recycled_config(processes, recycle_above_mib),
        body,
    )
}

fn recycled_config(processes: usize, recycle_above_mib: u64) -> Config {
    let mut config = Config::default();
    config.app_server.processes = processes;
    config.app_server.recycle_above_mib = recycle_above_mib;
    config
}

fn recycled_script() -> Script {
    Script {
        track_loaded: true,
        unanswered: Some("model/list".to_owned()),
        ..Script::default()
    }
}

impl Daemon {
    fn pid(&self, process: usize) -> u32 {
        self.service.app_server().statuses()[process]
            .pid
            .expect("a running process")
    }

    async fn set_status(&self, lane: &str, status: LaneStatus) {
        self.service
            .registry()
            .record(&[Recorded {
                lane_ref: lane.into(),
                event: None,
                facts: vec![Fact::Status(status)].into(),
            }])
            .await
            .expect("facts");
    }

    /// Recycles process `process`, expecting it to be left alone.
    async fn not_recycled(&self, process: usize) -> &'static str {
        let pid = self.pid(process);
        let outcome = self.service.recycle_if_quiescent(process).await;
        assert_eq!(self.pid(process), pid, "{outcome:?}");
        assert_eq!(self.service.app_server().statuses()[process].recycles, 0);
        match outcome {
            Recycled::NotQuiescent(why) => why,
            other => panic!("not recycled, for being busy: {other:?}"),
        }
    }
}

/// One idle lane: the process is replaced by a fresh one (new pid, one recycle, no restart,
/// no error); the lane answers `get`, and a `send` resumes its thread in the new process and
/// starts its turn there.
async fn an_idle_process_above_the_threshold_is_recycled_and_its_lanes_reload(d: &Daemon) {
    let made = d.new_lane("a").await.lane.expect("a lane");
    let old = d.pid(0);
    let outcome = d.service.recycle_if_quiescent(0).await;
    let Recycled::Replaced {
        old_pid,
        rss,
        new_pid,
    } = outcome
    else {
        panic!("recycled: {outcome:?}");
    };
    assert_eq!(old_pid, Some(old));
    assert!(rss > 1024 * 1024, "{rss}");
    let new = d.pid(0);
    assert_ne!(new, old);
    assert_eq!(new_pid, Some(new));
    let status = &d.service.app_server().statuses()[0];
    assert_eq!(
        (
            status.recycles,
            status.restarts,
            status.last_error.as_deref()
        ),
        (1, 0, None),
        "{status:?}"
    );
    assert!(
        d.service.loaded_threads().is_empty(),
        "nothing is loaded in the fresh process"
    );

    d.call::<GetInput>(json!({ "lane": made.ref_ }))
        .await
        .expect("get after a recycle");
    let sent = d.send(&made.ref_, "after the recycle").await;
    assert!(sent.turn_id.is_some(), "{sent:?}");
    assert_eq!(d.asked("thread/resume", &made.id), vec![new]);
    assert_eq!(d.asked("turn/start", &made.id), vec![new]);
    // The old process is gone.
    assert!(!std::path::Path::new(&format!("/proc/{old}")).exists());
}

/// The lane's queue is pumped at each of its idle transitions (a turn that completed). When a
/// recycle came first, an empty queue must not resume the thread in the fresh process: that
/// would undo the recycle (and, with many lanes, load every lane whose turn just ended).
async fn a_lane_with_nothing_queued_is_not_loaded_again_after_a_recycle(d: &Daemon) {
    let made = d.new_lane("a").await.lane.expect("a lane");
    let outcome = d.service.recycle_if_quiescent(0).await;
    assert!(matches!(outcome, Recycled::Replaced { .. }), "{outcome:?}");
    let new = d.pid(0);

    d.service.pump_queue(&made.ref_).await.expect("pumped");
    assert!(
        d.service.loaded_threads().is_empty(),
        "nothing is loaded in the fresh process: {:?}",
        d.service.loaded_threads()
    );
    assert_eq!(d.asked("thread/resume", &made.id), Vec::<u32>::new());

    // The next message resumes it.
    let sent = d.send(&made.ref_, "after the recycle").await;
    assert!(sent.turn_id.is_some(), "{sent:?}");
    assert_eq!(d.asked("thread/resume", &made.id), vec![new]);
}

/// A lane running a turn (the fake never ends it) keeps its process.
async fn a_process_with_a_busy_lane_is_not_recycled(d: &Daemon) {
    let made = d.new_lane("busy").await.lane.expect("a lane");
    d.send(&made.ref_, "work").await;
    let why = d.not_recycled(0).await;
    assert!(why.contains("busy"), "{why}");
}

/// A lane waiting for an approval keeps its process (the approval lives in it).
async fn a_process_with_a_lane_waiting_for_an_approval_is_not_recycled(d: &Daemon) {
    let made = d.new_lane("waiting").await.lane.expect("a lane");
    d.set_status(&made.ref_, LaneStatus::WaitingApproval).await;
    let why = d.not_recycled(0).await;
    assert!(why.contains("waiting"), "{why}");
    // Once answered (idle again), it is recycled.
    d.set_status(&made.ref_, LaneStatus::Idle).await;
    let outcome = d.service.recycle_if_quiescent(0).await;
    assert!(matches!(outcome, Recycled::Replaced { .. }), "{outcome:?}");
}

/// A lane whose write lock is held (a turn is about to start on it) keeps its process.
async fn a_process_whose_lane_write_lock_is_held_is_not_recycled(d: &Daemon) {
    let made = d.new_lane("locked").await.lane.expect("a lane");
    let writer = d.service.lane_lock(&made.ref_).await;
    let why = d.not_recycled(0).await;
    assert!(why.contains("write"), "{why}");
    drop(writer);
}

/// A request of the daemon that waits for its answer keeps the process.
async fn a_process_with_a_request_in_flight_is_not_recycled(d: &Daemon) {
    d.new_lane("idle").await.lane.expect("a lane");
    let (server, _) = d.service.app_server().current_of(0).expect("serving");
    let asking = server.clone();
    let asked = tokio::spawn(async move { asking.request("model/list", json!({})).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.requests_in_flight() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never in flight");
        tokio::task::yield_now().await;
    }
    let why = d.not_recycled(0).await;
    assert!(why.contains("request"), "{why}");
    asked.abort();
}

/// Two processes, an idle lane on the first and a busy one on the second: only the first is
/// recycled; a process that loaded nothing since it started is never recycled.
async fn only_the_idle_process_of_a_pool_is_recycled_and_a_fresh_one_never(d: &Daemon) {
    let idle = d.new_lane("idle").await.lane.expect("a lane");
    let busy = d.new_lane("busy").await.lane.expect("a lane");
    d.send(&busy.ref_, "work").await;
    let busy_pid = d.asked("turn/start", &busy.id)[0];
    let busy_process = usize::from(busy_pid != d.pid(0));
    let idle_process = 1 - busy_process;
    assert_eq!(d.asked("thread/start", "").len(), 2);
    d.not_recycled(busy_process).await;
    let outcome = d.service.recycle_if_quiescent(idle_process).await;
    assert!(matches!(outcome, Recycled::Replaced { .. }), "{outcome:?}");
    assert_eq!(
        d.service.recycle_if_quiescent(idle_process).await,
        Recycled::Fresh,
        "nothing loaded since"
    );
    // The busy lane's turn goes on.
    let row = d
        .service
        .registry()
        .lane(&busy.ref_)
        .await
        .expect("registry")
        .expect("lane");
    assert_eq!(row.status, LaneStatus::Busy, "{row:?}");
    d.send(&idle.ref_, "again").await;
    assert_eq!(
        d.asked("thread/resume", &idle.id),
        vec![d.pid(idle_process)]
    );
}

/// `recycle_above_mib = 0` turns it off.
async fn recycling_is_off_with_zero(d: &Daemon) {
    d.new_lane("a").await.lane.expect("a lane");
    assert_eq!(d.service.recycle_if_quiescent(0).await, Recycled::Off);
}

/// `goal get` takes no lane write lock, so it may come while a recycle replaces the lane's
/// process. The old process (which lingers 500 ms after being told to stop, as Codex finishing
/// its writes) still holds the thread, and Codex refuses a second writer: the thread is resumed
/// in the fresh process only once the old one is gone, and the read succeeds.
async fn a_read_during_a_recycle_resumes_the_thread_once_the_old_process_is_gone(d: &Daemon) {
    let made = d.new_lane("a").await.lane.expect("a lane");
    let old = d.pid(0);
    let mut generations = d.service.app_server().generations(0);
    generations.borrow_and_update();
    let service = std::sync::Arc::clone(&d.service);
    let recycle = tokio::spawn(async move { service.recycle_if_quiescent(0).await });
    tokio::time::timeout(Duration::from_secs(10), generations.changed())
        .await
        .expect("the fresh process in place within 10 s")
        .expect("the supervisor runs");

    d.call::<GoalGetInput>(json!({ "lane": made.ref_ }))
        .await
        .expect("goal get during a recycle");
    let outcome = recycle.await.expect("the recycle task");
    let Recycled::Replaced { new_pid, .. } = outcome else {
        panic!("recycled: {outcome:?}");
    };
    let new = new_pid.expect("a fresh pid");
    let log: Vec<String> = d
        .process_requests()
        .into_iter()
        .map(|(pid, method, thread)| format!("{pid} {method} {thread}").trim().to_owned())
        .collect();
    let exited = log.iter().position(|l| *l == format!("{old} exit"));
    let resumed = log
        .iter()
        .position(|l| *l == format!("{new} thread/resume {}", made.id));
    assert!(
        matches!((exited, resumed), (Some(e), Some(r)) if e < r),
        "resumed in {new} only after {old} exited: {log:#?}"
    );
}
