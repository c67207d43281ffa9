//! The items' full-text index kept apart from the batches that store them (migration 0012):
//! storing marks items pending, and a search, the registry's opening and
//! `Registry::index_pending` bring the index up to date, so a search never misses a stored
//! item and never finds a text that was replaced or deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{new_lane, open_registry, raw, registry_path};
use dispatch_registry::{Fact, Recorded, Registry};

/// An agent message's text, replaced (`item/started` or `item/completed`).
fn said(lane_ref: &str, item_id: &str, text: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: vec![Fact::Item {
            turn_id: Some("turn-1".to_owned()),
            item_id: item_id.to_owned(),
            kind: "agent_message".into(),
            text: Some(text.to_owned()),
            status: None,
            at_ms,
        }]
        .into(),
    }
}

/// A delta appended to an agent message.
fn appended(lane_ref: &str, item_id: &str, delta: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: vec![Fact::ItemDelta {
            turn_id: Some("turn-1".to_owned()),
            item_id: item_id.to_owned(),
            kind: "agent_message".into(),
            delta: delta.to_owned(),
            at_ms,
        }]
        .into(),
    }
}

/// Items the index finds for `word`, read behind the registry's back (so nothing is indexed
/// first).
async fn indexed(path: &Path, word: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items_fts WHERE items_fts MATCH ?")
        .bind(format!("\"{word}\""))
        .fetch_one(&mut raw(path).await)
        .await
        .expect("query the index")
}

/// Items waiting to be indexed.
async fn pending(path: &Path) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items_fts_pending")
        .fetch_one(&mut raw(path).await)
        .await
        .expect("count pending items")
}

/// FTS5's own check that the index matches the items' texts.
async fn index_is_consistent(path: &Path) {
    sqlx::query("INSERT INTO items_fts (items_fts) VALUES ('integrity-check')")
        .execute(&mut raw(path).await)
        .await
        .expect("the index matches the items");
}

#[tokio::test]
async fn a_search_right_after_storing_finds_what_the_batch_stored() {
    let (_dir, registry) = open_registry().await;
    let path = registry.path().to_path_buf();
    let lane = registry.create_lane(&new_lane("t-1")).await.unwrap();
    registry
        .record(&[said(&lane.lane_ref, "m1", "the zebra crossing", 1)])
        .await
        .unwrap();
    // Stored, not indexed yet: the batch only marked the item.
    assert_eq!(pending(&path).await, 1);
    assert_eq!(indexed(&path, "zebra").await, 0);

    let hits = registry.search("zebra", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].item_id.as_deref(), Some("m1"));
    assert_eq!(pending(&path).await, 0);
    assert_eq!(indexed(&path, "zebra").await, 1);
    index_is_consistent(&path).await;
}

/// A search with nothing pending is a read: it answers while another connection holds the
/// write lock (an ingest batch being stored), instead of waiting for it (5 s, then "locked").
#[tokio::test]
async fn a_search_with_nothing_pending_takes_no_write_lock() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t-1")).await.unwrap();
    registry
        .record(&[said(&lane.lane_ref, "m1", "the zebra crossing", 1)])
        .await
        .unwrap();
    assert_eq!(registry.search("zebra", 10).await.unwrap().len(), 1);
    let mut writer = raw(registry.path()).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let hits = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        registry.search("zebra", 10),
    )
    .await
    .expect("the search waited for the write lock")
    .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
}

#[tokio::test]
async fn texts_changed_after_indexing_are_found_as_they_are_now() {
    let (_dir, registry) = open_registry().await;
    let path = registry.path().to_path_buf();
    let lane = registry.create_lane(&new_lane("t-1")).await.unwrap();
    let lane_ref = lane.lane_ref.as_str();
    registry
        .record(&[said(lane_ref, "m1", "first draft", 1)])
        .await
        .unwrap();
    assert_eq!(registry.index_pending().await.unwrap(), 1);
    // Changed three times before the index hears of it: replaced, then appended to twice
    // in two batches (the index must still drop "draft", which it holds).
    registry
        .record(&[
            said(lane_ref, "m1", "second", 2),
            appended(lane_ref, "m1", " cut", 3),
        ])
        .await
        .unwrap();
    registry
        .record(&[appended(lane_ref, "m1", " final", 4)])
        .await
        .unwrap();
    assert_eq!(pending(&path).await, 1);
    assert!(registry.search("draft", 10).await.unwrap().is_empty());
    assert_eq!(registry.search("cut final", 10).await.unwrap().len(), 1);
    assert_eq!(registry.index_pending().await.unwrap(), 0);
    index_is_consistent(&path).await;
}

#[tokio::test]
async fn deleted_items_leave_the_index_whether_they_were_indexed_or_pending() {
    let (_dir, registry) = open_registry().await;
    let path = registry.path().to_path_buf();
    let kept = registry.create_lane(&new_lane("t-kept")).await.unwrap();
    let indexed_then_changed = registry.create_lane(&new_lane("t-a")).await.unwrap();
    let never_indexed = registry.create_lane(&new_lane("t-b")).await.unwrap();
    registry
        .record(&[
            said(&kept.lane_ref, "k", "okapi stays", 1),
            said(&indexed_then_changed.lane_ref, "a", "okapi old", 1),
        ])
        .await
        .unwrap();
    registry.index_pending().await.unwrap();
    registry
        .record(&[
            said(&indexed_then_changed.lane_ref, "a", "okapi new", 2),
            said(&never_indexed.lane_ref, "b", "okapi fresh", 2),
        ])
        .await
        .unwrap();
    assert_eq!(pending(&path).await, 2);
    assert!(
        registry
            .delete_lane(&indexed_then_changed.lane_ref)
            .await
            .unwrap()
    );
    assert!(registry.delete_lane(&never_indexed.lane_ref).await.unwrap());
    assert_eq!(pending(&path).await, 0);
    index_is_consistent(&path).await;
    let hits = registry.search("okapi", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].lane_ref, kept.lane_ref);
}

#[tokio::test]
async fn items_left_pending_by_a_crash_are_indexed_when_the_registry_opens() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();
    let lane = registry.create_lane(&new_lane("t-1")).await.unwrap();
    registry
        .record(&[said(&lane.lane_ref, "m1", "the last words", 1)])
        .await
        .unwrap();
    // What a kill -9 leaves: the batch committed, its items pending.
    registry.close().await;
    assert_eq!(pending(&path).await, 1);
    assert_eq!(indexed(&path, "words").await, 0);

    let reopened = Registry::open(&path).await.unwrap();
    assert_eq!(pending(&path).await, 0);
    assert_eq!(indexed(&path, "words").await, 1);
    index_is_consistent(&path).await;
    reopened.close().await;
}
