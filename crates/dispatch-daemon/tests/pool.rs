//! A pool of App Server processes (`[app_server] processes`, ADR 0019) against the scripted
//! fake, in seconds: new lanes go to the least loaded process (also when made at the same
//! time) and every operation on a lane goes to its process; a process killed with `kill -9` interrupts only its lanes' turns
//! (with a reason), its lanes work again on another process, and the other processes' turns
//! go on; unloading never touches a busy or waiting lane on any process.
//!
//! This test binary is its own fake App Server (see `harness`): every process of the pool is
//! one, and each logs `<pid> <method> <threadId>` of what it was asked.

mod harness;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use dispatch_contract::types::{DaemonStatusInput, DaemonStatusOutput, GoalGetInput};
use dispatch_home::Config;
use dispatch_registry::{Fact, LaneRow, LaneStatus, Ownership, Recorded, TurnStatus};
use fake_app_server::Script;
use harness::{Daemon, Test};
use libtest_mimic::{Arguments, Trial};
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial(
            "new_lanes_go_to_the_least_loaded_process_and_their_operations_follow",
            3,
            64,
            |d| Box::pin(new_lanes_go_to_the_least_loaded_process_and_their_operations_follow(d)),
        ),
        trial("lanes_made_at_once_spread_over_the_processes", 3, 64, |d| {
            Box::pin(lanes_made_at_once_spread_over_the_processes(d))
        }),
        trial(
            "a_killed_process_interrupts_only_its_lanes_which_then_move",
            3,
            64,
            |d| {
                Box::pin(a_killed_process_interrupts_only_its_lanes_which_then_move(
                    d,
                ))
            },
        ),
        trial(
            "unloading_never_touches_a_busy_or_waiting_lane_on_any_process",
            2,
            2,
            |d| Box::pin(unloading_never_touches_a_busy_or_waiting_lane_on_any_process(d)),
        ),
        trial(
            "one_process_is_the_default_and_shows_as_before",
            1,
            64,
            |d| Box::pin(one_process_is_the_default_and_shows_as_before(d)),
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// A test on a daemon with `processes` fake App Servers (that track what they loaded), and
/// `max_loaded_idle`, with the event pump running.
fn trial(name: &'static str, processes: usize, max_loaded_idle: usize, body: Test) -> Trial {
    Trial::test(name, move || {
        let mut config = Config::default();
        config.app_server.processes = processes;
        config.app_server.max_loaded_idle = max_loaded_idle;
        let script = Script {
            track_loaded: true,
            ..Script::default()
        };
        harness::run_pumped(script, config, body)
    })
}

impl Daemon {
    async fn status(&self) -> DaemonStatusOutput {
        self.call::<DaemonStatusInput>(json!({}))
            .await
            .expect("daemon status")
    }

    /// The pids of the pool's processes, by index.
    async fn pids(&self) -> Vec<u32> {
        self.status()
            .await
            .app_servers
            .iter()
            .map(|p| u32::try_from(p.pid.expect("a running process")).expect("pid"))
            .collect()
    }

    async fn row(&self, lane: &str) -> LaneRow {
        self.service
            .registry()
            .lane(lane)
            .await
            .expect("registry")
            .expect("the lane")
    }

    /// Waits (bounded) until `done` holds of lane `lane`.
    async fn wait_for(&self, lane: &str, what: &str, done: impl Fn(&LaneRow) -> bool) -> LaneRow {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut stored = self.service.event_notifications();
        loop {
            let row = self.row(lane).await;
            if done(&row) {
                return row;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lane {lane} never got {what}: {row:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), stored.changed()).await;
        }
    }
}

/// Three processes, four new lanes: one lane on each process, then the fourth on the first
/// (all equally loaded, lowest index first); `send` and `goal get` on a lane go to its process;
/// `daemon status` shows each process with its lanes and loaded threads.
async fn new_lanes_go_to_the_least_loaded_process_and_their_operations_follow(d: &Daemon) {
    let pids = d.pids().await;
    assert_eq!(pids.len(), 3);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
    let mut home = HashMap::new();
    for name in ["a", "b", "c", "d"] {
        let made = d.new_lane(name).await.lane.expect("a lane");
        let started = d.asked("thread/start", "");
        let pid = *started.last().expect("thread/start was asked");
        home.insert(made.ref_.clone(), (pid, made.id.clone()));
    }
    let started: Vec<u32> = d
        .process_requests()
        .into_iter()
        .filter(|(_, m, _)| m == "thread/start")
        .map(|(pid, _, _)| pid)
        .collect();
    assert_eq!(
        started,
        vec![pids[0], pids[1], pids[2], pids[0]],
        "each new lane went to the least loaded process"
    );
    let status = d.status().await;
    let shown: Vec<(u64, u64)> = status
        .app_servers
        .iter()
        .map(|p| (p.lanes, p.loaded_threads))
        .collect();
    assert_eq!(shown, vec![(2, 2), (1, 1), (1, 1)], "{status:?}");
    for (lane, (pid, thread_id)) in &home {
        d.send(lane, "hello").await;
        d.call::<GoalGetInput>(json!({ "lane": lane }))
            .await
            .expect("goal get");
        assert_eq!(d.asked("turn/start", thread_id), vec![*pid], "{lane}");
        assert_eq!(d.asked("thread/goal/get", thread_id), vec![*pid], "{lane}");
        assert!(
            d.asked("thread/resume", thread_id).is_empty(),
            "loaded where it was made: {lane}"
        );
    }
}

/// Three `new` at the same time go to three processes: a process counts the threads being
/// made in it, not only those already loaded.
async fn lanes_made_at_once_spread_over_the_processes(d: &Daemon) {
    let pids = d.pids().await;
    let (a, b, c) = tokio::join!(d.new_lane("a"), d.new_lane("b"), d.new_lane("c"));
    let started: HashSet<u32> = d
        .process_requests()
        .into_iter()
        .filter(|(_, m, _)| m == "thread/start")
        .map(|(pid, _, _)| pid)
        .collect();
    assert_eq!(started, pids.iter().copied().collect(), "{a:?} {b:?} {c:?}");
    let status = d.status().await;
    let lanes: Vec<u64> = status.app_servers.iter().map(|p| p.lanes).collect();
    assert_eq!(lanes, vec![1, 1, 1], "{status:?}");
}

/// Three processes, a lane on each, each running a turn (the fake never ends it). `kill -9`
/// of the first process: its lane's turn is interrupted with the reason, the other two lanes
/// keep running theirs; a send to the first lane then works, on a process that lives.
async fn a_killed_process_interrupts_only_its_lanes_which_then_move(d: &Daemon) {
    let pids = d.pids().await;
    let mut lanes = Vec::new();
    for name in ["first", "second", "third"] {
        let made = d.new_lane(name).await.lane.expect("a lane");
        let sent = d.send(&made.ref_, "work").await;
        lanes.push((made.ref_, made.id, sent.turn_id.expect("a turn")));
    }
    for (lane, thread_id, _) in &lanes {
        assert_eq!(d.asked("turn/start", thread_id).len(), 1, "{lane}");
    }
    let (victim, victim_thread, victim_turn) = lanes[0].clone();
    assert_eq!(d.asked("turn/start", &victim_thread), vec![pids[0]]);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let row = d
        .wait_for(&victim, "its turn interrupted", |row| {
            row.latest_turn
                .as_ref()
                .is_some_and(|t| t.status == TurnStatus::Interrupted)
        })
        .await;
    let turn = row.latest_turn.expect("a turn");
    assert_eq!(turn.turn_id, victim_turn);
    assert!(
        turn.error
            .as_deref()
            .is_some_and(|e| e.contains("App Server exited")),
        "the reason is recorded: {turn:?}"
    );
    for (lane, _, turn_id) in &lanes[1..] {
        let row = d.row(lane).await;
        assert_eq!(row.status, LaneStatus::Busy, "{lane}: {row:?}");
        let turn = row.latest_turn.expect("a turn");
        assert_eq!(
            (&turn.turn_id, turn.status, turn.error),
            (turn_id, TurnStatus::InProgress, None),
            "{lane}: the other processes' turns go on"
        );
    }

    // The victim's lane works again, on a living process.
    let sent = d.send(&victim, "again").await;
    let asked = d.asked("turn/start", &victim_thread);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_ne!(asked[1], pids[0], "not the killed process");
    assert_eq!(d.asked("thread/resume", &victim_thread), vec![asked[1]]);
    assert!(sent.turn_id.is_some());
    // The other lanes never moved, and were never reconciled into an end.
    for (lane, thread_id, _) in &lanes[1..] {
        assert!(d.asked("thread/resume", thread_id).is_empty(), "{lane}");
    }
    let status = d.status().await;
    let restarts: u64 = status.app_servers.iter().map(|p| p.restarts).sum();
    assert!(restarts <= 1, "{status:?}");
}

/// Two processes sharing `max_loaded_idle = 2` (one idle thread each): loading idle lanes
/// unloads the least recently used idle ones on their own process, never the thread of a busy
/// lane nor of a lane waiting for an approval, however long unused.
async fn unloading_never_touches_a_busy_or_waiting_lane_on_any_process(d: &Daemon) {
    let lane = |name: &'static str| async move { d.lane(name, Ownership::Owned).await };
    let busy = lane("busy").await;
    let waiting = lane("waiting").await;
    let idle = [
        lane("c").await,
        lane("d").await,
        lane("e").await,
        lane("f").await,
    ];
    let record = |row: &LaneRow, facts: Vec<Fact>| {
        let recorded = Recorded {
            lane_ref: row.lane_ref.as_str().into(),
            event: None,
            facts: facts.into(),
        };
        async move {
            d.service
                .registry()
                .record(&[recorded])
                .await
                .expect("facts");
        }
    };
    for row in [&busy, &waiting] {
        let turn_id = format!("turn-{}", row.lane_ref);
        record(
            row,
            vec![Fact::TurnStarted {
                turn_id,
                at_ms: harness::now_ms(),
            }],
        )
        .await;
    }
    record(&waiting, vec![Fact::Status(LaneStatus::WaitingApproval)]).await;
    // busy and waiting load first (one on each process), then the idle ones, twice over.
    for row in [&busy, &waiting]
        .into_iter()
        .chain(idle.iter())
        .chain(idle.iter())
    {
        d.call::<GoalGetInput>(json!({ "lane": row.lane_ref }))
            .await
            .expect("goal get");
    }
    let unloaded: Vec<String> = d
        .process_requests()
        .into_iter()
        .filter(|(_, m, _)| m == "thread/unsubscribe")
        .map(|(_, _, thread)| thread)
        .collect();
    assert!(!unloaded.is_empty(), "idle threads were unloaded");
    assert!(
        !unloaded.contains(&busy.thread_id) && !unloaded.contains(&waiting.thread_id),
        "{unloaded:?}"
    );
    let loaded = d.service.loaded_threads();
    assert!(
        loaded.contains(&busy.thread_id) && loaded.contains(&waiting.thread_id),
        "{loaded:?}"
    );
    // Each unloaded thread was unloaded by the process that had it.
    let requests = d.process_requests();
    for thread in &unloaded {
        let loaders: HashSet<u32> = requests
            .iter()
            .filter(|(_, m, t)| m == "thread/resume" && t == thread)
            .map(|(pid, _, _)| *pid)
            .collect();
        assert_eq!(
            loaders.len(),
            1,
            "{thread} stayed on one process: {requests:?}"
        );
        let unloader = requests
            .iter()
            .find(|(_, m, t)| m == "thread/unsubscribe" && t == thread)
            .map(|(pid, _, _)| *pid);
        assert_eq!(unloader.as_ref(), loaders.iter().next(), "{thread}");
    }
    let pids: HashSet<u32> = requests
        .iter()
        .filter(|(_, m, _)| m == "thread/resume")
        .map(|(pid, _, _)| *pid)
        .collect();
    assert_eq!(pids.len(), 2, "both processes took lanes");
}

/// `processes = 1` (the default): one process, shown in `app_servers` and as `app_server`.
async fn one_process_is_the_default_and_shows_as_before(d: &Daemon) {
    assert_eq!(dispatch_home::AppServerSettings::default().processes, 1);
    let made = d.new_lane("only").await.lane.expect("a lane");
    let status = d.status().await;
    assert_eq!(status.app_servers.len(), 1);
    let process = &status.app_servers[0];
    assert_eq!(process.pid, status.app_server.pid);
    assert_eq!((process.lanes, process.loaded_threads), (1, 1));
    d.send(&made.ref_, "hi").await;
}
