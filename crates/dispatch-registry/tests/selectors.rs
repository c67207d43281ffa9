//! Resolving selectors: ref, thread id, @handle, exact title, ref prefix; ambiguity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{open_registry, raw};
use dispatch_registry::{Candidate, Registry, Resolution};
use sqlx::Connection;

/// Inserts a lane with a chosen ref (refs are random otherwise).
async fn lane(
    registry: &Registry,
    lane_ref: &str,
    thread_id: &str,
    title: Option<&str>,
    handle: Option<&str>,
) {
    let mut conn = raw(registry.path()).await;
    sqlx::query(
        "INSERT INTO lanes (ref, thread_id, title, handle, ownership, created_at_ms, \
         updated_at_ms) VALUES (?, ?, ?, ?, 'owned', 0, 0)",
    )
    .bind(lane_ref)
    .bind(thread_id)
    .bind(title)
    .bind(handle)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// The ref a selector resolves to; panics unless exactly one lane was found.
async fn found(registry: &Registry, selector: &str) -> String {
    match registry.resolve(selector).await.unwrap() {
        Resolution::Found(lane) => lane.lane_ref,
        other => panic!("{selector:?}: expected one lane, got {other:?}"),
    }
}

/// The candidate refs of an ambiguous selector; panics otherwise.
async fn ambiguous(registry: &Registry, selector: &str) -> Vec<String> {
    match registry.resolve(selector).await.unwrap() {
        Resolution::Ambiguous(candidates) => candidates
            .into_iter()
            .map(|candidate| candidate.lane_ref)
            .collect(),
        other => panic!("{selector:?}: expected ambiguity, got {other:?}"),
    }
}

async fn fixture() -> (tempfile::TempDir, Registry) {
    let (dir, registry) = open_registry().await;
    // Refs share prefixes: "ab" is ambiguous, "abc" is not (abc123 vs abd456 vs ab9xyz).
    lane(
        &registry,
        "abc123",
        "thread-aaaa",
        Some("alpha"),
        Some("ops"),
    )
    .await;
    lane(
        &registry,
        "abd456",
        "thread-bbbb",
        Some("beta"),
        Some("dev"),
    )
    .await;
    lane(
        &registry,
        "ab9xyz",
        "thread-cccc",
        Some("twin"),
        Some("solo"),
    )
    .await;
    lane(&registry, "Zq0000", "thread-dddd", Some("twin"), None).await;
    // Titles that look like other selectors lose to those selectors.
    lane(&registry, "title1", "thread-eeee", Some("abc123"), None).await;
    lane(
        &registry,
        "title2",
        "thread-ffff",
        Some("thread-bbbb"),
        None,
    )
    .await;
    lane(&registry, "title3", "thread-gggg", Some("Zq"), None).await;
    (dir, registry)
}

#[tokio::test]
async fn exact_ref_and_thread_id_win_over_everything() {
    let (_dir, registry) = fixture().await;
    // "abc123" is also the title of title1: the ref wins.
    assert_eq!(found(&registry, "abc123").await, "abc123");
    // "thread-bbbb" is also the title of title2: the thread id wins.
    assert_eq!(found(&registry, "thread-bbbb").await, "abd456");
    assert_eq!(found(&registry, "thread-dddd").await, "Zq0000");
    registry.close().await;
}

#[tokio::test]
async fn handles_resolve_with_an_at_sign() {
    let (_dir, registry) = fixture().await;
    assert_eq!(found(&registry, "@solo").await, "ab9xyz");
    assert_eq!(found(&registry, "@ops").await, "abc123");
    assert_eq!(found(&registry, "@dev").await, "abd456");
    // Without '@' a handle is not a selector.
    assert_eq!(
        registry.resolve("solo").await.unwrap(),
        Resolution::NotFound
    );
    assert_eq!(
        registry.resolve("@nobody").await.unwrap(),
        Resolution::NotFound
    );
    assert_eq!(registry.resolve("@").await.unwrap(), Resolution::NotFound);
    registry.close().await;
}

#[tokio::test]
async fn unique_ref_prefixes_resolve_and_shared_ones_are_ambiguous() {
    let (_dir, registry) = fixture().await;
    assert_eq!(found(&registry, "abc").await, "abc123");
    assert_eq!(found(&registry, "abd45").await, "abd456");
    assert_eq!(found(&registry, "ab9").await, "ab9xyz");
    assert_eq!(found(&registry, "Z").await, "Zq0000");
    // Prefixes are case-sensitive: "z" matches nothing, "ABC" neither.
    assert_eq!(registry.resolve("z").await.unwrap(), Resolution::NotFound);
    assert_eq!(registry.resolve("ABC").await.unwrap(), Resolution::NotFound);
    // "ab" and "a" match three refs; candidates come ordered by ref with their details.
    let expected = vec![
        Candidate {
            lane_ref: "ab9xyz".into(),
            thread_id: "thread-cccc".into(),
            title: Some("twin".into()),
            handle: Some("solo".into()),
        },
        Candidate {
            lane_ref: "abc123".into(),
            thread_id: "thread-aaaa".into(),
            title: Some("alpha".into()),
            handle: Some("ops".into()),
        },
        Candidate {
            lane_ref: "abd456".into(),
            thread_id: "thread-bbbb".into(),
            title: Some("beta".into()),
            handle: Some("dev".into()),
        },
    ];
    for selector in ["ab", "a"] {
        assert_eq!(
            registry.resolve(selector).await.unwrap(),
            Resolution::Ambiguous(expected.clone()),
            "{selector}"
        );
    }
    // "title" prefixes title1..title3.
    assert_eq!(ambiguous(&registry, "title").await.len(), 3);
    registry.close().await;
}

#[tokio::test]
async fn an_exact_title_wins_over_a_ref_prefix() {
    let (_dir, registry) = fixture().await;
    // "Zq" is a prefix of Zq0000 and the exact title of title3: the title wins, so a lane
    // named like the start of another lane's ref is never shadowed.
    assert_eq!(found(&registry, "Zq").await, "title3");
    assert_eq!(found(&registry, "Zq0").await, "Zq0000");
    assert_eq!(found(&registry, "alpha").await, "abc123");
    assert_eq!(
        ambiguous(&registry, "twin").await,
        vec!["Zq0000".to_owned(), "ab9xyz".to_owned()]
    );
    // Titles must match exactly.
    assert_eq!(
        registry.resolve("alph").await.unwrap(),
        Resolution::NotFound
    );
    assert_eq!(
        registry.resolve("Alpha").await.unwrap(),
        Resolution::NotFound
    );
    assert_eq!(registry.resolve("").await.unwrap(), Resolution::NotFound);
    registry.close().await;
}
