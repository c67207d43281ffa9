//! Orchestration's logic against the registry, in seconds: subscriptions fire once per
//! matching event (once, or every time), carry what the target said by the end of that turn,
//! queue a turn on a subscriber that can be written and leave an inbox message otherwise; an
//! event whose effects cannot be read stays for later; bad subscriptions are refused with
//! nothing stored; `self` is the caller's lane; `wait` ends at the first lane or the last,
//! and `turn-end` on an idle lane means its next turn.
//!
//! Lane facts are recorded directly (no App Server turn runs), and lane events are handled by
//! calling `Service::handle_lane_events`, as the orchestration task does when events are
//! stored. The binary is its own fake App Server (see `harness`).

mod harness;

use std::process::ExitCode;
use std::time::Duration;

use dispatch_contract::types::{
    InboxAckInput, InboxAckOutput, InboxListInput, InboxListOutput, InboxReadInput,
    InboxReadOutput, SubscribeInput, SubscribeOutput, SubscriptionsInput, SubscriptionsOutput,
    UnsubscribeInput, UnsubscribeOutput, WaitInput, WaitInputUntil, WaitOutput,
};
use dispatch_contract::{ErrorCode, Surface};
use dispatch_registry::{DeliveryState, Fact, Ownership, TurnStatus};
use harness::{Daemon, expect_error, trial};
use libtest_mimic::Arguments;
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial(
            "subscriptions_fire_once_or_every_time_on_matching_events",
            |d| Box::pin(subscriptions_fire_once_or_every_time_on_matching_events(d)),
        ),
        trial(
            "an_update_carries_what_the_target_said_by_the_end_of_that_turn",
            |d| Box::pin(an_update_carries_what_the_target_said_by_the_end_of_that_turn(d)),
        ),
        trial(
            "turn_delivery_queues_a_turn_unless_the_subscriber_cannot_take_one",
            |d| Box::pin(turn_delivery_queues_a_turn_unless_the_subscriber_cannot_take_one(d)),
        ),
        trial(
            "an_event_whose_effects_cannot_be_read_stays_for_later",
            |d| Box::pin(an_event_whose_effects_cannot_be_read_stays_for_later(d)),
        ),
        trial("bad_subscriptions_are_refused_and_nothing_is_stored", |d| {
            Box::pin(bad_subscriptions_are_refused_and_nothing_is_stored(d))
        }),
        trial("self_is_the_callers_own_lane", |d| {
            Box::pin(self_is_the_callers_own_lane(d))
        }),
        trial("the_inbox_lists_reads_and_acknowledges", |d| {
            Box::pin(the_inbox_lists_reads_and_acknowledges(d))
        }),
        trial("wait_ends_at_the_first_lane_or_with_all_at_the_last", |d| {
            Box::pin(wait_ends_at_the_first_lane_or_with_all_at_the_last(d))
        }),
        trial("turn_end_on_an_idle_lane_is_its_next_turn", |d| {
            Box::pin(turn_end_on_an_idle_lane_is_its_next_turn(d))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

async fn subscribe(d: &Daemon, input: serde_json::Value) -> SubscribeOutput {
    d.call::<SubscribeInput>(input).await.expect("subscribe")
}

async fn inbox(d: &Daemon, lane: &str) -> InboxListOutput {
    d.call::<InboxListInput>(json!({"lane": lane, "state": "all"}))
        .await
        .expect("inbox list")
}

async fn subscriptions(d: &Daemon) -> SubscriptionsOutput {
    d.call::<SubscriptionsInput>(json!({"all": true}))
        .await
        .expect("subscriptions")
}

async fn subscriptions_fire_once_or_every_time_on_matching_events(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    let inbox_to_b = |when: &str, every: bool| {
        json!({"target": a.lane_ref, "to": b.lane_ref, "when": when, "delivery": "inbox",
               "every_time": every})
    };
    let done = subscribe(d, inbox_to_b("done", false)).await.subscription;
    let idle = subscribe(d, inbox_to_b("idle", true)).await.subscription;
    let approval = subscribe(d, inbox_to_b("approval", true))
        .await
        .subscription;
    let activity = subscribe(d, inbox_to_b("activity", false))
        .await
        .subscription;
    // The same subscription again is the same subscription.
    let again = subscribe(d, inbox_to_b("done", false)).await;
    assert!(
        again.existing && again.subscription.id == done.id,
        "{again:?}"
    );

    d.turn(&a, "turn-1", "first answer", TurnStatus::Completed)
        .await;
    d.service.handle_lane_events().await;
    // Handled once: a second pass finds nothing.
    d.service.handle_lane_events().await;
    let messages = inbox(d, &b.lane_ref).await.messages;
    let subjects: Vec<String> = messages.iter().map(|m| m.subject.clone()).collect();
    assert_eq!(
        subjects,
        vec![
            "lane ".to_owned() + &a.lane_ref + " (a) finished a turn: completed",
            "lane ".to_owned() + &a.lane_ref + " (a) finished a turn: completed",
            "lane ".to_owned() + &a.lane_ref + " (a) started a turn",
        ],
        "done, idle and activity fired once each, approval not at all"
    );

    d.turn(&a, "turn-2", "second answer", TurnStatus::Interrupted)
        .await;
    d.service.handle_lane_events().await;
    let messages = inbox(d, &b.lane_ref).await.messages;
    assert_eq!(
        messages.len(),
        4,
        "only `idle` (every time) fired again, on the interrupted turn: {messages:?}"
    );
    assert_eq!(messages[0].turn_id.as_deref(), Some("turn-2"));

    let listed = subscriptions(d).await.subscriptions;
    let by_id = |id: i64| listed.iter().find(|s| s.id == id).expect("listed");
    assert!(
        !by_id(done.id).active && by_id(done.id).fired == 1,
        "{listed:?}"
    );
    assert!(!by_id(activity.id).active && by_id(activity.id).fired == 1);
    assert!(by_id(idle.id).active && by_id(idle.id).fired == 2);
    assert!(by_id(approval.id).active && by_id(approval.id).fired == 0);

    let ended: UnsubscribeOutput = d
        .call::<UnsubscribeInput>(json!({"id": idle.id}))
        .await
        .expect("unsubscribe");
    assert!(ended.was_active && !ended.subscription.active);
    d.turn(&a, "turn-3", "third answer", TurnStatus::Completed)
        .await;
    d.service.handle_lane_events().await;
    assert_eq!(
        inbox(d, &b.lane_ref).await.messages.len(),
        4,
        "nothing listens any more but `approval`"
    );
    let again: UnsubscribeOutput = d
        .call::<UnsubscribeInput>(json!({"id": idle.id}))
        .await
        .expect("unsubscribe again");
    assert!(!again.was_active);
    expect_error(
        d.call::<UnsubscribeInput>(json!({"id": 999})).await,
        ErrorCode::NotFound,
    );
}

async fn an_update_carries_what_the_target_said_by_the_end_of_that_turn(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    subscribe(
        d,
        json!({"target": a.lane_ref, "to": b.lane_ref, "delivery": "inbox", "every_time": true,
               "tail": 2}),
    )
    .await;
    // Two turns end before orchestration gets to them (a busy daemon, a restart): each
    // update says what the target had said by the end of its own turn.
    d.turn(&a, "turn-1", "one", TurnStatus::Completed).await;
    d.turn(&a, "turn-2", "two", TurnStatus::Completed).await;
    d.start_turn(&a, "turn-3").await;
    d.say(&a, "turn-3", "three, still running").await;
    d.service.handle_lane_events().await;
    let messages = inbox(d, &b.lane_ref).await.messages;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let read = |id: i64| async move {
        d.call::<InboxReadInput>(json!({"id": id}))
            .await
            .expect("inbox read")
            .message
    };
    let first = read(messages[1].id).await;
    assert_eq!(first.turn_id.as_deref(), Some("turn-1"));
    assert_eq!(first.data["messages"], json!(["one"]), "{first:?}");
    assert!(
        first.body.contains("Its last agent message:\none\n"),
        "{}",
        first.body
    );
    let second = read(messages[0].id).await;
    assert_eq!(second.data["messages"], json!(["one", "two"]), "{second:?}");
    assert!(
        !second.body.contains("three"),
        "a later turn is not part of it: {}",
        second.body
    );
    assert_eq!(second.data["subscription"], json!(1));
    assert_eq!(second.data["status"], "completed");
}

async fn turn_delivery_queues_a_turn_unless_the_subscriber_cannot_take_one(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    let watcher = d.lane("watcher", Ownership::Attached).await;
    subscribe(
        d,
        json!({"target": a.lane_ref, "to": b.lane_ref, "every_time": true}),
    )
    .await;
    // An attached lane takes inbox delivery, never turns.
    let refused = d
        .call::<SubscribeInput>(json!({"target": a.lane_ref, "to": watcher.lane_ref}))
        .await;
    let err = expect_error(refused, ErrorCode::AttachedLaneWriteBlocked);
    assert!(
        err.hint.render(Surface::Cli).contains("--delivery inbox"),
        "{err:?}"
    );
    subscribe(
        d,
        json!({"target": a.lane_ref, "to": watcher.lane_ref, "delivery": "inbox"}),
    )
    .await;

    d.turn(&a, "turn-1", "the answer is 42", TurnStatus::Completed)
        .await;
    let pump = d.service.handle_lane_events().await;
    assert!(pump.contains(&b.lane_ref), "b's queue is to be pumped");
    let queued = d
        .service
        .registry()
        .open_deliveries(Some(&b.lane_ref))
        .await
        .expect("deliveries");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].state, DeliveryState::Queued);
    assert_eq!(queued[0].source, "subscription:1");
    assert!(
        queued[0].text.starts_with("[dispatch] Lane ")
            && queued[0]
                .text
                .contains("\nIts last agent message:\nthe answer is 42\n"),
        "{}",
        queued[0].text
    );
    assert_eq!(inbox(d, &b.lane_ref).await.messages.len(), 1);
    assert_eq!(inbox(d, &watcher.lane_ref).await.messages.len(), 1);

    // A subscriber archived since hears about the next turn in its inbox only.
    d.record(&b, None, vec![Fact::Archived(true)]).await;
    d.turn(&a, "turn-2", "again", TurnStatus::Completed).await;
    d.service.handle_lane_events().await;
    assert_eq!(
        d.service
            .registry()
            .open_deliveries(Some(&b.lane_ref))
            .await
            .expect("deliveries")
            .len(),
        1,
        "no second turn for an archived lane"
    );
    assert_eq!(inbox(d, &b.lane_ref).await.messages.len(), 2);
}

async fn an_event_whose_effects_cannot_be_read_stays_for_later(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    subscribe(
        d,
        json!({"target": a.lane_ref, "to": b.lane_ref, "delivery": "inbox"}),
    )
    .await;
    d.turn(&a, "turn-1", "done", TurnStatus::Completed).await;
    // The subscriptions cannot be read for a moment (here: their table is renamed away).
    let mut conn = d.raw_connection().await;
    sqlx::query("ALTER TABLE subscriptions RENAME TO subscriptions_away")
        .execute(&mut conn)
        .await
        .expect("rename");
    d.service.handle_lane_events().await;
    let left = d
        .service
        .registry()
        .unhandled_lane_events(10)
        .await
        .expect("lane events");
    assert_eq!(
        left.len(),
        2,
        "the turn's events were not consumed without their effects: {left:?}"
    );
    sqlx::query("ALTER TABLE subscriptions_away RENAME TO subscriptions")
        .execute(&mut conn)
        .await
        .expect("rename back");
    d.service.handle_lane_events().await;
    assert_eq!(
        inbox(d, &b.lane_ref).await.messages.len(),
        1,
        "handled once the registry answers"
    );
    assert!(
        d.service
            .registry()
            .unhandled_lane_events(10)
            .await
            .expect("lane events")
            .is_empty()
    );
}

async fn bad_subscriptions_are_refused_and_nothing_is_stored(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    let gone = d.lane("gone", Ownership::Owned).await;
    d.record(&gone, None, vec![Fact::Archived(true)]).await;
    let refused = [
        (
            json!({"target": "zzzzzz", "to": b.lane_ref}),
            ErrorCode::NotFound,
        ),
        (
            json!({"target": a.lane_ref, "to": "zzzzzz"}),
            ErrorCode::NotFound,
        ),
        (
            json!({"target": a.lane_ref, "to": a.lane_ref}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"target": a.lane_ref, "to": b.lane_ref, "tail": 21}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"target": a.lane_ref, "to": b.lane_ref, "tail": -1}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"target": a.lane_ref, "to": b.lane_ref, "once": true, "every_time": true}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"target": a.lane_ref, "to": b.lane_ref, "when": "sometimes"}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"target": gone.lane_ref, "to": b.lane_ref}),
            ErrorCode::LaneArchived,
        ),
        (
            json!({"target": a.lane_ref, "to": gone.lane_ref}),
            ErrorCode::LaneArchived,
        ),
        // `self` with no calling thread, and with a thread that is no lane.
        (json!({"target": a.lane_ref}), ErrorCode::UnmanagedCaller),
        (
            json!({"target": a.lane_ref, "to": "self", "caller": "thread-unknown"}),
            ErrorCode::UnmanagedCaller,
        ),
    ];
    for (input, code) in refused {
        let err = expect_error(d.call::<SubscribeInput>(input.clone()).await, code);
        assert!(
            !err.hint.text().is_empty(),
            "{input}: a hint says what to do: {err:?}"
        );
    }
    assert!(
        subscriptions(d).await.subscriptions.is_empty(),
        "nothing was stored"
    );
    // A lane may hear about itself in its inbox.
    let own = subscribe(
        d,
        json!({"target": a.lane_ref, "to": a.lane_ref, "delivery": "inbox"}),
    )
    .await;
    assert_eq!(own.subscription.subscriber, a.lane_ref);
}

async fn self_is_the_callers_own_lane(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    let mine = subscribe(
        d,
        json!({"target": a.lane_ref, "caller": b.thread_id, "every_time": true}),
    )
    .await;
    assert_eq!(
        mine.subscription.subscriber, b.lane_ref,
        "to: self by default"
    );
    let listed: SubscriptionsOutput = d
        .call::<SubscriptionsInput>(json!({"subscriber": "self", "caller": b.thread_id}))
        .await
        .expect("subscriptions of self");
    assert_eq!(listed.subscriptions.len(), 1);
    let none: SubscriptionsOutput = d
        .call::<SubscriptionsInput>(json!({"subscriber": "self", "caller": a.thread_id}))
        .await
        .expect("subscriptions of another self");
    assert!(none.subscriptions.is_empty());
    d.turn(&a, "turn-1", "hi", TurnStatus::Completed).await;
    d.service.handle_lane_events().await;
    let own: InboxListOutput = d
        .call::<InboxListInput>(json!({"lane": "self", "caller": b.thread_id}))
        .await
        .expect("inbox of self");
    assert_eq!(own.messages.len(), 1);
    expect_error(
        d.call::<InboxListInput>(json!({"lane": "self"})).await,
        ErrorCode::UnmanagedCaller,
    );
}

async fn the_inbox_lists_reads_and_acknowledges(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    let c = d.lane("c", Ownership::Owned).await;
    for to in [&b, &c] {
        subscribe(
            d,
            json!({"target": a.lane_ref, "to": to.lane_ref, "delivery": "inbox",
                   "every_time": true}),
        )
        .await;
    }
    for n in 1..=3 {
        d.turn(&a, &format!("turn-{n}"), "said", TurnStatus::Completed)
            .await;
    }
    d.service.handle_lane_events().await;
    let pending: InboxListOutput = d
        .call::<InboxListInput>(json!({}))
        .await
        .expect("inbox list");
    assert_eq!(pending.messages.len(), 6, "pending ones of every lane");
    let limited: InboxListOutput = d
        .call::<InboxListInput>(json!({"limit": 2, "kind": "subscription_update"}))
        .await
        .expect("inbox list");
    assert_eq!(limited.messages.len(), 2);
    assert!(
        limited.messages[0].id > limited.messages[1].id,
        "newest first"
    );
    let none: InboxListOutput = d
        .call::<InboxListInput>(json!({"kind": "approval_request"}))
        .await
        .expect("inbox list");
    assert!(none.messages.is_empty());

    let first = pending.messages[0].id;
    let read: InboxReadOutput = d
        .call::<InboxReadInput>(json!({"id": first}))
        .await
        .expect("inbox read");
    assert_eq!(
        read.message.state.to_string(),
        "pending",
        "reading does not ack"
    );
    let one: InboxAckOutput = d
        .call::<InboxAckInput>(json!({"id": first}))
        .await
        .expect("ack one");
    assert_eq!((one.acknowledged, one.ids.clone()), (1, vec![first]));
    let twice: InboxAckOutput = d
        .call::<InboxAckInput>(json!({"id": first}))
        .await
        .expect("ack again");
    assert_eq!(twice.acknowledged, 0, "acknowledged before");
    let of_b: InboxAckOutput = d
        .call::<InboxAckInput>(json!({"all": true, "lane": b.lane_ref}))
        .await
        .expect("ack all of b");
    let left_of_b = if pending.messages[0].to.as_deref() == Some(&b.lane_ref) {
        2
    } else {
        3
    };
    assert_eq!(of_b.acknowledged, left_of_b);
    let rest: InboxAckOutput = d
        .call::<InboxAckInput>(json!({"all": true}))
        .await
        .expect("ack all");
    assert_eq!(rest.acknowledged, 5 - left_of_b);
    let after: InboxListOutput = d
        .call::<InboxListInput>(json!({}))
        .await
        .expect("inbox list");
    assert!(after.messages.is_empty());
    for input in [
        json!({"id": 1, "all": true}),
        json!({}),
        json!({"id": 1, "lane": b.lane_ref}),
    ] {
        expect_error(
            d.call::<InboxAckInput>(input).await,
            ErrorCode::InvalidInput,
        );
    }
    expect_error(
        d.call::<InboxAckInput>(json!({"id": 999})).await,
        ErrorCode::NotFound,
    );
    expect_error(
        d.call::<InboxReadInput>(json!({"id": 999})).await,
        ErrorCode::NotFound,
    );
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(20)
}

async fn wait_ends_at_the_first_lane_or_with_all_at_the_last(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    let b = d.lane("b", Ownership::Owned).await;
    d.start_turn(&a, "a-1").await;
    d.start_turn(&b, "b-1").await;
    let lanes = || async {
        vec![
            d.service
                .registry()
                .lane(&a.lane_ref)
                .await
                .expect("a")
                .expect("a"),
            d.service
                .registry()
                .lane(&b.lane_ref)
                .await
                .expect("b")
                .expect("b"),
        ]
    };
    let any = d
        .service
        .begin_wait(lanes().await, WaitInputUntil::TurnEnd)
        .await
        .expect("begin");
    let all = d
        .service
        .begin_wait(lanes().await, WaitInputUntil::TurnEnd)
        .await
        .expect("begin");
    let service = std::sync::Arc::clone(&d.service);
    let any = tokio::spawn(async move { service.finish_wait(any, false, soon()).await });
    let service = std::sync::Arc::clone(&d.service);
    let all = tokio::spawn(async move { service.finish_wait(all, true, soon()).await });

    d.say(&a, "a-1", "a is done").await;
    d.end_turn(&a, "a-1", TurnStatus::Completed).await;
    let first: WaitOutput = any.await.expect("task").expect("wait any");
    assert!(!first.timed_out, "{first:?}");
    assert_eq!(first.pending, vec![b.lane_ref.clone()]);
    assert!(first.lanes[0].reached && !first.lanes[1].reached);
    assert_eq!(
        first.lanes[0].last_agent_message.as_deref(),
        Some("a is done")
    );
    assert_eq!(first.lanes[0].status.to_string(), "idle", "{first:?}");
    assert_eq!(
        first.lanes[0].latest_turn.as_ref().map(|t| t.id.as_str()),
        Some("a-1")
    );
    assert!(!all.is_finished(), "b still runs");
    // a runs again: it reached the condition once, which `all` keeps.
    d.start_turn(&a, "a-2").await;
    d.end_turn(&b, "b-1", TurnStatus::Failed).await;
    let last: WaitOutput = all.await.expect("task").expect("wait all");
    assert!(!last.timed_out && last.pending.is_empty(), "{last:?}");
    assert_eq!(last.lanes[1].status.to_string(), "error");

    // `idle`: a lane running no turn has reached it already; one that runs times out.
    let idle: WaitOutput = d
        .call::<WaitInput>(json!({"lanes": [b.lane_ref], "until": "idle", "timeout": 5}))
        .await
        .expect("wait idle");
    assert!(idle.lanes[0].reached && !idle.timed_out);
    let running: WaitOutput = d
        .call::<WaitInput>(json!({"lanes": [a.lane_ref, a.lane_ref], "until": "idle",
                                   "timeout": 0.2}))
        .await
        .expect("wait for a running lane");
    assert!(running.timed_out, "{running:?}");
    assert_eq!(running.lanes.len(), 1, "a lane named twice is one lane");
    assert_eq!(running.pending, vec![a.lane_ref.clone()]);
    expect_error(
        d.call::<WaitInput>(json!({"lanes": [a.lane_ref, "zzzzzz"]}))
            .await,
        ErrorCode::NotFound,
    );
}

async fn turn_end_on_an_idle_lane_is_its_next_turn(d: &Daemon) {
    let a = d.lane("a", Ownership::Owned).await;
    d.turn(&a, "a-1", "earlier", TurnStatus::Completed).await;
    let timed_out: WaitOutput = d
        .call::<WaitInput>(json!({"lanes": [a.lane_ref], "timeout": 0.2}))
        .await
        .expect("wait");
    assert!(
        timed_out.timed_out && !timed_out.lanes[0].reached,
        "an idle lane's earlier turn does not count: {timed_out:?}"
    );
    let lane = d
        .service
        .registry()
        .lane(&a.lane_ref)
        .await
        .expect("a")
        .expect("a");
    let waiting = d
        .service
        .begin_wait(vec![lane], WaitInputUntil::TurnEnd)
        .await
        .expect("begin");
    let service = std::sync::Arc::clone(&d.service);
    let next = tokio::spawn(async move { service.finish_wait(waiting, false, soon()).await });
    d.start_turn(&a, "a-2").await;
    assert!(!next.is_finished(), "the next turn runs");
    d.say(&a, "a-2", "later").await;
    d.end_turn(&a, "a-2", TurnStatus::Completed).await;
    let ended: WaitOutput = next.await.expect("task").expect("wait");
    assert!(ended.lanes[0].reached && !ended.timed_out, "{ended:?}");
    assert_eq!(ended.lanes[0].last_agent_message.as_deref(), Some("later"));
}
