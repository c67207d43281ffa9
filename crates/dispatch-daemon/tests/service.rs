//! The daemon's behaviour against a scripted fake App Server, in seconds: the attached-lane
//! lock, a busy lane refusing a send and taking a steer, an archived lane, an idle lane
//! starting a turn, and reconciliation of a lane the registry believes busy with what Codex
//! reports. Every call goes through `dispatch_contract::run_operation`, the path the RPC
//! registration takes (lock, operation, action log), on typed inputs decoded as the daemon
//! decodes them.
//!
//! This test binary is its own fake App Server: the `Supervisor` runs it as
//! `<this binary> app-server` (through a small script that sets the fake's [`Script`]), which
//! is why it has its own `main` (`harness = false`, with `libtest-mimic` for the test list).
//! The daemon and the fake come from the shared `harness` module; `Setup` adds the settings
//! these tests vary.

mod harness;

use std::process::ExitCode;

use dispatch_contract::ErrorCode;
use dispatch_contract::types::{
    DaemonLogInput, GetInput, GetOutput, GoalClearInput, GoalGetInput, GoalSetInput, RespondInput,
    SendInput, SendOutput, StopInput,
};
use dispatch_daemon::Why;
use dispatch_home::Config;
use dispatch_registry::{Fact, LaneRow, NewRequest, Ownership, Recorded};
use fake_app_server::Script;
use harness::{Daemon, Test, expect_error, now_ms};
use libtest_mimic::{Arguments, Trial};
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial(
            "attached_lanes_refuse_every_history_write",
            attached_lanes_refuse_every_history_write,
        ),
        trial(
            "the_policy_lets_attached_lanes_be_written",
            the_policy_lets_attached_lanes_be_written,
        ),
        trial(
            "a_busy_lane_refuses_a_send_and_takes_a_steer",
            a_busy_lane_refuses_a_send_and_takes_a_steer,
        ),
        trial(
            "an_idle_lane_takes_a_send_and_is_busy_after",
            an_idle_lane_takes_a_send_and_is_busy_after,
        ),
        trial(
            "codex_running_a_turn_the_registry_missed_refuses_a_send",
            codex_running_a_turn_the_registry_missed_refuses_a_send,
        ),
        trial(
            "an_archived_lane_refuses_a_send",
            an_archived_lane_refuses_a_send,
        ),
        trial(
            "reconciliation_ends_a_turn_codex_reports_interrupted",
            reconciliation_ends_a_turn_codex_reports_interrupted,
        ),
        trial(
            "reconciliation_ends_a_turn_codex_reports_completed",
            reconciliation_ends_a_turn_codex_reports_completed,
        ),
        trial(
            "stop_on_a_turn_codex_already_ended_reconciles_the_lane",
            stop_on_a_turn_codex_already_ended_reconciles_the_lane,
        ),
        trial(
            "unloading_keeps_busy_and_waiting_lanes_and_the_recently_used",
            unloading_keeps_busy_and_waiting_lanes_and_the_recently_used,
        ),
        trial(
            "a_send_to_an_unloaded_lane_loads_it_again",
            a_send_to_an_unloaded_lane_loads_it_again,
        ),
        trial(
            "a_message_whose_event_was_missed_is_accepted_when_codex_holds_it",
            a_message_whose_event_was_missed_is_accepted_when_codex_holds_it,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// A test: a fresh daemon per run, on its own runtime; the fake App Server is stopped after.
fn trial(name: &'static str, test: fn() -> Setup) -> Trial {
    Trial::test(name, move || {
        let setup = test();
        let mut config = Config::default();
        config.policy.allow_attached_writes = setup.allow_attached_writes;
        config.app_server.max_loaded_idle = setup.max_loaded_idle;
        harness::run(setup.script, config, false, setup.body)
    })
}

/// What a test needs: the fake's script, the policy, and the body.
struct Setup {
    script: Script,
    allow_attached_writes: bool,
    /// `[app_server] max_loaded_idle`.
    max_loaded_idle: usize,
    body: Test,
}

fn setup(script: Script, body: Test) -> Setup {
    Setup {
        script,
        allow_attached_writes: false,
        max_loaded_idle: dispatch_home::AppServerSettings::default().max_loaded_idle,
        body,
    }
}

/// What these tests need of the daemon beyond the shared harness.
impl Daemon {
    async fn facts(&self, lane: &LaneRow, facts: Vec<Fact>) {
        self.service
            .registry()
            .record(&[Recorded {
                lane_ref: lane.lane_ref.as_str().into(),
                event: None,
                facts: facts.into(),
            }])
            .await
            .expect("facts");
    }

    /// Makes the registry believe `lane` runs turn `turn_id`.
    async fn busy(&self, lane: &LaneRow, turn_id: &str) {
        let at_ms = now_ms();
        self.facts(
            lane,
            vec![Fact::TurnStarted {
                turn_id: turn_id.to_owned(),
                at_ms,
            }],
        )
        .await;
    }

    async fn get(&self, lane: &LaneRow) -> GetOutput {
        self.call::<GetInput>(json!({ "lane": lane.lane_ref }))
            .await
            .expect("get")
    }

    /// The action log, oldest first: `(op, lane, error code, detail)`.
    async fn actions(&self) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
        let log = self
            .call::<DaemonLogInput>(json!({}))
            .await
            .expect("daemon log");
        log.entries
            .into_iter()
            .rev()
            .map(|e| (e.op, e.lane, e.error_code, e.detail))
            .collect()
    }
}

/// Requests that write turns or history into a thread.
fn writes(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|m| m.starts_with("turn/") || m.starts_with("thread/goal/"))
        .collect()
}

fn attached_lanes_refuse_every_history_write() -> Setup {
    setup(Script::default(), |d| {
        Box::pin(async move {
            let lane = d.lane("observed", Ownership::Attached).await;
            let selector = json!(lane.lane_ref);
            let refused = [
                d.call::<SendInput>(json!({"lane": selector, "text": "hi"}))
                    .await
                    .map(|_| ()),
                d.call::<StopInput>(json!({"lane": selector}))
                    .await
                    .map(|_| ()),
                d.call::<GoalSetInput>(json!({"lane": selector, "objective": "x"}))
                    .await
                    .map(|_| ()),
                d.call::<GoalClearInput>(json!({"lane": selector}))
                    .await
                    .map(|_| ()),
            ];
            for result in refused {
                let err = expect_error(result, ErrorCode::AttachedLaneWriteBlocked);
                assert!(err.message.contains(&lane.lane_ref), "{err:?}");
            }
            // `respond` names a request; the lock checks the request's lane.
            let request = d
                .service
                .registry()
                .insert_request(&NewRequest {
                    lane_ref: lane.lane_ref.clone(),
                    thread_id: lane.thread_id.clone(),
                    turn_id: Some("turn-1".into()),
                    item_id: None,
                    method: "item/commandExecution/requestApproval".into(),
                    rpc_id: json!(7),
                    params: json!({}),
                    at_ms: now_ms(),
                })
                .await
                .expect("request");
            expect_error(
                d.call::<RespondInput>(json!({"request_id": request.id, "decision": "accept"}))
                    .await,
                ErrorCode::AttachedLaneWriteBlocked,
            );
            assert_eq!(
                writes(&d.requests()),
                Vec::<&String>::new(),
                "nothing reached Codex"
            );
            // A refusal is not an action: nothing was done.
            assert_eq!(d.actions().await, Vec::new());
        })
    })
}

fn the_policy_lets_attached_lanes_be_written() -> Setup {
    Setup {
        allow_attached_writes: true,
        ..setup(Script::default(), |d| {
            Box::pin(async move {
                let lane = d.lane("observed", Ownership::Attached).await;
                let sent = d
                    .call::<SendInput>(json!({"lane": lane.lane_ref, "text": "hi"}))
                    .await
                    .expect("the policy allows it");
                assert!(sent.message_accepted && !sent.steered, "{sent:?}");
                assert!(d.requests().contains(&"turn/start".to_owned()));
            })
        })
    }
}

fn a_busy_lane_refuses_a_send_and_takes_a_steer() -> Setup {
    setup(Script::default(), |d| {
        Box::pin(async move {
            let lane = d.lane("busy", Ownership::Owned).await;
            d.busy(&lane, "turn-1").await;
            let err = expect_error(
                d.call::<SendInput>(json!({"lane": lane.lane_ref, "text": "more"}))
                    .await,
                ErrorCode::LaneBusy,
            );
            assert_eq!(err.details["turn_id"], "turn-1", "{err:?}");
            assert!(!d.requests().contains(&"turn/start".to_owned()));
            let steered: SendOutput = d
                .call::<SendInput>(json!({"lane": lane.lane_ref, "text": "more", "steer": true}))
                .await
                .expect("steer");
            assert!(steered.steered, "{steered:?}");
            assert_eq!(steered.turn_id.as_deref(), Some("turn-1"));
            assert_eq!(writes(&d.requests()), vec!["turn/steer"]);
            // Both writes are in the action log, with the lane, in the operation's words.
            let actions = d.actions().await;
            assert_eq!(actions.len(), 2, "{actions:?}");
            assert_eq!(actions[0].0, "send");
            assert_eq!(actions[0].1.as_deref(), Some(lane.lane_ref.as_str()));
            assert_eq!(actions[0].2.as_deref(), Some("lane_busy"));
            assert_eq!(
                actions[1],
                (
                    "send".to_owned(),
                    Some(lane.lane_ref.clone()),
                    None,
                    Some(format!(
                        "message steered into the running turn (receipt {})",
                        steered.receipt
                    ))
                )
            );
        })
    })
}

fn an_idle_lane_takes_a_send_and_is_busy_after() -> Setup {
    setup(Script::default(), |d| {
        Box::pin(async move {
            let lane = d.lane("idle", Ownership::Owned).await;
            let sent: SendOutput = d
                .call::<SendInput>(json!({"lane": "idle", "text": "start"}))
                .await
                .expect("send");
            assert!(sent.message_accepted && !sent.steered, "{sent:?}");
            assert!(
                sent.warnings.is_empty(),
                "Codex recorded the message: {sent:?}"
            );
            assert_eq!(sent.lane.ref_, lane.lane_ref);
            // The lane is busy for the next caller at once.
            let got = d.get(&lane).await;
            assert_eq!(got.lane.status.to_string(), "busy", "{got:?}");
            expect_error(
                d.call::<SendInput>(json!({"lane": lane.lane_ref, "text": "again"}))
                    .await,
                ErrorCode::LaneBusy,
            );
            assert_eq!(
                writes(&d.requests()),
                vec!["turn/start"],
                "one turn was started"
            );
            let actions = d.actions().await;
            assert_eq!(
                actions[0],
                (
                    "send".to_owned(),
                    Some(lane.lane_ref.clone()),
                    None,
                    Some(format!(
                        "message accepted (send), turn {}, receipt {}",
                        sent.turn_id.as_deref().unwrap_or("?"),
                        sent.receipt
                    ))
                ),
                "the action log names the lane the selector resolved to"
            );
        })
    })
}

fn codex_running_a_turn_the_registry_missed_refuses_a_send() -> Setup {
    let script = Script {
        active: true,
        ..Script::default()
    };
    setup(script, |d| {
        Box::pin(async move {
            let lane = d.lane("goal", Ownership::Owned).await;
            let err = expect_error(
                d.call::<SendInput>(json!({"lane": lane.lane_ref, "text": "hi"}))
                    .await,
                ErrorCode::LaneBusy,
            );
            assert!(err.message.contains("Codex says so"), "{err:?}");
            assert!(!d.requests().contains(&"turn/start".to_owned()));
        })
    })
}

fn an_archived_lane_refuses_a_send() -> Setup {
    setup(Script::default(), |d| {
        Box::pin(async move {
            let lane = d.lane("old", Ownership::Owned).await;
            d.facts(&lane, vec![Fact::Archived(true)]).await;
            let err = expect_error(
                d.call::<SendInput>(json!({"lane": lane.lane_ref, "text": "hi"}))
                    .await,
                ErrorCode::LaneArchived,
            );
            let hint = err.hint.render(dispatch_contract::Surface::Cli);
            assert!(hint.contains("dispatch restore"), "{hint}");
            assert_eq!(writes(&d.requests()), Vec::<&String>::new());
        })
    })
}

fn reconciliation_ends_a_turn_codex_reports_interrupted() -> Setup {
    let script = Script {
        turns: vec![("turn-1".into(), "interrupted".into())],
        ..Script::default()
    };
    setup(script, |d| {
        Box::pin(async move {
            let lane = d.lane("crashed", Ownership::Owned).await;
            d.busy(&lane, "turn-1").await;
            assert_eq!(d.service.reconcile_running(Why::DaemonStart).await, 1);
            let got = d.get(&lane).await;
            assert_ne!(got.lane.status.to_string(), "busy", "{got:?}");
            let turn = got.lane.latest_turn.as_ref().expect("latest turn");
            assert_eq!(turn.id, "turn-1");
            assert_eq!(turn.status.to_string(), "interrupted", "{got:?}");
            let why = "interrupted: the dispatch daemon stopped while this turn ran";
            assert!(
                turn.error.as_deref().is_some_and(|e| e.starts_with(why)),
                "{turn:?}"
            );
            assert!(
                got.errors
                    .iter()
                    .any(|e| e.message.starts_with(why) && !e.will_retry),
                "{:?}",
                got.errors
            );
            // The lane takes a message again.
            d.call::<SendInput>(json!({"lane": lane.lane_ref, "text": "again"}))
                .await
                .expect("send after reconciliation");
        })
    })
}

fn reconciliation_ends_a_turn_codex_reports_completed() -> Setup {
    let script = Script {
        turns: vec![("turn-1".into(), "completed".into())],
        ..Script::default()
    };
    setup(script, |d| {
        Box::pin(async move {
            let lane = d.lane("done", Ownership::Owned).await;
            d.busy(&lane, "turn-1").await;
            assert_eq!(d.service.reconcile_running(Why::AppServerRestart).await, 1);
            let got = d.get(&lane).await;
            assert_eq!(got.lane.status.to_string(), "idle", "{got:?}");
            let turn = got.lane.latest_turn.as_ref().expect("latest turn");
            assert_eq!(turn.status.to_string(), "completed");
            assert_eq!(turn.error, None);
            assert!(got.errors.is_empty(), "{:?}", got.errors);
        })
    })
}

fn stop_on_a_turn_codex_already_ended_reconciles_the_lane() -> Setup {
    let script = Script {
        turns: vec![("turn-1".into(), "completed".into())],
        loaded: vec!["thread-ended".into()],
        no_active_turn: true,
        ..Script::default()
    };
    setup(script, |d| {
        Box::pin(async move {
            let lane = d.lane("ended", Ownership::Owned).await;
            d.busy(&lane, "turn-1").await;
            let stopped = d
                .call::<StopInput>(json!({"lane": lane.lane_ref}))
                .await
                .expect("stop");
            assert!(!stopped.interrupted, "{stopped:?}");
            assert!(d.requests().contains(&"turn/interrupt".to_owned()));
            let got = d.get(&lane).await;
            assert_eq!(got.lane.status.to_string(), "idle", "{got:?}");
            let actions = d.actions().await;
            assert_eq!(
                actions.last().map(|a| a.3.clone()),
                Some(Some("nothing was running".to_owned()))
            );
        })
    })
}

/// `[app_server] max_loaded_idle = 2`: the least recently used idle thread is unloaded when a
/// third idle one is loaded; a busy lane's and a waiting lane's threads never are, however
/// long unused.
fn unloading_keeps_busy_and_waiting_lanes_and_the_recently_used() -> Setup {
    Setup {
        max_loaded_idle: 2,
        ..setup(Script::default(), |d| {
            Box::pin(async move {
                let busy = d.lane("busy", Ownership::Owned).await;
                let waiting = d.lane("waiting", Ownership::Owned).await;
                let idle: Vec<LaneRow> = idle_lanes(d, &["c", "d", "e"]).await;
                d.busy(&busy, "turn-busy").await;
                d.busy(&waiting, "turn-waiting").await;
                d.facts(
                    &waiting,
                    vec![Fact::Status(dispatch_registry::LaneStatus::WaitingApproval)],
                )
                .await;
                // Loaded in this order: busy, waiting, c, d, e (each by an operation on it).
                for lane in [&busy, &waiting, &idle[0], &idle[1], &idle[2]] {
                    goal_get(d, lane).await;
                }
                let thread = |lane: &LaneRow| lane.thread_id.clone();
                assert_eq!(
                    d.service.loaded_threads(),
                    vec![
                        thread(&busy),
                        thread(&waiting),
                        thread(&idle[1]),
                        thread(&idle[2])
                    ],
                    "c, the least recently used idle lane, was unloaded"
                );
                assert_eq!(count(&d.requests(), "thread/unsubscribe"), 1);
                // Using c again loads it, and unloads d (now the oldest idle one), never the
                // busy or the waiting lane.
                goal_get(d, &idle[0]).await;
                assert_eq!(
                    d.service.loaded_threads(),
                    vec![
                        thread(&busy),
                        thread(&waiting),
                        thread(&idle[2]),
                        thread(&idle[0])
                    ],
                );
                assert_eq!(count(&d.requests(), "thread/unsubscribe"), 2);
                assert_eq!(
                    count(&d.requests(), "thread/resume"),
                    6,
                    "c was loaded twice"
                );
            })
        })
    }
}

/// An operation on a lane whose thread was unloaded loads it again first (`thread/resume`),
/// transparently: a send to it starts its turn.
fn a_send_to_an_unloaded_lane_loads_it_again() -> Setup {
    Setup {
        max_loaded_idle: 1,
        ..setup(Script::default(), |d| {
            Box::pin(async move {
                let lanes = idle_lanes(d, &["old", "new"]).await;
                goal_get(d, &lanes[0]).await;
                goal_get(d, &lanes[1]).await;
                assert_eq!(d.service.loaded_threads(), vec![lanes[1].thread_id.clone()]);
                let sent: SendOutput = d
                    .call::<SendInput>(json!({"lane": lanes[0].lane_ref, "text": "wake up"}))
                    .await
                    .expect("send");
                assert!(sent.message_accepted, "{sent:?}");
                let requests = d.requests();
                let resumed = requests
                    .iter()
                    .rposition(|m| m == "thread/resume")
                    .expect("resumed");
                let started = requests
                    .iter()
                    .rposition(|m| m == "turn/start")
                    .expect("started");
                assert!(resumed < started, "loaded before the turn: {requests:?}");
                assert_eq!(count(&requests, "thread/resume"), 3, "{requests:?}");
                let got = d.get(&lanes[0]).await;
                assert_eq!(got.lane.status.to_string(), "busy", "{got:?}");
            })
        })
    }
}

/// Idle lanes named `names`, in order.
async fn idle_lanes(d: &Daemon, names: &[&str]) -> Vec<LaneRow> {
    let mut lanes = Vec::new();
    for name in names {
        lanes.push(d.lane(name, Ownership::Owned).await);
    }
    lanes
}

/// `goal get` on `lane`: an operation that needs the lane's thread loaded.
async fn goal_get(d: &Daemon, lane: &LaneRow) {
    d.call::<GoalGetInput>(json!({ "lane": lane.lane_ref }))
        .await
        .expect("goal get");
}

fn count(requests: &[String], method: &str) -> usize {
    requests.iter().filter(|m| *m == method).count()
}

/// A subscriber that falls behind (a flood of events on the App Server's connection) misses
/// events: here the user message's `item/completed`, and then the turn ends. Codex holds the
/// message all the same, so the send is accepted; it used to be reported as failed ("the turn
/// ended before the message was recorded"), a side effect that happened reported as a failure.
fn a_message_whose_event_was_missed_is_accepted_when_codex_holds_it() -> Setup {
    let script = Script {
        missed_user_message: true,
        ..Script::default()
    };
    setup(script, |d| {
        Box::pin(async move {
            let lanes = idle_lanes(d, &["flooded"]).await;
            let sent: SendOutput = d
                .call::<SendInput>(json!({"lane": lanes[0].lane_ref, "text": "hello"}))
                .await
                .expect("send accepted");
            assert!(sent.message_accepted, "{sent:?}");
            assert!(
                d.requests().iter().any(|m| m == "thread/turns/list"),
                "Codex was asked: {:?}",
                d.requests()
            );
        })
    })
}
