//! What the thread operations record: a fork's parent, compaction times, the turns a revert
//! dropped (with their items, and the lane's latest turn set back), and a deleted lane (gone
//! with everything recorded about it, its ref retired).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_lane, open_registry};
use dispatch_registry::{Fact, Recorded, RegistryError, TurnRow, TurnStatus};

fn turn(lane_ref: &str, turn_id: &str, said: &str) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: vec![
            Fact::TurnStarted {
                turn_id: turn_id.to_owned(),
                at_ms: 1,
            },
            Fact::Item {
                turn_id: Some(turn_id.to_owned()),
                item_id: "msg_1".into(),
                kind: "agent_message".into(),
                text: Some(said.to_owned()),
                status: None,
                at_ms: 2,
            },
            Fact::TurnCompleted {
                turn: TurnRow {
                    turn_id: turn_id.to_owned(),
                    status: TurnStatus::Completed,
                    error: None,
                    started_at_ms: Some(1),
                    completed_at_ms: Some(2),
                    duration_ms: Some(1),
                },
            },
        ]
        .into(),
    }
}

#[tokio::test]
async fn parent_and_compaction_are_recorded() {
    let (_dir, registry) = open_registry().await;
    let parent = registry.create_lane(&new_lane("t-parent")).await.unwrap();
    let child = registry.create_lane(&new_lane("t-child")).await.unwrap();
    assert_eq!(
        registry.lineage(&child.lane_ref).await.unwrap(),
        Some(Default::default())
    );
    registry
        .set_parent(&child.lane_ref, &parent.lane_ref)
        .await
        .unwrap();
    registry
        .note_compaction_requested(&child.lane_ref, 10)
        .await
        .unwrap();
    registry.note_compacted(&child.lane_ref, 20).await.unwrap();
    let lineage = registry.lineage(&child.lane_ref).await.unwrap().unwrap();
    assert_eq!(
        lineage.parent_ref.as_deref(),
        Some(parent.lane_ref.as_str())
    );
    assert_eq!(lineage.compact_requested_at_ms, Some(10));
    assert_eq!(lineage.compacted_at_ms, Some(20));
    assert!(matches!(
        registry.set_parent("nolane", &parent.lane_ref).await,
        Err(RegistryError::LaneNotFound { .. })
    ));
}

#[tokio::test]
async fn dropped_turns_leave_with_their_items() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t-rev")).await.unwrap();
    registry
        .record(&[
            turn(&lane.lane_ref, "turn-1", "one"),
            turn(&lane.lane_ref, "turn-2", "two"),
        ])
        .await
        .unwrap();
    assert_eq!(registry.counts(&lane.lane_ref).await.unwrap().turns, 2);
    let first = registry.lane(&lane.lane_ref).await.unwrap().unwrap();
    assert_eq!(first.latest_turn.as_ref().unwrap().turn_id, "turn-2");
    let kept = TurnRow {
        turn_id: "turn-1".into(),
        status: TurnStatus::Completed,
        error: None,
        started_at_ms: Some(1),
        completed_at_ms: Some(2),
        duration_ms: Some(1),
    };
    registry
        .drop_turns(&lane.lane_ref, &["turn-2".to_owned()], Some(&kept))
        .await
        .unwrap();
    let counts = registry.counts(&lane.lane_ref).await.unwrap();
    assert_eq!((counts.turns, counts.items), (1, 1));
    let tail = registry.tail(&lane.lane_ref, 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].text.as_deref(), Some("one"));
    let after = registry.lane(&lane.lane_ref).await.unwrap().unwrap();
    assert_eq!(after.latest_turn, Some(kept));
    // The dropped text is no longer found.
    assert!(registry.search("two", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deleted_lane_is_gone_and_its_ref_retired() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t-del")).await.unwrap();
    registry
        .record(&[turn(&lane.lane_ref, "turn-1", "gone soon")])
        .await
        .unwrap();
    assert!(registry.delete_lane(&lane.lane_ref).await.unwrap());
    assert!(registry.lane(&lane.lane_ref).await.unwrap().is_none());
    assert!(registry.tail(&lane.lane_ref, 10).await.unwrap().is_empty());
    assert!(!registry.delete_lane(&lane.lane_ref).await.unwrap());
    // The thread may become a lane again, under a new ref.
    let again = registry.create_lane(&new_lane("t-del")).await.unwrap();
    assert_ne!(again.lane_ref, lane.lane_ref);
}
