//! Deliveries end to end, against the real codex 0.169.0 and the stub provider: send modes,
//! queues across a restart, idempotency keys (also after a restart), receipts, ambiguous
//! deliveries resolved only by the thread.

mod support;

use std::time::Duration;

use responses_stub::{Behaviour, Script};
use serde_json::Value;
use support::Home;

const LONG: Duration = Duration::from_secs(90);

fn user_texts(home: &Home, lane: &str) -> Vec<String> {
    home.json(&["tail", lane, "--limit", "200"]).ok_json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["type"] == "user_message")
        .filter_map(|i| i["text"].as_str().map(str::to_owned))
        .collect()
}

fn turns(home: &Home, lane: &str) -> u64 {
    home.json(&["get", lane]).ok_json()["counts"]["turns"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits (bounded) for the receipt to reach one of `states`.
fn receipt_until(home: &Home, receipt: &str, states: &[&str]) -> Value {
    receipt_when(home, receipt, |got| {
        states.iter().any(|s| got["state"] == *s)
    })
}

/// Waits (bounded) until `done` holds for the receipt.
fn receipt_when(home: &Home, receipt: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let got = home.json(&["delivery", "get", receipt]).ok_json();
        if done(&got) || std::time::Instant::now() > deadline {
            return got;
        }
        // Let the daemon move (bounded): the receipt changes with the lane's events.
        let lane = got["lane"]["ref"].as_str().unwrap_or("x").to_owned();
        let _ = home.json(&["watch", &lane, "--timeout", "0.3", "--max-events", "1"]);
    }
}

#[test]
fn queued_messages_arrive_in_order_one_turn_each_across_a_restart() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("done"));
    let gate = responses_stub::StreamGate::new();
    stub.push(Behaviour::slow_text(["working", " on it"], &gate));
    let (lane, _work) = home.new_lane("worker", &["--text", "the first job"]);
    let mut receipts = Vec::new();
    for n in 1..=3 {
        let queued = home
            .json(&["send", &lane, &format!("queued job {n}"), "--mode", "queue"])
            .ok_json();
        assert_eq!(queued["state"], "queued", "{queued}");
        assert_eq!(queued["message_accepted"], false, "{queued}");
        assert!(queued["turn_id"].is_null(), "{queued}");
        receipts.push(queued["receipt"].as_str().expect("receipt").to_owned());
    }
    assert_eq!(
        home.json(&["daemon", "status"]).ok_json()["orchestration"]["queued"],
        3
    );
    // A restart in the middle: the running turn dies with the daemon, the queue does not.
    home.json(&["down"]).ok_json();
    gate.release_all();
    home.up();
    for receipt in &receipts {
        let got = receipt_until(&home, receipt, &["completed", "failed"]);
        assert_eq!(got["state"], "completed", "{got}");
    }
    let texts = user_texts(&home, &lane);
    let queued: Vec<&String> = texts
        .iter()
        .filter(|t| t.starts_with("queued job"))
        .collect();
    assert_eq!(
        queued,
        ["queued job 1", "queued job 2", "queued job 3"],
        "each queued message once, in order: {texts:?}"
    );
    assert_eq!(turns(&home, &lane), 4, "one turn per queued message");
}

#[test]
fn an_idempotency_key_sends_once_even_after_a_restart() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("once", &[]);
    let first = home
        .json(&["send", &lane, "do it once", "--idempotency-key", "job-42"])
        .ok_json();
    assert_eq!(first["repeated"], false);
    let again = home
        .json(&["send", &lane, "do it once", "--idempotency-key", "job-42"])
        .ok_json();
    assert_eq!(again["repeated"], true, "{again}");
    assert_eq!(again["receipt"], first["receipt"]);
    home.json(&["down"]).ok_json();
    home.up();
    let after = home
        .json(&["send", &lane, "do it once", "--idempotency-key", "job-42"])
        .ok_json();
    assert_eq!(after["repeated"], true, "{after}");
    assert_eq!(after["receipt"], first["receipt"]);
    let conflict = home.json(&[
        "send",
        &lane,
        "something else",
        "--idempotency-key",
        "job-42",
    ]);
    assert_eq!(conflict.code, 2, "{conflict:?}");
    conflict.error("delivery_conflict");

    let receipt = first["receipt"].as_str().expect("receipt");
    receipt_until(&home, receipt, &["completed"]);
    let sent: Vec<String> = user_texts(&home, &lane)
        .into_iter()
        .filter(|t| t == "do it once")
        .collect();
    assert_eq!(sent.len(), 1, "one turn for the key");
    let asked = stub
        .requests()
        .iter()
        .filter(|r| r.user_texts().iter().any(|t| t == "do it once"))
        .count();
    assert!(asked >= 1, "the model saw it");

    // `new` with a key makes one lane.
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    let args = [
        "new",
        "--name",
        "keyed",
        "--cwd",
        &cwd,
        "--idempotency-key",
        "lane-7",
    ];
    let made = home.json(&args).ok_json();
    let remade = home.json(&args).ok_json();
    assert_eq!(remade["repeated"], true, "{remade}");
    assert_eq!(remade["lane"]["ref"], made["lane"]["ref"]);
    let other = home.json(&[
        "new",
        "--name",
        "other",
        "--cwd",
        &cwd,
        "--idempotency-key",
        "lane-7",
    ]);
    assert_eq!(other.code, 2, "{other:?}");
    other.error("delivery_conflict");
    let keyed = home.json(&["list", "--all"]).ok_json()["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .filter(|l| l["title"] == "keyed")
        .count();
    assert_eq!(keyed, 1, "one lane for the key");
}

#[test]
fn interject_steer_and_context_each_reach_the_lane_their_way() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("modes", &[]);

    // On an idle lane, nothing runs to steer or interject into.
    for mode in ["steer", "interject"] {
        let refused = home.json(&["send", &lane, "hello", "--mode", mode]);
        assert_eq!(refused.code, 6, "{mode}: {refused:?}");
        refused.error("lane_idle");
    }
    // Context: into the history without a turn; the next turn's request carries it.
    let context = home
        .json(&[
            "send",
            &lane,
            "remember: the answer is 42",
            "--mode",
            "context",
        ])
        .ok_json();
    assert_eq!(context["state"], "completed", "{context}");
    assert!(context["turn_id"].is_null());
    assert_eq!(turns(&home, &lane), 0, "no turn started");

    // Interject: the running turn is interrupted, a new one starts with the message.
    stub.push(Behaviour::Hang);
    let first = home.json(&["send", &lane, "a long job"]).ok_json();
    let interjected = home
        .json(&["send", &lane, "stop that, do this", "--mode", "interject"])
        .ok_json();
    assert_eq!(interjected["state"], "accepted", "{interjected}");
    assert_ne!(interjected["turn_id"], first["turn_id"], "a new turn");
    let got = home.get_until(&lane, LONG, |g| {
        g["lane"]["latest_turn"]["status"] == "completed"
    });
    assert_eq!(
        got["lane"]["latest_turn"]["id"], interjected["turn_id"],
        "{got}"
    );
    let interrupted = receipt_until(
        &home,
        first["receipt"].as_str().expect("receipt"),
        &["failed"],
    );
    assert_eq!(
        interrupted["state"], "failed",
        "the interrupted turn's receipt: {interrupted}"
    );
    let last = stub.requests().last().cloned().expect("a request");
    assert!(
        last.input()
            .iter()
            .any(|i| i.to_string().contains("the answer is 42")),
        "the context is in the model's input"
    );
    // An idempotency key over 200 characters is refused by the contract.
    let long = "k".repeat(201);
    let refused = home.json(&["send", &lane, "x", "--idempotency-key", &long]);
    assert_eq!(refused.code, 2, "{refused:?}");
    refused.error("invalid_input");
}

#[test]
fn an_ambiguous_delivery_is_resolved_only_by_the_thread_and_holds_its_queue() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("evidence", &[]);
    let sent = home.json(&["send", &lane, "did this arrive?"]).ok_json();
    let receipt = sent["receipt"].as_str().expect("receipt").to_owned();
    receipt_until(&home, &receipt, &["completed"]);
    home.json(&["down"]).ok_json();

    // As if the daemon had died while submitting: one receipt that did reach the thread, and
    // one that did not (no message carries its id), holding a queued message behind it.
    let db = home.file("registry.db");
    let sql = format!(
        "UPDATE deliveries SET state = 'submitting', turn_id = NULL WHERE id = '{receipt}';
         INSERT INTO deliveries (id, lane_ref, mode, text, source, state, created_at_ms, updated_at_ms)
           VALUES ('rNeverArrived', '{lane}', 'send', 'lost?', 'send', 'submitting', 1, 1),
                  ('rQueuedBehind', '{lane}', 'queue', 'after the lost one', 'send', 'queued', 2, 2);"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("open the registry");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("edit the registry");
            conn.close().await.expect("close");
        });
    home.up();

    let found = receipt_until(&home, &receipt, &["completed", "accepted"]);
    assert_eq!(
        found["state"], "completed",
        "found by its client id: {found}"
    );
    assert!(found["turn_id"].is_string());
    // Looked for in the thread at least once, and not found: it stays ambiguous.
    let lost = receipt_when(&home, "rNeverArrived", |r| r["checks"].as_u64() >= Some(1));
    assert!(lost["checks"].as_u64() >= Some(1), "{lost}");
    assert_eq!(
        lost["state"], "ambiguous",
        "never resolved without evidence: {lost}"
    );
    let queued = home.json(&["delivery", "get", "rQueuedBehind"]).ok_json();
    assert_eq!(
        queued["state"], "queued",
        "held behind the ambiguous one: {queued}"
    );

    let look = home
        .json(&["delivery", "reconcile", "rNeverArrived"])
        .ok_json();
    assert_eq!(
        (look["found"].as_bool(), look["released"].as_bool()),
        (Some(false), Some(false))
    );
    let released = home
        .json(&["delivery", "reconcile", "rNeverArrived", "--release"])
        .ok_json();
    assert_eq!(released["released"], true, "{released}");
    assert_eq!(released["receipt"]["state"], "failed");
    let delivered = receipt_until(&home, "rQueuedBehind", &["completed", "failed"]);
    assert_eq!(
        delivered["state"], "completed",
        "the queue went on: {delivered}"
    );
    let texts = user_texts(&home, &lane);
    assert!(
        !texts.iter().any(|t| t == "lost?"),
        "never resent: {texts:?}"
    );
}

/// `send --intro` from a lane's Codex session: the message carries a footer naming the
/// sender and how to answer, the receipt names the sender, and the recipient's inbox keeps a
/// `direct_message`. Outside a lane it is `unmanaged_caller`, and nothing is sent.
#[test]
fn a_signed_message_names_its_sender_and_leaves_an_inbox_copy() {
    let (home, _stub) = Home::with_stub(Script::new().default_reply("done"));
    let (sender, _a) = home.new_lane("lead", &[]);
    let (recipient, _b) = home.new_lane("worker", &[]);
    let sender_thread = home.json(&["get", &sender]).ok_json()["lane"]["id"]
        .as_str()
        .expect("thread id")
        .to_owned();

    // Outside any lane: refused before anything is sent.
    let refused = home.json(&["send", &recipient, "unsigned?", "--intro"]);
    let body = refused.error("unmanaged_caller");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch send")),
        "{body}"
    );
    assert_eq!(turns(&home, &recipient), 0, "nothing was sent");

    let env = [("CODEX_THREAD_ID", std::ffi::OsStr::new(&sender_thread))];
    let sent = home
        .json_with_env(
            &["send", &recipient, "please review 3f2c1a0", "--intro"],
            &env,
        )
        .ok_json();
    assert_eq!(sent["sender"], sender.as_str(), "{sent}");
    let receipt = sent["receipt"].as_str().expect("receipt").to_owned();
    let done = receipt_until(&home, &receipt, &["completed", "failed"]);
    assert_eq!(done["state"], "completed", "{done}");
    let texts = user_texts(&home, &recipient);
    let signed = texts
        .iter()
        .find(|t| t.starts_with("please review 3f2c1a0"))
        .expect("the message reached the lane");
    assert!(
        signed.contains(&format!("From lane {sender} (\"lead\")"))
            && signed.contains(&sender_thread)
            && signed.contains(&format!("dispatch send {sender} --intro"))
            && signed.contains("dispatch_send"),
        "the footer names the sender and both ways to answer: {signed}"
    );

    let inbox = home
        .json(&[
            "inbox",
            "list",
            "--lane",
            &recipient,
            "--kind",
            "direct_message",
        ])
        .ok_json();
    let messages = inbox["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{inbox}");
    assert_eq!(messages[0]["about"], sender.as_str(), "{inbox}");

    // Unsigned sends name no sender and leave no inbox copy.
    let plain = home
        .json_with_env(&["send", &recipient, "plain"], &env)
        .ok_json();
    assert!(plain["sender"].is_null(), "{plain}");
    let plain_receipt = plain["receipt"].as_str().expect("receipt").to_owned();
    receipt_until(&home, &plain_receipt, &["completed", "failed"]);
    let inbox = home
        .json(&["inbox", "list", "--lane", &recipient, "--state", "all"])
        .ok_json();
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(1),
        "{inbox}"
    );
}
