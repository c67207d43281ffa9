//! `prepare` and `store`: a batch folded and bound ahead, stored later (ADR 0020, "Ingest,
//! eighth round"): in the order stored, from the lanes as stored then, and the same rows as
//! `record` notification by notification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_lane_ref, open_registry, raw};
use dispatch_registry::{
    Fact, LaneActivity, LaneStatus, NewEvent, Recorded, Registry, RegistryError, TurnRow,
    TurnStatus, Unstored,
};
use serde_json::json;
use sqlx::AssertSqlSafe;

/// A notification stored as an event, with its facts.
fn note(lane_ref: &str, method: &str, turn: &str, at_ms: i64, facts: Vec<Fact>) -> Recorded {
    Recorded {
        lane_ref: lane_ref.to_owned(),
        event: Some(NewEvent {
            method: method.to_owned(),
            turn_id: Some(turn.to_owned()),
            at_ms,
            params: json!({ "method": method, "at": at_ms }).to_string().into(),
        }),
        facts,
    }
}

fn started(lane_ref: &str, turn: &str, at_ms: i64) -> Recorded {
    note(
        lane_ref,
        "turn/started",
        turn,
        at_ms,
        vec![Fact::TurnStarted {
            turn_id: turn.to_owned(),
            at_ms,
        }],
    )
}

fn retrying(lane_ref: &str, turn: &str, at_ms: i64) -> Recorded {
    note(
        lane_ref,
        "error",
        turn,
        at_ms,
        vec![Fact::Error {
            turn_id: Some(turn.to_owned()),
            message: format!("reconnecting at {at_ms}"),
            will_retry: true,
            cause: Some("network".to_owned()),
            at_ms,
        }],
    )
}

/// A delta of `kind`: folded into its item, not stored as an event.
fn delta(lane_ref: &str, turn: &str, item: &str, kind: &str, text: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane_ref.to_owned(),
        event: None,
        facts: vec![Fact::ItemDelta {
            turn_id: Some(turn.to_owned()),
            item_id: item.to_owned(),
            kind: kind.to_owned(),
            delta: text.to_owned(),
            at_ms,
        }],
    }
}

fn item(lane_ref: &str, turn: &str, item: &str, kind: &str, text: &str, at_ms: i64) -> Recorded {
    note(
        lane_ref,
        "item/completed",
        turn,
        at_ms,
        vec![Fact::Item {
            turn_id: Some(turn.to_owned()),
            item_id: item.to_owned(),
            kind: kind.to_owned(),
            text: Some(text.to_owned()),
            status: Some("completed".to_owned()),
            at_ms,
        }],
    )
}

fn completed(lane_ref: &str, turn: &str, started: i64, at_ms: i64) -> Recorded {
    note(
        lane_ref,
        "turn/completed",
        turn,
        at_ms,
        vec![Fact::TurnCompleted {
            turn: TurnRow {
                turn_id: turn.to_owned(),
                status: TurnStatus::Completed,
                error: None,
                started_at_ms: Some(started),
                completed_at_ms: Some(at_ms),
                duration_ms: None,
            },
        }],
    )
}

/// Every row of the tables a batch writes, as text, with the lane's ref written `L` (the
/// lane's version, bumped once per UPDATE, and its creation time left out).
async fn dump(registry: &Registry, lane_ref: &str) -> Vec<String> {
    let mut conn = raw(registry.path()).await;
    let mut rows = Vec::new();
    for table in [
        "lanes",
        "turns",
        "items",
        "events",
        "lane_errors",
        "lane_events",
    ] {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let quoted: Vec<String> = columns
            .iter()
            .filter(|c| !matches!(c.as_str(), "version" | "created_at_ms"))
            .map(|c| format!("'{c}=' || quote({c})"))
            .collect();
        // Built from the fixed table names above and their column names.
        let text: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT '{table}: ' || {} FROM {table} ORDER BY rowid",
            quoted.join(" || ' ' || ")
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.extend(text.into_iter().map(|row| row.replace(lane_ref, "L")));
    }
    rows
}

/// A batch prepared before the batch ahead of it was stored reads the lane as that batch
/// left it: the second retry counts as attempt 2, and the deltas join in order.
#[tokio::test]
async fn a_batch_prepared_ahead_is_stored_on_top_of_the_batch_before_it() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let first = registry
        .prepare(vec![
            started(&lane, "t1", 10),
            delta(&lane, "t1", "m", "agent_message", "a", 11),
            retrying(&lane, "t1", 12),
        ])
        .unwrap();
    let second = registry
        .prepare(vec![
            retrying(&lane, "t1", 13),
            delta(&lane, "t1", "m2", "agent_message", "x", 14),
            delta(&lane, "t1", "m", "agent_message", "b", 15),
        ])
        .unwrap();
    registry.store(first).await.unwrap();
    let stored = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(stored.status, LaneStatus::Retrying);
    assert_eq!(stored.retry.map(|r| r.attempts), Some(1));
    registry.store(second).await.unwrap();
    let stored = registry.lane(&lane).await.unwrap().unwrap();
    // The output after the second retry ended it.
    assert_eq!((stored.status, stored.retry), (LaneStatus::Busy, None));
    let errors = registry.lane_errors(&lane, 10).await.unwrap();
    assert_eq!(errors.len(), 2);
    let items = registry.tail(&lane, 10).await.unwrap();
    let m = items.iter().find(|i| i.item_id == "m").unwrap();
    assert_eq!(m.text.as_deref(), Some("ab"));
    registry.close().await;
}

/// A lane deleted between preparing a batch and storing it: nothing of the batch is written,
/// and its notifications come back whole, to be stored without the lane's.
#[tokio::test]
async fn a_batch_whose_lane_was_deleted_after_it_was_prepared_comes_back_whole() {
    let (_dir, registry) = open_registry().await;
    let kept = new_lane_ref(&registry, "thread-1").await;
    let gone = new_lane_ref(&registry, "thread-2").await;
    let batch = vec![
        started(&kept, "t1", 10),
        started(&gone, "t2", 11),
        item(&kept, "t1", "m", "agent_message", "hello", 12),
    ];
    let prepared = registry.prepare(batch.clone()).unwrap();
    assert_eq!(prepared.recorded(), batch.as_slice());
    assert!(registry.delete_lane(&gone).await.unwrap());
    let Err(Unstored { error, recorded }) = registry.store(prepared).await else {
        panic!("a batch naming a deleted lane was stored");
    };
    assert!(
        matches!(&error, RegistryError::LaneNotFound { lane_ref, .. } if *lane_ref == gone),
        "{error:?}"
    );
    assert_eq!(recorded, batch);
    assert_eq!(
        registry.counts(&kept).await.unwrap(),
        LaneActivity::default()
    );
    assert_eq!(
        registry.lane(&kept).await.unwrap().unwrap().status,
        LaneStatus::Idle
    );
    let others: Vec<Recorded> = recorded
        .into_iter()
        .filter(|r| r.lane_ref == kept)
        .collect();
    registry
        .store(registry.prepare(others).unwrap())
        .await
        .unwrap();
    assert_eq!(
        registry.lane(&kept).await.unwrap().unwrap().status,
        LaneStatus::Busy
    );
    assert_eq!(registry.tail(&kept, 10).await.unwrap().len(), 1);
    registry.close().await;
}

/// The notifications of one turn with retries, output of several kinds and a turn that
/// replaces it: `prepare` and `store` of the whole batch write the same rows as `record` of
/// each notification alone (where no folding across notifications happens).
#[tokio::test]
async fn a_prepared_batch_stores_the_same_rows_as_each_notification_recorded_alone() {
    // After the lanes' creation, so that the batch moves their activity time.
    const T: i64 = 4_000_000_000_000;
    let lane_notes = |lane: &str| {
        vec![
            started(lane, "t1", T + 10),
            retrying(lane, "t1", T + 11),
            delta(lane, "t1", "m1", "agent_message", "a", T + 12),
            delta(lane, "t1", "m1", "agent_message", "b", T + 13),
            retrying(lane, "t1", T + 14),
            retrying(lane, "t1", T + 15),
            // Output that does not end a retry.
            item(lane, "t1", "u1", "user_message", "hi", T + 16),
            item(lane, "t1", "e1", "error", "oops", T + 17),
            delta(lane, "t1", "m1", "agent_message", "c", T + 18),
            retrying(lane, "t1", T + 19),
            started(lane, "t2", T + 20),
            retrying(lane, "t2", T + 21),
            // Output of the older turn does not end the newer one's retry.
            delta(lane, "t1", "m1", "agent_message", "d", T + 22),
            item(lane, "t1", "m1", "agent_message", "abcd", T + 23),
            retrying(lane, "t2", T + 24),
            delta(lane, "t2", "m2", "agent_message", "x", T + 25),
            delta(lane, "t2", "m2", "agent_message", "y", T + 26),
            retrying(lane, "t2", T + 27),
            completed(lane, "t1", T + 10, T + 28),
            delta(lane, "t2", "m2", "agent_message", "z", T + 29),
            retrying(lane, "t2", T + 30),
            retrying(lane, "t2", T + 31),
        ]
    };
    let (_dir_a, batched) = open_registry().await;
    let (_dir_b, alone) = open_registry().await;
    let a = new_lane_ref(&batched, "thread-1").await;
    let b = new_lane_ref(&alone, "thread-1").await;
    batched
        .store(batched.prepare(lane_notes(&a)).unwrap())
        .await
        .unwrap();
    for recorded in lane_notes(&b) {
        alone.record(&[recorded]).await.unwrap();
    }
    let (rows_a, rows_b) = (dump(&batched, &a).await, dump(&alone, &b).await);
    assert!(rows_a.len() > 20, "{rows_a:#?}");
    assert_eq!(rows_a, rows_b);
    batched.close().await;
    alone.close().await;
}
