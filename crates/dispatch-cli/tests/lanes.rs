//! Lanes end to end, against the real codex 0.169.0 and the stub model provider: the README
//! walkthrough, interrupting, busy lanes, provider errors, approvals, watch, and restarts.

mod support;

use std::time::{Duration, Instant};

use responses_stub::{Behaviour, Script};
use serde_json::Value;
use support::Home;

const LONG: Duration = Duration::from_secs(90);

fn idle_after_turn(got: &Value) -> bool {
    got["lane"]["status"] == "idle" && got["lane"]["latest_turn"]["status"] == "completed"
}

fn texts(tail: &Value, kind: &str) -> Vec<String> {
    tail["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["type"] == kind)
                .filter_map(|i| i["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_readme_walkthrough() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("hello from the stub"));
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    let created = home
        .json(&[
            "new",
            "--name",
            "docs",
            "--cwd",
            &cwd,
            "--goal",
            "write the docs",
            "--text",
            "start with the README",
            "--handle",
            "@docs",
        ])
        .ok_json();
    let lane = created["lane"]["ref"].as_str().expect("ref").to_owned();
    assert_eq!(lane.len(), 6);
    assert_eq!(created["message_accepted"], true, "{created}");
    assert_eq!(created["goal_set"], true);
    assert_eq!(created["lane"]["title"], "docs");
    assert_eq!(created["lane"]["handle"], "docs");
    assert_eq!(created["lane"]["cwd"], cwd);
    assert_eq!(created["lane"]["ownership"], "owned");
    assert_eq!(created["lane"]["writable"], true);

    let got = home.get_until(&lane, LONG, |g| {
        idle_after_turn(g) && g["lane"]["goal"]["status"] == "complete"
    });
    assert!(idle_after_turn(&got), "{got}");
    assert_eq!(got["lane"]["goal"]["objective"], "write the docs", "{got}");

    let tail = home.json(&["tail", "@docs"]).ok_json();
    assert!(
        texts(&tail, "user_message")
            .iter()
            .any(|t| t == "start with the README"),
        "{tail}"
    );
    assert!(
        texts(&tail, "agent_message")
            .iter()
            .any(|t| t == "hello from the stub"),
        "{tail}"
    );

    let sent = home.json(&["send", &lane, "and now the guide"]).ok_json();
    assert_eq!(sent["message_accepted"], true);
    assert_eq!(sent["steered"], false);
    let turn = sent["turn_id"].as_str().expect("turn").to_owned();
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str() && idle_after_turn(g)
    });
    assert!(idle_after_turn(&got), "{got}");
    let tail = home.json(&["tail", &lane, "--limit", "50"]).ok_json();
    assert!(
        texts(&tail, "user_message")
            .iter()
            .any(|t| t == "and now the guide"),
        "{tail}"
    );
    assert!(stub.requests().iter().any(|r| {
        r.user_texts()
            .iter()
            .any(|t| t.contains("and now the guide"))
    }));

    let listed = home.json(&["list"]).ok_json();
    assert_eq!(listed["lanes"][0]["ref"], lane.as_str());
    let ops = home.logged_ops();
    assert!(
        ops.iter().any(|op| op == "new") && ops.iter().any(|op| op == "send"),
        "{ops:?}"
    );
}

#[test]
fn a_busy_lane_refuses_send_without_steer_and_stop_interrupts_it() {
    let (home, stub) = Home::with_stub(Script::new());
    // One request for the turn, one more when the steer makes Codex ask the model again:
    // both hang, so the turn is still running when `stop` comes.
    stub.push(Behaviour::Hang);
    stub.push(Behaviour::Hang);
    let work = tempfile::tempdir().expect("cwd");
    let created = home
        .json(&[
            "new",
            "--name",
            "slow",
            "--cwd",
            &work.path().display().to_string(),
            "--text",
            "take your time",
        ])
        .ok_json();
    let lane = created["lane"]["ref"].as_str().expect("ref").to_owned();
    assert_eq!(
        created["lane"]["status"], "busy",
        "a lane with a running turn is busy at once"
    );

    let refused = home.json(&["send", &lane, "another"]);
    assert_eq!(refused.code, 6, "{refused:?}");
    refused.error("lane_busy");

    let steered = home
        .json(&["send", &lane, "--steer", "also this"])
        .ok_json();
    assert_eq!(steered["steered"], true);

    let stopped = home.json(&["stop", &lane]).ok_json();
    assert_eq!(stopped["interrupted"], true);
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "interrupted"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "interrupted", "{got}");
    assert_eq!(got["lane"]["status"], "idle");
    let again = home.json(&["stop", &lane]).ok_json();
    assert_eq!(
        again["interrupted"], false,
        "stopping an idle lane changes nothing"
    );
}

#[test]
fn a_failing_provider_shows_in_get() {
    let (home, stub) = Home::with_stub(Script::new());
    stub.push(Behaviour::http_500());
    let (lane, _work) = home.new_lane("broken", &["--text", "hi"]);
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "failed"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "failed", "{got}");
    assert_eq!(got["lane"]["status"], "error");
    let errors = got["errors"].as_array().expect("errors");
    assert!(
        !errors.is_empty(),
        "the provider's error is persisted: {got}"
    );
    assert_eq!(errors[0]["will_retry"], false);
    assert!(got["lane"]["latest_turn"]["error"].is_string());
}

#[test]
fn an_approval_holds_the_lane_until_respond() {
    let (home, stub) = Home::with_stub(Script::new().follow_up_reply("ran it"));
    stub.push(Behaviour::exec_command_escalated(
        "echo approved",
        "needs approval",
    ));
    let (lane, _work) = home.new_lane(
        "careful",
        &["--approval-policy", "on-request", "--text", "run it"],
    );
    let got = home.get_until(&lane, LONG, |g| g["lane"]["status"] == "waiting_approval");
    assert_eq!(got["lane"]["status"], "waiting_approval", "{got}");
    let pending = home.json(&["requests", "--lane", &lane]).ok_json();
    let request = pending["requests"][0].clone();
    assert_eq!(request["kind"], "command", "{pending}");
    assert!(
        request["summary"]
            .as_str()
            .is_some_and(|s| s.contains("echo approved"))
    );
    let id = request["id"].as_i64().expect("id").to_string();

    let answered = home.json(&["respond", &id, "accept"]).ok_json();
    assert_eq!(answered["decision"], "accept");
    let got = home.get_until(&lane, LONG, idle_after_turn);
    assert!(idle_after_turn(&got), "{got}");
    assert!(
        home.json(&["requests"]).ok_json()["requests"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let tail = home.json(&["tail", &lane, "--limit", "50"]).ok_json();
    assert!(
        texts(&tail, "agent_message").iter().any(|t| t == "ran it"),
        "{tail}"
    );
    let again = home.json(&["respond", &id, "accept"]);
    again.error("not_found");
}

#[test]
fn watch_returns_within_its_bound_with_the_events_of_a_live_turn() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("watched"));
    let (lane, _work) = home.new_lane("w", &["--no-send"]);
    // The cursor of "now", so the watcher sees everything after it whenever it starts.
    let now = home.json(&["watch", &lane, "--timeout", "0.01"]).ok_json();
    let cursor = now["cursor"].to_string();
    let watcher = home
        .command(&support::dispatch_bin())
        .args([
            "watch",
            &lane,
            "--after",
            &cursor,
            "--until",
            "turn-end",
            "--timeout",
            "60",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let started = Instant::now();
    home.json(&["send", &lane, "hello"]).ok_json();
    let out = watcher.wait_with_output().expect("watch output");
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let methods: Vec<&str> = lines.iter().filter_map(|l| l["method"].as_str()).collect();
    assert!(methods.contains(&"turn/completed"), "{methods:?}");
    assert_eq!(lines.last().expect("summary")["ended"], "turn_end");

    let bounded = Instant::now();
    let quiet = home.json(&["watch", &lane, "--timeout", "0.3"]).ok_json();
    assert_eq!(quiet["ended"], "timeout");
    assert!(bounded.elapsed() < Duration::from_secs(10));
}

#[test]
fn restarting_the_daemon_keeps_every_lane_ref_and_event() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("remembered"));
    let (lane, _work) = home.new_lane("keep", &["--text", "remember me"]);
    let before = home.get_until(&lane, LONG, idle_after_turn);
    let tail_before = home.json(&["tail", &lane, "--limit", "100"]).ok_json();
    home.json(&["down"]).ok_json();
    home.up();
    let after = home.json(&["get", &lane]).ok_json();
    assert_eq!(after["lane"], before["lane"]);
    assert_eq!(after["counts"], before["counts"]);
    assert_eq!(
        home.json(&["tail", &lane, "--limit", "100"]).ok_json(),
        tail_before
    );
    let sent = home.json(&["send", &lane, "still there?"]).ok_json();
    let turn = sent["turn_id"].as_str().expect("turn").to_owned();
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str() && idle_after_turn(g)
    });
    assert!(
        idle_after_turn(&got),
        "the thread was resumed in the new App Server: {got}"
    );
}

#[test]
fn bad_input_to_lanes() {
    let (home, _stub) = Home::with_stub(Script::new());
    home.json(&["get", "nosuch"]).error("not_found");
    home.json(&["send", "nosuch", ""]).error("invalid_input");
    let missing = home.json(&[
        "new",
        "--name",
        "x",
        "--cwd",
        "/no/such/dir",
        "--text",
        "hi",
    ]);
    missing.error("invalid_input");
    assert!(
        home.json(&["list"]).ok_json()["lanes"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "nothing was created"
    );
    let model = home.json(&["new", "--name", "x", "--model", "gpt-nope", "--no-send"]);
    let body = model.error("model_unavailable");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("gpt-6.1-sol")),
        "lists the choices: {body}"
    );
    let effort = home.json(&[
        "new",
        "--name",
        "x",
        "--model",
        "gpt-6.1-sol",
        "--effort",
        "enormous",
        "--no-send",
    ]);
    effort.error("model_unavailable");
    let tier = home
        .json(&[
            "new",
            "--name",
            "x",
            "--model",
            "gpt-6.1-sol",
            "--service-tier",
            "fast",
            "--no-send",
        ])
        .ok_json();
    assert_eq!(tier["message_accepted"], Value::Null);
    home.json(&["new", "--name", "y", "--no-send"]).ok_json();
    home.json(&["new", "--name", "y", "--no-send"]).ok_json();
    home.json(&["get", "y"]).error("ambiguous_selector");
}

#[test]
fn a_decline_policy_refuses_approvals_at_once_and_a_bad_config_stops_up() {
    let stub = support::Stub::start(Script::new().follow_up_reply("carried on"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    std::fs::create_dir_all(home.path()).expect("home");
    std::fs::write(
        home.file("config.toml"),
        "[policy]\napprovals = \"sometimes\"\n",
    )
    .expect("config");
    let refused = home.json(&["up"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    refused.error("invalid_input");

    std::fs::write(
        home.file("config.toml"),
        "[policy]\napprovals = \"decline\"\n",
    )
    .expect("config");
    home.up();
    stub.push(Behaviour::exec_command_escalated(
        "echo never",
        "needs approval",
    ));
    let (lane, _work) = home.new_lane(
        "strict",
        &["--approval-policy", "on-request", "--text", "run it"],
    );
    let got = home.get_until(&lane, LONG, idle_after_turn);
    assert!(
        idle_after_turn(&got),
        "the turn went on without the command: {got}"
    );
    assert!(
        home.json(&["requests"]).ok_json()["requests"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let log = home.json(&["daemon", "log"]).ok_json();
    assert!(
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["op"] == "respond"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("declined by [policy]"))),
        "{log}"
    );
}

#[test]
fn an_app_server_crash_interrupts_the_running_turn_and_the_lane_works_again() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("back again"));
    stub.push(Behaviour::Hang);
    let (lane, _work) = home.new_lane("crashy", &["--text", "never finishes"]);
    // The hanging request must be in flight before the crash, or the next turn would get it.
    stub.wait_for_requests(1);
    let status = home.json(&["daemon", "status"]).ok_json();
    let pid = status["app_server"]["pid"]
        .as_i64()
        .expect("App Server pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "interrupted"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "interrupted", "{got}");
    assert!(
        got["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("App Server exited")),
        "the interruption is explained: {got}"
    );
    let sent = home.json(&["send", &lane, "try again"]).ok_json();
    let turn = sent["turn_id"].as_str().expect("turn").to_owned();
    let again = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str() && idle_after_turn(g)
    });
    assert!(
        idle_after_turn(&again),
        "the thread was resumed in the new App Server: {again}"
    );
}

/// `[app_server] max_loaded_idle = 1`: making a second lane unloads the idle first lane's
/// thread from the real App Server (`thread/unsubscribe`); a send to it loads it again
/// (`thread/resume`) and its turn runs.
#[test]
fn a_send_to_a_lane_unloaded_as_idle_runs_its_turn() {
    let stub = support::Stub::start(Script::new().default_reply("back again"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    home.write_config("[app_server]\nmax_loaded_idle = 1\n");
    home.json_with_env(
        &["up"],
        &[(
            "DISPATCH_LOG",
            std::ffi::OsStr::new("info,dispatch_daemon=debug"),
        )],
    )
    .ok_json();
    let (old, _old_work) = home.new_lane("old", &["--text", "first"]);
    let first = home.get_until(&old, LONG, idle_after_turn);
    let (new, _new_work) = home.new_lane("new", &["--text", "second"]);
    home.get_until(&new, LONG, idle_after_turn);
    let thread = first["lane"]["id"].as_str().expect("thread id").to_owned();
    let log = std::fs::read_to_string(home.file("dispatchd.log")).expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("unloaded an idle thread") && l.contains(&thread)),
        "the old lane's thread was unloaded: {log}"
    );
    let sent = home.json(&["send", &old, "are you back?"]).ok_json();
    let turn = sent["turn_id"].as_str().expect("turn").to_owned();
    let got = home.get_until(&old, LONG, |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str() && idle_after_turn(g)
    });
    assert!(idle_after_turn(&got), "{got}");
    let tail = home.json(&["tail", &old, "--limit", "100"]).ok_json();
    assert_eq!(
        texts(&tail, "agent_message"),
        vec!["back again", "back again"],
        "{tail}"
    );
}
