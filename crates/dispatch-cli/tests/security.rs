//! A daemon that cannot be turned against its user: the home and its files (foreign or
//! loose directories, symbolic links, paths holding something else), the socket (other
//! users, held connections, exhausted descriptors, oversized requests), a damaged registry,
//! the assets' temporary files, and `up` answering only once the daemon does.
//!
//! Each test reproduces a report: it failed before the fix. Each checks the error's code, the
//! exit status and the hint.

mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Home, Run, dispatch_bin, dispatchd_bin};

include!("../glibc_version.rs");

/// The unprivileged user the other-uid tests run as.
const NOBODY: &str = "65534";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

/// Asserts a `--json` failure: its code, its exit status, and a hint containing `hint`.
fn refused(run: &Run, code: &str, exit: i32, hint: &str) -> Value {
    assert_eq!(run.code, exit, "exit status: {run:?}");
    let body = run.error(code);
    assert!(
        body["hint"].as_str().is_some_and(|h| h.contains(hint)),
        "the hint should mention {hint:?}: {body}"
    );
    body
}

fn message(body: &Value) -> &str {
    body["message"].as_str().expect("a message")
}

/// A directory others may traverse (unlike the 0700 test homes), for a socket another uid
/// must reach.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ds")
        .tempdir()
        .expect("tempdir");
    chmod(dir.path(), 0o755);
    dir
}

#[test]
fn a_home_owned_by_another_user_is_refused() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    chown_nobody(&home.path());
    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "DISPATCH_HOME");
    assert!(message(&body).contains("belongs to uid 65534"), "{body}");
    for file in ["dispatchd.pid", "dispatchd.log", "registry.db"] {
        assert!(!home.file(file).exists(), "{file} was created");
    }
    let migrate = home.json(&["registry", "migrate"]);
    refused(&migrate, "permission_denied", 7, "DISPATCH_HOME");
}

#[test]
fn a_home_or_override_directory_others_can_write_to_is_refused() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    chmod(&home.path(), 0o777);
    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "chmod go-w");
    assert!(
        message(&body).contains("writable by its group and others"),
        "{body}"
    );
    assert!(!home.file("dispatchd.pid").exists());

    chmod(&home.path(), 0o700);
    let shared = tempfile::tempdir().expect("tempdir");
    chmod(shared.path(), 0o1777);
    let socket = shared.path().join("d.sock");
    let up = home.json_with_env(&["up"], &[("DISPATCH_SOCKET", socket.as_os_str())]);
    let body = refused(&up, "permission_denied", 7, "chmod go-w");
    assert!(
        message(&body).contains("the directory of DISPATCH_SOCKET"),
        "{body}"
    );

    let doctor = home.json_with_env(
        &["doctor", "--no-app-server"],
        &[("DISPATCH_SOCKET", socket.as_os_str())],
    );
    let check = doctor.json()["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "home").cloned())
        .expect("the home check");
    assert_eq!(check["status"], "fail", "{check}");
}

#[test]
fn a_home_that_is_a_regular_file_is_a_clear_error() {
    let home = Home::new();
    std::fs::write(home.path(), "not a directory").expect("write");
    let up = home.json(&["up"]);
    let body = refused(
        &up,
        "invalid_input",
        2,
        "point DISPATCH_HOME at a directory",
    );
    assert!(message(&body).contains("is not a directory"), "{body}");
    assert_eq!(
        std::fs::read_to_string(home.path()).expect("read"),
        "not a directory"
    );
}

/// The report: root's `up` truncated and appended to the targets of symbolic links at
/// `dispatchd.pid` and `dispatchd.log`.
#[test]
fn symlinks_at_the_pidfile_and_log_are_refused_and_their_targets_untouched() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    let victims = tempfile::tempdir().expect("tempdir");
    let precious = |name: &str| {
        let path = victims.path().join(name);
        std::fs::write(&path, "precious\n").expect("write");
        path
    };
    let pid_target = precious("pid-target");
    let log_target = precious("log-target");
    std::os::unix::fs::symlink(&pid_target, home.file("dispatchd.pid")).expect("symlink");
    std::os::unix::fs::symlink(&log_target, home.file("dispatchd.log")).expect("symlink");

    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "aside");
    assert!(
        message(&body).contains("dispatchd.pid is a symbolic link"),
        "{body}"
    );

    std::fs::remove_file(home.file("dispatchd.pid")).expect("unlink");
    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "aside");
    assert!(
        message(&body).contains("dispatchd.log is a symbolic link"),
        "{body}"
    );

    // The daemon refuses the link on its own too (started by hand, not by `up`).
    let run = home
        .command(&dispatchd_bin())
        .arg("run")
        .output()
        .expect("dispatchd run");
    assert_eq!(run.status.code(), Some(7), "{run:?}");
    let line: Value = serde_json::from_slice(&run.stdout).expect("the error line");
    assert_eq!(line["error"]["code"], "permission_denied", "{line}");

    for target in [&pid_target, &log_target] {
        assert_eq!(
            std::fs::read_to_string(target).expect("read"),
            "precious\n",
            "{} was written through the link",
            target.display()
        );
    }
}

#[test]
fn a_symlinked_registry_or_wal_is_refused() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let target = elsewhere.path().join("real.db");
    std::fs::write(&target, "").expect("write");
    std::os::unix::fs::symlink(&target, home.file("registry.db")).expect("symlink");
    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "DISPATCH_DB");
    assert!(
        message(&body).contains("registry.db is a symbolic link"),
        "{body}"
    );
    assert_eq!(std::fs::metadata(&target).expect("target").len(), 0);

    std::fs::remove_file(home.file("registry.db")).expect("unlink");
    std::os::unix::fs::symlink(&target, home.file("registry.db-wal")).expect("symlink");
    let up = home.json(&["up"]);
    let body = refused(&up, "permission_denied", 7, "DISPATCH_DB");
    assert!(
        message(&body).contains("registry.db-wal is a symbolic link"),
        "{body}"
    );
    assert_eq!(std::fs::metadata(&target).expect("target").len(), 0);
}

/// The report: `DISPATCH_SOCKET` pointing at a regular file deleted it.
#[test]
fn a_socket_path_holding_a_regular_file_is_never_deleted() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "keep me\n").expect("write");
    let env = [("DISPATCH_SOCKET", notes.as_os_str())];

    let up = home.json_with_env(&["up"], &env);
    let body = refused(&up, "invalid_input", 2, "DISPATCH_SOCKET");
    assert!(message(&body).contains("is not a socket"), "{body}");

    let status = home.json_with_env(&["daemon", "status"], &env);
    refused(&status, "invalid_input", 2, "DISPATCH_SOCKET");
    let down = home.json_with_env(&["down"], &env).ok_json();
    assert!(
        down["cleaned"].as_array().is_none_or(Vec::is_empty),
        "nothing removed: {down}"
    );

    assert_eq!(std::fs::read_to_string(&notes).expect("read"), "keep me\n");
}

/// The report: `DISPATCH_PIDFILE` overwrote the file it named.
#[test]
fn a_pidfile_path_holding_another_file_is_never_overwritten() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "keep me\n").expect("write");
    let env = [("DISPATCH_PIDFILE", notes.as_os_str())];

    let up = home.json_with_env(&["up"], &env);
    let body = refused(&up, "invalid_input", 2, "DISPATCH_PIDFILE");
    assert!(message(&body).contains("not a dispatch pidfile"), "{body}");
    let down = home.json_with_env(&["down"], &env);
    refused(&down, "invalid_input", 2, "DISPATCH_PIDFILE");

    let run = home
        .command(&dispatchd_bin())
        .arg("run")
        .env("DISPATCH_PIDFILE", &notes)
        .output()
        .expect("dispatchd run");
    assert_eq!(run.status.code(), Some(2), "{run:?}");

    assert_eq!(std::fs::read_to_string(&notes).expect("read"), "keep me\n");
    assert!(!home.file("dispatchd.sock").exists(), "no daemon started");
}

/// The report: `assets --out DIR --force` followed a symlinked temporary file.
#[test]
fn assets_force_never_follows_a_link_at_a_temporary_name() {
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let victim_dir = tempfile::tempdir().expect("victim");
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let skill = out.path().join("skills/dispatch/SKILL.md");
    std::fs::create_dir_all(skill.parent().expect("parent")).expect("mkdir");
    std::fs::write(&skill, "an edited skill").expect("write");
    // The name the old code wrote through, and a few other guesses.
    for name in [".SKILL.md.dispatch-tmp", ".SKILL.md.tmp", "SKILL.md.tmp"] {
        std::os::unix::fs::symlink(&victim, skill.with_file_name(name)).expect("symlink");
    }
    let out_arg = out.path().display().to_string();
    let written = home
        .json(&["assets", "--out", &out_arg, "--force"])
        .ok_json();
    assert!(written["files"].as_array().is_some_and(|f| !f.is_empty()));
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n"
    );
    let shown = home.json(&["assets"]).ok_json();
    assert!(shown["files"].is_array());
    assert_ne!(
        std::fs::read_to_string(&skill).expect("read"),
        "an edited skill",
        "the skill was rewritten"
    );
    assert!(
        !std::fs::symlink_metadata(&skill)
            .expect("skill")
            .file_type()
            .is_symlink()
    );
}

/// The report: `up` started on a registry whose `PRAGMA quick_check` fails.
#[test]
fn up_refuses_a_registry_that_fails_its_quick_check() {
    let home = Home::new();
    home.up();
    home.json(&["down"]).ok_json();
    let db = home.file("registry.db");
    assert!(!home.file("registry.db-wal").exists(), "the WAL was folded");
    let (root, page_size) = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("open");
            let root: i64 =
                sqlx::query_scalar("SELECT rootpage FROM sqlite_master WHERE name = 'lanes'")
                    .fetch_one(&mut conn)
                    .await
                    .expect("the lanes table");
            let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&mut conn)
                .await
                .expect("page size");
            conn.close().await.expect("close");
            (root, page_size)
        });
    let mut bytes = std::fs::read(&db).expect("read");
    let start = usize::try_from((root - 1) * page_size).expect("offset");
    bytes[start..start + 16].fill(0xff);
    std::fs::write(&db, bytes).expect("write");

    let up = home.json(&["up"]);
    let body = refused(&up, "registry_corrupt", 11, "backup");
    assert!(message(&body).contains("registry.db"), "{body}");
    assert!(
        !home.file("dispatchd.sock").exists(),
        "no daemon is serving"
    );
}

/// The report: with the socket's mode loosened, any uid could drive lanes.
#[test]
fn another_user_is_refused_even_on_a_socket_anyone_may_open() {
    let home = Home::new();
    let dir = open_dir();
    let socket = dir.path().join("d.sock");
    let env = [("DISPATCH_SOCKET", socket.as_os_str())];
    home.json_with_env(&["up"], &env).ok_json();
    chmod(&socket, 0o666);

    let as_nobody = |args: &[&str]| -> Run {
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(dispatch_bin())
            .args(args)
            .arg("--json")
            .env("DISPATCH_HOME", home.path())
            .env("DISPATCH_SOCKET", &socket)
            .current_dir(dir.path())
            .output()
            .expect("setpriv dispatch")
            .into()
    };
    // A single call goes as one plain HTTP POST (no WebSocket handshake); a streaming one
    // (`watch`) over the WebSocket: each is refused the same way.
    for args in [
        &["daemon", "status"][..],
        &["watch", "zzzzzz", "--timeout", "1"],
    ] {
        let run = as_nobody(args);
        let body = refused(
            &run,
            "permission_denied",
            7,
            "the user who started the daemon",
        );
        assert!(message(&body).contains("uid 65534"), "{args:?}: {body}");
    }
    let cwd = dir.path().display().to_string();
    let new = as_nobody(&["new", "--name", "intruder", "--cwd", &cwd, "--text", "hi"]);
    refused(
        &new,
        "permission_denied",
        7,
        "the user who started the daemon",
    );

    // A hand-made call gets a readable refusal too: HTTP 403 with the JSON-RPC error.
    let socket_for_thread = socket.clone();
    let answer = std::thread::spawn(move || {
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::thread::set_thread_uid(nobody).expect("become nobody (this thread only)");
        http_post(
            &socket_for_thread,
            r#"{"jsonrpc":"2.0","id":1,"method":"daemon_status","params":{"input":{}}}"#,
        )
    })
    .join()
    .expect("the nobody thread");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("\"code\":\"permission_denied\""),
        "{answer}"
    );

    // Nothing was done, and the daemon still serves its own user.
    let lanes = home.json_with_env(&["list", "--all"], &env).ok_json();
    assert_eq!(lanes["lanes"], serde_json::json!([]), "{lanes}");
    let log = home.json_with_env(&["daemon", "log"], &env).ok_json();
    assert!(
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["op"] != "new"),
        "{log}"
    );
    let daemon_log = std::fs::read_to_string(home.file("dispatchd.log")).expect("log");
    assert_eq!(
        daemon_log
            .matches("refused a connection from another user")
            .count(),
        1,
        "one rate-limited line: {daemon_log}"
    );
    home.json_with_env(&["down"], &env).ok_json();
}

/// The report: a `Permission denied` socket was `daemon_unreachable` "start it with `dispatch
/// up`".
#[test]
fn a_socket_another_user_cannot_open_is_permission_denied_not_unreachable() {
    let home = Home::new();
    let dir = open_dir();
    let socket = dir.path().join("d.sock");
    home.json_with_env(&["up"], &[("DISPATCH_SOCKET", socket.as_os_str())])
        .ok_json();
    let status: Run = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(dispatch_bin())
        .args(["daemon", "status", "--json"])
        .env("DISPATCH_HOME", dir.path().join("nobody-home"))
        .env("DISPATCH_SOCKET", &socket)
        .current_dir(dir.path())
        .output()
        .expect("setpriv dispatch")
        .into();
    let body = refused(&status, "permission_denied", 7, "belongs to another user");
    assert!(message(&body).contains("ermission denied"), "{body}");
    home.json_with_env(&["down"], &[("DISPATCH_SOCKET", socket.as_os_str())])
        .ok_json();
}

fn http_post(socket: &Path, body: &str) -> String {
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

/// Like [`http_post`], for a body the daemon refuses before reading it: the body is written
/// from another thread (whose write may fail once the daemon has answered) while this one
/// reads the answer.
fn http_post_unread(socket: &Path, body: String) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let sending = std::thread::spawn(move || {
        let _refused_midway = write!(
            writer,
            "POST / HTTP/1.1\r\nHost: dispatchd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    sending.join().expect("the writer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Raises this process's open-file limit to its hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .expect("raise RLIMIT_NOFILE");
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// `dispatch up` with the daemon (and its App Server) limited to `nofile` open files.
fn up_with_nofile(home: &Home, nofile: u32) {
    std::fs::create_dir_all(home.path()).expect("home");
    let wrapper = home.file("dispatchd-low-nofile");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={nofile}:{nofile} -- {} \"$@\"\n",
            dispatchd_bin().display()
        ),
    )
    .expect("wrapper");
    chmod(&wrapper, 0o755);
    home.json_with_env(&["up"], &[("DISPATCH_DAEMON_BIN", wrapper.as_os_str())])
        .ok_json();
}

fn log_size(home: &Home) -> u64 {
    std::fs::metadata(home.file("dispatchd.log"))
        .map(|m| m.size())
        .unwrap_or(0)
}

/// The report: ~20,000 held connections exhausted the daemon's descriptors and its accept
/// loop then logged ~860,000 warnings a second.
#[test]
fn five_thousand_held_connections_do_not_starve_a_real_client() {
    const HELD: usize = 5_000;
    let limit = raise_nofile();
    assert!(
        limit >= HELD as u64 + 200,
        "this test needs RLIMIT_NOFILE >= {} (hard limit {limit})",
        HELD + 200
    );
    let home = Home::new();
    // The usual default soft limit: fewer descriptors than held connections.
    up_with_nofile(&home, 1024);
    let socket = home.file("dispatchd.sock");
    let held: Vec<UnixStream> = (0..HELD)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();

    // A real client is served at once, even though every held connection came first.
    let fastest = (0..3)
        .map(|_| {
            let started = Instant::now();
            home.json(&["daemon", "status"]).ok_json();
            started.elapsed()
        })
        .min()
        .expect("timings");
    assert!(
        fastest < Duration::from_millis(100),
        "`daemon status` took {fastest:?} with {HELD} held connections"
    );
    assert!(log_size(&home) < 1024 * 1024, "the log stays small");
    drop(held);
    home.json(&["daemon", "status"]).ok_json();
}

/// Idle and half-open connections are closed; a call in flight is not.
#[test]
fn a_connection_that_never_sends_a_request_is_closed() {
    let home = Home::new();
    home.up();
    let mut idle = UnixStream::connect(home.file("dispatchd.sock")).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut sink = Vec::new();
    let read = idle.read_to_end(&mut sink).expect("the daemon closes it");
    assert_eq!(read, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
    home.json(&["daemon", "status"]).ok_json();
}

/// With the daemon's own descriptor limit low, `accept` fails with `EMFILE`: the daemon backs
/// off (one log line per interval, not one per failure) and serves again once connections
/// close.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let home = Home::new();
    up_with_nofile(&home, 64);
    let socket = home.file("dispatchd.sock");
    // Fewer than the listen backlog, so that connecting never waits for the daemon.
    let held: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let needle = "accepting a connection failed";
    while !std::fs::read_to_string(home.file("dispatchd.log"))
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            Instant::now() < deadline,
            "the daemon never ran out of descriptors"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    let status = home.json(&["daemon", "status"]);
    status.ok_json();
    let log = std::fs::read_to_string(home.file("dispatchd.log")).expect("log");
    assert!(
        log.matches(needle).count() <= 3,
        "rate-limited: {} lines",
        log.matches(needle).count()
    );
    assert!(
        log.len() < 64 * 1024,
        "the log stays small: {} bytes",
        log.len()
    );
}

/// The report: an 11 MB `send` was `daemon_unreachable` "start it with `dispatch up`".
#[test]
fn a_request_over_the_size_cap_is_invalid_input_naming_the_limit() {
    let home = Home::new();
    home.up();
    let big = home.file("big.txt");
    std::fs::write(&big, "x".repeat(11 * 1024 * 1024)).expect("write");
    let big_arg = big.display().to_string();
    // An 11 MB message is refused by the contract first (Codex takes at most 1,048,576
    // characters), naming the field and the limit, before any request is made.
    let send = home.json(&["send", "nosuchlane", "--text-file", &big_arg]);
    let body = refused(&send, "invalid_input", 2, "schema");
    assert!(message(&body).contains("1048576"), "{body}");

    // A hand-made POST over the cap is answered by the daemon in the same words.
    let oversized = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"daemon_status","params":{{"input":{{"pad":"{}"}}}}}}"#,
        "x".repeat(9 * 1024 * 1024)
    );
    let answer = http_post_unread(&home.file("dispatchd.sock"), oversized);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(answer.contains("\"code\":\"invalid_input\""), "{answer}");
    assert!(answer.contains("at most 8 MiB"), "{answer}");

    // So is a batch over the batch cap.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"daemon_status"}"#;
    let batch = format!("[{}]", vec![call; 33].join(","));
    let answer = http_post(&home.file("dispatchd.sock"), &batch);
    assert!(answer.contains("\"code\":\"invalid_input\""), "{answer}");
    assert!(answer.contains("at most 32 calls"), "{answer}");
    home.json(&["daemon", "status"]).ok_json();
}

fn run_in_parallel(n: usize, job: impl Fn() -> Vec<Run> + Send + Sync) -> Vec<Vec<Run>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|_| scope.spawn(&job)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a job"))
            .collect()
    })
}

/// The report: `dispatch up; dispatch daemon status` run 10 times at once failed most
/// `status` calls with exit 8: a second `up` saw the lock held by a daemon still starting.
#[test]
fn concurrent_ups_return_only_once_the_one_daemon_answers() {
    let home = Home::new();
    let runs = run_in_parallel(10, || {
        vec![home.json(&["up"]), home.json(&["daemon", "status"])]
    });
    let mut pids = Vec::new();
    let mut started = 0;
    for pair in &runs {
        let up = pair[0].ok_json();
        if up["status"] == "started" {
            started += 1;
        }
        pids.push(up["pid"].clone());
        let status = pair[1].ok_json();
        assert_eq!(status["pid"], up["pid"], "{status}");
    }
    assert_eq!(started, 1, "one daemon started: {runs:?}");
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "one daemon: {pids:?}"
    );
}

/// The report: with a codex that exits at once, some concurrent `up`s still printed
/// `running` with exit 0.
#[test]
fn concurrent_ups_with_a_failing_app_server_all_fail_alike() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    let codex: PathBuf = home.file("codex-exits");
    std::fs::write(&codex, "#!/bin/sh\nexit 3\n").expect("script");
    chmod(&codex, 0o755);
    let env: [(&str, &OsStr); 1] = [("DISPATCH_CODEX_BIN", codex.as_os_str())];
    let runs = run_in_parallel(10, || vec![home.json_with_env(&["up"], &env)]);
    for run in runs.iter().flatten() {
        refused(run, "app_server_unavailable", 8, "DISPATCH_CODEX_BIN");
    }
    assert!(!home.file("dispatchd.sock").exists(), "no daemon is left");
}

/// The ELF object type of `binary`: 2 is a fixed-address executable, 3 a position-independent
/// one (or a shared object).
fn elf_type(binary: &Path) -> u16 {
    let mut header = [0u8; 18];
    let mut file = std::fs::File::open(binary).expect("open the binary");
    file.read_exact(&mut header).expect("read its ELF header");
    assert_eq!(&header[..4], b"\x7fELF", "{} is not ELF", binary.display());
    u16::from_le_bytes([header[16], header[17]])
}

/// The daemon is position independent, so its addresses are randomized at every start; only
/// the short-lived CLI is linked at a fixed address, to start faster (ADR 0021).
#[cfg(all(target_os = "linux", target_env = "gnu", target_endian = "little"))]
#[test]
fn the_daemon_keeps_address_randomization_and_only_the_cli_is_fixed() {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    assert_eq!(elf_type(&dispatchd_bin()), ET_DYN, "dispatchd must be PIE");
    // `DISPATCH_CLI_PIE=1` at build time keeps the CLI position independent as well.
    let cli = if option_env!("DISPATCH_CLI_PIE") == Some("1") {
        ET_DYN
    } else {
        ET_EXEC
    };
    assert_eq!(elf_type(&dispatch_bin()), cli, "dispatch's link mode");
}

/// With a glibc that reads packed relative relocations (2.36 and newer) and rust-lld linking,
/// `dispatchd` is linked with them (`-z pack-relative-relocs`): its ~40,000 relocation entries
/// no longer make ~1 MiB of the binary resident in the daemon (ADR 0023). The binary then
/// requires `GLIBC_ABI_DT_RELR`, which is how its dynamic string table shows it. `build.rs`
/// decides (`DISPATCH_PACKED_RELOCS`); this checks the link did what it decided, and that it
/// never decided so for an older glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_daemon_packs_its_relative_relocations_where_glibc_reads_them() {
    let decided = option_env!("DISPATCH_PACKED_RELOCS") == Some("1");
    let version = glibc_version();
    let reads_them = version.is_some_and(|v| v >= (2, 36));
    assert!(
        !decided || reads_them,
        "packed relocations with {version:?}"
    );
    let binary = std::fs::read(dispatchd_bin()).expect("read dispatchd");
    let packed = binary
        .windows(b"GLIBC_ABI_DT_RELR".len())
        .any(|w| w == b"GLIBC_ABI_DT_RELR");
    assert_eq!(packed, decided, "dispatchd's link with {version:?}");
}

/// The types of the program headers of the ELF file `binary` (64-bit, little-endian).
fn program_header_types(binary: &[u8]) -> Vec<u32> {
    let field = |at: usize, len: usize| -> u64 {
        let bytes = binary.get(at..at + len).expect("an ELF header field");
        bytes
            .iter()
            .rev()
            .fold(0, |value, byte| (value << 8) | u64::from(*byte))
    };
    let offset = usize::try_from(field(0x20, 8)).expect("e_phoff");
    let size = usize::try_from(field(0x36, 2)).expect("e_phentsize");
    let count = usize::try_from(field(0x38, 2)).expect("e_phnum");
    (0..count)
        .map(|i| u32::try_from(field(offset + i * size, 4)).expect("p_type"))
        .collect()
}

/// Where `build.rs` found the static archives (`DISPATCH_STATIC_CLI`), `dispatch` is linked
/// statically (ADR 0026): no interpreter and no dynamic section, so no loader runs at its start
/// and no library is mapped. And none of the glibc functions that need the shared libraries at
/// run time (NSS's `getpwuid_r`, `getaddrinfo`, ..., `dlopen`) is in it: glibc marks each with a
/// `.gnu.warning.<name>` section, which the linker copies into the output when it takes the
/// object that defines it from `libc.a`; the function itself is left out by `--gc-sections`
/// unless something that can run calls it (`nm` then lists it). A static `getpwuid_r` for a user
/// that `/etc/passwd` does not know loads `libnss_systemd.so.2` and crashes the process, so the
/// CLI resolves `~/.dispatch` from `HOME` alone.
#[cfg(all(target_os = "linux", target_env = "gnu", target_endian = "little"))]
#[test]
fn the_cli_is_static_and_holds_no_glibc_function_that_needs_shared_libraries() {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    let decided = option_env!("DISPATCH_STATIC_CLI") == Some("1");
    let binary = std::fs::read(dispatch_bin()).expect("read dispatch");
    let types = program_header_types(&binary);
    let dynamic = types.contains(&PT_INTERP) || types.contains(&PT_DYNAMIC);
    assert_eq!(!dynamic, decided, "dispatch's program headers: {types:?}");
    if !decided {
        return;
    }
    let marker = b".gnu.warning.";
    let warned: Vec<String> = binary
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| w == marker)
        .map(|(at, _)| {
            let name = &binary[at + marker.len()..];
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        })
        .collect();
    let out = Command::new("nm")
        .args(["--defined-only", "--format=posix"])
        .arg(dispatch_bin())
        .output()
        .expect("run nm");
    assert!(out.status.success(), "{out:?}");
    let symbols = String::from_utf8_lossy(&out.stdout);
    let defined: std::collections::BTreeSet<&str> = symbols
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // `dlopen` (and `dlmopen`, which comes with it) is kept by SQLite's extension loading
    // (`unixDlOpen`, run only by `sqlite3_load_extension`): dispatch loads no extension, and
    // SQLite's SQL function `load_extension()` is off unless a connection turns it on.
    let unreached = ["dlopen", "dlmopen"];
    let linked: Vec<&String> = warned
        .iter()
        .filter(|name| defined.contains(name.as_str()) && !unreached.contains(&name.as_str()))
        .collect();
    assert!(
        linked.is_empty(),
        "dispatch holds glibc functions that need shared libraries: {linked:?} (of {warned:?})"
    );
    let version = Command::new(dispatch_bin())
        .arg("--version")
        .env_clear()
        .output()
        .expect("run dispatch");
    assert!(version.status.success(), "{version:?}");
}

/// Without `DISPATCH_HOME` and `HOME`, the CLI refuses with the variable to set instead of
/// asking the user database for a home directory (which a static glibc cannot do safely, see
/// above): an empty environment gets `invalid_input`, never a call to some other home.
#[test]
fn the_cli_without_dispatch_home_or_home_refuses_and_asks_no_user_database() {
    let out = Command::new(dispatch_bin())
        .args(["daemon", "status", "--json"])
        .env_clear()
        .output()
        .expect("run dispatch");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let body: Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert_eq!(body["error"]["code"], "invalid_input", "{body}");
    assert!(message(&body["error"]).contains("DISPATCH_HOME"), "{body}");
}
