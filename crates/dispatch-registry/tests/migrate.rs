//! Schema versions: old registries are refused by `open` and upgraded by `migrate`; newer ones
//! are refused by both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{action_rows, backups, build_v1_registry, mode, raw, registry_path, user_version};
use dispatch_registry::{
    LATEST_SCHEMA_VERSION, MigrationStatus, Outcome, Registry, RegistryError, inspect, migrate,
};
use sqlx::Connection;

#[tokio::test]
async fn an_old_registry_is_refused_then_backed_up_and_migrated() {
    let (dir, path) = registry_path();
    build_v1_registry(&path).await;
    let v1_bytes = std::fs::read(&path).unwrap();

    let err = Registry::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::SchemaTooOld { path: p, found: 1, supported: LATEST_SCHEMA_VERSION } if p == &path),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        v1_bytes,
        "open must not touch it"
    );

    let report = migrate(&path).await.expect("migrate");
    assert_eq!(report.status, MigrationStatus::Migrated);
    assert_eq!(report.from_version, Some(1));
    assert_eq!(report.to_version, LATEST_SCHEMA_VERSION);
    let backup = report.backup.clone().expect("a backup");
    assert_eq!(backups(dir.path()), vec![backup.clone()]);
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("registry.db.bak-v1-"), "{name}");
    assert!(
        name["registry.db.bak-v1-".len()..].parse::<u64>().is_ok(),
        "{name}"
    );
    assert_eq!(mode(&backup), 0o600);

    // The backup is a readable registry at version 1 holding the old data.
    let backup_inspection = inspect(&backup).await.expect("inspect backup");
    assert_eq!(backup_inspection.schema_version, Some(1));
    assert_eq!(backup_inspection.quick_check, vec!["ok".to_owned()]);
    let mut backup_conn = raw(&backup).await;
    let backup_rows = action_rows(&mut backup_conn).await;
    let lanes_in_backup: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'lanes'",
    )
    .fetch_one(&mut backup_conn)
    .await
    .unwrap();
    backup_conn.close().await.unwrap();
    assert_eq!(lanes_in_backup, 0, "the backup predates migration 2");
    assert_eq!(
        backup_rows,
        vec![
            ("old.first".into(), None, "ok".into(), None, None),
            (
                "old.second".into(),
                Some("abc123".into()),
                "error".into(),
                Some("E_OLD".into()),
                Some("from v1".into())
            ),
        ]
    );

    // The migrated registry opens at the latest version with its data preserved.
    assert_eq!(user_version(&path).await, LATEST_SCHEMA_VERSION);
    let registry = Registry::open(&path).await.expect("open migrated");
    assert_eq!(
        registry.schema_version().await.unwrap(),
        LATEST_SCHEMA_VERSION
    );
    assert_eq!(registry.quick_check().await.unwrap(), vec!["ok".to_owned()]);
    assert_eq!(registry.lane_counts().await.unwrap().total, 0);
    let actions = registry.actions(10).await.unwrap();
    let summary: Vec<(i64, &str, Outcome)> = actions
        .iter()
        .map(|action| (action.at_ms, action.op.as_str(), action.outcome))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2000, "old.second", Outcome::Error),
            (1000, "old.first", Outcome::Ok)
        ]
    );
    registry.close().await;

    // A second run has nothing to do and takes no backup.
    let again = migrate(&path).await.expect("migrate again");
    assert_eq!(again.status, MigrationStatus::UpToDate);
    assert_eq!(again.from_version, Some(LATEST_SCHEMA_VERSION));
    assert_eq!(again.to_version, LATEST_SCHEMA_VERSION);
    assert_eq!(again.backup, None);
    assert_eq!(backups(dir.path()), vec![backup]);
}

#[tokio::test]
async fn a_newer_registry_is_refused_by_open_and_migrate() {
    let (dir, path) = registry_path();
    Registry::open(&path).await.unwrap().close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let bytes = std::fs::read(&path).unwrap();

    for err in [
        Registry::open(&path).await.unwrap_err(),
        migrate(&path).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, RegistryError::SchemaTooNew { path: p, found: 99, supported: LATEST_SCHEMA_VERSION } if p == &path),
            "{err:?}"
        );
    }
    assert!(backups(dir.path()).is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let inspection = inspect(&path).await.unwrap();
    assert_eq!(inspection.schema_version, Some(99));
    assert_eq!(inspection.supported_version, LATEST_SCHEMA_VERSION);
}

#[tokio::test]
async fn migrate_creates_a_missing_registry_without_a_backup() {
    let (dir, path) = registry_path();
    let report = migrate(&path).await.expect("migrate missing");
    assert_eq!(report.status, MigrationStatus::Created);
    assert_eq!(report.from_version, None);
    assert_eq!(report.to_version, LATEST_SCHEMA_VERSION);
    assert_eq!(report.backup, None);
    assert!(backups(dir.path()).is_empty());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(user_version(&path).await, LATEST_SCHEMA_VERSION);
}

/// Schema 6 keys items by turn and makes handles unique: a version-5 registry with duplicate
/// handles and indexed items keeps its items (and their search index) and gets unique handles.
#[tokio::test]
async fn version_6_keeps_items_and_search_and_makes_handles_unique() {
    let (_dir, path) = registry_path();
    let pool = common::pool_at_version(&path, 5).await;
    sqlx::query(
        "INSERT INTO lanes (ref, thread_id, title, handle, ownership, status, created_at_ms, \
         updated_at_ms) VALUES \
         ('aaaaaa', 't-1', 'first', 'docs', 'owned', 'idle', 1, 1), \
         ('bbbbbb', 't-2', 'second', 'docs', 'owned', 'idle', 2, 2); \
         INSERT INTO items (lane_ref, item_id, turn_id, kind, text, at_ms) VALUES \
         ('aaaaaa', 'msg_1', 'turn-1', 'agent_message', 'the flaky test is fixed', 10), \
         ('bbbbbb', 'msg_1', NULL, 'agent_message', 'nothing here', 11);",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("PRAGMA user_version = 5")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let report = migrate(&path).await.expect("migrate");
    assert_eq!(report.from_version, Some(5));
    let registry = Registry::open(&path).await.expect("open");
    let first = registry.lane("aaaaaa").await.unwrap().unwrap();
    let second = registry.lane("bbbbbb").await.unwrap().unwrap();
    assert_eq!(first.handle.as_deref(), Some("docs"), "the oldest keeps it");
    assert_eq!(second.handle.as_deref(), Some("docs-bbbbbb"));
    let items = registry.tail("aaaaaa", 10).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].turn_id.as_deref(), Some("turn-1"));
    assert_eq!(registry.tail("bbbbbb", 10).await.unwrap()[0].turn_id, None);
    let hits = registry.search("flaky", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "the search index still points at the items");
    assert_eq!(hits[0].item_id.as_deref(), Some("msg_1"));
    assert_eq!(registry.quick_check().await.unwrap(), vec!["ok".to_owned()]);
    registry.close().await;
    let mut conn = raw(&path).await;
    let duplicate = sqlx::query("UPDATE lanes SET handle = 'docs' WHERE ref = 'bbbbbb'")
        .execute(&mut conn)
        .await;
    assert!(duplicate.is_err(), "handles are unique");
    conn.close().await.unwrap();
}
