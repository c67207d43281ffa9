//! `inspect` never creates, migrates or writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{build_v1_registry, has_sidecars, registry_path};
use dispatch_registry::{LATEST_SCHEMA_VERSION, NewAction, Outcome, Registry, inspect};

#[tokio::test]
async fn inspecting_a_missing_registry_creates_nothing() {
    let (dir, path) = registry_path();
    let inspection = inspect(&path).await.expect("inspect missing");
    assert!(!inspection.exists);
    assert_eq!(inspection.schema_version, None);
    assert_eq!(inspection.supported_version, LATEST_SCHEMA_VERSION);
    assert!(inspection.quick_check.is_empty());
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn inspecting_a_closed_registry_reports_version_and_writes_nothing() {
    let (_dir, path) = registry_path();
    Registry::open(&path).await.unwrap().close().await;
    assert!(!has_sidecars(&path));
    let bytes = std::fs::read(&path).unwrap();

    let inspection = inspect(&path).await.expect("inspect");
    assert!(inspection.exists);
    assert_eq!(inspection.schema_version, Some(LATEST_SCHEMA_VERSION));
    assert_eq!(inspection.supported_version, LATEST_SCHEMA_VERSION);
    assert_eq!(inspection.quick_check, vec!["ok".to_owned()]);

    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(!has_sidecars(&path));
}

#[tokio::test]
async fn inspecting_an_open_registry_works_alongside_the_writer() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();
    registry
        .record_action(&NewAction {
            op: "daemon.start".into(),
            lane: None,
            outcome: Outcome::Ok,
            error_code: None,
            detail: None,
        })
        .await
        .unwrap();

    let inspection = inspect(&path).await.expect("inspect while open");
    assert_eq!(inspection.schema_version, Some(LATEST_SCHEMA_VERSION));
    assert_eq!(inspection.quick_check, vec!["ok".to_owned()]);

    // The writer is unaffected.
    assert_eq!(registry.actions(10).await.unwrap().len(), 1);
    registry.close().await;
}

#[tokio::test]
async fn inspecting_an_old_registry_reports_its_version_without_migrating() {
    let (_dir, path) = registry_path();
    build_v1_registry(&path).await;
    let bytes = std::fs::read(&path).unwrap();

    let inspection = inspect(&path).await.expect("inspect old");
    assert_eq!(inspection.schema_version, Some(1));
    assert_eq!(inspection.supported_version, LATEST_SCHEMA_VERSION);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
