//! Triggers and their fires: names are unique, a due time is claimed once, a fire is finished
//! once (with its action-log row and a failure's inbox message), an `on` trigger's fire is
//! stored with the lane event that sets it off, and a removed trigger takes its fires along.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_lane_ref, open_registry};
use dispatch_registry::{
    ClaimIf, DeliveryMode, Effects, FireClaim, FireOutcome, InboxFilter, NewInboxMessage,
    NewTrigger, TriggerFire, TriggerKind,
};

fn every(name: &str, lane: &str, next: i64) -> NewTrigger {
    NewTrigger {
        name: name.to_owned(),
        lane_ref: lane.to_owned(),
        kind: TriggerKind::Every,
        spec: "2000".to_owned(),
        tz: None,
        text: format!("text of {name}"),
        mode: DeliveryMode::Send,
        next_fire_at_ms: Some(next),
    }
}

fn due_at(id: i64, due: i64, next: i64, coalesced: i64) -> FireClaim {
    FireClaim {
        trigger_id: id,
        condition: ClaimIf::DueAt {
            due_at_ms: due,
            next: Some(next),
        },
        due_key: format!("at:{due}"),
        due_at_ms: due,
        coalesced,
    }
}

fn outcome(id: i64, key: &str, lane: &str, ok: bool) -> FireOutcome {
    FireOutcome {
        trigger_id: id,
        due_key: key.to_owned(),
        lane_ref: lane.to_owned(),
        ok,
        outcome: if ok { "delivered" } else { "failed" }.to_owned(),
        receipt: Some("r1".to_owned()),
        error_code: (!ok).then(|| "lane_busy".to_owned()),
        pause: false,
        detail: "trigger t (1): ...".to_owned(),
        inbox: (!ok).then(|| NewInboxMessage {
            lane_ref: Some(lane.to_owned()),
            kind: "trigger_result".to_owned(),
            subject: "failed".to_owned(),
            body: "body".to_owned(),
            about_ref: Some(lane.to_owned()),
            turn_id: None,
            data: None,
            origin: Some(format!("trigger:{id}:{key}")),
        }),
    }
}

#[tokio::test]
async fn names_are_unique_and_triggers_are_counted() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let first = registry
        .add_trigger(&every("tick", &lane, 10))
        .await
        .unwrap();
    let first = first.expect("stored");
    assert_eq!(first.name, "tick");
    assert_eq!(first.thread_id, "t-1");
    assert!(
        registry
            .add_trigger(&every("tick", &lane, 10))
            .await
            .unwrap()
            .is_none(),
        "a taken name stores nothing"
    );
    assert_eq!(registry.trigger_count().await.unwrap(), 1);
    assert_eq!(
        registry
            .trigger_by_name("tick")
            .await
            .unwrap()
            .map(|t| t.id),
        Some(first.id)
    );
    let paused = registry
        .set_trigger_paused(first.id, true, None)
        .await
        .unwrap()
        .unwrap();
    assert!(paused.paused && paused.next_fire_at_ms.is_none());
    assert_eq!(
        registry.trigger_count().await.unwrap(),
        1,
        "paused ones count"
    );
}

#[tokio::test]
async fn a_due_time_is_claimed_once_and_a_fire_finished_once() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let id = registry
        .add_trigger(&every("tick", &lane, 10_000))
        .await
        .unwrap()
        .unwrap()
        .id;
    let claimed = registry
        .claim_trigger_fires(&[due_at(id, 10_000, 16_000, 3)])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].coalesced, 3);
    let row = registry.trigger(id).await.unwrap().unwrap();
    assert_eq!(row.next_fire_at_ms, Some(16_000), "the due time moved on");
    assert!(row.last_fired_at_ms.is_some());
    // The same due time again (a second scheduler, a stale heap entry): nothing.
    assert!(
        registry
            .claim_trigger_fires(&[due_at(id, 10_000, 12_000, 1)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(registry.pending_trigger_fires().await.unwrap().len(), 1);

    let done = outcome(id, "at:10000", &lane, false);
    assert!(registry.finish_trigger_fire(&done).await.unwrap());
    assert!(
        !registry.finish_trigger_fire(&done).await.unwrap(),
        "finished once"
    );
    let row = registry.trigger(id).await.unwrap().unwrap();
    assert_eq!(row.fires, 1);
    assert_eq!(row.last_ok, Some(false));
    assert_eq!(row.last_outcome.as_deref(), Some("failed"));
    assert!(registry.pending_trigger_fires().await.unwrap().is_empty());
    let actions = registry.actions(10).await.unwrap();
    let fired: Vec<_> = actions.iter().filter(|a| a.op == "trigger_fire").collect();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].error_code.as_deref(), Some("lane_busy"));
    let inbox = registry
        .inbox(&InboxFilter {
            kind: Some("trigger_result".into()),
            limit: 10,
            ..InboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(inbox.len(), 1);
}

#[tokio::test]
async fn a_paused_or_removed_trigger_is_not_claimed() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let id = registry
        .add_trigger(&every("tick", &lane, 10_000))
        .await
        .unwrap()
        .unwrap()
        .id;
    registry.set_trigger_paused(id, true, None).await.unwrap();
    assert!(
        registry
            .claim_trigger_fires(&[due_at(id, 10_000, 12_000, 1)])
            .await
            .unwrap()
            .is_empty()
    );
    registry
        .set_trigger_paused(id, false, Some(20_000))
        .await
        .unwrap();
    let claimed = registry
        .claim_trigger_fires(&[due_at(id, 20_000, 22_000, 1)])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(registry.remove_trigger(id).await.unwrap());
    assert!(
        registry.pending_trigger_fires().await.unwrap().is_empty(),
        "its unfinished fires went with it"
    );
    assert!(
        !registry
            .finish_trigger_fire(&outcome(id, "at:20000", &lane, true))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_idle_period_fires_once() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let mut idle = every("idle", &lane, 0);
    idle.kind = TriggerKind::IdleFor;
    idle.next_fire_at_ms = None;
    let id = registry.add_trigger(&idle).await.unwrap().unwrap().id;
    let claim = |since: i64| FireClaim {
        trigger_id: id,
        condition: ClaimIf::IdleSince(since),
        due_key: format!("idle:{since}"),
        due_at_ms: since + 2_000,
        coalesced: 1,
    };
    assert_eq!(
        registry
            .claim_trigger_fires(&[claim(1_000)])
            .await
            .unwrap()
            .len(),
        1
    );
    // Fired since the period began: the period is spent.
    assert!(
        registry
            .claim_trigger_fires(&[claim(1_000)])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_on_triggers_fire_is_stored_with_its_lane_event() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "t-1").await;
    let mut on = every("after", &lane, 0);
    on.kind = TriggerKind::On;
    on.spec = "turn_completed".to_owned();
    on.next_fire_at_ms = None;
    let id = registry.add_trigger(&on).await.unwrap().unwrap().id;
    assert_eq!(registry.triggers_on(&lane).await.unwrap().len(), 1);
    registry
        .record(&[dispatch_registry::Recorded {
            lane_ref: lane.as_str().into(),
            event: None,
            facts: vec![dispatch_registry::Fact::TurnStarted {
                turn_id: "turn-1".into(),
                at_ms: 1,
            }]
            .into(),
        }])
        .await
        .unwrap();
    let events = registry.unhandled_lane_events(10).await.unwrap();
    let event = events.first().expect("a lane event");
    let effects = Effects {
        trigger_fires: vec![TriggerFire {
            trigger_id: id,
            due_key: format!("event:{}", event.id),
            due_at_ms: event.at_ms,
            coalesced: 1,
            claimed_at_ms: 5,
        }],
        ..Effects::default()
    };
    assert!(
        registry
            .handle_lane_event(event.id, &effects)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .handle_lane_event(event.id, &effects)
            .await
            .unwrap()
    );
    let pending = registry.pending_trigger_fires().await.unwrap();
    assert_eq!(pending.len(), 1, "stored once");
    assert_eq!(
        registry
            .trigger(id)
            .await
            .unwrap()
            .unwrap()
            .last_fired_at_ms,
        Some(5)
    );
}
