//! The thread operations' refusals against the scripted fake App Server: every bad input is a
//! typed error before Codex is asked to change anything (the fake logs every request it got):
//! reverting more turns than exist or a turn that is not the lane's, reverting or compacting
//! while a turn runs, forking an attached lane or through an unknown turn, reviewing outside a
//! git repository or two targets at once, deleting without confirmation, a `goal set` with
//! nothing to set, and `new` with a permission profile Codex does not allow. `usage` answers
//! `signed_out` without an account. The binary is its own fake App Server (see `harness`).

mod harness;

use std::process::ExitCode;

use dispatch_contract::ErrorCode;
use dispatch_contract::types::{
    CompactInput, DeleteInput, ForkInput, GetInput, GetOutput, GoalSetInput, NewInput, RevertInput,
    ReviewInput, UsageInput, UsageOutputStatus,
};
use dispatch_registry::{NewLane, Ownership};
use fake_app_server::Script;
use harness::{Daemon, expect_error};
use libtest_mimic::Arguments;
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        harness::trial_with(
            "revert_refuses_what_the_thread_does_not_have",
            two_turns,
            |d| Box::pin(revert_refuses_what_the_thread_does_not_have(d)),
        ),
        harness::trial_with(
            "revert_and_compact_are_refused_while_a_turn_runs",
            two_turns,
            |d| Box::pin(revert_and_compact_are_refused_while_a_turn_runs(d)),
        ),
        harness::trial_with(
            "fork_refuses_an_attached_lane_and_an_unknown_turn",
            two_turns,
            |d| Box::pin(fork_refuses_an_attached_lane_and_an_unknown_turn(d)),
        ),
        harness::trial("review_needs_a_git_repository_and_one_target", |d| {
            Box::pin(review_needs_a_git_repository_and_one_target(d))
        }),
        harness::trial("delete_needs_confirmation", |d| {
            Box::pin(delete_needs_confirmation(d))
        }),
        harness::trial("goal_set_needs_something_to_set", |d| {
            Box::pin(goal_set_needs_something_to_set(d))
        }),
        harness::trial(
            "new_refuses_a_permission_profile_codex_does_not_allow",
            |d| Box::pin(new_refuses_a_permission_profile_codex_does_not_allow(d)),
        ),
        harness::trial("usage_without_an_account_is_signed_out", |d| {
            Box::pin(usage_without_an_account_is_signed_out(d))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// Codex reports two completed turns on every thread, newest first.
fn two_turns() -> Script {
    Script {
        turns: vec![
            ("turn-2".into(), "completed".into()),
            ("turn-1".into(), "completed".into()),
        ],
        ..Script::default()
    }
}

/// Asserts the fake App Server was never asked `method`.
fn never_asked(d: &Daemon, method: &str) {
    let asked = d.requests();
    assert!(
        !asked.iter().any(|m| m == method),
        "{method} was called: {asked:?}"
    );
}

async fn revert_refuses_what_the_thread_does_not_have(d: &Daemon) {
    let lane = d.lane("rev", Ownership::Owned).await;
    let err = expect_error(
        d.call::<RevertInput>(json!({ "lane": lane.lane_ref, "turns": 3 }))
            .await,
        ErrorCode::InvalidInput,
    );
    assert!(err.message.contains("has 2 turns"), "{}", err.message);
    expect_error(
        d.call::<RevertInput>(json!({ "lane": lane.lane_ref, "before_turn": "turn-9" }))
            .await,
        ErrorCode::InvalidInput,
    );
    expect_error(
        d.call::<RevertInput>(
            json!({ "lane": lane.lane_ref, "turns": 1, "before_turn": "turn-1" }),
        )
        .await,
        ErrorCode::InvalidInput,
    );
    expect_error(
        d.call::<RevertInput>(json!({ "lane": lane.lane_ref, "turns": 0 }))
            .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/revert");
}

async fn revert_and_compact_are_refused_while_a_turn_runs(d: &Daemon) {
    let lane = d.lane("busy", Ownership::Owned).await;
    d.start_turn(&lane, "turn-3").await;
    expect_error(
        d.call::<RevertInput>(json!({ "lane": lane.lane_ref }))
            .await,
        ErrorCode::LaneBusy,
    );
    expect_error(
        d.call::<CompactInput>(json!({ "lane": lane.lane_ref }))
            .await,
        ErrorCode::LaneBusy,
    );
    never_asked(d, "thread/revert");
    never_asked(d, "thread/compact/start");
}

async fn fork_refuses_an_attached_lane_and_an_unknown_turn(d: &Daemon) {
    let attached = d.lane("theirs", Ownership::Attached).await;
    expect_error(
        d.call::<ForkInput>(json!({ "lane": attached.lane_ref, "name": "child" }))
            .await,
        ErrorCode::AttachedLaneWriteBlocked,
    );
    let owned = d.lane("mine", Ownership::Owned).await;
    let err = expect_error(
        d.call::<ForkInput>(
            json!({ "lane": owned.lane_ref, "name": "child", "through_turn": "turn-9" }),
        )
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(err.message.contains("turn-9"), "{}", err.message);
    expect_error(
        d.call::<ForkInput>(
            json!({ "lane": owned.lane_ref, "name": "child", "cwd": "/no/such/dir" }),
        )
        .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/fork");
}

async fn review_needs_a_git_repository_and_one_target(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lane = d
        .service
        .registry()
        .create_lane(&NewLane {
            thread_id: "thread-review".into(),
            title: Some("review".into()),
            handle: None,
            ownership: Ownership::Owned,
            cwd: Some(dir.path().display().to_string()),
            model: None,
        })
        .await
        .expect("lane");
    let err = expect_error(
        d.call::<ReviewInput>(json!({ "lane": lane.lane_ref }))
            .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains("not in a git repository"),
        "{}",
        err.message
    );
    assert!(err.hint.text().contains("git init"), "{}", err.hint.text());
    expect_error(
        d.call::<ReviewInput>(json!({ "lane": lane.lane_ref, "base": "main", "commit": "abc123" }))
            .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "review/start");
}

async fn delete_needs_confirmation(d: &Daemon) {
    let lane = d.lane("keep", Ownership::Owned).await;
    expect_error(
        d.call::<DeleteInput>(json!({ "target": lane.lane_ref }))
            .await,
        ErrorCode::InvalidInput,
    );
    expect_error(
        d.call::<DeleteInput>(json!({ "target": lane.lane_ref, "yes": false }))
            .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/delete");
    let still: GetOutput = d
        .call::<GetInput>(json!({ "lane": lane.lane_ref }))
        .await
        .expect("the lane is still there");
    assert_eq!(still.lane.ref_, lane.lane_ref);
    assert_eq!(still.parent, None);
}

async fn goal_set_needs_something_to_set(d: &Daemon) {
    let lane = d.lane("goal", Ownership::Owned).await;
    expect_error(
        d.call::<GoalSetInput>(json!({ "lane": lane.lane_ref }))
            .await,
        ErrorCode::InvalidInput,
    );
    expect_error(
        d.call::<GoalSetInput>(json!({ "lane": lane.lane_ref, "status": "blocked" }))
            .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/goal/set");
}

async fn new_refuses_a_permission_profile_codex_does_not_allow(d: &Daemon) {
    let err = expect_error(
        d.call::<NewInput>(json!({
            "name": "x", "cwd": "/", "permission_profile": ":nope", "no_send": true
        }))
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains(":workspace") && err.message.contains(":read-only"),
        "the allowed profiles are listed: {}",
        err.message
    );
    expect_error(
        d.call::<NewInput>(json!({
            "name": "x", "cwd": "/", "permission_profile": ":workspace",
            "sandbox": "read-only", "no_send": true
        }))
        .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/start");
}

async fn usage_without_an_account_is_signed_out(d: &Daemon) {
    let usage = d.call::<UsageInput>(json!({})).await.expect("usage");
    assert_eq!(usage.status, UsageOutputStatus::SignedOut);
    assert!(usage.account.is_none());
    assert!(
        usage
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("codex login")),
        "{:?}",
        usage.hint
    );
}
