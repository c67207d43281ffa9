//! The event pump against a flood from the fake App Server: every notification of a turn far
//! longer than the lossless queue's back-pressure mark is stored, none twice, and each is
//! stored as the App Server sent it. The binary is its own fake App Server (see `harness`).

mod harness;

use std::process::ExitCode;
use std::time::Duration;

use dispatch_contract::Dispatch;
use dispatch_contract::types::{GetInput, GetOutput, SendInput, SendOutput};
use dispatch_registry::Ownership;
use fake_app_server::{FloodPlan, Script};
use harness::{Daemon, trial_with};
use libtest_mimic::Arguments;
use serde_json::json;

/// More than twice `codex_app_server::LOSSLESS_HIGH` and several ingest batches.
const FLOOD: usize = 20_000;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![trial_with(
        "a_flood_is_stored_whole_and_as_sent",
        || Script {
            flood: Some(FLOOD),
            ..Script::default()
        },
        |d| Box::pin(a_flood_is_stored_whole_and_as_sent(d)),
    )];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

async fn a_flood_is_stored_whole_and_as_sent(d: &Daemon) {
    let pump = tokio::spawn(dispatch_daemon::pump(d.service.clone()));
    let lane = d.lane("flood", Ownership::Owned).await;
    let mut stored = d.service.event_notifications();
    let sent: SendOutput = d
        .call::<SendInput>(json!({"lane": lane.lane_ref, "text": "go"}))
        .await
        .expect("send");
    let plan = FloodPlan::new(FLOOD);
    let expected = u64::try_from(plan.stored()).expect("fits");

    // Until the turn completed and its events are all stored (or the harness's bound).
    let got = loop {
        // Read before the lane: a `get` that shows the turn running was answered after this
        // read, so the flag cannot yet hold a count made after the turn completed.
        let idle_before = d.service.idle();
        let got: GetOutput = d
            .call::<GetInput>(json!({"lane": lane.lane_ref}))
            .await
            .expect("get");
        let done = got.lane.latest_turn.as_ref().is_some_and(|t| {
            Some(&t.id) == sent.turn_id.as_ref() && t.status.to_string() == "completed"
        });
        if done && got.counts.events >= expected {
            break got;
        }
        // The idle flag (what a client with another contract may restart the daemon on) is
        // not counted again after a batch of output alone, but a busy lane keeps it false.
        if !done {
            assert!(!idle_before, "idle while the turn runs: {got:?}");
        }
        // The next batch stored, or a bounded wait for a pump that has stalled.
        let _ = tokio::time::timeout(Duration::from_secs(5), stored.changed()).await;
    };
    assert_eq!(got.counts.events, expected, "every event once: {got:?}");
    // The batch that completed the turn counts the lanes again: idle once it is stored (the
    // count follows the write, so it is waited for, bounded).
    let idle_by = tokio::time::Instant::now() + Duration::from_secs(10);
    while !d.service.idle() && tokio::time::Instant::now() < idle_by {
        let _ = tokio::time::timeout(Duration::from_secs(1), stored.changed()).await;
    }
    assert!(d.service.idle(), "not idle after the turn completed");
    assert_eq!(
        got.counts.items,
        u64::try_from(plan.stored_items()).expect("fits"),
        "every item: {got:?}"
    );

    // Stored as sent: the fake writes `threadId, turnId, completedAtMs, item` in that order;
    // encoded again from the typed notification it would be `completedAtMs, item, ...`.
    let events = d
        .service
        .registry()
        .events_after(&lane.lane_ref, 0, 10)
        .await
        .expect("events");
    let completed = events
        .iter()
        .find(|e| e.method == "item/completed")
        .expect("an item/completed event");
    let keys: Vec<&str> = completed
        .params
        .as_object()
        .expect("params are an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["threadId", "turnId", "completedAtMs", "item"]);

    // In the order sent, across batches (the pump folds a batch while the one before it is
    // written: they must not overtake each other): the agent messages' events come in the
    // order of their numbers, each started before it completed, and every item's text is
    // whole (its delta folded in).
    let mut after = 0;
    let mut last = (0, "");
    let mut seen = 0;
    loop {
        let page = d
            .service
            .registry()
            .events_after(&lane.lane_ref, after, 5_000)
            .await
            .expect("events");
        let Some(tail) = page.last() else { break };
        after = tail.id;
        for event in &page {
            let Some(n) = event.params["item"]["id"]
                .as_str()
                .and_then(|id| id.strip_prefix("msg_"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let this = (n, event.method.as_str());
            let expected_after = match this.1 {
                "item/started" => (n - 1, "item/completed"),
                _ => (n, "item/started"),
            };
            if n > 1 || this.1 != "item/started" {
                assert_eq!(last, expected_after, "{this:?} stored after {last:?}");
            }
            last = (
                n,
                if this.1 == "item/started" {
                    "item/started"
                } else {
                    "item/completed"
                },
            );
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        2 * plan.items,
        "item/started and item/completed of every message"
    );
    let items = d
        .service
        .registry()
        .tail(
            &lane.lane_ref,
            u32::try_from(plan.stored_items()).expect("fits"),
        )
        .await
        .expect("items");
    let mut messages = 0;
    for item in items.iter().filter(|i| i.item_id.starts_with("msg_")) {
        let n: u64 = item.item_id["msg_".len()..].parse().expect("a number");
        let text = format!("agent message {n}: the quick brown fox jumps over the lazy dog");
        assert_eq!(item.text.as_deref(), Some(text.as_str()), "{item:?}");
        messages += 1;
    }
    assert_eq!(messages, plan.items, "every agent message is an item");

    // Searchable at once, though the flood's batches only marked their items for the index:
    // the last message is found by its number (no other item holds that word).
    let last = plan.items.to_string();
    let hits = d
        .service
        .registry()
        .search(&last, 10)
        .await
        .expect("search");
    let found: Vec<Option<&str>> = hits.iter().map(|hit| hit.item_id.as_deref()).collect();
    assert_eq!(found, [Some(format!("msg_{last:0>7}").as_str())]);
    pump.abort();
}
