//! Server requests: persisted, listed, answered once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_lane_ref, open_registry};
use dispatch_registry::{NewRequest, RegistryError, RequestStatus};
use serde_json::{Value, json};

fn request(lane_ref: &str, thread_id: &str, rpc_id: Value, at_ms: i64) -> NewRequest {
    NewRequest {
        lane_ref: lane_ref.to_owned(),
        thread_id: thread_id.to_owned(),
        turn_id: Some("turn-1".into()),
        item_id: Some("cmd-1".into()),
        method: "item/commandExecution/requestApproval".into(),
        rpc_id,
        params: json!({ "command": "cargo test", "cwd": "/src" }),
        at_ms,
    }
}

#[tokio::test]
async fn requests_are_pending_until_finished_exactly_once() {
    let (_dir, registry) = open_registry().await;
    let a = new_lane_ref(&registry, "thread-a").await;
    let b = new_lane_ref(&registry, "thread-b").await;

    let first = registry
        .insert_request(&request(&a, "thread-a", json!(0), 100))
        .await
        .unwrap();
    let second = registry
        .insert_request(&request(&b, "thread-b", json!("req-7"), 200))
        .await
        .unwrap();
    let third = registry
        .insert_request(&request(&a, "thread-a", json!(1), 300))
        .await
        .unwrap();
    assert!(first.id < second.id && second.id < third.id);
    assert_eq!(first.status, RequestStatus::Pending);
    assert_eq!(
        first.params,
        json!({ "command": "cargo test", "cwd": "/src" })
    );
    assert_eq!(
        registry.request(first.id).await.unwrap(),
        Some(first.clone())
    );

    let ids = |rows: Vec<dispatch_registry::RequestRow>| -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    };
    assert_eq!(
        ids(registry.pending_requests(None).await.unwrap()),
        [first.id, second.id, third.id]
    );
    assert_eq!(
        ids(registry.pending_requests(Some(&a)).await.unwrap()),
        [first.id, third.id]
    );

    // Lookup by JSON-RPC id is per thread and compares JSON values.
    assert_eq!(
        registry
            .pending_request_by_rpc_id("thread-b", &json!("req-7"))
            .await
            .unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        registry
            .pending_request_by_rpc_id("thread-a", &json!("req-7"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        registry
            .pending_request_by_rpc_id("thread-a", &json!("0"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        registry
            .pending_request_by_rpc_id("thread-a", &json!(0))
            .await
            .unwrap()
            .map(|r| r.id),
        Some(first.id)
    );

    // Answer once; a second answer (or a late "resolved elsewhere") loses.
    assert!(
        registry
            .finish_request(first.id, RequestStatus::Answered, Some("accept"), 400)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .finish_request(first.id, RequestStatus::Answered, Some("decline"), 401)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .finish_request(first.id, RequestStatus::ResolvedElsewhere, None, 402)
            .await
            .unwrap()
    );
    let answered = registry.request(first.id).await.unwrap().unwrap();
    assert_eq!(answered.status, RequestStatus::Answered);
    assert_eq!(answered.decision.as_deref(), Some("accept"));
    assert_eq!(answered.resolved_at_ms, Some(400));
    assert_eq!(
        registry
            .pending_request_by_rpc_id("thread-a", &json!(0))
            .await
            .unwrap(),
        None
    );

    assert!(
        registry
            .finish_request(second.id, RequestStatus::ResolvedElsewhere, None, 500)
            .await
            .unwrap()
    );
    assert!(
        registry
            .finish_request(third.id, RequestStatus::Cancelled, None, 600)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .finish_request(9999, RequestStatus::Answered, None, 700)
            .await
            .unwrap()
    );
    // "Finishing" as pending is not a transition.
    let fourth = registry
        .insert_request(&request(&b, "thread-b", json!(2), 800))
        .await
        .unwrap();
    assert!(
        !registry
            .finish_request(fourth.id, RequestStatus::Pending, None, 900)
            .await
            .unwrap()
    );

    assert_eq!(
        ids(registry.pending_requests(None).await.unwrap()),
        [fourth.id]
    );
    assert_eq!(
        registry.request(second.id).await.unwrap().unwrap().status,
        RequestStatus::ResolvedElsewhere
    );
    assert_eq!(
        registry.request(third.id).await.unwrap().unwrap().status,
        RequestStatus::Cancelled
    );
    assert_eq!(registry.request(12345).await.unwrap(), None);
    registry.close().await;
}

#[tokio::test]
async fn a_request_for_an_unknown_lane_is_refused() {
    let (_dir, registry) = open_registry().await;
    let err = registry
        .insert_request(&request("ghost0", "thread-x", json!(1), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::LaneNotFound { lane_ref, .. } if lane_ref == "ghost0"),
        "{err:?}"
    );
    assert!(registry.pending_requests(None).await.unwrap().is_empty());
    registry.close().await;
}
