//! What is derived from items kept apart from the batches that store them (migrations 0012
//! and 0013): new items sit above `items_mark`, changed texts are marked pending, and a
//! search, the registry's opening and `Registry::fold_items` bring the index and the
//! per-lane counts up to date, so a search never misses a stored item and never finds a text
//! that was replaced or deleted, and `history` counts every item once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{new_lane, open_registry, pool_at_version, raw, registry_path};
use dispatch_registry::{Fact, Recorded, Registry};

/// An agent message's text, replaced (`item/started` or `item/completed`).
fn said(lane_ref: &str, item_id: &str, text: &str, at_ms: i64) -> Recorded {
    item_of(lane_ref, item_id, "agent_message", text, at_ms)
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

/// Items waiting to be indexed: above the mark, or with a pending text.
async fn pending(path: &Path) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM items_fts_pending) \
         + (SELECT count(*) FROM items WHERE id > (SELECT upto FROM items_mark))",
    )
    .fetch_one(&mut raw(path).await)
    .await
    .expect("count pending items")
}

/// A fact of an item of `kind` with `text`, in turn-1.
fn item_of(lane_ref: &str, item_id: &str, kind: &str, text: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: vec![Fact::Item {
            turn_id: Some("turn-1".to_owned()),
            item_id: item_id.to_owned(),
            kind: kind.to_owned().into(),
            text: Some(text.to_owned()),
            status: None,
            at_ms,
        }]
        .into(),
    }
}

/// `history`'s counts of a lane: items, messages, tool calls.
async fn counted(registry: &Registry, lane_ref: &str) -> (i64, i64, i64) {
    let rows = registry
        .history_overview(Some(lane_ref), true, 10)
        .await
        .unwrap();
    let row = rows.first().expect("the lane's history");
    (row.items, row.messages, row.tool_calls)
}

/// The highest item id that the index and the counts have seen.
async fn mark(path: &Path) -> i64 {
    sqlx::query_scalar("SELECT upto FROM items_mark")
        .fetch_one(&mut raw(path).await)
        .await
        .expect("read the mark")
}

/// FTS5's own check that the index matches the items' texts (rank 1: against the content
/// table too, not only the index's own structure; every item these tests store has a text).
async fn index_is_consistent(path: &Path) {
    sqlx::query("INSERT INTO items_fts (items_fts, rank) VALUES ('integrity-check', 1)")
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
    assert_eq!(registry.fold_items().await.unwrap(), 1);
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
    assert_eq!(registry.fold_items().await.unwrap(), 0);
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
    registry.fold_items().await.unwrap();
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

/// SQLite gives a new item the highest id plus one, so once the item at the mark is deleted a
/// new item may take an id the index and the counts have seen already: the mark moves down
/// with the deletion, and such an item is folded like any other.
#[tokio::test]
async fn an_item_stored_after_the_item_at_the_mark_was_deleted_is_folded_too() {
    let (_dir, registry) = open_registry().await;
    let path = registry.path().to_path_buf();
    let kept = registry.create_lane(&new_lane("t-kept")).await.unwrap();
    let gone = registry.create_lane(&new_lane("t-gone")).await.unwrap();
    registry
        .record(&[
            said(&kept.lane_ref, "k1", "okapi first", 1),
            said(&gone.lane_ref, "g1", "okapi gone", 2),
        ])
        .await
        .unwrap();
    assert_eq!(registry.fold_items().await.unwrap(), 2);
    assert_eq!(mark(&path).await, 2);
    assert!(registry.delete_lane(&gone.lane_ref).await.unwrap());
    assert_eq!(
        mark(&path).await,
        1,
        "the mark follows the deleted item down"
    );

    registry
        .record(&[said(&kept.lane_ref, "k2", "okapi second", 3)])
        .await
        .unwrap();
    let reused: i64 = sqlx::query_scalar("SELECT id FROM items WHERE item_id = 'k2'")
        .fetch_one(&mut raw(&path).await)
        .await
        .unwrap();
    assert_eq!(reused, 2, "the new item took the deleted one's id");
    assert_eq!(pending(&path).await, 1);
    assert_eq!(counted(&registry, &kept.lane_ref).await, (2, 2, 0));
    let hits = registry.search("second", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(counted(&registry, &kept.lane_ref).await, (2, 2, 0));
    index_is_consistent(&path).await;
}

/// `history` counts an item once whether it is folded into `lane_kinds` or not, and by its
/// kind now, also when the kind changed before or after the fold.
#[tokio::test]
async fn history_counts_each_item_once_before_and_after_a_fold() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t-1")).await.unwrap();
    let r = lane.lane_ref.as_str();
    registry
        .record(&[
            item_of(r, "m1", "agent_message", "hello", 1),
            item_of(r, "m2", "agent_message", "world", 2),
            item_of(r, "c1", "command", "ls", 3),
        ])
        .await
        .unwrap();
    assert_eq!(counted(&registry, r).await, (3, 2, 1), "none folded yet");
    assert_eq!(registry.fold_items().await.unwrap(), 3);
    assert_eq!(counted(&registry, r).await, (3, 2, 1), "all folded");

    // A folded item and a new one change kind (the same item id, another kind).
    registry
        .record(&[item_of(r, "n1", "agent_message", "new", 4)])
        .await
        .unwrap();
    registry
        .record(&[
            item_of(r, "m2", "command", "pwd", 5),
            item_of(r, "n1", "command", "whoami", 6),
        ])
        .await
        .unwrap();
    assert_eq!(counted(&registry, r).await, (4, 1, 3), "before the fold");
    registry.fold_items().await.unwrap();
    assert_eq!(counted(&registry, r).await, (4, 1, 3), "after the fold");
    assert_eq!(
        registry.fold_items().await.unwrap(),
        0,
        "nothing left to fold"
    );
}

/// A registry written by the previous schema (every item counted, some indexed, some
/// pending) is folded in full when it is opened with the mark.
#[tokio::test]
async fn a_registry_of_schema_12_keeps_its_index_and_counts() {
    let (_dir, path) = registry_path();
    let pool = pool_at_version(&path, 12).await;
    for sql in [
        "INSERT INTO lanes (ref, thread_id, ownership, created_at_ms, updated_at_ms) \
         VALUES ('abc123', 't-1', 'owned', 1, 1)",
        "INSERT INTO items (lane_ref, item_id, turn_id, kind, text, at_ms) \
         VALUES ('abc123', 'm1', 'turn-1', 'agent_message', 'zebra draft', 1)",
        // What `index_pending` of schema 12 did.
        "INSERT INTO items_fts (rowid, text) SELECT i.id, i.text FROM items_fts_pending p \
         JOIN items i ON i.id = p.item",
        "DELETE FROM items_fts_pending",
        "UPDATE items SET text = 'zebra final' WHERE item_id = 'm1'",
        "INSERT INTO items (lane_ref, item_id, turn_id, kind, text, at_ms) \
         VALUES ('abc123', 'c1', 'turn-1', 'command', 'okapi run', 2)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    dispatch_registry::migrate(&path).await.unwrap();
    let registry = Registry::open(&path).await.unwrap();
    assert_eq!(mark(&path).await, 2);
    assert_eq!(pending(&path).await, 0, "folded when opened");
    assert_eq!(indexed(&path, "draft").await, 0);
    assert_eq!(indexed(&path, "final").await, 1);
    assert_eq!(indexed(&path, "okapi").await, 1);
    index_is_consistent(&path).await;
    assert_eq!(counted(&registry, "abc123").await, (2, 1, 1));
    registry.close().await;
}
