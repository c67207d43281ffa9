//! End-to-end tests against the real `codex app-server` (installed by
//! `scripts/install-codex`) with the Responses API stub as the model provider. Each test
//! has its own stub and a fresh CODEX_HOME under the workspace `target/`.

mod common;

use std::time::{Duration, Instant};

use codex_app_server::protocol::{
    AskForApproval, CommandExecutionApprovalDecision, CommandExecutionStatus, ConfigReadParams,
    ModelListParams, SandboxMode, ServerNotification, ThreadArchiveParams, ThreadGoalClearParams,
    ThreadGoalGetParams, ThreadGoalSetParams, ThreadGoalStatus, ThreadItem, ThreadListParams,
    ThreadReadParams, ThreadResumeParams, ThreadSetNameParams, ThreadStartParams,
    ThreadUnarchiveParams, TurnInterruptParams, TurnStartParams, TurnStatus, UserInput,
};
use codex_app_server::{
    AppServer, Event, PINNED_CODEX_VERSION, ServerRequest, ServerRequestKind, ServerRequestReply,
    SpawnOptions, Subscription, codex_version,
};
use common::{SHORT_BOUND, TURN_BOUND, codex_bin, collect_until, methods, scratch_dir};
use responses_stub::{Behaviour, CodexConfig, ResponsesStub, Script};
use tokio::sync::mpsc;

/// A running App Server with its stub and CODEX_HOME (removed on drop).
struct Rig {
    server: AppServer,
    events: Subscription,
    stub: ResponsesStub,
    home: tempfile::TempDir,
}

async fn rig_with(options: impl FnOnce(SpawnOptions) -> SpawnOptions) -> Rig {
    let stub = ResponsesStub::start(Script::new()).await.expect("stub");
    let home = scratch_dir("codex-home-");
    stub.write_codex_config(home.path(), &CodexConfig::default())
        .expect("config.toml");
    let started = Instant::now();
    let (server, events) = AppServer::spawn_subscribed(options(
        SpawnOptions::new(codex_bin())
            .codex_home(home.path())
            .initialize_timeout(Duration::from_secs(30)),
    ))
    .await
    .expect("codex app-server handshake");
    eprintln!("spawn -> initialize answered in {:?}", started.elapsed());
    Rig {
        server,
        events,
        stub,
        home,
    }
}

async fn rig() -> Rig {
    rig_with(|o| o).await
}

impl Rig {
    async fn start_thread(&self, approval: AskForApproval) -> String {
        let started = Instant::now();
        let response = self
            .server
            .call(&ThreadStartParams {
                cwd: Some(self.home.path().display().to_string()),
                approval_policy: Some(approval),
                sandbox: Some(SandboxMode::ReadOnly),
                ..Default::default()
            })
            .await
            .expect("thread/start");
        eprintln!("thread/start answered in {:?}", started.elapsed());
        response.thread.id
    }

    async fn start_turn(&self, thread_id: &str, text: &str) -> String {
        let response = self
            .server
            .call(&TurnStartParams {
                thread_id: thread_id.into(),
                input: vec![UserInput::text(text)],
                ..Default::default()
            })
            .await
            .expect("turn/start");
        assert_eq!(
            response.turn.status,
            TurnStatus::InProgress,
            "accepted, not done"
        );
        response.turn.id
    }
}

fn is_turn_completed(event: &Event) -> bool {
    matches!(
        event.notification(),
        Some(ServerNotification::TurnCompleted(_))
    )
}

fn completed_turn(events: &[Event]) -> &codex_app_server::protocol::Turn {
    match events.last().and_then(Event::notification) {
        Some(ServerNotification::TurnCompleted(done)) => &done.turn,
        other => panic!("expected turn/completed last, got {other:?}"),
    }
}

#[tokio::test]
async fn initialize_reports_codex_home_and_the_pinned_version() {
    let rig = rig().await;
    let init = rig.server.initialize_response().expect("initialized");
    assert_eq!(
        init.codex_home.canonicalize().expect("codexHome exists"),
        rig.home.path().canonicalize().expect("home")
    );
    assert!(
        init.user_agent.starts_with("dispatch/"),
        "{}",
        init.user_agent
    );
    assert_eq!(init.platform_family, "unix");
    let version = rig.server.version().expect("version from the user agent");
    assert_eq!(version.to_string(), PINNED_CODEX_VERSION);
    let cli = codex_version(&codex_bin(), SHORT_BOUND)
        .await
        .expect("codex --version");
    assert_eq!(&cli, version);
    eprintln!(
        "handshake {:?}, userAgent {:?}",
        rig.server.handshake_duration(),
        init.user_agent
    );
    assert!(
        rig.server.shutdown().await.success(),
        "clean exit on stdin EOF"
    );
}

#[tokio::test]
async fn text_turn_notifications_arrive_in_order() {
    let mut rig = rig().await;
    rig.stub.push(Behaviour::text("Hello from the stub"));
    let thread_id = rig.start_thread(AskForApproval::Never).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    let started = Instant::now();
    let turn_id = rig.start_turn(&thread_id, "say hello").await;
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    eprintln!("turn took {:?}: {:?}", started.elapsed(), methods(&events));

    let turn = completed_turn(&events);
    assert_eq!(turn.id, turn_id);
    assert_eq!(turn.status, TurnStatus::Completed);
    assert!(
        events
            .iter()
            .all(|e| e.thread_id() == Some(thread_id.as_str())),
        "a thread subscription only sees its thread"
    );

    // The expected notifications, as a subsequence in this order.
    let position = |pred: &dyn Fn(&ServerNotification) -> bool| {
        events
            .iter()
            .position(|e| e.notification().is_some_and(pred))
            .unwrap_or_else(|| panic!("missing notification in {:?}", methods(&events)))
    };
    let turn_started = position(&|n| matches!(n, ServerNotification::TurnStarted(_)));
    let user_started = position(
        &|n| matches!(n, ServerNotification::ItemStarted(i) if matches!(i.item, ThreadItem::UserMessage(_))),
    );
    let user_done = position(
        &|n| matches!(n, ServerNotification::ItemCompleted(i) if matches!(i.item, ThreadItem::UserMessage(_))),
    );
    let agent_started = position(
        &|n| matches!(n, ServerNotification::ItemStarted(i) if matches!(i.item, ThreadItem::AgentMessage(_))),
    );
    let agent_done = position(
        &|n| matches!(n, ServerNotification::ItemCompleted(i) if matches!(i.item, ThreadItem::AgentMessage(_))),
    );
    let active = position(&|n| {
        matches!(n, ServerNotification::ThreadStatusChanged(s)
            if matches!(s.status, codex_app_server::protocol::ThreadStatus::Active { .. }))
    });
    let usage = position(&|n| matches!(n, ServerNotification::ThreadTokenUsageUpdated(_)));
    let completed = events.len() - 1;
    assert!(active < completed, "thread went active during the turn");
    assert!(
        turn_started < user_started
            && user_started < user_done
            && user_done < agent_started
            && agent_started < agent_done
            && agent_done < completed
            && usage < completed,
        "out of order: {:?}",
        methods(&events)
    );
    let Some(ServerNotification::ItemCompleted(done)) = events[agent_done].notification() else {
        unreachable!()
    };
    let ThreadItem::AgentMessage(message) = &done.item else {
        unreachable!()
    };
    assert_eq!(message.text, "Hello from the stub");

    // The provider saw the user's text.
    let requests = rig.stub.requests();
    assert_eq!(requests.len(), 1, "one model request");
    assert!(requests[0].user_texts().iter().any(|t| t == "say hello"));
    assert_eq!(requests[0].body["stream"], true);

    // The global subscription (made before the handshake) saw start-up notifications
    // that this crate does not model, delivered raw.
    let global = collect_until(
        &mut rig.events,
        SHORT_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    assert!(
        global
            .iter()
            .any(|e| matches!(e.notification(), Some(ServerNotification::Other { .. }))),
        "{:?}",
        methods(&global)
    );

    // A second turn on the same thread is quick.
    let started = Instant::now();
    rig.start_turn(&thread_id, "again").await;
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    assert_eq!(completed_turn(&events).status, TurnStatus::Completed);
    eprintln!("second turn took {:?}", started.elapsed());
}

#[tokio::test]
async fn http_500_fails_the_turn_with_an_error_notification() {
    let rig = rig().await;
    rig.stub.push(Behaviour::http_500());
    let thread_id = rig.start_thread(AskForApproval::Never).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    let started = Instant::now();
    rig.start_turn(&thread_id, "fail please").await;
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    eprintln!(
        "failed turn took {:?}: {:?}",
        started.elapsed(),
        methods(&events)
    );
    let error_at = events
        .iter()
        .position(|e| matches!(e.notification(), Some(ServerNotification::Error(_))))
        .unwrap_or_else(|| panic!("no error notification: {:?}", methods(&events)));
    let Some(ServerNotification::Error(error)) = events[error_at].notification() else {
        unreachable!()
    };
    assert!(!error.will_retry, "retries are 0 in the recipe");
    assert_eq!(
        error.error.kind(),
        Some("internalServerError"),
        "{:?}",
        error.error
    );
    let turn = completed_turn(&events);
    assert_eq!(turn.status, TurnStatus::Failed);
    assert!(turn.error.is_some());
}

#[tokio::test]
async fn approvals_reach_the_policy_and_accept_lets_the_turn_complete() {
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerRequest>();
    // The daemon pattern: note the request (here: hand it to the test) and hold it.
    let policy = move |request: ServerRequest| {
        let _ = tx.send(request);
        async { codex_app_server::PolicyDecision::Hold }
    };
    let rig = rig_with(|o| o.policy(policy)).await;
    rig.stub.push(Behaviour::exec_command_escalated(
        "echo approved-run",
        "the test needs it",
    ));
    let thread_id = rig.start_thread(AskForApproval::OnRequest).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    rig.start_turn(&thread_id, "run a command").await;

    let request = tokio::time::timeout(TURN_BOUND, rx.recv())
        .await
        .expect("approval request within bound")
        .expect("policy called");
    assert_eq!(request.method, "item/commandExecution/requestApproval");
    assert_eq!(request.thread_id(), Some(thread_id.as_str()));
    let ServerRequestKind::CommandExecutionApproval(params) = request.kind() else {
        panic!("typed approval: {request:?}")
    };
    assert!(
        params
            .command
            .as_deref()
            .is_some_and(|c| c.contains("echo approved-run")),
        "{params:?}"
    );
    assert_eq!(rig.server.pending_server_requests(), vec![request.clone()]);

    rig.server
        .respond(
            &request.id,
            ServerRequestReply::command_execution(CommandExecutionApprovalDecision::Accept),
        )
        .expect("respond");
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    assert_eq!(
        completed_turn(&events).status,
        TurnStatus::Completed,
        "{:?}",
        methods(&events)
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServerRequest(r) if r.id == request.id)),
        "the request was also published to the thread's subscribers"
    );
    let command = events
        .iter()
        .find_map(|e| match e.notification() {
            Some(ServerNotification::ItemCompleted(done)) => match &done.item {
                ThreadItem::CommandExecution(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| panic!("no completed commandExecution: {:?}", methods(&events)));
    assert_eq!(command.status, CommandExecutionStatus::Completed);
    assert_eq!(command.exit_code, Some(0));
    assert!(
        command
            .aggregated_output
            .as_deref()
            .is_some_and(|o| o.contains("approved-run")),
        "{command:?}"
    );
    assert!(
        rig.stub.requests().iter().any(|r| r.is_tool_result()),
        "the command output went back to the model"
    );
    assert!(rig.server.pending_server_requests().is_empty());
}

#[tokio::test]
async fn refusing_policy_declines_and_the_turn_goes_on() {
    let rig = rig_with(|o| o.policy(codex_app_server::RefusePolicy)).await;
    rig.stub.push(Behaviour::exec_command_escalated(
        "echo never-run",
        "please",
    ));
    let thread_id = rig.start_thread(AskForApproval::OnRequest).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    rig.start_turn(&thread_id, "run a command").await;
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    assert_eq!(
        completed_turn(&events).status,
        TurnStatus::Completed,
        "{:?}",
        methods(&events)
    );
    let declined = events.iter().any(|e| match e.notification() {
        Some(ServerNotification::ItemCompleted(done)) => {
            matches!(&done.item, ThreadItem::CommandExecution(c) if c.status == CommandExecutionStatus::Declined)
        }
        _ => false,
    });
    assert!(declined, "{:?}", methods(&events));
}

#[tokio::test]
async fn interrupt_ends_a_never_ending_stream() {
    let rig = rig().await;
    rig.stub.push(Behaviour::Hang);
    let thread_id = rig.start_thread(AskForApproval::Never).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    let turn_id = rig.start_turn(&thread_id, "take forever").await;
    // The model request is in flight (and will never finish by itself).
    rig.stub
        .wait_for_requests(1, TURN_BOUND)
        .await
        .expect("the model request arrived");
    collect_until(&mut thread_events, TURN_BOUND, "turn/started", |e| {
        matches!(e.notification(), Some(ServerNotification::TurnStarted(_)))
    })
    .await;
    let started = Instant::now();
    rig.server
        .call(&TurnInterruptParams {
            thread_id: thread_id.clone(),
            turn_id: turn_id.clone(),
        })
        .await
        .expect("turn/interrupt");
    let events = collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;
    eprintln!("interrupt -> turn/completed in {:?}", started.elapsed());
    let turn = completed_turn(&events);
    assert_eq!(turn.id, turn_id);
    assert_eq!(turn.status, TurnStatus::Interrupted);

    // No running turn any more: a second interrupt is a JSON-RPC error.
    let error = rig
        .server
        .call(&TurnInterruptParams { thread_id, turn_id })
        .await
        .expect_err("nothing to interrupt");
    assert!(error.rpc_error().is_some(), "{error:?}");
}

#[tokio::test]
async fn model_list_has_a_default_model() {
    let rig = rig().await;
    let models = rig
        .server
        .call(&ModelListParams::default())
        .await
        .expect("model/list");
    assert!(!models.data.is_empty());
    let defaults: Vec<_> = models.data.iter().filter(|m| m.is_default).collect();
    assert_eq!(
        defaults.len(),
        1,
        "{:?}",
        models.data.iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    assert!(!defaults[0].supported_reasoning_efforts.is_empty());
    eprintln!("{} models, default {}", models.data.len(), defaults[0].id);
}

#[tokio::test]
async fn the_supervisor_sees_the_child_die() {
    let rig = rig().await;
    let exited = rig.server.exited();
    let pid = rig.server.pid().expect("pid");
    // Kill it from outside, as a crash would.
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let reason = tokio::time::timeout(SHORT_BOUND, exited)
        .await
        .expect("exited resolves at once");
    assert_eq!(reason, codex_app_server::ExitReason::Signal { signal: 9 });
    let error = rig
        .server
        .call(&ModelListParams::default())
        .await
        .expect_err("closed");
    assert!(
        matches!(error, codex_app_server::Error::Closed { .. }),
        "{error:?}"
    );
    assert!(!common::process_exists(pid), "reaped");
}

#[tokio::test]
async fn a_goal_runs_turns_until_the_model_completes_it() {
    let rig = rig().await;
    let thread_id = rig.start_thread(AskForApproval::Never).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    let set = rig
        .server
        .call(&ThreadGoalSetParams {
            thread_id: thread_id.clone(),
            objective: Some("write the report".into()),
            ..Default::default()
        })
        .await
        .expect("thread/goal/set");
    assert_eq!(set.goal.status, ThreadGoalStatus::Active);
    assert_eq!(set.goal.objective, "write the report");

    // The goal starts turns by itself; the stub answers continuations with
    // `update_goal {"status":"complete"}`, which ends it.
    let events = collect_until(&mut thread_events, TURN_BOUND, "the goal completing", |e| {
        matches!(e.notification(), Some(ServerNotification::ThreadGoalUpdated(g)) if g.goal.status == ThreadGoalStatus::Complete)
    })
    .await;
    eprintln!("goal events: {:?}", methods(&events));
    let requests = rig.stub.requests();
    eprintln!(
        "goal model requests: {:?}",
        requests
            .iter()
            .map(|r| r.behaviour.as_str())
            .collect::<Vec<_>>()
    );
    assert!(
        requests.len() < 10,
        "the goal must not loop: {} requests",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .any(|r| r.behaviour == "function_call:update_goal")
    );

    let got = rig
        .server
        .call(&ThreadGoalGetParams {
            thread_id: thread_id.clone(),
        })
        .await
        .expect("thread/goal/get");
    assert_eq!(got.goal.map(|g| g.status), Some(ThreadGoalStatus::Complete));
    let cleared = rig
        .server
        .call(&ThreadGoalClearParams {
            thread_id,
            ..Default::default()
        })
        .await
        .expect("thread/goal/clear");
    assert!(cleared.cleared);
}

#[tokio::test]
async fn thread_management_round_trip() {
    let rig = rig().await;
    let thread_id = rig.start_thread(AskForApproval::Never).await;
    let mut thread_events = rig.server.subscribe_thread(&thread_id);
    // The session file is written at the first turn.
    rig.start_turn(&thread_id, "first message").await;
    collect_until(
        &mut thread_events,
        TURN_BOUND,
        "turn/completed",
        is_turn_completed,
    )
    .await;

    rig.server
        .call(&ThreadSetNameParams {
            thread_id: thread_id.clone(),
            name: "lane one".into(),
        })
        .await
        .expect("thread/name/set");
    let renamed = collect_until(
        &mut thread_events,
        SHORT_BOUND,
        "thread/name/updated",
        |e| {
            matches!(
                e.notification(),
                Some(ServerNotification::ThreadNameUpdated(_))
            )
        },
    )
    .await;
    let Some(ServerNotification::ThreadNameUpdated(renamed)) =
        renamed.last().and_then(Event::notification)
    else {
        unreachable!()
    };
    assert_eq!(renamed.thread_name.as_deref(), Some("lane one"));

    let read = rig
        .server
        .call(&ThreadReadParams {
            thread_id: thread_id.clone(),
            include_turns: Some(true),
        })
        .await
        .expect("thread/read");
    assert_eq!(read.thread.id, thread_id);
    assert_eq!(read.thread.name.as_deref(), Some("lane one"));
    assert_eq!(read.thread.turns.len(), 1);
    assert_eq!(read.thread.turns[0].status, TurnStatus::Completed);

    let listed = rig
        .server
        .call(&ThreadListParams::default())
        .await
        .expect("thread/list");
    assert!(listed.data.iter().any(|t| t.id == thread_id), "{listed:?}");

    rig.server
        .call(&ThreadArchiveParams {
            thread_id: thread_id.clone(),
        })
        .await
        .expect("thread/archive");
    let archived = rig
        .server
        .call(&ThreadListParams {
            archived: Some(true),
            ..Default::default()
        })
        .await
        .expect("thread/list archived");
    assert!(archived.data.iter().any(|t| t.id == thread_id));
    let restored = rig
        .server
        .call(&ThreadUnarchiveParams {
            thread_id: thread_id.clone(),
        })
        .await
        .expect("thread/unarchive");
    assert_eq!(restored.thread.id, thread_id);

    let config = rig
        .server
        .call(&ConfigReadParams::default())
        .await
        .expect("config/read");
    assert_eq!(config.config.model.as_deref(), Some("mock-model"));
    assert_eq!(config.config.model_provider.as_deref(), Some("mock"));
    assert_eq!(config.config.approval_policy, Some(AskForApproval::Never));
    assert_eq!(config.config.sandbox_mode, Some(SandboxMode::ReadOnly));

    // Unknown thread: a JSON-RPC error, not a hang.
    let error = rig
        .server
        .call(&ThreadReadParams {
            thread_id: "00000000-0000-7000-8000-000000000000".into(),
            include_turns: None,
        })
        .await
        .expect_err("unknown thread");
    assert!(error.rpc_error().is_some(), "{error:?}");

    // A fresh App Server on the same CODEX_HOME sees the persisted thread and can resume it.
    assert!(rig.server.shutdown().await.success());
    let second = AppServer::spawn(SpawnOptions::new(codex_bin()).codex_home(rig.home.path()))
        .await
        .expect("second app-server");
    let resumed = second
        .call(&ThreadResumeParams {
            thread_id: thread_id.clone(),
            ..Default::default()
        })
        .await
        .expect("thread/resume");
    assert_eq!(resumed.thread.id, thread_id);
    let mut events = second.subscribe_thread(&thread_id);
    rig.stub.push(Behaviour::text("resumed fine"));
    second
        .call(&TurnStartParams {
            thread_id: thread_id.clone(),
            input: vec![UserInput::text("after resume")],
            ..Default::default()
        })
        .await
        .expect("turn/start after resume");
    let events = collect_until(&mut events, TURN_BOUND, "turn/completed", is_turn_completed).await;
    assert_eq!(completed_turn(&events).status, TurnStatus::Completed);
}

/// A second App Server process over the same CODEX_HOME.
async fn second_process(home: &std::path::Path) -> AppServer {
    AppServer::spawn(
        SpawnOptions::new(codex_bin())
            .codex_home(home)
            .initialize_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("another App Server process")
}

/// Runs a turn on `thread_id` in `server` to its end; returns its status.
async fn run_turn(server: &AppServer, thread_id: &str, text: &str) -> TurnStatus {
    let mut events = server.subscribe_thread(thread_id);
    server
        .call(&TurnStartParams {
            thread_id: thread_id.into(),
            input: vec![UserInput::text(text)],
            ..Default::default()
        })
        .await
        .expect("turn/start");
    let events = collect_until(&mut events, TURN_BOUND, "turn/completed", is_turn_completed).await;
    completed_turn(&events).status
}

/// What Codex 0.169.0 does when a second App Server process (same CODEX_HOME) resumes a
/// thread another process has loaded: the facts behind the re-homing rule of the daemon's
/// App Server pool (ADR 0019). A live process that has loaded the thread is its only writer:
/// another process's `thread/resume` is refused ("already has an active writer"), though it
/// can read the thread; `thread/unsubscribe` does not give the writer up (the thread stays
/// in `thread/loaded/list`). Once the writer is killed (`kill -9`), another process resumes
/// the thread at once and its turns go on in the same rollout.
#[tokio::test]
async fn a_second_process_resuming_a_thread_another_has_loaded() {
    let a = rig().await;
    let thread_id = a.start_thread(AskForApproval::Never).await;
    assert_eq!(
        run_turn(&a.server, &thread_id, "one").await,
        TurnStatus::Completed
    );
    let resume = |server: AppServer, thread_id: String| async move {
        server
            .call(&ThreadResumeParams {
                thread_id,
                ..Default::default()
            })
            .await
    };
    let writer_refused = |result: Result<_, codex_app_server::Error>| {
        let message = result.expect_err("a second writer is refused").to_string();
        assert!(
            message.contains("already has an active writer"),
            "{message}"
        );
    };

    // A holds the thread: B may read it, not resume it.
    let b = second_process(a.home.path()).await;
    writer_refused(resume(b.clone(), thread_id.clone()).await);
    let read = b
        .call(&ThreadReadParams {
            thread_id: thread_id.clone(),
            include_turns: Some(true),
        })
        .await
        .expect("B reads a thread A has loaded");
    assert_eq!(read.thread.turns.len(), 1);

    // Unsubscribing is not giving the thread up.
    let unsubscribed = a
        .server
        .call(&codex_app_server::protocol::ThreadUnsubscribeParams {
            thread_id: thread_id.clone(),
        })
        .await
        .expect("thread/unsubscribe");
    eprintln!("A thread/unsubscribe: {unsubscribed:?}");
    let loaded = a
        .server
        .call(&codex_app_server::protocol::ThreadLoadedListParams::default())
        .await
        .expect("thread/loaded/list");
    assert_eq!(loaded.data, vec![thread_id.clone()], "still loaded in A");
    writer_refused(resume(b.clone(), thread_id.clone()).await);

    // A is killed (-9) holding it: B takes it over at once.
    let pid = a.server.pid().expect("A's pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = a.server.exited().await;
    let started = Instant::now();
    resume(b.clone(), thread_id.clone())
        .await
        .expect("B resumes what a killed process held");
    eprintln!(
        "B thread/resume after A was killed: {:?}",
        started.elapsed()
    );
    assert_eq!(run_turn(&b, &thread_id, "two").await, TurnStatus::Completed);
    let read = b
        .call(&ThreadReadParams {
            thread_id: thread_id.clone(),
            include_turns: Some(true),
        })
        .await
        .expect("thread/read");
    assert_eq!(read.thread.turns.len(), 2, "one rollout, every turn in it");
    let _ = b.shutdown().await;
}
