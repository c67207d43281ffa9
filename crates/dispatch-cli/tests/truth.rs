//! Lane state that never lies, against the real codex 0.169.0 and the stub provider: restarts
//! and kills are reconciled with the App Server, concurrent sends start one turn, bad input
//! creates nothing, retries and stalls show with a hint, refused credentials fail the turn,
//! selectors pick the right lane and replies with reused item ids stay apart.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use responses_stub::{Behaviour, CodexConfig, Script};
use serde_json::Value;
use support::Home;

const LONG: Duration = Duration::from_secs(90);

fn running(got: &Value) -> bool {
    matches!(
        got["lane"]["status"].as_str(),
        Some("busy" | "retrying" | "waiting_approval")
    )
}

fn kill_daemon(home: &Home) {
    let pid = home.pidfile_pid().expect("the daemon's pid");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    home.wait_daemon_gone();
}

#[test]
fn a_restart_or_a_kill_leaves_no_lane_busy_without_a_running_turn() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("fine again"));
    stub.push(Behaviour::Hang);

    let (stopped, _a) = home.new_lane("stopped", &["--text", "take your time"]);
    // The hanging reply is taken before the daemon goes: a loaded machine may otherwise stop
    // it before Codex asked the model, and the next turn would hang instead.
    stub.wait_for_requests(1);
    assert_eq!(
        home.json(&["get", &stopped]).ok_json()["lane"]["status"],
        "busy"
    );
    home.json(&["down"]).ok_json();
    home.up();
    let got = home.json(&["get", &stopped]).ok_json();
    assert_eq!(
        got["lane"]["status"], "idle",
        "reconciled before `up` returned: {got}"
    );
    assert_eq!(got["lane"]["latest_turn"]["status"], "interrupted", "{got}");
    let why = got["lane"]["latest_turn"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("daemon stopped"),
        "the turn says why it ended: {got}"
    );
    assert_eq!(got["errors"][0]["cause"], "interrupted", "{got}");
    let again = home.json(&["send", &stopped, "go on"]).ok_json();
    assert_eq!(again["steered"], false, "a new turn, not a steer: {again}");
    let done = home.get_until(&stopped, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "completed"
    });
    assert_eq!(done["lane"]["status"], "idle", "{done}");

    stub.push(Behaviour::Hang);
    let asked = stub.requests().len();
    let (killed, _b) = home.new_lane("killed", &["--text", "take your time"]);
    stub.wait_for_requests(asked + 1);
    assert_eq!(
        home.json(&["get", &killed]).ok_json()["lane"]["status"],
        "busy"
    );
    kill_daemon(&home);
    home.up();
    let got = home.json(&["get", &killed]).ok_json();
    assert!(
        !running(&got),
        "no lane is busy after a kill -9 and `up`: {got}"
    );
    assert_eq!(got["lane"]["latest_turn"]["status"], "interrupted", "{got}");
    let stop = home.json(&["stop", &killed]).ok_json();
    assert_eq!(stop["interrupted"], false, "nothing runs any more: {stop}");
}

#[test]
fn concurrent_plain_sends_to_an_idle_lane_start_exactly_one_turn() {
    let (home, stub) = Home::with_stub(Script::new());
    stub.push(Behaviour::Hang);
    let (lane, _work) = home.new_lane("target", &[]);
    let home = std::sync::Arc::new(home);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(20));
    let senders: Vec<_> = (0..20)
        .map(|n| {
            let (home, barrier, lane) = (home.clone(), barrier.clone(), lane.clone());
            std::thread::spawn(move || {
                let mut cmd = home.command(&support::dispatch_bin());
                cmd.args(["send", &lane, &format!("message {n}"), "--json"]);
                barrier.wait();
                support::Run::from(cmd.output().expect("send"))
            })
        })
        .collect();
    let runs: Vec<support::Run> = senders
        .into_iter()
        .map(|s| s.join().expect("sender"))
        .collect();
    let accepted: Vec<&support::Run> = runs.iter().filter(|r| r.code == 0).collect();
    let busy = runs
        .iter()
        .filter(|r| r.code == 6 && r.json()["error"]["code"] == "lane_busy")
        .count();
    assert_eq!(
        accepted.len(),
        1,
        "exactly one send starts a turn: {runs:?}"
    );
    assert_eq!(busy, 19, "every other send is refused as busy: {runs:?}");
    assert_eq!(accepted[0].json()["steered"], false);
    let refused = runs.iter().find(|r| r.code == 6).expect("a refusal");
    let hint = refused.json()["error"]["hint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        hint.contains("dispatch stop"),
        "lane_busy says how to end the turn: {hint}"
    );
    home.json(&["stop", &lane]).ok_json();
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let (home, _stub) = Home::with_stub(Script::new());
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    let long_goal = "g".repeat(4001);
    let cases: Vec<Vec<&str>> = vec![
        vec!["new", "--name", "x", "--cwd", &cwd, "--goal", &long_goal],
        vec!["new", "--name", " ", "--cwd", &cwd],
        vec!["new", "--name", "two\nlines", "--cwd", &cwd],
        vec![
            "new",
            "--name",
            "x",
            "--cwd",
            &cwd,
            "--handle",
            "@bad handle",
        ],
    ];
    for args in &cases {
        let refused = home.json(args);
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        refused.error("invalid_input");
    }
    let lanes = home.json(&["list", "--all"]).ok_json();
    assert_eq!(
        lanes["lanes"],
        serde_json::json!([]),
        "nothing was created: {lanes}"
    );

    // A taken handle is refused before a thread is made.
    home.new_lane("first", &["--handle", "@same"]);
    let taken = home.json(&[
        "new", "--name", "second", "--cwd", &cwd, "--handle", "@same",
    ]);
    assert_eq!(taken.code, 2, "{taken:?}");
    let body = taken.error("invalid_input");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("@same"),
        "{body}"
    );
    let lanes = home.json(&["list", "--all"]).ok_json();
    assert_eq!(lanes["lanes"].as_array().map(Vec::len), Some(1), "{lanes}");

    // A message longer than Codex accepts is refused by dispatch, naming the limit.
    let (lane, _w) = home.new_lane("target", &[]);
    let file = work.path().join("big.txt");
    std::fs::write(&file, "x".repeat(1_048_577)).expect("write");
    let big = home.json(&["send", &lane, "--text-file", &file.display().to_string()]);
    assert_eq!(big.code, 2, "{}", big.stderr);
    let body = big.error("invalid_input");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("text"),
        "{body}"
    );
    let got = home.json(&["get", &lane]).ok_json();
    assert!(
        got["lane"]["latest_turn"].is_null(),
        "no turn was started: {got}"
    );
}

#[test]
fn an_exact_title_wins_over_a_ref_prefix_and_handles_are_unique() {
    let (home, _stub) = Home::with_stub(Script::new());
    let (first, _a) = home.new_lane("first", &[]);
    let prefix = &first[..3];
    let (named, _b) = home.new_lane(prefix, &[]);
    let got = home.json(&["get", prefix]).ok_json();
    assert_eq!(
        got["lane"]["ref"], named,
        "`get {prefix}` is the lane titled {prefix}"
    );
    let by_longer_prefix = home.json(&["get", &first[..5]]).ok_json();
    assert_eq!(by_longer_prefix["lane"]["ref"], first);
}

#[test]
fn replies_that_reuse_item_ids_stay_apart() {
    let (home, _stub) = Home::with_stub(Script::new().reuse_item_ids(true));
    let (lane, _work) = home.new_lane("echo", &["--text", "one"]);
    home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "completed"
    });
    home.json(&["send", &lane, "two"]).ok_json();
    let mut turns = 0;
    let deadline = Instant::now() + LONG;
    while turns < 2 && Instant::now() < deadline {
        let got = home.get_until(&lane, LONG, |g| {
            g["lane"]["latest_turn"]["status"] == "completed"
        });
        turns = got["counts"]["turns"].as_u64().unwrap_or(0);
    }
    let tail = home.json(&["tail", &lane, "--limit", "50"]).ok_json();
    let replies: Vec<&Value> = tail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["type"] == "agent_message")
        .collect();
    assert_eq!(replies.len(), 2, "each turn keeps its reply: {tail}");
    assert_ne!(replies[0]["turn_id"], replies[1]["turn_id"]);
}

#[test]
fn a_provider_that_never_answers_shows_the_lane_stalled() {
    let (home, stub) = {
        let stub = support::Stub::start(Script::new());
        let home = Home::new();
        home.use_model_provider(&stub.base_url());
        home.write_config("[lanes]\nstall_after_s = 1\n");
        home.up();
        (home, stub)
    };
    stub.push(Behaviour::Silent);
    let (lane, _work) = home.new_lane("silent", &["--text", "hello?"]);
    let got = home.get_until(&lane, LONG, |g| !g["lane"]["stalled_since"].is_null());
    assert_eq!(got["lane"]["status"], "busy", "{got}");
    assert!(got["lane"]["stalled_since"].is_string(), "{got}");
    let hint = got["lane"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("dispatch stop"), "{got}");
    home.json(&["stop", &lane]).ok_json();
    let stopped = home.get_until(&lane, LONG, |g| g["lane"]["status"] == "idle");
    assert_eq!(stopped["lane"]["status"], "idle", "{stopped}");
    assert!(stopped["lane"]["stalled_since"].is_null(), "{stopped}");
}

#[test]
fn an_unreachable_provider_shows_retrying_with_a_hint_and_stop_clears_it() {
    // Nothing listens on the discard port: every connection is refused, and Codex retries
    // for ever ("waiting for network") as it does for a real user offline.
    let home = Home::new();
    home.use_model_provider_with(
        "http://127.0.0.1:9/v1",
        &CodexConfig {
            retries: 5,
            unbounded_connection_retries: true,
            ..CodexConfig::default()
        },
    );
    home.up();
    let started = Instant::now();
    let (lane, _work) = home.new_lane("offline", &["--text", "hello"]);
    let got = home.get_until(&lane, Duration::from_secs(20), |g| {
        g["lane"]["status"] == "retrying"
    });
    assert_eq!(got["lane"]["status"], "retrying", "{got}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retrying shows within 10 s, took {:?}",
        started.elapsed()
    );
    let retry = &got["lane"]["retry"];
    assert!(retry["attempts"].as_u64().unwrap_or(0) >= 1, "{got}");
    assert!(retry["last_error"].is_string(), "{got}");
    let hint = got["lane"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("network"), "the hint fits the cause: {hint}");
    assert_eq!(got["errors"][0]["cause"], "network", "{got}");
    let human = home.run(&["get", &lane]);
    assert!(human.stdout.contains("retrying"), "{}", human.stdout);

    home.json(&["stop", &lane]).ok_json();
    let stopped = home.get_until(&lane, LONG, |g| g["lane"]["status"] == "idle");
    assert_eq!(stopped["lane"]["status"], "idle", "{stopped}");
    assert!(stopped["lane"]["retry"].is_null(), "{stopped}");
    let human = home.run(&["get", &lane]);
    assert!(
        !human.stdout.contains("Codex is retrying"),
        "no retrying label once the turn was stopped: {}",
        human.stdout
    );
}

#[test]
fn a_provider_refusing_the_credentials_fails_the_turn_for_authentication() {
    let stub = support::Stub::start(Script::new());
    for _ in 0..6 {
        stub.push(Behaviour::HttpError {
            status: 401,
            message: "Incorrect API key provided".into(),
        });
    }
    let home = Home::new();
    home.use_model_provider_with(
        &stub.base_url(),
        &CodexConfig {
            retries: 3,
            ..CodexConfig::default()
        },
    );
    home.up();
    let (lane, _work) = home.new_lane("locked-out", &["--text", "hello"]);
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "failed"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "failed", "{got}");
    assert_eq!(got["lane"]["status"], "error", "{got}");
    let error = got["lane"]["latest_turn"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("authentication"), "{got}");
    let hint = got["lane"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("codex login"), "{got}");
    assert!(
        stub.requests().len() <= 2,
        "dispatch ends the turn instead of letting Codex retry 3 times: {} requests",
        stub.requests().len()
    );
}

#[test]
fn new_warns_when_codex_has_no_credentials_for_its_provider() {
    let home = Home::new();
    // Codex's default provider (OpenAI) needs a login, and this CODEX_HOME has none.
    std::fs::create_dir_all(home.codex_home()).expect("CODEX_HOME");
    std::fs::write(
        home.codex_home().join("config.toml"),
        "[features]\nplugins = false\n[analytics]\nenabled = false\n",
    )
    .expect("config");
    home.up();
    let work = tempfile::tempdir().expect("cwd");
    let created = home
        .json(&[
            "new",
            "--name",
            "anon",
            "--cwd",
            &work.path().display().to_string(),
        ])
        .ok_json();
    let warnings = created["warnings"].to_string();
    assert!(warnings.contains("codex login"), "{created}");
    let human = home.run(&[
        "new",
        "--name",
        "anon2",
        "--cwd",
        &work.path().display().to_string(),
    ]);
    assert!(human.stdout.contains("warning:"), "{}", human.stdout);
}

#[test]
fn watch_until_turn_end_ends_when_the_app_server_dies() {
    let (home, stub) = Home::with_stub(Script::new());
    stub.push(Behaviour::Hang);
    let (lane, _work) = home.new_lane("doomed", &["--text", "take your time"]);
    let watch = home
        .command(&support::dispatch_bin())
        .args([
            "watch",
            &lane,
            "--until",
            "turn-end",
            "--timeout",
            "60",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    // Let the watch subscribe before the App Server goes.
    let _ = home.json(&["watch", &lane, "--timeout", "0.3", "--max-events", "1"]);
    let status = home.json(&["daemon", "status"]).ok_json();
    let pid = status["app_server"]["pid"]
        .as_i64()
        .expect("App Server pid");
    let started = Instant::now();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    let output = watch.wait_with_output().expect("watch ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert_eq!(last["ended"], "turn_end", "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(stdout.contains("interrupted"), "the end says why: {stdout}");
}

/// `chattr +i` (or `-i`) on `files`; false when this machine cannot (no CAP_LINUX_IMMUTABLE, or
/// a filesystem without the flag).
fn immutable(files: &[std::path::PathBuf], on: bool) -> bool {
    files.iter().filter(|f| f.exists()).all(|file| {
        Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(file)
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn an_unwritable_registry_refuses_a_send_before_anything_is_sent() {
    let (home, stub) = Home::with_stub(Script::new());
    stub.push(Behaviour::Hang);
    let (lane, _work) = home.new_lane("frozen", &[]);
    let files = vec![home.file("registry.db"), home.file("registry.db-wal")];
    if !immutable(&files, true) {
        eprintln!("SKIPPED: chattr +i is not available here; the unwritable registry is untested");
        return;
    }
    let sent = home.json(&["send", &lane, "hello"]);
    let again = home.json(&["send", &lane, "hello"]);
    assert!(immutable(&files, false), "chattr -i");

    // The receipt is written before anything is sent: an unwritable registry refuses the
    // send cleanly, with its own code, and nothing reached Codex (no turn, no request).
    for run in [&sent, &again] {
        assert_eq!(run.code, 12, "{run:?}");
        run.error("registry_unwritable");
    }
    assert_eq!(stub.requests().len(), 0, "nothing was sent to the model");
    let got = home.json(&["get", &lane]).ok_json();
    assert!(got["lane"]["latest_turn"].is_null(), "{got}");
    // Once the registry can be written again, a send works.
    let sent = home.json(&["send", &lane, "hello"]).ok_json();
    assert_eq!(sent["message_accepted"], true, "{sent}");
    home.json(&["stop", &lane]).ok_json();

    // A daemon does not start on a registry it cannot write.
    home.json(&["down"]).ok_json();
    let files = vec![home.file("registry.db")];
    assert!(immutable(&files, true), "chattr +i");
    let up = home.json(&["up"]);
    assert!(immutable(&files, false), "chattr -i");
    assert_eq!(up.code, 12, "{up:?}");
    up.error("registry_unwritable");
}
