//! The event pump against a flood from the fake App Server: every notification of a turn far
//! longer than the lossless queue's back-pressure mark is stored, none twice, and each is
//! stored as the App Server sent it. The binary is its own fake App Server (see `harness`).

mod harness;

use std::process::ExitCode;
use std::time::Duration;

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
        // The next batch stored, or a bounded wait for a pump that has stalled.
        let _ = tokio::time::timeout(Duration::from_secs(5), stored.changed()).await;
    };
    assert_eq!(got.counts.events, expected, "every event once: {got:?}");
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
    pump.abort();
}
