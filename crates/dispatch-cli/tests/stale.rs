//! A daemon built from another contract answers `daemon_stale`; the client restarts an idle
//! one once and retries, having asked the daemon itself to stop if idle (ADR 0027).

mod support;

use dispatch_client::{DaemonLaunch, Runner};
use dispatch_contract::{DispatchError, ErrorCode, Operation, operations};
use dispatch_home::Paths;
use responses_stub::{Behaviour, Script};

/// A `daemon status` call from a client whose contract of it differs from the daemon's (as
/// after an upgrade), through the `Runner` and its stale-daemon restart.
fn skewed_status_call(home: &support::Home) -> Result<serde_json::Value, DispatchError> {
    let paths =
        Paths::from_lookup(|key| (key == "DISPATCH_HOME").then(|| home.path())).expect("paths");
    let launch = DaemonLaunch {
        bin: Some(support::dispatchd_bin()),
        env: vec![
            ("CODEX_HOME".into(), home.codex_home().into()),
            ("DISPATCH_CODEX_BIN".into(), support::codex_bin().into()),
        ],
    };
    let runner = Runner::with_launch(paths, launch);
    let skewed: &'static Operation = Box::leak(Box::new(Operation {
        contract_hash: "ffffffffffffffff",
        ..operations::DAEMON_STATUS
    }));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(runner.run(skewed, serde_json::json!({})))
}

#[test]
fn an_idle_stale_daemon_is_restarted_once() {
    let home = support::Home::new();
    let first = home.up()["pid"].clone();
    let result = skewed_status_call(&home);
    let err = result.expect_err("still stale after the one restart");
    assert_eq!(err.code, ErrorCode::DaemonStale, "{err:?}");
    let now = home.json(&["daemon", "status"]).ok_json()["pid"].clone();
    assert_ne!(now, first, "the idle daemon was restarted");
    let log = home.json(&["daemon", "log"]).ok_json();
    let entries = log["entries"].as_array().expect("entries");
    let starts = entries.iter().filter(|e| e["op"] == "daemon_start").count();
    assert_eq!(starts, 2, "restarted exactly once");
    // The stale daemon decided it was idle and stopped itself: the check and the stop were
    // one step in the daemon, not a client's check followed by a signal.
    let oldest_first: Vec<(&str, &str)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["op"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        oldest_first,
        [
            ("daemon_start", "ok"),
            ("daemon_stop_if_idle", "ok"),
            ("daemon_stop", "ok"),
            ("daemon_start", "ok"),
        ],
        "{log}"
    );
}

/// Real Codex: a stale daemon whose lane runs a turn refuses to stop, stays up, and the turn
/// goes on.
#[test]
fn a_stale_daemon_running_a_turn_refuses_to_stop_and_the_turn_goes_on() {
    let (home, stub) = support::Home::with_stub(Script::new().default_reply("done"));
    let first = home.json(&["daemon", "status"]).ok_json()["pid"].clone();
    let (lane, _work) = home.new_lane("long", &[]);
    stub.push(Behaviour::Hang);
    let sent = home.json(&["send", &lane, "a long job"]).ok_json();
    assert_eq!(sent["state"], "accepted", "{sent}");
    let err = skewed_status_call(&home).expect_err("a busy stale daemon stays stale");
    assert_eq!(err.code, ErrorCode::DaemonStale, "{err:?}");
    assert!(err.hint.text().contains("not restarted"), "{err:?}");
    let now = home.json(&["daemon", "status"]).ok_json();
    assert_eq!(now["pid"], first, "the busy daemon was not restarted");
    assert_eq!(now["lanes"]["busy"], 1, "{now}");
    // The daemon itself refused: its action log has the refusal.
    let log = home.json(&["daemon", "log"]).ok_json();
    let refused = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["op"] == "daemon_stop_if_idle")
        .cloned()
        .expect("the conditional stop was asked");
    assert_eq!(refused["outcome"], "error", "{refused}");
    assert_eq!(refused["error_code"], "daemon_busy", "{refused}");
    let got = home.json(&["get", &lane]).ok_json();
    assert_eq!(got["lane"]["latest_turn"]["id"], sent["turn_id"], "{got}");
    assert_eq!(got["lane"]["latest_turn"]["status"], "in_progress", "{got}");
}
