//! The daemon's Codex App Server, against the real codex 0.169.0: start-up, status, the
//! doctor's smoke check, crash recovery, and a Codex binary that is missing or misbehaves.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Home;

fn check<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no `{name}` check in {doctor}"))
}

#[test]
fn up_starts_the_app_server_and_status_shows_it_ready() {
    let home = Home::new();
    home.up();
    let status = home.json(&["daemon", "status"]).ok_json();
    let app = &status["app_server"];
    assert_eq!(app["state"], "ready", "{status}");
    assert_eq!(app["version"], "0.169.0");
    assert_eq!(app["restarts"], 0);
    assert!(app["pid"].as_i64().is_some_and(|pid| pid > 0));
}

#[test]
fn doctor_passes_its_app_server_check() {
    let home = Home::new();
    let doctor = home.json(&["doctor"]).json();
    assert_eq!(check(&doctor, "codex_cli")["status"], "ok", "{doctor}");
    let smoke = check(&doctor, "app_server");
    assert_eq!(smoke["status"], "ok", "{doctor}");
    assert!(
        smoke["summary"]
            .as_str()
            .is_some_and(|s| s.contains("0.169.0"))
    );
    let skipped = home.json(&["doctor", "--no-app-server"]).json();
    assert!(
        skipped["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["name"] != "app_server"))
    );
}

#[test]
fn a_killed_app_server_is_restarted() {
    let home = Home::new();
    home.up();
    let before = home.json(&["daemon", "status"]).ok_json();
    let pid = before["app_server"]["pid"]
        .as_i64()
        .expect("App Server pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let after = home.status_until(Duration::from_secs(30), |s| {
        s["app_server"]["restarts"] == 1 && s["app_server"]["state"] == "ready"
    });
    let app = &after["app_server"];
    assert_eq!(app["restarts"], 1, "{after}");
    assert_eq!(app["state"], "ready", "{after}");
    assert_ne!(app["pid"].as_i64(), Some(pid), "a new process");
    assert!(
        app["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("signal 9") || e.contains("exited")),
        "the cause is recorded: {after}"
    );
}

#[test]
fn a_missing_codex_binary_fails_up_and_doctor_with_app_server_unavailable() {
    let home = Home::new();
    let missing = home.path().join("no-such-codex");
    let env = [("DISPATCH_CODEX_BIN", missing.as_os_str())];
    let up = home.json_with_env(&["up"], &env);
    assert_eq!(up.code, 8, "{up:?}");
    let body = up.error("app_server_unavailable");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("DISPATCH_CODEX_BIN")),
        "{body}"
    );
    assert!(
        !home.file("dispatchd.sock").exists(),
        "no daemon is left behind"
    );

    let doctor = home.json_with_env(&["doctor"], &env);
    assert_eq!(doctor.code, 1);
    let cli = check(&doctor.json(), "codex_cli").clone();
    assert_eq!(cli["status"], "fail");
    assert!(
        cli["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("app_server_unavailable"))
    );
    assert!(
        cli["hint"]
            .as_str()
            .is_some_and(|h| h.contains("DISPATCH_CODEX_BIN"))
    );
}

fn fake_codex(home: &Home, name: &str, script: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(home.path()).expect("home");
    let path = home.path().join(name);
    support::executable::write_executable(&path, &format!("#!/bin/sh\n{script}\n"));
    path
}

#[test]
fn a_codex_that_misbehaves_fails_up_within_a_bound() {
    let home = Home::new();
    for (name, script) in [
        ("garbage", "echo 'this is not json-rpc'; sleep 60"),
        ("exits", "exit 3"),
        ("silent", "exec sleep 60"),
    ] {
        let bin = fake_codex(&home, name, script);
        let started = Instant::now();
        let up = home.json_with_env(&["up"], &[("DISPATCH_CODEX_BIN", bin.as_os_str())]);
        assert_eq!(up.code, 8, "{name}: {up:?}");
        up.error("app_server_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{name}: bounded wait"
        );
        assert!(
            !home.file("dispatchd.sock").exists(),
            "{name}: no daemon left"
        );
    }
}

#[test]
fn models_lists_the_built_in_catalog_and_caches_it() {
    let home = Home::new();
    home.up();
    let empty = home.json(&["models", "--no-refresh"]).ok_json();
    assert_eq!(empty["catalog_state"], "empty");
    assert_eq!(empty["source"], "cache");
    assert!(
        empty["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch models"))
    );

    let live = home.json(&["models"]).ok_json();
    assert_eq!(live["source"], "live");
    assert_eq!(live["catalog_state"], "ready");
    // The test's CODEX_HOME configures `mock-model`; the catalog has its own default.
    assert_eq!(live["default_model"], "mock-model");
    let models = live["models"].as_array().expect("models");
    assert!(models.len() >= 9, "the built-in catalog: {live}");
    let default = models
        .iter()
        .find(|m| m["is_default"] == true)
        .expect("a catalog default");
    assert_eq!(default["id"], "gpt-6.1-sol");
    assert_eq!(
        default["aliases"]["fast"], "priority",
        "`fast` is the tier named Fast"
    );
    assert!(
        default["efforts"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e == "high"))
    );
    assert_eq!(default["input_modalities"][0], "text");

    let cached = home.json(&["models", "--no-refresh"]).ok_json();
    assert_eq!(cached["source"], "cache");
    assert_eq!(cached["models"], live["models"]);
    assert_eq!(cached["fetched_at"], live["fetched_at"]);

    let human = home.run(&["models", "--no-refresh"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains("gpt-6.1-sol *") && human.stdout.contains("priority (fast)"),
        "{}",
        human.stdout
    );
}

/// `[app_server] processes = 3`, a lane on each process (new lanes go to the least loaded,
/// the lowest index first), each with a turn in flight (held by the stub). `kill -9` of the
/// first process interrupts only its lane's turn, with the reason; that lane takes a new
/// message within 2 s (on a process that lives); the other two turns go on and finish.
#[test]
fn a_killed_pool_process_interrupts_only_its_lanes() {
    let stub = support::Stub::start(responses_stub::Script::new().default_reply("done"));
    let gate = responses_stub::StreamGate::new();
    for _ in 0..3 {
        stub.push(responses_stub::Behaviour::slow_text(
            ["still", " working"],
            &gate,
        ));
    }
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    home.write_config("[app_server]\nprocesses = 3\n");
    home.up();
    let status = home.json(&["daemon", "status"]).ok_json();
    let pids: Vec<i64> = status["app_servers"]
        .as_array()
        .expect("app_servers")
        .iter()
        .map(|p| p["pid"].as_i64().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 3, "{status}");
    let mut lanes = Vec::new();
    let mut dirs = Vec::new();
    for n in 0..3 {
        let (lane, dir) = home.new_lane(&format!("pool-{n}"), &["--text", "a long job"]);
        lanes.push(lane);
        dirs.push(dir);
    }
    stub.wait_for_requests(3);
    let status = home.json(&["daemon", "status"]).ok_json();
    let spread: Vec<&Value> = status["app_servers"]
        .as_array()
        .expect("app_servers")
        .iter()
        .map(|p| &p["lanes"])
        .collect();
    assert_eq!(spread, [1, 1, 1], "one lane on each process: {status}");
    let running = |lane: &str| home.json(&["get", lane]).ok_json()["lane"]["latest_turn"].clone();
    let turns: Vec<Value> = lanes.iter().map(|l| running(l)).collect();
    for turn in &turns {
        assert_eq!(turn["status"], "in_progress", "{turn}");
    }

    let killed_at = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Polled with `get` alone: the time to recovery is measured.
    let victim = loop {
        let got = home.json(&["get", &lanes[0]]).ok_json();
        if got["lane"]["latest_turn"]["status"] == "interrupted"
            || killed_at.elapsed() > Duration::from_secs(30)
        {
            break got;
        }
    };
    let turn = &victim["lane"]["latest_turn"];
    assert_eq!(turn["status"], "interrupted", "{victim}");
    assert_eq!(turn["id"], turns[0]["id"], "{victim}");
    assert!(
        turn["error"]
            .as_str()
            .is_some_and(|e| e.contains("App Server exited")),
        "the reason is recorded: {victim}"
    );
    // The victim's lane takes a message again, within 2 s of the kill.
    let sent = loop {
        let sent = home.json(&["send", &lanes[0], "once more"]);
        if sent.code == 0 || killed_at.elapsed() > Duration::from_secs(30) {
            break sent;
        }
    };
    let recovered = killed_at.elapsed();
    eprintln!("lane usable again {recovered:?} after the kill");
    let sent = sent.ok_json();
    assert_eq!(sent["message_accepted"], true, "{sent}");
    assert!(
        recovered <= Duration::from_secs(2),
        "the lane worked again only after {recovered:?}"
    );
    // The other processes' turns were never touched: still running, then they finish.
    for (lane, turn) in lanes.iter().zip(&turns).skip(1) {
        let now = running(lane);
        assert_eq!(
            (&now["id"], &now["status"]),
            (&turn["id"], &turn["status"]),
            "{lane}"
        );
    }
    gate.release_all();
    for (lane, turn) in lanes.iter().zip(&turns).skip(1) {
        let done = home.get_until(lane, Duration::from_secs(60), |g| {
            g["lane"]["latest_turn"]["status"] == "completed"
        });
        let latest = &done["lane"]["latest_turn"];
        assert_eq!(
            (&latest["id"], &latest["status"]),
            (&turn["id"], &json!("completed")),
            "{done}"
        );
        assert!(latest["error"].is_null(), "{done}");
    }
    let again = home.get_until(&lanes[0], Duration::from_secs(60), |g| {
        g["lane"]["latest_turn"]["status"] == "completed"
    });
    assert_eq!(
        again["lane"]["latest_turn"]["id"], sent["turn_id"],
        "{again}"
    );
    let status = home.status_until(Duration::from_secs(30), |s| {
        s["app_servers"][0]["restarts"] == 1 && s["app_servers"][0]["state"] == "ready"
    });
    let processes = status["app_servers"].as_array().expect("app_servers");
    assert_eq!(processes[0]["restarts"], 1, "{status}");
    let shown = home.run(&["daemon", "status"]);
    assert!(
        (0..3).all(|n| shown.stdout.contains(&format!("process {n}"))),
        "each process is shown: {shown:?}"
    );
    assert_ne!(processes[0]["pid"].as_i64(), Some(pids[0]), "{status}");
    assert_eq!(
        (
            processes[1]["restarts"].clone(),
            processes[2]["restarts"].clone()
        ),
        (json!(0), json!(0)),
        "{status}"
    );
}

/// `[app_server] recycle_above_mib = 1` (every App Server is above it): once a lane's turn
/// completed, its App Server is replaced by a fresh one (a new pid; not a restart, no error);
/// a second `send` on the lane resumes its thread there, and that turn completes too.
#[test]
fn an_app_server_above_its_size_is_recycled_after_a_turn_and_the_lane_goes_on() {
    let stub = support::Stub::start(responses_stub::Script::new().default_reply("done"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    home.write_config("[app_server]\nrecycle_above_mib = 1\n");
    home.up();
    let before = home.json(&["daemon", "status"]).ok_json();
    let pid = before["app_server"]["pid"].as_i64().expect("a pid");
    let (lane, _dir) = home.new_lane("recycled", &["--text", "first"]);
    let first = home.get_until(&lane, Duration::from_secs(60), |g| {
        g["lane"]["latest_turn"]["status"] == "completed"
    });
    let first_turn = first["lane"]["latest_turn"]["id"].clone();
    let after = home.status_until(Duration::from_secs(60), |s| {
        s["app_server"]["state"] == "ready"
            && s["app_server"]["pid"].as_i64().is_some_and(|p| p != pid)
    });
    let app = &after["app_server"];
    assert_ne!(app["pid"].as_i64(), Some(pid), "a fresh process: {after}");
    assert_eq!(app["restarts"], 0, "a recycle is not a restart: {after}");
    let after = home.status_until(Duration::from_secs(30), |s| {
        s["app_servers"][0]["recycles"].as_u64() >= Some(1)
    });
    assert!(app["last_error"].is_null(), "{after}");
    assert_eq!(
        after["app_servers"][0]["loaded_threads"], 0,
        "nothing loaded in the fresh process: {after}"
    );

    let sent = home.json(&["send", &lane, "second"]).ok_json();
    assert_eq!(sent["message_accepted"], true, "{sent}");
    let turn_id = sent["turn_id"].clone();
    assert_ne!(turn_id, first_turn);
    let done = home.get_until(&lane, Duration::from_secs(60), |g| {
        g["lane"]["latest_turn"]["id"] == turn_id
            && g["lane"]["latest_turn"]["status"] == "completed"
    });
    let latest = &done["lane"]["latest_turn"];
    assert_eq!(
        (&latest["id"], &latest["status"]),
        (&turn_id, &json!("completed")),
        "{done}"
    );
    assert!(latest["error"].is_null(), "{done}");
}
