//! Per-lane git worktrees and images end to end: the real binaries, the real
//! `codex app-server`, the stub model provider. `new --worktree` makes the worktree and its
//! branch and the lane's commands run there (the model runs `pwd`); `worktree remove`
//! removes it and keeps the branch. `new --image` (a relative path) reaches the model as an
//! image. MCP refuses image paths and a custom worktree path. The catalog refusals and the
//! other refusals are covered against the fake App Server (`dispatch-daemon`'s `worktrees`
//! test).

mod support;

use std::path::{Path, PathBuf};

use responses_stub::{Behaviour, Script};
use serde_json::json;
use support::{Home, mcp_error_body};

/// A valid 1×1 PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\xda\x63\x64\x60\xf8\x5f\x0f\x00\x02\x87\x01\x80\xeb\x47\xba\x92\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

#[path = "../../test-support/git.rs"]
mod git_repo;
use git_repo::{git, repo};

#[test]
fn a_worktree_lane_runs_its_commands_in_the_worktree() {
    let stub = support::Stub::start(
        Script::new()
            .then(Behaviour::exec_command("pwd"))
            .follow_up_reply("ran pwd"),
    );
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    // Git variables in the daemon's environment must not redirect the git it runs.
    let elsewhere = dir.path().join("elsewhere.git");
    home.json_with_env(
        &["up"],
        &[
            ("GIT_DIR", elsewhere.as_os_str()),
            ("GIT_WORK_TREE", dir.path().as_os_str()),
        ],
    )
    .ok_json();
    let created = home
        .json(&[
            "new",
            "--name",
            "Where am I",
            "--cwd",
            &repo.display().to_string(),
            "--worktree",
            "--text",
            "run pwd",
        ])
        .ok_json();
    let lane = created["lane"]["ref"].as_str().expect("ref").to_owned();
    let tree = created["lane"]["worktree"].clone();
    let path = tree["path"].as_str().expect("a worktree path").to_owned();
    assert_eq!(
        PathBuf::from(&path),
        home.path().join("worktrees/app/where-am-i"),
        "{created}"
    );
    assert_eq!(tree["branch"], "dispatch/where-am-i");
    assert_eq!(created["lane"]["cwd"], path.as_str());
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(listed.contains(&format!("worktree {path}")), "{listed}");

    // The command the model asked for ran in the worktree: its output is in the tool result
    // Codex sent back.
    stub.wait_for_requests(2);
    let waited = home
        .json(&["wait", &lane, "--until", "idle", "--timeout", "90"])
        .ok_json();
    assert_eq!(waited["timed_out"], false, "{waited}");
    let requests = stub.requests();
    let result = requests
        .iter()
        .find(|r| r.is_tool_result())
        .expect("a tool result");
    assert!(
        result.body.to_string().contains(&path),
        "pwd did not print the worktree: {}",
        result.body
    );

    let got = home.json(&["get", &lane]).ok_json();
    assert_eq!(got["lane"]["worktree"]["path"], path.as_str());
    let human = home.run(&["get", &lane]);
    assert!(
        human.stdout.contains("dispatch/where-am-i"),
        "{}",
        human.stdout
    );

    let removed = home.json(&["worktree", "remove", &lane]).ok_json();
    assert_eq!(removed["forced"], false, "{removed}");
    assert!(!Path::new(&path).exists());
    assert!(
        !git(&repo, &["branch", "--list", "dispatch/where-am-i"])
            .trim()
            .is_empty(),
        "the branch stays"
    );
    home.json(&["down"]).ok_json();
}

#[test]
fn an_image_reaches_the_model() {
    let (home, stub) = Home::with_stub(Script::new().then(Behaviour::text("a pixel")));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pixel.png"), PNG).expect("write");
    std::fs::write(dir.path().join("notes.png"), "not an image").expect("write");

    // Checked by the CLI before the daemon is asked: the flag is named.
    let mut cmd = home.command(&support::dispatch_bin());
    let refused: support::Run = cmd
        .current_dir(dir.path())
        .args([
            "new",
            "--name",
            "x",
            "--text",
            "look",
            "--image",
            "notes.png",
            "--json",
        ])
        .output()
        .expect("run")
        .into();
    let error = refused.error("invalid_input");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("--image")),
        "{error}"
    );

    let mut cmd = home.command(&support::dispatch_bin());
    let created: support::Run = cmd
        .current_dir(dir.path())
        .args([
            "new",
            "--name",
            "seeing",
            "--model",
            "gpt-6.1-sol",
            "--text",
            "what is this?",
            "--image",
            "pixel.png",
            "--json",
        ])
        .output()
        .expect("run")
        .into();
    let created = created.ok_json();
    assert_eq!(created["message_accepted"], true, "{created}");
    stub.wait_for_requests(1);
    let images = stub.requests()[0].user_images();
    assert_eq!(images.len(), 1, "{:?}", stub.requests()[0].body);
    assert!(
        images[0].starts_with("data:image/png;base64,"),
        "{}",
        images[0]
    );
    let lane = created["lane"]["ref"].as_str().expect("ref").to_owned();
    let waited = home
        .json(&["wait", &lane, "--until", "idle", "--timeout", "90"])
        .ok_json();
    assert_eq!(waited["timed_out"], false, "{waited}");
    // The receipt keeps where the image was, its size and its digest, not its bytes.
    let receipt = created["receipt"].as_str().expect("a receipt");
    let shown = home.json(&["delivery", "get", receipt]).ok_json();
    let image = &shown["images"][0];
    assert_eq!(
        image["path"],
        dir.path().join("pixel.png").display().to_string(),
        "{shown}"
    );
    assert_eq!(image["size"], PNG.len(), "{shown}");
    assert_eq!(image["sha256"].as_str().map(str::len), Some(64), "{shown}");
    home.json(&["down"]).ok_json();
}

#[test]
fn mcp_takes_no_image_paths_and_no_worktree_path() {
    let home = Home::new();
    let mut mcp = home.mcp();
    mcp.initialize();
    for (tool, input, field) in [
        (
            "dispatch_new",
            json!({"name": "x", "text": "hi", "image": ["/etc/passwd"]}),
            "image",
        ),
        (
            "dispatch_new",
            json!({"name": "x", "worktree_path": "/tmp/anywhere"}),
            "worktree_path",
        ),
        (
            "dispatch_send",
            json!({"lane": "zzzzzz", "text": "hi", "image": ["/etc/passwd"]}),
            "image",
        ),
    ] {
        let result = mcp.call(tool, input);
        let body = mcp_error_body(&result);
        assert_eq!(body["code"], "invalid_input", "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{body}"
        );
    }
}
