//! `new`'s launch settings against the scripted fake App Server: a dry run runs the checks
//! and makes nothing (no App Server call that creates, no lane, no action-log entry), bad
//! launch inputs are refused before Codex is asked anything, and the same input without
//! `dry_run` makes the lane the plan described. The binary is its own fake App Server (see
//! `harness`).

mod harness;

use std::process::ExitCode;

use dispatch_contract::ErrorCode;
use dispatch_contract::types::{NewInput, SubscriptionsInput};
use dispatch_registry::{LaneFilter, Ownership};
use harness::{Daemon, expect_error, trial};
use libtest_mimic::Arguments;
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial("a_dry_run_runs_the_checks_and_makes_nothing", |d| {
            Box::pin(a_dry_run_runs_the_checks_and_makes_nothing(d))
        }),
        trial("bad_launch_inputs_are_refused_before_codex_is_asked", |d| {
            Box::pin(bad_launch_inputs_are_refused_before_codex_is_asked(d))
        }),
        trial("a_subscribe_setting_subscribes_the_callers_lane", |d| {
            Box::pin(a_subscribe_setting_subscribes_the_callers_lane(d))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// What the daemon has recorded: lanes and action-log entries.
async fn recorded(d: &Daemon) -> (usize, usize) {
    let registry = d.service.registry();
    let lanes = registry
        .list_lanes(&LaneFilter {
            include_archived: true,
            ..LaneFilter::default()
        })
        .await
        .expect("lanes")
        .len();
    let actions = registry.actions(1000).await.expect("actions").len();
    (lanes, actions)
}

fn asked(d: &Daemon, method: &str) -> bool {
    d.requests().iter().any(|m| m == method)
}

async fn a_dry_run_runs_the_checks_and_makes_nothing(d: &Daemon) {
    let input = json!({
        "name": "planned", "cwd": "/", "text": "hello",
        "developer_instructions": "be brief", "ephemeral": true,
        "output_schema_json": "{\"type\":\"object\"}",
    });
    let before = recorded(d).await;
    let mut dry = input.clone();
    dry["dry_run"] = json!(true);
    let planned = d.call::<NewInput>(dry).await.expect("a plan");
    assert!(planned.lane.is_none());
    let plan = planned.plan.expect("the plan");
    assert_eq!(plan.title, "planned");
    assert!(plan.sends_turn && plan.ephemeral && plan.worktree.is_none() && !plan.sets_goal);
    let developer = plan
        .settings
        .iter()
        .find(|s| s.key == "developer_instructions")
        .expect("developer instructions");
    assert_eq!(developer.source, "flag");
    assert_eq!(developer.value, json!("be brief"));
    assert!(
        plan.settings
            .iter()
            .any(|s| s.key == "output_schema" && s.value == json!({ "type": "object" }))
    );
    assert!(!asked(d, "thread/start") && !asked(d, "turn/start"));
    assert_eq!(recorded(d).await, before, "a dry run records nothing");

    let made = d.call::<NewInput>(input).await.expect("a lane");
    assert!(made.plan.is_none());
    assert_eq!(
        made.lane.expect("the lane").title.as_deref(),
        Some("planned")
    );
    assert!(asked(d, "thread/start") && asked(d, "turn/start"));
    assert_eq!(recorded(d).await, (before.0 + 1, before.1 + 1));
}

async fn bad_launch_inputs_are_refused_before_codex_is_asked(d: &Daemon) {
    for (input, says) in [
        (
            json!({ "name": "x", "cwd": "/", "preset": ["nope"], "dry_run": true }),
            "preset `nope`",
        ),
        (
            json!({ "name": "x", "cwd": "/", "output_schema_json": "[1]", "no_send": true }),
            "not a JSON object",
        ),
        (
            json!({ "name": "x", "cwd": "/", "output_schema_json": "{\"a\"", "no_send": true }),
            "not JSON",
        ),
        (
            json!({
                "name": "x", "cwd": "/", "permission_profile": ":workspace",
                "approval_policy": "never", "no_send": true
            }),
            "`approval_policy`",
        ),
    ] {
        let err = expect_error(d.call::<NewInput>(input).await, ErrorCode::InvalidInput);
        assert!(err.message.contains(says), "{says}: {}", err.message);
    }
    assert!(!asked(d, "thread/start"), "{:?}", d.requests());
    assert_eq!(recorded(d).await.0, 0);
    let packet = json!({
        "dir": "/p", "goal": "g".repeat(4001), "files": [],
    });
    let err = expect_error(
        d.call::<NewInput>(json!({
            "name": "x", "cwd": "/", "launch_packet": packet, "dry_run": true
        }))
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains("`goal` from packet:/p"),
        "a goal from a file keeps Codex's limit: {}",
        err.message
    );
    let unused = d
        .call::<NewInput>(json!({
            "name": "x", "cwd": "/", "output_schema_json": "{}", "no_send": true, "dry_run": true
        }))
        .await
        .expect("a plan");
    assert!(
        unused
            .plan
            .expect("plan")
            .warnings
            .iter()
            .any(|w| w.contains("output schema")),
        "an output schema without a first message is not silently dropped"
    );
}

async fn a_subscribe_setting_subscribes_the_callers_lane(d: &Daemon) {
    let repo = tempfile::tempdir().expect("repo");
    std::fs::create_dir_all(repo.path().join(".git")).expect("git");
    std::fs::create_dir_all(repo.path().join(".dispatch")).expect("dispatch");
    std::fs::write(
        repo.path().join(".dispatch/config.toml"),
        "[presets.watched]\nsubscribe = [\"done\", \"approval\"]\n",
    )
    .expect("config");
    let cwd = repo.path().display().to_string();
    let boss = d.lane("boss", Ownership::Owned).await;
    // Without a calling lane there is no subscriber: a warning, and the lane is made.
    let input = json!({ "name": "worker", "cwd": cwd, "preset": ["watched"], "no_send": true });
    let alone = d.call::<NewInput>(input.clone()).await.expect("a lane");
    assert!(
        alone.warnings.iter().any(|w| w.contains("`subscribe`")),
        "{:?}",
        alone.warnings
    );
    let mut from_boss = input;
    from_boss["name"] = json!("worker 2");
    from_boss["caller"] = json!(boss.thread_id);
    let made = d.call::<NewInput>(from_boss).await.expect("a lane");
    let worker = made.lane.expect("the lane").ref_;
    let subscriptions = d
        .call::<SubscriptionsInput>(json!({ "subscriber": boss.lane_ref }))
        .await
        .expect("subscriptions")
        .subscriptions;
    let mut heard: Vec<String> = subscriptions
        .iter()
        .filter(|s| s.target == worker)
        .map(|s| serde_json::to_value(s.when).expect("when").to_string())
        .collect();
    heard.sort();
    assert_eq!(heard, ["\"approval\"", "\"done\""], "{subscriptions:?}");
}
