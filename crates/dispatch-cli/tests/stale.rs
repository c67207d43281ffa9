//! A daemon built from another contract answers `daemon_stale`; the client restarts an idle
//! one once and retries, having asked the daemon itself to stop if idle (ADR 0027).

mod support;

use dispatch_client::{DaemonLaunch, Runner};
use dispatch_contract::{ErrorCode, Operation, operations};
use dispatch_home::Paths;

#[test]
fn an_idle_stale_daemon_is_restarted_once() {
    let home = support::Home::new();
    let first = home.up()["pid"].clone();
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
    // This client's idea of `daemon status` differs from the daemon's: as after an upgrade.
    let skewed: &'static Operation = Box::leak(Box::new(Operation {
        contract_hash: "ffffffffffffffff",
        ..operations::DAEMON_STATUS
    }));
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(runner.run(skewed, serde_json::json!({})));
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
