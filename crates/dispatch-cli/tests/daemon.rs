//! The daemon's life as a user sees it: `up`, `down`, the singleton, stale files, socket
//! security, malformed input on the socket, the stale-contract restart, and SIGTERM.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use dispatch_registry::LATEST_SCHEMA_VERSION;
use support::{Home, Run, dispatch_bin};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn up_starts_once_and_down_stops_it() {
    let home = Home::new();
    let first = home.up();
    assert_eq!(first["status"], "started");
    let pid = first["pid"].as_i64().expect("pid");
    assert_eq!(
        first["socket"],
        home.file("dispatchd.sock").display().to_string()
    );

    let second = home.up();
    assert_eq!(second["status"], "running");
    assert_eq!(second["pid"], pid);

    let status = home.json(&["daemon", "status"]).ok_json();
    assert_eq!(status["pid"], pid);
    assert_eq!(status["schema_version"], LATEST_SCHEMA_VERSION);

    let down = home.json(&["down"]).ok_json();
    assert_eq!(down["status"], "stopped");
    assert_eq!(down["pid"], pid);
    assert!(
        !home.file("dispatchd.sock").exists(),
        "the socket is removed"
    );
    assert!(
        !home.file("dispatchd.pid").exists(),
        "the pidfile is removed"
    );

    let unreachable = home.json(&["daemon", "status"]);
    assert_eq!(unreachable.code, 8);
    unreachable.error("daemon_unreachable");
}

#[test]
fn down_with_nothing_running_says_so_and_succeeds() {
    let home = Home::new();
    let down = home.run(&["down"]);
    assert_eq!(down.code, 0);
    assert!(down.stdout.contains("not running"), "{down:?}");
    assert_eq!(home.json(&["down"]).ok_json()["status"], "not_running");
}

#[test]
fn socket_and_home_are_owner_only() {
    let home = Home::new();
    home.up();
    assert_eq!(mode(&home.file("dispatchd.sock")), 0o600);
    assert_eq!(mode(&home.path()), 0o700);
    assert_eq!(mode(&home.file("registry.db")), 0o600);
    assert_eq!(mode(&home.file("dispatchd.log")), 0o600);
}

#[test]
fn up_cleans_up_after_a_killed_daemon() {
    let home = Home::new();
    let pid = home.up()["pid"].as_i64().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // The kernel releases the lock when the process is gone; wait for that, not for a time.
    home.wait_daemon_gone();
    assert!(
        home.file("dispatchd.sock").exists(),
        "a stale socket is left behind"
    );

    let doctor = home.json(&["doctor", "--no-app-server"]).ok_json();
    let daemon = doctor["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "daemon"))
        .expect("daemon check")
        .clone();
    assert_eq!(daemon["status"], "warn", "{daemon}");
    assert!(
        daemon["summary"]
            .as_str()
            .is_some_and(|s| s.contains("stale"))
    );

    let again = home.up();
    assert_eq!(again["status"], "started");
    assert_ne!(again["pid"].as_i64(), Some(pid));
    assert_eq!(
        home.json(&["daemon", "status"]).ok_json()["pid"],
        again["pid"]
    );
}

fn http_post(socket: &std::path::Path, body: &str) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: dispatchd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

#[test]
fn malformed_frames_get_parse_errors_and_the_daemon_stays_up() {
    let home = Home::new();
    home.up();
    let socket = home.file("dispatchd.sock");

    let answer = http_post(&socket, "{this is not json");
    assert!(
        answer.contains("-32700"),
        "a JSON-RPC parse error: {answer}"
    );

    let mut raw = UnixStream::connect(&socket).expect("connect");
    raw.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
        .expect("write");
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);

    let answer = http_post(
        &socket,
        r#"{"jsonrpc":"2.0","id":1,"method":"daemon_log","params":{"input":{"limit":"x"}}}"#,
    );
    assert!(answer.contains("invalid_input"), "{answer}");

    let answer = http_post(
        &socket,
        r#"{"jsonrpc":"2.0","id":2,"method":"daemon_status"}"#,
    );
    assert!(
        answer.contains(&format!("\"schema_version\":{LATEST_SCHEMA_VERSION}")),
        "plain calls work: {answer}"
    );

    home.json(&["daemon", "status"]).ok_json();
}

#[test]
fn a_request_with_another_contract_hash_is_answered_daemon_stale() {
    let home = Home::new();
    home.up();
    let answer = http_post(
        &home.file("dispatchd.sock"),
        r#"{"jsonrpc":"2.0","id":1,"method":"daemon_status","params":{"contract_hash":"0000000000000000","input":{}}}"#,
    );
    assert!(answer.contains("daemon_stale"), "{answer}");
    assert!(answer.contains("\"idle\":true"), "{answer}");
}

#[test]
fn sigterm_stops_the_daemon_gracefully_and_it_logs_its_stop() {
    let home = Home::new();
    let pid = home.up()["pid"].as_i64().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    home.wait_daemon_gone();
    assert!(!home.file("dispatchd.sock").exists());
    home.up();
    let ops = home.logged_ops();
    assert_eq!(ops, ["daemon_start", "daemon_stop", "daemon_start"]);
}

#[test]
fn stop_if_idle_stops_an_idle_daemon_which_logs_it() {
    let home = Home::new();
    let pid = home.up()["pid"].clone();
    let stopping = home.json(&["daemon", "stop-if-idle"]).ok_json();
    assert_eq!(stopping["status"], "stopping", "{stopping}");
    assert_eq!(stopping["pid"], pid);
    home.wait_daemon_gone();
    assert!(!home.file("dispatchd.sock").exists());
    home.up();
    let ops = home.logged_ops();
    assert_eq!(
        ops,
        [
            "daemon_start",
            "daemon_stop",
            "daemon_stop_if_idle",
            "daemon_start"
        ]
    );
}

#[test]
fn completion_prints_a_script() {
    let home = Home::new();
    let bash = home.run(&["completion", "bash"]);
    assert_eq!(bash.code, 0);
    assert!(
        bash.stdout.contains("_dispatch"),
        "a bash completion function"
    );
    let bad = home.json(&["completion", "tcsh"]);
    assert_eq!(bad.code, 2);
    bad.error("invalid_input");
}

#[test]
fn unknown_flags_and_missing_fields_are_invalid_input_on_the_cli() {
    let home = Home::new();
    let unknown = home.json(&["daemon", "status", "--verbose"]);
    assert_eq!(unknown.code, 2);
    let body = unknown.error("invalid_input");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("--verbose"))
    );

    let missing = home.json(&["schema"]);
    assert_eq!(missing.code, 2);
    missing.error("invalid_input");

    let human = home.run(&["daemon", "log", "--limit", "ten"]);
    assert_eq!(human.code, 2);
    assert!(human.stderr.starts_with("dispatch: "), "{human:?}");
    assert!(
        human.stderr.contains("limit") && human.stderr.contains("hint: "),
        "{human:?}"
    );
}

/// The environment of process `pid`, as `KEY=VALUE` strings.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn environ(pid: &serde_json::Value) -> Vec<String> {
    let pid = pid.as_u64().expect("a pid");
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("read environ")
        .split(|b| *b == 0)
        .map(|kv| String::from_utf8_lossy(kv).into_owned())
        .collect()
}

/// `dispatch up` gives the daemon its allocator settings (a fixed mmap threshold: large blocks
/// go back to the system when freed, ADRs 0021 and 0024), unless the user set `GLIBC_TUNABLES`; the App Server, and what it
/// runs for the user, never inherits ours.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_daemon_gets_its_allocator_settings_and_the_app_server_does_not() {
    let ours = format!("GLIBC_TUNABLES={}", dispatch_home::DAEMON_GLIBC_TUNABLES);
    let marker = format!("{}=", dispatch_home::DAEMON_TUNABLES_MARKER);
    for users in [None, Some("glibc.malloc.arena_max=2")] {
        let home = Home::new();
        let mut up = home.command(&dispatch_bin());
        up.args(["up", "--json"]);
        match users {
            Some(value) => up.env("GLIBC_TUNABLES", value),
            None => up.env_remove("GLIBC_TUNABLES"),
        };
        let up: Run = up.output().expect("run dispatch up").into();
        up.ok_json();
        let status = home.json(&["daemon", "status"]).ok_json();
        let daemon = environ(&status["pid"]);
        let app_server = environ(&status["app_server"]["pid"]);
        match users {
            None => {
                assert!(daemon.contains(&ours), "{daemon:?}");
                assert!(
                    !app_server
                        .iter()
                        .any(|kv| kv.starts_with("GLIBC_TUNABLES="))
                );
            }
            Some(value) => {
                let theirs = format!("GLIBC_TUNABLES={value}");
                assert!(daemon.contains(&theirs), "{daemon:?}");
                assert!(app_server.contains(&theirs), "{app_server:?}");
            }
        }
        assert_eq!(
            daemon.iter().any(|kv| kv.starts_with(&marker)),
            users.is_none(),
            "the marker goes with our settings only"
        );
        assert!(!app_server.iter().any(|kv| kv.starts_with(&marker)));
        home.run(&["down"]);
    }
}
