//! The thread operations end to end, against the real codex 0.169.0 and the stub model
//! provider: a lane with two turns is forked (the child's `tail` has both, and a turn on the
//! child leaves the parent alone; a fork through the first turn has only that one), the child's last turn is reverted (Codex's thread has one
//! turn fewer, and more turns than exist are refused), the parent's context is compacted
//! (`get` shows it finished), a review starts on a git repository, and the child is deleted
//! (refused without `--yes`).

mod support;

use std::process::Command;
use std::time::Duration;

use responses_stub::Script;
use serde_json::Value;
use support::Home;

const LONG: Duration = Duration::from_secs(90);

fn idle_with_turns(got: &Value, turns: u64) -> bool {
    got["lane"]["status"] == "idle"
        && got["lane"]["latest_turn"]["status"] == "completed"
        && got["counts"]["turns"] == turns
}

fn user_messages(tail: &Value) -> Vec<String> {
    tail["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["type"] == "user_message")
                .filter_map(|i| i["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn fork_revert_compact_review_and_delete() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("noted"));
    let (lane, work) = home.new_lane("parent", &["--text", "first message"]);
    let got = home.get_until(&lane, LONG, |g| idle_with_turns(g, 1));
    assert!(idle_with_turns(&got, 1), "{got}");
    home.json(&["send", &lane, "second message"]).ok_json();
    let got = home.get_until(&lane, LONG, |g| idle_with_turns(g, 2));
    assert!(idle_with_turns(&got, 2), "{got}");

    // Fork: the child starts with both turns and records its parent.
    let forked = home.json(&["fork", &lane, "--name", "child"]).ok_json();
    let child = forked["lane"]["ref"]
        .as_str()
        .expect("child ref")
        .to_owned();
    assert_ne!(child, lane);
    assert_eq!(forked["parent"]["ref"], lane.as_str(), "{forked}");
    assert_eq!(forked["turns"], 2, "{forked}");
    assert_eq!(forked["lane"]["ownership"], "owned");
    let got = home.json(&["get", &child]).ok_json();
    assert_eq!(got["parent"]["ref"], lane.as_str(), "{got}");
    let tail = home.json(&["tail", &child]).ok_json();
    let said = user_messages(&tail);
    assert!(
        said.iter().any(|t| t == "first message") && said.iter().any(|t| t == "second message"),
        "{tail}"
    );

    // Through a turn: only the history up to it.
    let first_turn = tail["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["text"] == "first message"))
        .and_then(|i| i["turn_id"].as_str())
        .expect("the first turn's id")
        .to_owned();
    let early = home
        .json(&[
            "fork",
            &lane,
            "--name",
            "early",
            "--through-turn",
            &first_turn,
        ])
        .ok_json();
    assert_eq!(early["turns"], 1, "{early}");
    let early_ref = early["lane"]["ref"].as_str().expect("ref").to_owned();
    let early_said = user_messages(&home.json(&["tail", &early_ref]).ok_json());
    assert_eq!(early_said, vec!["first message".to_owned()]);

    // A turn on the child leaves the parent alone.
    home.json(&["send", &child, "only on the child"]).ok_json();
    let got = home.get_until(&child, LONG, |g| idle_with_turns(g, 3));
    assert!(idle_with_turns(&got, 3), "{got}");
    let parent_tail = home.json(&["tail", &lane]).ok_json();
    assert!(
        !user_messages(&parent_tail)
            .iter()
            .any(|t| t == "only on the child"),
        "{parent_tail}"
    );
    assert_eq!(home.json(&["get", &lane]).ok_json()["counts"]["turns"], 2);

    // Revert: more turns than exist are refused; one turn goes, in Codex and in the registry.
    home.json(&["revert", &child, "--turns", "9"])
        .error("invalid_input");
    let reverted = home.json(&["revert", &child]).ok_json();
    assert_eq!(
        reverted["reverted"].as_array().map(Vec::len),
        Some(1),
        "{reverted}"
    );
    assert_eq!(reverted["turns_left"], 2, "{reverted}");
    assert_eq!(reverted["files_reverted"], false);
    let human = home.run(&["revert", &child, "--turns", "9"]);
    assert_eq!(human.code, 2, "{human:?}");
    assert!(human.stderr.contains("cannot be reverted"), "{human:?}");
    let synced = home.json(&["sync", &child]).ok_json();
    assert_eq!(
        synced["turns"], 2,
        "Codex's thread has one turn fewer: {synced}"
    );
    let got = home.json(&["get", &child]).ok_json();
    assert_eq!(got["counts"]["turns"], 2, "{got}");
    assert!(
        !user_messages(&home.json(&["tail", &child]).ok_json())
            .iter()
            .any(|t| t == "only on the child")
    );

    // Compact: returns at once; `get` shows when it finished.
    let compacted = home.json(&["compact", &lane]).ok_json();
    assert_eq!(compacted["started"], true, "{compacted}");
    let got = home.get_until(&lane, LONG, |g| {
        g["compaction"]["completed_at"].is_string() && g["lane"]["status"] == "idle"
    });
    assert!(got["compaction"]["completed_at"].is_string(), "{got}");
    assert!(got["compaction"]["requested_at"].is_string(), "{got}");

    // Review: starts on a git repository with uncommitted changes.
    git(work.path(), &["init", "-q"]);
    std::fs::write(work.path().join("a.txt"), "one\n").expect("write");
    git(work.path(), &["add", "a.txt"]);
    git(work.path(), &["commit", "-qm", "one"]);
    std::fs::write(work.path().join("a.txt"), "two\n").expect("write");
    let review = home.json(&["review", &lane, "--uncommitted"]).ok_json();
    assert_eq!(review["message_accepted"], true, "{review}");
    let turn = review["turn_id"]
        .as_str()
        .expect("the review's turn")
        .to_owned();
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str() && g["lane"]["status"] != "busy"
    });
    assert_eq!(got["lane"]["latest_turn"]["id"], turn.as_str(), "{got}");
    assert_ne!(
        got["lane"]["status"], "busy",
        "the review's turn ended: {got}"
    );
    let tail = home.json(&["tail", &lane]).ok_json();
    let findings = tail["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["type"] == "exited_review_mode")
        .cloned();
    assert!(
        findings.as_ref().is_some_and(|f| f["text"].is_string()),
        "the review's findings are in the tail: {tail}"
    );
    let parent_turns = got["counts"]["turns"].clone();

    // Delete: refused without confirmation, then the child is gone.
    home.json(&["delete", &child]).error("invalid_input");
    assert_eq!(
        home.json(&["get", &child]).ok_json()["lane"]["ref"],
        child.as_str()
    );
    let deleted = home.json(&["delete", &child, "--yes"]).ok_json();
    assert_eq!(deleted["ref"], child.as_str(), "{deleted}");
    home.json(&["get", &child]).error("not_found");
    // The parent is untouched.
    assert_eq!(
        home.json(&["get", &lane]).ok_json()["counts"]["turns"],
        parent_turns
    );
}

#[test]
fn usage_and_permissions_answer_offline() {
    let (home, _stub) = Home::with_stub(Script::new());
    let usage = home.json(&["usage"]).ok_json();
    assert_eq!(usage["status"], "signed_out", "{usage}");
    assert!(
        usage["hint"]
            .as_str()
            .is_some_and(|h| h.contains("codex login")),
        "{usage}"
    );
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    let permissions = home.json(&["permissions", "--cwd", &cwd]).ok_json();
    let ids: Vec<&str> = permissions["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(ids.contains(&":workspace"), "{permissions}");
    home.json(&[
        "new",
        "--name",
        "x",
        "--cwd",
        &cwd,
        "--permission-profile",
        ":nope",
        "--no-send",
    ])
    .error("invalid_input");
    let made = home
        .json(&[
            "new",
            "--name",
            "y",
            "--cwd",
            &cwd,
            "--permission-profile",
            ":workspace",
            "--no-send",
        ])
        .ok_json();
    assert_eq!(made["lane"]["title"], "y", "{made}");
}
