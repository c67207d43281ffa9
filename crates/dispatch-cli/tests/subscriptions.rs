//! Orchestration end to end, against the real codex 0.169.0 and the stub model provider:
//! a finished turn handed to a subscriber as a turn (its user message carries the target's
//! last agent message) or as an inbox message (no turn), `--once`, `--every-time` and
//! `unsubscribe`; approval requests in the operator's inbox; `wait` at the first lane, at the
//! last, and timing out; bad input refused with nothing stored, on the CLI and over MCP; and a
//! `kill -9` between a target's turn end and the subscriber's turn, which delivers once.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use responses_stub::{Behaviour, Pace, Script, StreamGate};
use serde_json::{Value, json};
use support::Home;

const LONG: Duration = Duration::from_secs(90);

/// Runs `check` until it returns something, for at most `within`: for state the daemon reaches
/// on its own (orchestration handles a stored event a moment after it is stored).
fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::yield_now();
    }
}

/// The inbox messages to `lane` (every state), newest first.
fn inbox(home: &Home, lane: &str) -> Vec<Value> {
    home.json(&["inbox", "list", "--lane", lane, "--state", "all"])
        .ok_json()["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (bounded) until `lane` has `n` inbox messages; returns them, newest first.
fn inbox_of(home: &Home, lane: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} inbox messages to {lane}"), LONG, || {
        let messages = inbox(home, lane);
        (messages.len() >= n).then_some(messages)
    })
}

/// `wait <lane> --until idle`, asserted to reach it.
fn idle(home: &Home, lane: &str) -> Value {
    let waited = home
        .json(&["wait", lane, "--until", "idle", "--timeout", "90"])
        .ok_json();
    assert_eq!(waited["timed_out"], false, "{waited}");
    waited
}

/// The user messages of the model requests that carry a subscription's turn.
fn subscription_turns(stub: &support::Stub) -> Vec<String> {
    stub.requests()
        .iter()
        .flat_map(|r| r.user_texts())
        .filter(|t| t.starts_with("[dispatch] "))
        .collect()
}

#[test]
fn a_finished_turn_starts_the_subscribers_turn_with_its_last_message() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("subscriber read it"));
    let (a, _wa) = home.new_lane("target", &["--no-send"]);
    let (b, _wb) = home.new_lane("subscriber", &["--no-send"]);
    let made = home.json(&["subscribe", &a, "--to", &b]).ok_json();
    let subscription = &made["subscription"];
    assert_eq!(
        (
            &subscription["when"],
            &subscription["delivery"],
            &subscription["tail"],
            &subscription["once"],
        ),
        (&json!("done"), &json!("turn"), &json!(1), &json!(true)),
        "the defaults: {made}"
    );
    stub.push(Behaviour::text("the answer is 42"));
    home.json(&["send", &a, "work it out"]).ok_json();

    let got = home.get_until(&b, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "completed" && g["lane"]["status"] == "idle"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "completed", "{got}");
    let turns = subscription_turns(&stub);
    assert_eq!(turns.len(), 1, "one turn on the subscriber: {turns:?}");
    assert!(
        turns[0].contains(&format!("Lane {a} (target) finished a turn: completed"))
            && turns[0].contains("Its last agent message:\nthe answer is 42\n"),
        "{}",
        turns[0]
    );
    let messages = inbox_of(&home, &b, 1);
    assert_eq!(messages[0]["kind"], "subscription_update");
    assert_eq!(messages[0]["about"], json!(a));
    // `--once`: it fired and ended; the next turn of the target reaches nobody.
    let listed = home.json(&["subscriptions", "--all"]).ok_json();
    assert_eq!(listed["subscriptions"][0]["active"], false, "{listed}");
    assert_eq!(listed["subscriptions"][0]["fired"], 1);
    assert!(
        home.json(&["subscriptions"]).ok_json()["subscriptions"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[test]
fn inbox_delivery_once_every_time_and_unsubscribe() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("noted"));
    let (a, _wa) = home.new_lane("target", &["--no-send"]);
    let (b, _wb) = home.new_lane("listener", &["--no-send"]);
    let (c, _wc) = home.new_lane("sentinel", &["--no-send"]);
    let once = home
        .json(&["subscribe", &a, "--to", &b, "--delivery", "inbox"])
        .ok_json();
    let every = home
        .json(&[
            "subscribe",
            &a,
            "--to",
            &b,
            "--delivery",
            "inbox",
            "--every-time",
            "--when",
            "completed",
        ])
        .ok_json();
    // The sentinel hears every turn: once it has, orchestration has handled that turn's end
    // (every subscription of one event is written in one transaction).
    home.json(&[
        "subscribe",
        &a,
        "--to",
        &c,
        "--delivery",
        "inbox",
        "--every-time",
    ])
    .ok_json();

    for n in 1..=2 {
        home.json(&["send", &a, &format!("turn {n}")]).ok_json();
        idle(&home, &a);
        inbox_of(&home, &c, n);
    }
    let messages = inbox(&home, &b);
    assert_eq!(messages.len(), 3, "once: 1, every time: 2: {messages:?}");

    let id = every["subscription"]["id"].to_string();
    let ended = home.json(&["unsubscribe", &id]).ok_json();
    assert_eq!(ended["was_active"], true);
    home.json(&["send", &a, "turn 3"]).ok_json();
    idle(&home, &a);
    inbox_of(&home, &c, 3);
    assert_eq!(inbox(&home, &b).len(), 3, "nothing listens any more");
    let listed = home.json(&["subscriptions", "--all"]).ok_json();
    let fired: Vec<&Value> = listed["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| &s["fired"])
        .collect();
    assert_eq!(fired, [&json!(1), &json!(2), &json!(3)], "{listed}");
    assert_eq!(once["subscription"]["once"], true);

    // Inbox delivery runs no turn on the listener.
    assert!(subscription_turns(&stub).is_empty());
    let got = home.json(&["get", &b]).ok_json();
    assert!(got["lane"]["latest_turn"].is_null(), "{got}");

    // Reading does not acknowledge; ack takes one, then the rest of a lane.
    let newest = inbox(&home, &b)[0]["id"].to_string();
    let read = home.json(&["inbox", "read", &newest]).ok_json();
    assert!(
        read["message"]["body"]
            .as_str()
            .is_some_and(|body| body.contains("Its last agent message:\nnoted")),
        "{read}"
    );
    assert_eq!(read["message"]["state"], "pending");
    let one = home.json(&["inbox", "ack", &newest]).ok_json();
    assert_eq!(one["acknowledged"], 1);
    assert_eq!(
        home.json(&["inbox", "ack", &newest]).ok_json()["acknowledged"],
        0
    );
    let rest = home
        .json(&["inbox", "ack", "--all", "--lane", &b])
        .ok_json();
    assert_eq!(rest["acknowledged"], 2, "{rest}");
    assert_eq!(
        home.json(&["inbox", "list", "--lane", &c]).ok_json()["messages"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the sentinel's messages are pending still"
    );
    let human = home.run(&["inbox", "ack", "--all"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains("acknowledged 3 messages"),
        "{human:?}"
    );
}

#[test]
fn an_approval_request_reaches_the_operators_inbox_until_answered() {
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
    let request = home.json(&["requests"]).ok_json()["requests"][0]["id"]
        .as_i64()
        .expect("a request");
    let listed = eventually("the approval request in the inbox", LONG, || {
        let listed = home
            .json(&["inbox", "list", "--kind", "approval_request"])
            .ok_json();
        (!listed["messages"].as_array()?.is_empty()).then_some(listed)
    });
    let message = &listed["messages"][0];
    assert_eq!(message["to"], Value::Null, "the operator's: {listed}");
    assert_eq!(message["about"], json!(lane));
    assert!(
        message["subject"]
            .as_str()
            .is_some_and(|s| s.contains("asks to run `")
                && s.contains("echo approved")
                && s.contains(&format!("request {request}"))),
        "{listed}"
    );
    let human = home.run(&["inbox", "list"]);
    assert!(
        human.stdout.contains("operator") && human.stdout.contains("approval_request"),
        "{human:?}"
    );

    home.json(&["respond", &request.to_string(), "accept"])
        .ok_json();
    // Answered: the message asks for nothing any more.
    let all = home
        .json(&[
            "inbox",
            "list",
            "--kind",
            "approval_request",
            "--state",
            "all",
        ])
        .ok_json();
    assert_eq!(all["messages"][0]["state"], "acked", "{all}");
    assert!(
        home.json(&["inbox", "list"]).ok_json()["messages"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

/// Spawns `dispatch args... --json`.
fn spawn(home: &Home, args: &[&str]) -> std::process::Child {
    home.command(&support::dispatch_bin())
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dispatch")
}

fn output(child: std::process::Child) -> Value {
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn gated(gate: &StreamGate) -> Behaviour {
    Behaviour::SlowText {
        chunks: vec!["finished".into()],
        pace: Pace::Gate(gate.clone()),
    }
}

#[test]
fn wait_returns_at_the_first_lane_and_with_all_at_the_last() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("x"));
    let (a, _wa) = home.new_lane("one", &["--no-send"]);
    let (b, _wb) = home.new_lane("two", &["--no-send"]);
    let (first, second) = (StreamGate::new(), StreamGate::new());
    stub.push(gated(&first));
    stub.push(gated(&second));
    home.json(&["send", &a, "go"]).ok_json();
    home.json(&["send", &b, "go"]).ok_json();
    stub.wait_for_requests(2);

    // Both lanes run (their turns wait on the gates): `idle` is reached when a turn ends.
    let any = spawn(
        &home,
        &["wait", &a, &b, "--until", "idle", "--timeout", "90"],
    );
    let all = spawn(
        &home,
        &[
            "wait",
            &a,
            &b,
            "--all",
            "--until",
            "idle",
            "--timeout",
            "90",
        ],
    );
    first.release_all();
    let any = output(any);
    assert_eq!(any["timed_out"], false, "{any}");
    let reached: Vec<bool> = any["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| l["reached"] == true)
        .collect();
    assert_eq!(
        reached.iter().filter(|r| **r).count(),
        1,
        "one lane finished, the other runs: {any}"
    );
    let done = any["lanes"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["reached"] == true))
        .expect("the finished lane");
    assert_eq!(done["last_agent_message"], "finished", "{any}");
    assert_eq!(done["status"], "idle");
    assert_eq!(any["pending"].as_array().map(Vec::len), Some(1));
    second.release_all();
    let all = output(all);
    assert_eq!(all["timed_out"], false, "{all}");
    assert_eq!(all["pending"], json!([]));
    assert!(
        all["lanes"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["reached"] == true))
    );
}

#[test]
fn a_wait_that_times_out_says_so_and_lists_the_pending_lanes() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("x"));
    let (a, _wa) = home.new_lane("one", &["--no-send"]);
    let (b, _wb) = home.new_lane("two", &["--no-send"]);
    // `turn-end` (the default) on idle lanes waits for their next turns.
    let started = Instant::now();
    let waited = home.json(&["wait", &a, &b, "--timeout", "0.5"]).ok_json();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(waited["timed_out"], true, "{waited}");
    assert_eq!(waited["pending"], json!([a, b]));
    let human = home.run(&["wait", &a, "--timeout", "0.2"]);
    assert_eq!(
        human.code, 0,
        "a timeout is an answer, not an error: {human:?}"
    );
    assert!(human.stdout.contains("timed out"), "{human:?}");
    // `idle` is reached at once.
    let now = home
        .json(&["wait", &a, &b, "--all", "--until", "idle"])
        .ok_json();
    assert_eq!(now["timed_out"], false);
    home.json(&["wait", "zzzzzz"]).error("not_found");
    home.json(&["wait", &a, "--timeout", "601"])
        .error("invalid_input");
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("x"));
    let (a, _wa) = home.new_lane("one", &["--no-send"]);
    let (b, _wb) = home.new_lane("two", &["--no-send"]);
    let cases: &[(&[&str], &str)] = &[
        (&["subscribe", "zzzzzz", "--to", &b], "not_found"),
        (&["subscribe", &a, "--to", "zzzzzz"], "not_found"),
        (&["subscribe", &a, "--to", &a], "invalid_input"),
        (
            &["subscribe", &a, "--to", &b, "--tail", "21"],
            "invalid_input",
        ),
        (
            &["subscribe", &a, "--to", &b, "--once", "--every-time"],
            "invalid_input",
        ),
        (
            &["subscribe", &a, "--to", &b, "--when", "sometimes"],
            "invalid_input",
        ),
        // No CODEX_THREAD_ID: `self` (the default) names nobody.
        (&["subscribe", &a], "unmanaged_caller"),
        (&["inbox", "ack", "1", "--all"], "invalid_input"),
        (&["inbox", "ack"], "invalid_input"),
        (&["inbox", "ack", "999"], "not_found"),
        (&["inbox", "read", "999"], "not_found"),
        (&["unsubscribe", "999"], "not_found"),
    ];
    for (args, code) in cases {
        let run = home.json(args);
        let body = run.error(code);
        assert!(
            body["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{args:?}: {body}"
        );
    }
    let unmanaged = home.run(&["subscribe", &a]);
    assert_eq!(unmanaged.code, 4, "{unmanaged:?}");
    assert!(
        unmanaged.stderr.contains("--to"),
        "the hint names the flag: {unmanaged:?}"
    );
    // A thread that is not a lane.
    let stranger = home.json_with_env(
        &["subscribe", &a],
        &[(
            "CODEX_THREAD_ID",
            std::ffi::OsStr::new("019a0000-0000-7000-8000-000000000000"),
        )],
    );
    let body = stranger.error("unmanaged_caller");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch attach")),
        "{body}"
    );
    assert!(
        home.json(&["subscriptions", "--all"]).ok_json()["subscriptions"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "nothing was stored"
    );

    // In a lane's Codex session, `self` is that lane.
    let thread_b = home.json(&["get", &b]).ok_json()["lane"]["id"]
        .as_str()
        .expect("thread id")
        .to_owned();
    let mine = home
        .json_with_env(
            &["subscribe", &a],
            &[("CODEX_THREAD_ID", std::ffi::OsStr::new(&thread_b))],
        )
        .ok_json();
    assert_eq!(mine["subscription"]["subscriber"], json!(b));

    // Over MCP the caller is this server's environment, never an argument.
    let mut mcp = home.mcp_with_env(&[("CODEX_THREAD_ID", &thread_b)]);
    mcp.initialize();
    let spoofed = mcp.call(
        "dispatch_subscribe",
        json!({"target": b, "caller": thread_b}),
    );
    let err = support::mcp_error_body(&spoofed);
    assert_eq!(err["code"], "invalid_input", "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("`caller`")),
        "{err}"
    );
    let listed = mcp.call("dispatch_subscriptions", json!({"subscriber": "self"}));
    assert_eq!(
        listed["structuredContent"]["subscriptions"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{listed}"
    );
    let own = mcp.call(
        "dispatch_subscribe",
        json!({"target": b, "to": "self", "delivery": "inbox"}),
    );
    assert_eq!(
        own["structuredContent"]["subscription"]["subscriber"],
        json!(b),
        "{own}"
    );
    let mut plain = home.mcp();
    plain.initialize();
    let nobody = plain.call("dispatch_inbox_list", json!({"lane": "self"}));
    let err = support::mcp_error_body(&nobody);
    assert_eq!(err["code"], "unmanaged_caller");
    assert!(
        err["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch_inbox_list")),
        "the hint names the tool: {err}"
    );
}

#[test]
fn kill_9_between_the_targets_turn_end_and_the_subscribers_turn_delivers_once() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("subscriber read it"));
    let (a, _wa) = home.new_lane("target", &["--no-send"]);
    let (b, _wb) = home.new_lane("subscriber", &["--no-send"]);
    // The subscriber is busy (its turn waits on a gate that never opens), so the update waits
    // in its queue.
    let never = StreamGate::new();
    stub.push(gated(&never));
    home.json(&["send", &b, "hold on"]).ok_json();
    stub.wait_for_requests(1);
    home.json(&["subscribe", &a, "--to", &b]).ok_json();
    stub.push(Behaviour::text("the answer is 42"));
    home.json(&["send", &a, "work it out"]).ok_json();
    // Handled: the update is in the inbox and its turn queued, in one transaction.
    inbox_of(&home, &b, 1);
    assert!(subscription_turns(&stub).is_empty(), "b is busy");

    let pid = home.pidfile_pid().expect("the daemon's pid");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    home.wait_daemon_gone();
    home.up();

    // b's turn died with its App Server; the queued update starts b's next turn, once.
    let got = home.get_until(&b, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "completed" && g["lane"]["status"] == "idle"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "completed", "{got}");
    let turns = subscription_turns(&stub);
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert!(turns[0].contains("the answer is 42"), "{}", turns[0]);
    // Nothing more comes: the event was handled before the kill, once.
    home.json(&["send", &a, "once more"]).ok_json();
    idle(&home, &a);
    idle(&home, &b);
    assert_eq!(subscription_turns(&stub).len(), 1);
    assert_eq!(inbox(&home, &b).len(), 1);
}
