//! The daemon's Codex App Server, against the real codex 0.169.0: start-up, status, the
//! doctor's smoke check, crash recovery, and a Codex binary that is missing or misbehaves.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;
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
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
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
