//! Fault handling and protocol edge cases against tiny shell scripts posing as Codex.

mod common;

use std::time::{Duration, Instant};

use codex_app_server::protocol::{CommandExecutionApprovalDecision, RequestId, ServerNotification};
use codex_app_server::{
    AppServer, CloseReason, Error, Event, ExitReason, ServerRequestKind, ServerRequestReply,
    SpawnOptions,
};
use common::{SHORT_BOUND, collect_until, process_exists, read_pid, scratch_dir, write_script};

/// The handshake bound used for the fakes: short, so the tests are quick.
const HANDSHAKE: Duration = Duration::from_secs(2);

const INIT_REPLY: &str = r#"{"id":0,"result":{"userAgent":"fake/0.169.0 (test)","codexHome":"/nowhere","platformFamily":"unix","platformOs":"linux"}}"#;

/// Options for a fake that fails its handshake: bounded by [`HANDSHAKE`].
fn options(bin: &std::path::Path) -> SpawnOptions {
    SpawnOptions::new(bin)
        .initialize_timeout(HANDSHAKE)
        .shutdown_grace(Duration::from_secs(1))
}

/// Options for a fake that answers its handshake: a shell script may start slowly on a
/// loaded machine, so the bound is generous.
fn answering(bin: &std::path::Path) -> SpawnOptions {
    options(bin).initialize_timeout(Duration::from_secs(30))
}

/// Spawn must fail within the bound with a handshake error, and the child must be gone.
async fn expect_handshake_failure(script_body: &str) -> (Error, Duration) {
    let dir = scratch_dir("fake-");
    let pid_file = dir.path().join("pid");
    let bin = write_script(
        dir.path(),
        "codex",
        &format!("echo $$ > '{}'\n{script_body}", pid_file.display()),
    );
    let started = Instant::now();
    let result = tokio::time::timeout(HANDSHAKE + SHORT_BOUND, AppServer::spawn(options(&bin)))
        .await
        .expect("spawn must not hang");
    let elapsed = started.elapsed();
    let error = result.expect_err("the handshake must fail");
    let pid = read_pid(&pid_file);
    assert!(
        !process_exists(pid),
        "the fake (pid {pid}) must be killed and reaped, not left running or as a zombie"
    );
    (error, elapsed)
}

#[tokio::test]
async fn garbage_on_stdout_is_a_clear_error() {
    let (error, elapsed) =
        expect_handshake_failure("echo 'Hello, I am not codex'\nexec sleep 600\n").await;
    let Error::Handshake { source, .. } = &error else {
        panic!("expected a handshake error, got {error:?}")
    };
    assert!(
        matches!(&**source, Error::NotJsonRpc { line } if line.contains("not codex")),
        "got {error}"
    );
    assert!(elapsed < HANDSHAKE, "garbage fails fast, took {elapsed:?}");
    assert!(
        error.to_string().contains("not a JSON-RPC message"),
        "{error}"
    );
}

#[tokio::test]
async fn immediate_exit_reports_the_status_and_stderr() {
    let (error, _) = expect_handshake_failure("echo 'fatal: config broken' >&2\nexit 3\n").await;
    let Error::Handshake { source, stderr, .. } = &error else {
        panic!("expected a handshake error, got {error:?}")
    };
    assert!(
        matches!(
            &**source,
            Error::Closed {
                reason: CloseReason::Exited {
                    reason: ExitReason::Code { code: 3 }
                },
                ..
            }
        ),
        "got {error:?}"
    );
    assert!(
        stderr.contains("fatal: config broken"),
        "stderr tail: {stderr:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("exited with code 3") && text.contains("fatal: config broken"),
        "{text}"
    );
}

#[tokio::test]
async fn silence_times_out_within_the_bound() {
    let (error, elapsed) = expect_handshake_failure("exec sleep 600\n").await;
    let Error::Handshake { source, .. } = &error else {
        panic!("expected a handshake error, got {error:?}")
    };
    assert!(
        matches!(&**source, Error::Timeout { method, .. } if method == "initialize"),
        "got {error:?}"
    );
    assert!(
        elapsed >= HANDSHAKE && elapsed < HANDSHAKE + SHORT_BOUND,
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn missing_binary_is_a_spawn_error() {
    let dir = scratch_dir("fake-");
    let error = AppServer::spawn(options(&dir.path().join("no-such-codex")))
        .await
        .expect_err("spawn fails");
    assert!(matches!(error, Error::Spawn { .. }), "{error:?}");
}

#[tokio::test]
async fn pending_requests_fail_at_once_when_the_child_dies() {
    let dir = scratch_dir("fake-");
    let bin = write_script(
        dir.path(),
        "codex",
        &format!(
            "read -r init\necho '{INIT_REPLY}'\nread -r initialized\nread -r request\nexit 7\n"
        ),
    );
    let server = AppServer::spawn(answering(&bin)).await.expect("handshake");
    assert_eq!(
        server.version().map(ToString::to_string).as_deref(),
        Some("0.169.0")
    );
    let exited = server.exited();
    // A long request deadline: the failure must come from the death, not the deadline.
    let started = Instant::now();
    let error = server
        .request_with_timeout(
            "thread/start",
            serde_json::json!({}),
            Duration::from_secs(600),
        )
        .await
        .expect_err("the child died");
    assert!(started.elapsed() < SHORT_BOUND);
    assert!(
        matches!(
            &error,
            Error::Closed {
                reason: CloseReason::Exited {
                    reason: ExitReason::Code { code: 7 }
                },
                ..
            }
        ),
        "{error:?}"
    );
    let reason = tokio::time::timeout(SHORT_BOUND, exited)
        .await
        .expect("exited resolves");
    assert_eq!(reason, ExitReason::Code { code: 7 });
    // Later requests fail at once too.
    let error = server
        .request("model/list", serde_json::Value::Null)
        .await
        .expect_err("closed");
    assert!(matches!(error, Error::Closed { .. }), "{error:?}");
}

#[tokio::test]
async fn requests_time_out_and_late_replies_are_ignored() {
    let dir = scratch_dir("fake-");
    // Answers request 1 only after request 2 arrived, then answers request 2.
    let bin = write_script(
        dir.path(),
        "codex",
        &format!(
            "read -r init\necho '{INIT_REPLY}'\nread -r initialized\nread -r one\nread -r two\n\
             echo '{{\"id\":1,\"result\":{{\"late\":true}}}}'\necho '{{\"id\":2,\"result\":{{\"n\":2}}}}'\ncat >/dev/null\n"
        ),
    );
    let server = AppServer::spawn(answering(&bin)).await.expect("handshake");
    let error = server
        .request_with_timeout(
            "slow/one",
            serde_json::Value::Null,
            Duration::from_millis(200),
        )
        .await
        .expect_err("times out");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let two = server
        .request("fast/two", serde_json::Value::Null)
        .await
        .expect("second reply");
    assert_eq!(two, serde_json::json!({"n": 2}));
    assert_eq!(server.shutdown().await, ExitReason::Code { code: 0 });
}

/// A fake that, after the handshake, sends an unknown reply id, an unknown notification,
/// a server request whose id collides with our request's id, and our reply; then it
/// writes whatever we answer to the server request into `answer` and exits at EOF.
fn conversational_fake(dir: &std::path::Path) -> std::path::PathBuf {
    let answer = dir.join("answer");
    write_script(
        dir,
        "codex",
        &format!(
            "read -r init\n\
             echo '{INIT_REPLY}'\n\
             read -r initialized\n\
             read -r request\n\
             echo '{{\"id\":99,\"result\":{{}}}}'\n\
             echo '{{\"method\":\"brand/new\",\"params\":{{\"threadId\":\"t1\",\"x\":1}}}}'\n\
             echo '{{\"id\":1,\"method\":\"item/commandExecution/requestApproval\",\"params\":{{\"threadId\":\"t1\",\"turnId\":\"u1\",\"itemId\":\"i1\",\"startedAtMs\":5,\"command\":\"rm -rf /\"}}}}'\n\
             echo '{{\"id\":1,\"result\":{{\"ok\":true}}}}'\n\
             read -r reply\n\
             echo \"$reply\" > '{answer}'\n\
             echo '{{\"method\":\"test/answered\",\"params\":{{\"threadId\":\"t1\"}}}}'\n\
             cat >/dev/null\n",
            answer = answer.display()
        ),
    )
}

#[tokio::test]
async fn server_requests_are_held_until_respond() {
    let dir = scratch_dir("fake-");
    let bin = conversational_fake(dir.path());
    let (server, mut all) = AppServer::spawn_subscribed(answering(&bin))
        .await
        .expect("handshake");
    let mut thread = server.subscribe_thread("t1");

    // Request id 1 (ours) and server request id 1 (theirs) must not be confused.
    let reply = server
        .request("test/echo", serde_json::json!({"a": 1}))
        .await
        .expect("reply");
    assert_eq!(reply, serde_json::json!({"ok": true}));

    let events = collect_until(&mut thread, SHORT_BOUND, "the server request", |e| {
        matches!(e, Event::ServerRequest(_))
    })
    .await;
    assert!(
        matches!(events[0].notification(), Some(ServerNotification::Other { method, params }) if method == "brand/new" && params["x"] == 1),
        "unknown notifications are delivered raw, routed by threadId: {events:?}"
    );
    let Event::ServerRequest(request) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(request.id, RequestId::Integer(1));
    let ServerRequestKind::CommandExecutionApproval(params) = request.kind() else {
        panic!("typed approval expected: {request:?}")
    };
    assert_eq!(params.command.as_deref(), Some("rm -rf /"));
    assert_eq!(server.pending_server_requests().len(), 1);
    // The global subscription saw the same, in order.
    let global = collect_until(&mut all, SHORT_BOUND, "the server request", |e| {
        matches!(e, Event::ServerRequest(_))
    })
    .await;
    assert_eq!(
        common::methods(&global).last().map(String::as_str),
        Some("item/commandExecution/requestApproval")
    );

    server
        .respond(
            &request.id,
            ServerRequestReply::command_execution(CommandExecutionApprovalDecision::Decline),
        )
        .expect("respond");
    assert!(server.pending_server_requests().is_empty());
    assert!(matches!(
        server.respond(&request.id, ServerRequestReply::error(1, "again")),
        Err(Error::UnknownServerRequest(_))
    ));
    assert_eq!(server.shutdown().await, ExitReason::Code { code: 0 });
    let answer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("answer")).expect("answer"))
            .expect("json");
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"], serde_json::json!({"decision": "decline"}));
    // Subscriptions end once the connection is closed.
    let rest =
        tokio::time::timeout(SHORT_BOUND, async { while all.recv().await.is_some() {} }).await;
    assert!(rest.is_ok());
}

#[tokio::test]
async fn held_requests_are_refused_at_shutdown() {
    let dir = scratch_dir("fake-");
    let bin = conversational_fake(dir.path());
    let server = AppServer::spawn(answering(&bin)).await.expect("handshake");
    let mut thread = server.subscribe_thread("t1");
    server
        .request("test/echo", serde_json::Value::Null)
        .await
        .expect("reply");
    collect_until(&mut thread, SHORT_BOUND, "the server request", |e| {
        matches!(e, Event::ServerRequest(_))
    })
    .await;
    assert_eq!(server.shutdown().await, ExitReason::Code { code: 0 });
    let answer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("answer")).expect("answer"))
            .expect("json");
    assert_eq!(answer["id"], 1);
    assert_eq!(
        answer["error"]["code"],
        codex_app_server::server_request::SHUTDOWN_ERROR_CODE
    );
}

#[tokio::test]
async fn policy_replies_are_sent_without_respond() {
    let dir = scratch_dir("fake-");
    let bin = conversational_fake(dir.path());
    let (server, mut all) =
        AppServer::spawn_subscribed(answering(&bin).policy(codex_app_server::RefusePolicy))
            .await
            .expect("handshake");
    server
        .request("test/echo", serde_json::Value::Null)
        .await
        .expect("reply");
    let answer_file = dir.path().join("answer");
    let exited = server.exited();
    // The fake announces it read our answer.
    collect_until(&mut all, SHORT_BOUND, "test/answered", |e| {
        e.method() == Some("test/answered")
    })
    .await;
    assert!(server.pending_server_requests().is_empty());
    drop(server);
    let reason = tokio::time::timeout(SHORT_BOUND, exited)
        .await
        .expect("dropping the last handle ends the child");
    assert_eq!(reason, ExitReason::Code { code: 0 });
    let answer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(answer_file).expect("answer")).expect("json");
    assert_eq!(answer["result"], serde_json::json!({"decision": "decline"}));
}

#[test]
fn spawn_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let future = AppServer::spawn(SpawnOptions::new("codex"));
    assert_send(&future);
}

/// A script written while other threads spawn processes runs every time: no "Text file busy"
/// (ETXTBSY) from a writer a forked child inherited.
#[test]
fn scripts_written_while_other_threads_spawn_run_every_time() {
    let dir = scratch_dir("etxtbsy-");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for n in 0..200 {
        let script = write_script(dir.path(), &format!("s{n}"), "exit 0\n");
        if let Err(err) = std::process::Command::new(&script).status() {
            failures.push(err.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spawner in spawners {
        spawner.join().expect("spawner");
    }
    assert!(
        failures.is_empty(),
        "{} of 200 failed: {:?}",
        failures.len(),
        failures.first()
    );
}
