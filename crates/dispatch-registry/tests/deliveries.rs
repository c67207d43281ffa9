//! Deliveries (receipts and queues) and the lane-event outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_lane_ref, open_registry};
use dispatch_registry::{
    DeliveryMode, DeliveryState, Effects, Fact, ImageRef, LaneEventKind, NewDelivery,
    NewInboxMessage, Recorded, Recording, TurnRow, TurnStatus, WorktreeRow,
};

fn delivery(id: &str, lane: &str, state: DeliveryState) -> NewDelivery {
    NewDelivery {
        id: id.to_owned(),
        lane_ref: lane.to_owned(),
        mode: DeliveryMode::Queue,
        text: format!("text of {id}"),
        source: "send".to_owned(),
        sender_ref: None,
        idempotency: None,
        state,
        images: Vec::new(),
    }
}

fn facts(lane: &str, facts: Vec<Fact>) -> Recorded {
    Recorded {
        lane_ref: lane.into(),
        event: None,
        facts: facts.into(),
    }
}

fn ended(turn: &str, status: TurnStatus) -> Fact {
    Fact::TurnCompleted {
        turn: TurnRow {
            turn_id: turn.to_owned(),
            status,
            error: None,
            started_at_ms: Some(1),
            completed_at_ms: Some(2),
            duration_ms: None,
        },
    }
}

#[tokio::test]
async fn an_idempotency_key_binds_one_payload() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let mut first = delivery("d1", &lane, DeliveryState::Submitting);
    first.idempotency = Some(("key-1".into(), "hash-a".into()));
    let Recording::New(row) = registry.record_delivery(&first).await.unwrap() else {
        panic!("a new delivery");
    };
    assert_eq!(row.state, DeliveryState::Submitting);

    let mut again = delivery("d2", &lane, DeliveryState::Submitting);
    again.idempotency = Some(("key-1".into(), "hash-a".into()));
    match registry.record_delivery(&again).await.unwrap() {
        Recording::Existing(row) => assert_eq!(row.id, "d1"),
        other => panic!("the stored receipt, got {other:?}"),
    }
    again.idempotency = Some(("key-1".into(), "hash-b".into()));
    match registry.record_delivery(&again).await.unwrap() {
        Recording::Conflict(row) => assert_eq!(row.id, "d1"),
        other => panic!("a conflict, got {other:?}"),
    }
    assert!(
        registry.delivery("d2").await.unwrap().is_none(),
        "nothing recorded"
    );
    registry.close().await;
}

#[tokio::test]
async fn queues_keep_their_order_and_an_open_delivery_holds_them() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    for id in ["q1", "q2", "q3"] {
        registry
            .record_delivery(&delivery(id, &lane, DeliveryState::Queued))
            .await
            .unwrap();
    }
    let first = registry.claim_queued(&lane).await.unwrap().expect("q1");
    assert_eq!(
        (first.id.as_str(), first.state),
        ("q1", DeliveryState::Submitting)
    );
    assert!(
        registry.claim_queued(&lane).await.unwrap().is_none(),
        "a submitting delivery holds the queue"
    );
    // A crash: submitting becomes ambiguous, which still holds the queue.
    assert_eq!(registry.mark_submitting_ambiguous().await.unwrap(), 1);
    assert!(registry.claim_queued(&lane).await.unwrap().is_none());
    assert_eq!(
        registry.delivery("q1").await.unwrap().unwrap().state,
        DeliveryState::Ambiguous
    );
    // Positive evidence resolves it; the queue goes on in order.
    assert!(
        registry
            .set_delivery_state(
                "q1",
                &[DeliveryState::Ambiguous],
                DeliveryState::Accepted,
                Some("turn-1"),
                None
            )
            .await
            .unwrap()
    );
    assert_eq!(
        registry.claim_queued(&lane).await.unwrap().unwrap().id,
        "q2"
    );
    assert_eq!(registry.queued_count().await.unwrap(), 1);
    registry.close().await;
}

#[tokio::test]
async fn a_receipt_ends_with_its_turn_and_lane_events_are_handled_once() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    registry
        .record_delivery(&delivery("d1", &lane, DeliveryState::Submitting))
        .await
        .unwrap();
    registry
        .set_delivery_state(
            "d1",
            &[DeliveryState::Submitting],
            DeliveryState::Accepted,
            Some("turn-1"),
            None,
        )
        .await
        .unwrap();
    registry
        .record(&[facts(
            &lane,
            vec![Fact::TurnStarted {
                turn_id: "turn-1".into(),
                at_ms: 1,
            }],
        )])
        .await
        .unwrap();
    // Recording the same start again is not a new transition.
    registry
        .record(&[facts(
            &lane,
            vec![Fact::TurnStarted {
                turn_id: "turn-1".into(),
                at_ms: 1,
            }],
        )])
        .await
        .unwrap();
    registry
        .record(&[facts(&lane, vec![ended("turn-1", TurnStatus::Completed)])])
        .await
        .unwrap();
    // An old turn read back (sync) is no transition either.
    registry
        .record(&[facts(&lane, vec![ended("turn-0", TurnStatus::Completed)])])
        .await
        .unwrap();
    let receipt = registry.delivery("d1").await.unwrap().unwrap();
    assert_eq!(receipt.state, DeliveryState::Completed);

    let events = registry.unhandled_lane_events(10).await.unwrap();
    let kinds: Vec<(LaneEventKind, Option<TurnStatus>)> =
        events.iter().map(|e| (e.kind, e.status)).collect();
    assert_eq!(
        kinds,
        [
            (LaneEventKind::TurnStarted, None),
            (LaneEventKind::TurnEnded, Some(TurnStatus::Completed))
        ]
    );
    let effects = Effects {
        inbox: vec![NewInboxMessage {
            lane_ref: Some(lane.clone()),
            kind: "subscription_update".into(),
            subject: "done".into(),
            body: "body".into(),
            about_ref: None,
            turn_id: Some("turn-1".into()),
            data: None,
            origin: Some("test:1".into()),
        }],
        deliveries: vec![delivery("d2", &lane, DeliveryState::Queued)],
        fired_subscriptions: Vec::new(),
        ..Effects::default()
    };
    assert!(
        registry
            .handle_lane_event(events[1].id, &effects)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .handle_lane_event(events[1].id, &effects)
            .await
            .unwrap(),
        "a second handling writes nothing"
    );
    assert_eq!(registry.queued_count().await.unwrap(), 1);
    let left = registry.unhandled_lane_events(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].kind, LaneEventKind::TurnStarted);
    registry.close().await;
}

#[tokio::test]
async fn images_are_kept_by_path_size_and_digest() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-img").await;
    let image = ImageRef {
        path: "/work/shot.png".into(),
        size: 70,
        sha256: "ab".repeat(32),
    };
    let mut with = delivery("d-img", &lane, DeliveryState::Queued);
    with.images = vec![image.clone()];
    registry.record_delivery(&with).await.unwrap();
    let row = registry.delivery("d-img").await.unwrap().expect("stored");
    assert_eq!(row.images, [image]);
    registry
        .record_delivery(&delivery("d-none", &lane, DeliveryState::Queued))
        .await
        .unwrap();
    let row = registry.delivery("d-none").await.unwrap().expect("stored");
    assert!(row.images.is_empty());
}

#[tokio::test]
async fn a_lanes_worktree_is_recorded_and_forgotten() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-tree").await;
    assert_eq!(
        registry.lane(&lane).await.unwrap().expect("lane").worktree,
        None
    );
    let tree = WorktreeRow {
        path: "/home/u/.dispatch/worktrees/app/fix".into(),
        branch: "dispatch/fix".into(),
        repo: "/src/app".into(),
    };
    registry.set_worktree(&lane, Some(&tree)).await.unwrap();
    let row = registry.lane(&lane).await.unwrap().expect("lane");
    assert_eq!(row.worktree, Some(tree));
    let listed = registry
        .list_lanes(&dispatch_registry::LaneFilter::default())
        .await
        .unwrap();
    assert!(listed[0].worktree.is_some(), "lists read it too");
    registry.set_worktree(&lane, None).await.unwrap();
    assert_eq!(
        registry.lane(&lane).await.unwrap().expect("lane").worktree,
        None
    );
    assert!(registry.set_worktree("zzzzzz", None).await.is_err());
}
