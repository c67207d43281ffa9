//! `Registry::open`, the action log and lane counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{has_sidecars, mode, raw, registry_path, user_version, with_suffix};
use dispatch_registry::{
    LATEST_SCHEMA_VERSION, LaneCounts, NewAction, Outcome, Registry, RegistryError, inspect,
    migrate,
};
use sqlx::{ConnectOptions, Connection};

fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}

#[tokio::test]
async fn open_creates_a_private_wal_registry_at_the_latest_version() {
    let (_dir, path) = registry_path();
    assert!(!path.exists());

    let registry = Registry::open(&path).await.expect("open new registry");
    assert_eq!(registry.path(), path.as_path());
    assert_eq!(mode(&path), 0o600);
    let wal = with_suffix(&path, "-wal");
    assert!(wal.exists(), "WAL file exists while the registry is open");
    assert_eq!(mode(&wal), 0o600, "WAL file inherits the database's mode");

    assert_eq!(LATEST_SCHEMA_VERSION, 13);
    assert_eq!(
        registry.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(registry.quick_check().await.unwrap(), vec!["ok".to_owned()]);
    assert_eq!(registry.lane_counts().await.unwrap(), LaneCounts::default());

    let mut conn = raw(&path).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    conn.close().await.unwrap();
    registry.close().await;

    assert_eq!(user_version(&path).await, LATEST_SCHEMA_VERSION);
    let reopened = Registry::open(&path).await.expect("reopen");
    assert_eq!(
        reopened.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(reopened.quick_check().await.unwrap(), vec!["ok".to_owned()]);
    reopened.close().await;
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn open_treats_a_zero_byte_file_as_new() {
    let (_dir, path) = registry_path();
    std::fs::write(&path, b"").unwrap();
    let registry = Registry::open(&path).await.expect("open empty file");
    assert_eq!(
        registry.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    registry.close().await;
}

#[tokio::test]
async fn open_reports_a_missing_parent_directory_as_io() {
    let (_dir, path) = registry_path();
    let nested = path.join("nope").join("registry.db");
    let err = Registry::open(&nested).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Io { path, .. } if path == &nested),
        "{err:?}"
    );
}

#[tokio::test]
async fn actions_round_trip_newest_first_and_honour_the_limit() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();
    let before = now_ms();

    let new_actions = [
        NewAction {
            op: "lane.create".into(),
            lane: Some("abc123".into()),
            outcome: Outcome::Ok,
            error_code: None,
            detail: Some("created".into()),
        },
        NewAction {
            op: "lane.send".into(),
            lane: Some("abc123".into()),
            outcome: Outcome::Error,
            error_code: Some("E_BUSY".into()),
            detail: Some("lane is busy".into()),
        },
        NewAction {
            op: "daemon.start".into(),
            lane: None,
            outcome: Outcome::Ok,
            error_code: None,
            detail: None,
        },
    ];
    let mut ids = Vec::new();
    for action in &new_actions {
        ids.push(registry.record_action(action).await.unwrap());
    }
    let after = now_ms();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    let all = registry.actions(10).await.unwrap();
    assert_eq!(all.len(), 3);
    for (got, (want, id)) in all.iter().zip(new_actions.iter().zip(&ids).rev()) {
        assert_eq!(got.id, *id);
        assert_eq!(got.op, want.op);
        assert_eq!(got.lane, want.lane);
        assert_eq!(got.outcome, want.outcome);
        assert_eq!(got.error_code, want.error_code);
        assert_eq!(got.detail, want.detail);
        assert!((before..=after).contains(&got.at_ms), "at_ms {}", got.at_ms);
    }

    let newest_two: Vec<i64> = registry
        .actions(2)
        .await
        .unwrap()
        .iter()
        .map(|action| action.id)
        .collect();
    assert_eq!(newest_two, vec![ids[2], ids[1]]);
    assert!(registry.actions(0).await.unwrap().is_empty());
    registry.close().await;

    let reopened = Registry::open(&path).await.unwrap();
    assert_eq!(
        reopened.actions(10).await.unwrap(),
        all,
        "log survives reopen"
    );
    reopened.close().await;
}

#[tokio::test]
async fn lane_counts_group_lanes_by_status() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();

    let mut conn = raw(&path).await;
    let lanes = [
        ("aaaaaa", "idle"),
        ("bbbbbb", "idle"),
        ("cccccc", "busy"),
        ("dddddd", "waiting_approval"),
        ("eeeeee", "archived"),
    ];
    for (lane_ref, status) in lanes {
        sqlx::query(
            "INSERT INTO lanes (ref, thread_id, ownership, status, created_at_ms, updated_at_ms) \
             VALUES (?, ?, 'owned', ?, 0, 0)",
        )
        .bind(lane_ref)
        .bind(format!("thread-{lane_ref}"))
        .bind(status)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let short_ref = sqlx::query(
        "INSERT INTO lanes (ref, thread_id, ownership, created_at_ms, updated_at_ms) \
         VALUES ('short', 't', 'owned', 0, 0)",
    )
    .execute(&mut conn)
    .await;
    assert!(short_ref.is_err(), "refs must be exactly 6 characters");
    conn.close().await.unwrap();

    let counts = registry.lane_counts().await.unwrap();
    assert_eq!(
        counts,
        LaneCounts {
            total: 5,
            idle: 2,
            busy: 1,
            retrying: 0,
            waiting_approval: 1,
            error: 0,
            archived: 1,
        }
    );
    registry.close().await;
}

/// Asserts that `err` is `Corrupt` about `path`.
fn assert_corrupt(err: &RegistryError, path: &std::path::Path) {
    assert!(
        matches!(err, RegistryError::Corrupt { path: p, .. } if p == path),
        "expected Corrupt for {}, got {err:?}",
        path.display()
    );
}

#[tokio::test]
async fn garbage_is_corrupt_and_left_untouched() {
    let (_dir, path) = registry_path();
    let bytes = common::garbage(8192);
    std::fs::write(&path, &bytes).unwrap();

    assert_corrupt(&Registry::open(&path).await.unwrap_err(), &path);
    assert_corrupt(&migrate(&path).await.unwrap_err(), &path);
    assert_corrupt(&inspect(&path).await.unwrap_err(), &path);

    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(!has_sidecars(&path));
}

#[tokio::test]
async fn sqlite_header_followed_by_garbage_is_corrupt_and_left_untouched() {
    let (_dir, path) = registry_path();
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(common::garbage(8192));
    std::fs::write(&path, &bytes).unwrap();

    assert_corrupt(&Registry::open(&path).await.unwrap_err(), &path);
    assert_corrupt(&migrate(&path).await.unwrap_err(), &path);
    assert_corrupt(&inspect(&path).await.unwrap_err(), &path);

    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_not_a_registry() {
    let (_dir, path) = registry_path();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (body TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let err = Registry::open(&path).await.unwrap_err();
    assert_corrupt(&err, &path);
    assert!(err.to_string().contains("not a dispatch registry"), "{err}");
    assert_corrupt(&migrate(&path).await.unwrap_err(), &path);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
