//! `record`: deriving lane state from notifications; items, errors, events and pruning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{has_sidecars, new_lane, new_lane_ref, open_registry, raw, registry_path};
use dispatch_registry::{
    ErrorRow, Fact, GoalRow, ItemRow, LaneActivity, LaneFilter, LaneStatus, NewEvent, Recorded,
    Registry, RegistryError, RetryRow, TurnRow, TurnStatus,
};
use serde_json::json;

/// A stored notification with its facts.
fn note(
    lane_ref: &str,
    method: &str,
    turn: Option<&str>,
    at_ms: i64,
    facts: Vec<Fact>,
) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: Some(NewEvent {
            method: method.to_owned().into(),
            turn_id: turn.map(str::to_owned),
            at_ms,
            params: json!({ "method": method, "at": at_ms }).to_string().into(),
        }),
        facts: facts.into(),
    }
}

/// A delta: folded, not stored.
fn delta(lane_ref: &str, turn: &str, item: &str, text: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: vec![Fact::ItemDelta {
            turn_id: Some(turn.to_owned()),
            item_id: item.to_owned(),
            kind: "agent_message".into(),
            delta: text.to_owned(),
            at_ms,
        }]
        .into(),
    }
}

fn item(
    turn: &str,
    item_id: &str,
    kind: &str,
    text: Option<&str>,
    status: &str,
    at_ms: i64,
) -> Fact {
    Fact::Item {
        turn_id: Some(turn.to_owned()),
        item_id: item_id.to_owned(),
        kind: kind.to_owned().into(),
        text: text.map(str::to_owned),
        status: Some(status.to_owned()),
        at_ms,
    }
}

fn turn_done(
    turn_id: &str,
    status: TurnStatus,
    error: Option<&str>,
    started: i64,
    done: i64,
) -> Fact {
    Fact::TurnCompleted {
        turn: TurnRow {
            turn_id: turn_id.to_owned(),
            status,
            error: error.map(str::to_owned),
            started_at_ms: Some(started),
            completed_at_ms: Some(done),
            duration_ms: None,
        },
    }
}

/// A stored notification of turn `turn` at `n` with one done item of `kind`, `item-{n}`,
/// whose text is `text {n}`.
fn item_note(lane_ref: &str, method: &str, turn: &str, kind: &str, n: i64) -> Recorded {
    let text = format!("text {n}");
    let fact = item(turn, &format!("item-{n}"), kind, Some(&text), "done", n);
    note(lane_ref, method, Some(turn), n, vec![fact])
}

/// Two new lanes' refs.
async fn two_lanes(registry: &Registry) -> (String, String) {
    let mut refs = Vec::new();
    for thread in ["thread-a", "thread-b"] {
        refs.push(
            registry
                .create_lane(&new_lane(thread))
                .await
                .unwrap()
                .lane_ref,
        );
    }
    (refs.remove(0), refs.remove(0))
}

async fn status(registry: &Registry, lane_ref: &str) -> LaneStatus {
    registry.lane(lane_ref).await.unwrap().unwrap().status
}

#[tokio::test]
async fn a_completed_turn_derives_busy_then_idle_and_folds_deltas() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let t0 = 2_000_000_000_000;

    registry
        .record(&[
            note(
                &lane,
                "turn/started",
                Some("turn-1"),
                t0,
                vec![Fact::TurnStarted {
                    turn_id: "turn-1".into(),
                    at_ms: t0,
                }],
            ),
            note(
                &lane,
                "item/completed",
                Some("turn-1"),
                t0 + 1,
                vec![item(
                    "turn-1",
                    "user-1",
                    "user_message",
                    Some("fix it"),
                    "completed",
                    t0 + 1,
                )],
            ),
            note(
                &lane,
                "item/started",
                Some("turn-1"),
                t0 + 2,
                vec![item(
                    "turn-1",
                    "msg-1",
                    "agent_message",
                    None,
                    "in_progress",
                    t0 + 2,
                )],
            ),
            delta(&lane, "turn-1", "msg-1", "Hel", t0 + 3),
        ])
        .await
        .unwrap();
    let busy = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(busy.status, LaneStatus::Busy);
    assert_eq!(
        busy.latest_turn,
        Some(TurnRow {
            turn_id: "turn-1".into(),
            status: TurnStatus::InProgress,
            error: None,
            started_at_ms: Some(t0),
            completed_at_ms: None,
            duration_ms: None,
        })
    );
    assert_eq!(busy.updated_at_ms, t0 + 3);

    // Deltas in a later batch append to what is stored; a completed item without text keeps
    // the folded text.
    registry
        .record(&[
            delta(&lane, "turn-1", "msg-1", "lo, ", t0 + 4),
            delta(&lane, "turn-1", "msg-1", "world", t0 + 5),
        ])
        .await
        .unwrap();
    assert_eq!(
        registry.tail(&lane, 10).await.unwrap()[1].text.as_deref(),
        Some("Hello, world")
    );
    registry
        .record(&[
            note(
                &lane,
                "item/completed",
                Some("turn-1"),
                t0 + 6,
                vec![item(
                    "turn-1",
                    "msg-1",
                    "agent_message",
                    None,
                    "completed",
                    t0 + 6,
                )],
            ),
            note(
                &lane,
                "thread/tokenUsage/updated",
                Some("turn-1"),
                t0 + 7,
                vec![Fact::TokenUsage(
                    json!({ "total": { "totalTokens": 1234 } })
                        .to_string()
                        .into(),
                )],
            ),
            note(
                &lane,
                "thread/goal/updated",
                None,
                t0 + 7,
                vec![Fact::Goal(Some(GoalRow {
                    objective: "ship it".into(),
                    status: "active".into(),
                    token_budget: Some(50_000),
                    tokens_used: Some(1234),
                }))],
            ),
            note(
                &lane,
                "turn/completed",
                Some("turn-1"),
                t0 + 9,
                vec![turn_done("turn-1", TurnStatus::Completed, None, t0, t0 + 9)],
            ),
        ])
        .await
        .unwrap();

    let idle = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(idle.status, LaneStatus::Idle);
    assert_eq!(
        idle.latest_turn,
        Some(TurnRow {
            turn_id: "turn-1".into(),
            status: TurnStatus::Completed,
            error: None,
            started_at_ms: Some(t0),
            completed_at_ms: Some(t0 + 9),
            duration_ms: Some(9),
        })
    );
    assert_eq!(
        idle.token_usage,
        Some(json!({ "total": { "totalTokens": 1234 } }))
    );
    assert_eq!(
        idle.goal,
        Some(GoalRow {
            objective: "ship it".into(),
            status: "active".into(),
            token_budget: Some(50_000),
            tokens_used: Some(1234),
        })
    );
    assert_eq!(idle.updated_at_ms, t0 + 9);

    assert_eq!(
        registry.tail(&lane, 10).await.unwrap(),
        vec![
            ItemRow {
                turn_id: Some("turn-1".into()),
                item_id: "user-1".into(),
                kind: "user_message".into(),
                text: Some("fix it".into()),
                status: Some("completed".into()),
                at_ms: t0 + 1,
            },
            ItemRow {
                turn_id: Some("turn-1".into()),
                item_id: "msg-1".into(),
                kind: "agent_message".into(),
                text: Some("Hello, world".into()),
                status: Some("completed".into()),
                at_ms: t0 + 2,
            },
        ]
    );
    // Deltas are never stored as events: 4 + 4 notifications were.
    assert_eq!(
        registry.counts(&lane).await.unwrap(),
        LaneActivity {
            turns: 1,
            items: 2,
            events: 7,
            errors: 0
        }
    );
    let methods: Vec<String> = registry
        .events_after(&lane, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.method)
        .collect();
    assert_eq!(
        methods,
        [
            "turn/started",
            "item/completed",
            "item/started",
            "item/completed",
            "thread/tokenUsage/updated",
            "thread/goal/updated",
            "turn/completed"
        ]
    );

    // A later text replaces the folded one; clearing the goal clears it.
    registry
        .record(&[note(
            &lane,
            "item/completed",
            Some("turn-1"),
            t0 + 10,
            vec![
                item(
                    "turn-1",
                    "msg-1",
                    "agent_message",
                    Some("Hello, world!"),
                    "completed",
                    t0 + 10,
                ),
                Fact::Goal(None),
            ],
        )])
        .await
        .unwrap();
    assert_eq!(
        registry.tail(&lane, 1).await.unwrap()[0].text.as_deref(),
        Some("Hello, world!")
    );
    assert_eq!(registry.lane(&lane).await.unwrap().unwrap().goal, None);
    registry.close().await;
}

#[tokio::test]
async fn a_failed_turn_sets_error_and_retrying_errors_show_the_lane_retrying() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let t0 = 2_000_000_000_000;

    registry
        .record(&[
            note(
                &lane,
                "turn/started",
                Some("turn-1"),
                t0,
                vec![Fact::TurnStarted {
                    turn_id: "turn-1".into(),
                    at_ms: t0,
                }],
            ),
            note(
                &lane,
                "error",
                Some("turn-1"),
                t0 + 1,
                vec![Fact::Error {
                    turn_id: Some("turn-1".into()),
                    message: "stream disconnected; retrying 1/5".into(),
                    will_retry: true,
                    cause: Some("network".into()),
                    at_ms: t0 + 1,
                }],
            ),
        ])
        .await
        .unwrap();
    let retrying = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(
        (retrying.status, retrying.retry.clone()),
        (
            LaneStatus::Retrying,
            Some(RetryRow {
                attempts: 1,
                error: Some("stream disconnected; retrying 1/5".into()),
                at_ms: Some(t0 + 1),
            })
        ),
        "a retrying error shows the lane retrying, with the attempt"
    );
    assert_eq!(retrying.error_cause.as_deref(), Some("network"));
    assert_eq!(registry.lane_counts().await.unwrap().retrying, 1);
    let listed = registry
        .list_lanes(&LaneFilter {
            status: Some(LaneStatus::Retrying),
            include_archived: false,
            limit: 0,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "`list --status retrying` finds it");

    // Output of the turn means the retry went through: busy again.
    registry
        .record(&[note(
            &lane,
            "item/agentMessage/delta",
            Some("turn-1"),
            t0 + 1,
            vec![Fact::ItemDelta {
                turn_id: Some("turn-1".into()),
                item_id: "msg".into(),
                kind: "agent_message".into(),
                delta: "partial".into(),
                at_ms: t0 + 1,
            }],
        )])
        .await
        .unwrap();
    let progressed = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(
        (progressed.status, progressed.retry),
        (LaneStatus::Busy, None)
    );

    registry
        .record(&[
            note(
                &lane,
                "error",
                Some("turn-1"),
                t0 + 2,
                vec![Fact::Error {
                    turn_id: Some("turn-1".into()),
                    message: "quota exceeded".into(),
                    will_retry: false,
                    cause: Some("rate_limit".into()),
                    at_ms: t0 + 2,
                }],
            ),
            note(
                &lane,
                "turn/completed",
                Some("turn-1"),
                t0 + 3,
                vec![turn_done(
                    "turn-1",
                    TurnStatus::Failed,
                    Some("quota exceeded"),
                    t0,
                    t0 + 3,
                )],
            ),
        ])
        .await
        .unwrap();
    let failed = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(failed.status, LaneStatus::Error);
    let turn = failed.latest_turn.unwrap();
    assert_eq!(turn.status, TurnStatus::Failed);
    assert_eq!(turn.error.as_deref(), Some("quota exceeded"));
    assert_eq!(turn.duration_ms, Some(3));
    assert_eq!(
        registry.lane_errors(&lane, 10).await.unwrap(),
        vec![
            ErrorRow {
                turn_id: Some("turn-1".into()),
                message: "quota exceeded".into(),
                will_retry: false,
                cause: Some("rate_limit".into()),
                at_ms: t0 + 2,
            },
            ErrorRow {
                turn_id: Some("turn-1".into()),
                message: "stream disconnected; retrying 1/5".into(),
                will_retry: true,
                cause: Some("network".into()),
                at_ms: t0 + 1,
            },
        ]
    );
    assert_eq!(registry.lane_errors(&lane, 1).await.unwrap().len(), 1);

    // The next turn makes the lane busy again, an interrupt makes it idle.
    registry
        .record(&[note(
            &lane,
            "turn/started",
            Some("turn-2"),
            t0 + 10,
            vec![Fact::TurnStarted {
                turn_id: "turn-2".into(),
                at_ms: t0 + 10,
            }],
        )])
        .await
        .unwrap();
    assert_eq!(status(&registry, &lane).await, LaneStatus::Busy);
    registry
        .record(&[note(
            &lane,
            "turn/completed",
            Some("turn-2"),
            t0 + 12,
            vec![turn_done(
                "turn-2",
                TurnStatus::Interrupted,
                None,
                t0 + 10,
                t0 + 12,
            )],
        )])
        .await
        .unwrap();
    let interrupted = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(interrupted.status, LaneStatus::Idle);
    assert_eq!(interrupted.latest_turn.unwrap().turn_id, "turn-2");
    assert_eq!(registry.counts(&lane).await.unwrap().turns, 2);
    registry.close().await;
}

#[tokio::test]
async fn approvals_and_system_errors_set_explicit_statuses() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let t0 = 2_000_000_000_000;
    registry
        .record(&[
            note(
                &lane,
                "turn/started",
                Some("turn-1"),
                t0,
                vec![Fact::TurnStarted {
                    turn_id: "turn-1".into(),
                    at_ms: t0,
                }],
            ),
            note(
                &lane,
                "item/started",
                Some("turn-1"),
                t0 + 1,
                vec![
                    item(
                        "turn-1",
                        "cmd-1",
                        "command",
                        Some("rm -rf build"),
                        "in_progress",
                        t0 + 1,
                    ),
                    Fact::Status(LaneStatus::WaitingApproval),
                ],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(status(&registry, &lane).await, LaneStatus::WaitingApproval);

    // A refreshed in-progress state of the same turn (e.g. from a sync) keeps the wait.
    registry
        .record(&[Recorded {
            lane_ref: lane.as_str().into(),
            event: None,
            facts: vec![Fact::TurnCompleted {
                turn: TurnRow {
                    turn_id: "turn-1".into(),
                    status: TurnStatus::InProgress,
                    error: None,
                    started_at_ms: Some(t0),
                    completed_at_ms: None,
                    duration_ms: None,
                },
            }]
            .into(),
        }])
        .await
        .unwrap();
    assert_eq!(status(&registry, &lane).await, LaneStatus::WaitingApproval);

    // Answered: back to busy, then the turn ends.
    registry
        .record(&[
            Recorded {
                lane_ref: lane.as_str().into(),
                event: None,
                facts: vec![Fact::Status(LaneStatus::Busy)].into(),
            },
            note(
                &lane,
                "turn/completed",
                Some("turn-1"),
                t0 + 5,
                vec![turn_done("turn-1", TurnStatus::Completed, None, t0, t0 + 5)],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(status(&registry, &lane).await, LaneStatus::Idle);

    // The order of facts within a batch matters: a status after the turn change wins.
    registry
        .record(&[note(
            &lane,
            "thread/status/changed",
            None,
            t0 + 6,
            vec![
                Fact::Status(LaneStatus::Busy),
                turn_done("turn-1", TurnStatus::Completed, None, t0, t0 + 5),
                Fact::Status(LaneStatus::Error),
                Fact::Title(Some("renamed by codex".into())),
            ],
        )])
        .await
        .unwrap();
    let lane_row = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(lane_row.status, LaneStatus::Error);
    assert_eq!(lane_row.title.as_deref(), Some("renamed by codex"));
    registry.close().await;
}

#[tokio::test]
async fn a_late_completion_of_an_older_turn_does_not_replace_the_running_one() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let t0 = 2_000_000_000_000;
    registry
        .record(&[
            note(
                &lane,
                "turn/started",
                Some("old"),
                t0,
                vec![Fact::TurnStarted {
                    turn_id: "old".into(),
                    at_ms: t0,
                }],
            ),
            note(
                &lane,
                "turn/started",
                Some("new"),
                t0 + 10,
                vec![Fact::TurnStarted {
                    turn_id: "new".into(),
                    at_ms: t0 + 10,
                }],
            ),
            note(
                &lane,
                "turn/completed",
                Some("old"),
                t0 + 11,
                vec![turn_done("old", TurnStatus::Completed, None, t0, t0 + 11)],
            ),
        ])
        .await
        .unwrap();
    let row = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(row.status, LaneStatus::Busy);
    assert_eq!(row.latest_turn.unwrap().turn_id, "new");

    // Once the new one finished, the old one's replayed completion still does not win.
    registry
        .record(&[
            note(
                &lane,
                "turn/completed",
                Some("new"),
                t0 + 20,
                vec![turn_done(
                    "new",
                    TurnStatus::Failed,
                    Some("boom"),
                    t0 + 10,
                    t0 + 20,
                )],
            ),
            note(
                &lane,
                "turn/completed",
                Some("old"),
                t0 + 21,
                vec![turn_done("old", TurnStatus::Completed, None, t0, t0 + 11)],
            ),
        ])
        .await
        .unwrap();
    let row = registry.lane(&lane).await.unwrap().unwrap();
    assert_eq!(row.status, LaneStatus::Error);
    assert_eq!(row.latest_turn.unwrap().turn_id, "new");
    registry.close().await;
}

#[tokio::test]
async fn a_batch_naming_an_unknown_lane_writes_nothing() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("thread-1")).await.unwrap();
    let err = registry
        .record(&[
            note(
                &lane.lane_ref,
                "turn/started",
                Some("t"),
                5,
                vec![Fact::TurnStarted {
                    turn_id: "t".into(),
                    at_ms: 5,
                }],
            ),
            note("ghost0", "turn/started", Some("t"), 5, vec![]),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::LaneNotFound { lane_ref, .. } if lane_ref == "ghost0"),
        "{err:?}"
    );
    assert_eq!(registry.lane(&lane.lane_ref).await.unwrap().unwrap(), lane);
    assert_eq!(
        registry.counts(&lane.lane_ref).await.unwrap(),
        LaneActivity::default()
    );
    registry.record(&[]).await.unwrap();

    // The failure left nothing behind: the next batch goes through.
    registry
        .record(&[note(
            &lane.lane_ref,
            "turn/started",
            Some("t"),
            5,
            vec![Fact::TurnStarted {
                turn_id: "t".into(),
                at_ms: 5,
            }],
        )])
        .await
        .unwrap();
    assert_eq!(
        registry.lane(&lane.lane_ref).await.unwrap().unwrap().status,
        LaneStatus::Busy
    );
    registry.close().await;
}

#[tokio::test]
async fn tail_returns_the_last_items_oldest_first() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    let other = new_lane_ref(&registry, "thread-2").await;
    let batch: Vec<Recorded> = (0..8)
        .map(|n| {
            note(
                &lane,
                "item/completed",
                Some("t"),
                100 + n,
                vec![item(
                    "t",
                    &format!("item-{n}"),
                    "command",
                    Some(&format!("echo {n}")),
                    "completed",
                    100 + n,
                )],
            )
        })
        .chain([note(
            &other,
            "item/completed",
            None,
            500,
            vec![item("t", "elsewhere", "command", None, "completed", 500)],
        )])
        .collect();
    registry.record(&batch).await.unwrap();
    // Updating an old item does not move it: items keep their first-seen time.
    registry
        .record(&[note(
            &lane,
            "item/completed",
            Some("t"),
            900,
            vec![item(
                "t",
                "item-1",
                "command",
                Some("echo one"),
                "failed",
                900,
            )],
        )])
        .await
        .unwrap();

    let ids =
        |items: Vec<ItemRow>| -> Vec<String> { items.into_iter().map(|i| i.item_id).collect() };
    assert_eq!(
        ids(registry.tail(&lane, 3).await.unwrap()),
        ["item-5", "item-6", "item-7"]
    );
    let all = registry.tail(&lane, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(all[1].text.as_deref(), Some("echo one"));
    assert_eq!(all[1].status.as_deref(), Some("failed"));
    assert_eq!(all[1].at_ms, 101);
    assert!(registry.tail(&lane, 0).await.unwrap().is_empty());
    assert_eq!(ids(registry.tail(&other, 10).await.unwrap()), ["elsewhere"]);
    assert!(registry.tail("nope00", 10).await.unwrap().is_empty());
    registry.close().await;
}

#[tokio::test]
async fn an_item_id_reused_in_another_turn_is_another_item() {
    let (_dir, registry) = open_registry().await;
    let lane = new_lane_ref(&registry, "thread-1").await;
    // A provider that names every reply `msg_1`: each turn keeps its own reply.
    for (n, turn) in ["turn-1", "turn-2"].into_iter().enumerate() {
        let at = 100 + i64::try_from(n).unwrap();
        registry
            .record(&[note(
                &lane,
                "item/completed",
                Some(turn),
                at,
                vec![item(
                    turn,
                    "msg_1",
                    "agent_message",
                    Some(&format!("reply {n}")),
                    "completed",
                    at,
                )],
            )])
            .await
            .unwrap();
    }
    let texts: Vec<(Option<String>, Option<String>)> = registry
        .tail(&lane, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.turn_id, i.text))
        .collect();
    assert_eq!(
        texts,
        [
            (Some("turn-1".to_owned()), Some("reply 0".to_owned())),
            (Some("turn-2".to_owned()), Some("reply 1".to_owned())),
        ]
    );
    registry.close().await;
}

#[tokio::test]
async fn events_page_by_id_per_lane_and_pruning_keeps_the_newest() {
    let (_dir, registry) = open_registry().await;
    let a = new_lane_ref(&registry, "thread-a").await;
    let b = new_lane_ref(&registry, "thread-b").await;
    assert_eq!(registry.last_event_id(&a).await.unwrap(), 0);

    // Interleaved lanes: each lane's ids increase but are not contiguous.
    let batch: Vec<Recorded> = (0..10)
        .flat_map(|n| {
            [
                note(&a, "item/completed", None, n, vec![]),
                note(&b, "item/completed", None, n, vec![]),
            ]
        })
        .collect();
    registry.record(&batch).await.unwrap();

    let mut pages = Vec::new();
    let mut cursor = 0;
    loop {
        let page = registry.events_after(&a, cursor, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.id;
        pages.push(page.iter().map(|event| event.at_ms).collect::<Vec<_>>());
    }
    assert_eq!(pages, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    assert_eq!(registry.last_event_id(&a).await.unwrap(), cursor);
    let first = &registry.events_after(&a, 0, 1).await.unwrap()[0];
    assert_eq!(first.params, json!({ "method": "item/completed", "at": 0 }));
    assert_eq!(first.turn_id, None);
    assert!(
        registry
            .events_after(&a, cursor, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(registry.events_after(&a, 0, 0).await.unwrap().is_empty());

    assert_eq!(registry.prune_events(3).await.unwrap(), 14);
    let kept: Vec<i64> = registry
        .events_after(&b, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|event| event.at_ms)
        .collect();
    assert_eq!(kept, vec![7, 8, 9]);
    assert_eq!(registry.prune_events(3).await.unwrap(), 0);

    // Ids are never reused, not even after deleting every event.
    let last = registry.last_event_id(&a).await.unwrap();
    assert_eq!(registry.prune_events(0).await.unwrap(), 6);
    assert_eq!(registry.last_event_id(&a).await.unwrap(), 0);
    registry
        .record(&[note(&a, "turn/started", None, 50, vec![])])
        .await
        .unwrap();
    assert!(registry.last_event_id(&a).await.unwrap() > last);
    assert_eq!(registry.counts(&a).await.unwrap().events, 1);

    // Closing folds the WAL of the ingest connection too: one self-contained file remains.
    let path = registry.path().to_path_buf();
    registry.close().await;
    assert!(!has_sidecars(&path));
}

/// A flood's batch is written in several statements (events in chunks of up to 512 rows,
/// then items, turns, lanes): when a later one fails, the whole batch is rolled back, events
/// already inserted included, and the registry takes the next batch as if nothing happened.
#[tokio::test]
async fn a_batch_failing_after_its_first_statements_writes_nothing() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();
    let lane = registry.create_lane(&new_lane("thread-1")).await.unwrap();
    // A failure no input can cause: the items of this batch are refused by the database.
    let mut poke = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON items WHEN new.item_id = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&mut poke)
    .await
    .unwrap();
    let batch = |item_id: &str| -> Vec<Recorded> {
        let mut batch: Vec<Recorded> = (0..2_500)
            .map(|i| {
                note(
                    &lane.lane_ref,
                    "thread/tokenUsage/updated",
                    Some("t"),
                    i,
                    vec![],
                )
            })
            .collect();
        batch.push(note(
            &lane.lane_ref,
            "item/completed",
            Some("t"),
            2_500,
            vec![item(
                "t",
                item_id,
                "agent_message",
                Some("hi"),
                "completed",
                2_500,
            )],
        ));
        batch
    };
    let err = registry.record(&batch("boom")).await.unwrap_err();
    assert!(err.to_string().contains("storing items"), "{err}");
    assert_eq!(
        registry.counts(&lane.lane_ref).await.unwrap(),
        LaneActivity::default()
    );
    assert!(
        registry
            .events_after(&lane.lane_ref, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    registry.record(&batch("fine")).await.unwrap();
    let counts = registry.counts(&lane.lane_ref).await.unwrap();
    assert_eq!((counts.events, counts.items), (2_501, 1), "{counts:?}");
    sqlx::query("DROP TRIGGER refuse_boom")
        .execute(&mut poke)
        .await
        .unwrap();
    registry.close().await;
}

/// A batch binds each distinct lane ref, method, turn id and item kind once and shares it
/// between rows (`Shared` in `ingest.rs`): every row must still get its own values.
#[tokio::test]
async fn a_batch_mixing_lanes_turns_and_methods_stores_each_row_with_its_own_values() {
    let (_dir, registry) = open_registry().await;
    let (a, b) = two_lanes(&registry).await;
    let methods = [
        "item/started",
        "item/completed",
        "thread/tokenUsage/updated",
    ];
    let turns = ["turn-1", "turn-2", "turn-3"];
    let kinds = ["agent_message", "command", "reasoning"];
    let mut batch = Vec::new();
    for n in 0..60_i64 {
        let lane = if n % 2 == 0 { &a } else { &b };
        let i = usize::try_from(n).unwrap();
        let (method, turn, kind) = (methods[i % 3], turns[(i / 2) % 3], kinds[(i / 3) % 3]);
        batch.push(item_note(lane, method, turn, kind, n));
    }
    registry.record(&batch).await.unwrap();

    for (lane, parity) in [(&a, 0), (&b, 1)] {
        let events = registry.events_after(lane, 0, 100).await.unwrap();
        let items = registry.tail(lane, 100).await.unwrap();
        assert_eq!(events.len(), 30);
        assert_eq!(items.len(), 30);
        for (event, item) in events.iter().zip(&items) {
            let n = event.at_ms;
            assert_eq!(n % 2, parity, "event {n} stored on the wrong lane");
            let i = usize::try_from(n).unwrap();
            assert_eq!(event.method, methods[i % 3]);
            assert_eq!(event.turn_id.as_deref(), Some(turns[(i / 2) % 3]));
            assert_eq!(event.params, json!({ "method": methods[i % 3], "at": n }));
            assert_eq!(item.item_id, format!("item-{n}"));
            assert_eq!(item.turn_id.as_deref(), Some(turns[(i / 2) % 3]));
            assert_eq!(item.kind, kinds[(i / 3) % 3]);
            assert_eq!(item.text.as_deref(), Some(format!("text {n}").as_str()));
        }
    }
}

/// A chunk of rows of one lane and turn (one kind, for items) binds those once (`Bulk`'s
/// shared columns in `ingest.rs`), padded or not, and a chunk that mixes them binds every
/// row's own: either way each row is stored with its own values, in order, padding never.
#[tokio::test]
async fn chunks_of_one_lane_and_turn_store_each_row_as_mixed_chunks_do() {
    let (_dir, registry) = open_registry().await;
    let (a, b) = two_lanes(&registry).await;
    // (lane, turn, kind) of each row: 520 rows of one lane and turn (a full chunk of 512 that
    // shares them, then 8 more in a mixed chunk), 10 of another lane, 5 of another turn.
    let mut rows: Vec<(&str, &str, &str)> = Vec::new();
    rows.extend(std::iter::repeat_n(
        (a.as_str(), "turn-1", "agent_message"),
        520,
    ));
    rows.extend(std::iter::repeat_n((b.as_str(), "turn-2", "reasoning"), 10));
    rows.extend(std::iter::repeat_n((a.as_str(), "turn-3", "command"), 5));
    let note_of = |n: usize, (lane, turn, kind): (&str, &str, &str)| {
        let at = i64::try_from(n).unwrap();
        let method = if n.is_multiple_of(2) {
            "item/started"
        } else {
            "item/completed"
        };
        item_note(lane, method, turn, kind, at)
    };
    let batch: Vec<Recorded> = rows
        .iter()
        .enumerate()
        .map(|(n, &row)| note_of(n, row))
        .collect();
    registry.record(&batch).await.unwrap();
    // A short chunk of one lane and turn, padded to 64 rows, and a single row.
    let second: Vec<Recorded> = (535..544)
        .map(|n| note_of(n, (b.as_str(), "turn-2", "reasoning")))
        .chain(std::iter::once(note_of(
            544,
            (a.as_str(), "turn-3", "command"),
        )))
        .collect();
    registry.record(&second).await.unwrap();
    rows.extend(std::iter::repeat_n((b.as_str(), "turn-2", "reasoning"), 9));
    rows.push((a.as_str(), "turn-3", "command"));

    for lane in [&a, &b] {
        let expected: Vec<usize> = (0..rows.len())
            .filter(|&n| rows[n].0 == lane.as_str())
            .collect();
        let events = registry.events_after(lane, 0, 1000).await.unwrap();
        let items = registry.tail(lane, 1000).await.unwrap();
        assert_eq!(events.len(), expected.len(), "events of {lane}");
        assert_eq!(items.len(), expected.len(), "items of {lane}");
        for ((event, item), &n) in events.iter().zip(&items).zip(&expected) {
            let (_, turn, kind) = rows[n];
            assert_eq!(
                event.at_ms,
                i64::try_from(n).unwrap(),
                "event order of {lane}"
            );
            let method = if n.is_multiple_of(2) {
                "item/started"
            } else {
                "item/completed"
            };
            assert_eq!(event.method, method);
            assert_eq!(event.turn_id.as_deref(), Some(turn));
            assert_eq!(item.item_id, format!("item-{n}"));
            assert_eq!(item.turn_id.as_deref(), Some(turn));
            assert_eq!(item.kind, kind);
            assert_eq!(item.text.as_deref(), Some(format!("text {n}").as_str()));
        }
    }
}

/// The other shared forms: a chunk of events without a turn (the turn bound once as NULL), a
/// chunk of items made by deltas (appended) and one of items whose text is left as it is; and
/// a chunk of one lane mixing no turn and a turn, which binds each row's own.
#[tokio::test]
async fn shared_chunks_of_turnless_events_deltas_and_kept_items_store_each_row() {
    let (_dir, registry) = open_registry().await;
    let (lane, _) = two_lanes(&registry).await;
    let turnless: Vec<Recorded> = (0..6)
        .map(|n| note(&lane, "thread/status/changed", None, n, Vec::new()))
        .collect();
    registry.record(&turnless).await.unwrap();
    let mut batch: Vec<Recorded> = (6..9)
        .map(|n| note(&lane, "turn/started", Some("turn-9"), n, Vec::new()))
        .collect();
    batch.extend((0..6).map(|n| {
        delta(
            &lane,
            "turn-1",
            &format!("d-{n}"),
            &format!("delta {n}"),
            10 + n,
        )
    }));
    batch.extend((0..6).map(|n| {
        Recorded {
            lane_ref: lane.as_str().into(),
            event: None,
            facts: vec![Fact::Item {
                turn_id: Some("turn-1".to_owned()),
                item_id: format!("k-{n}"),
                kind: "command".into(),
                text: None,
                status: Some("running".to_owned()),
                at_ms: 20 + n,
            }]
            .into(),
        }
    }));
    registry.record(&batch).await.unwrap();

    // Mixed in one chunk: turnless events first, then events of a turn.
    let mixed: Vec<Recorded> = (9..12)
        .map(|n| note(&lane, "thread/status/changed", None, n, Vec::new()))
        .chain((12..15).map(|n| note(&lane, "turn/started", Some("turn-9"), n, Vec::new())))
        .collect();
    registry.record(&mixed).await.unwrap();

    let events = registry.events_after(&lane, 0, 100).await.unwrap();
    assert_eq!(events.len(), 15);
    for (n, event) in (0..).zip(&events) {
        assert_eq!(event.at_ms, n);
        let (method, turn) = match n {
            0..6 | 9..12 => ("thread/status/changed", None),
            _ => ("turn/started", Some("turn-9")),
        };
        assert_eq!(event.method, method, "event {n}");
        assert_eq!(event.turn_id.as_deref(), turn, "event {n}");
    }
    let items = registry.tail(&lane, 100).await.unwrap();
    assert_eq!(items.len(), 12);
    for (n, item) in items[..6].iter().enumerate() {
        assert_eq!(item.item_id, format!("d-{n}"));
        assert_eq!(item.kind, "agent_message");
        assert_eq!(item.turn_id.as_deref(), Some("turn-1"));
        assert_eq!(item.text.as_deref(), Some(format!("delta {n}").as_str()));
    }
    for (n, item) in items[6..].iter().enumerate() {
        assert_eq!(item.item_id, format!("k-{n}"));
        assert_eq!(item.kind, "command");
        assert_eq!(item.turn_id.as_deref(), Some("turn-1"));
        assert_eq!(item.text, None);
        assert_eq!(item.status.as_deref(), Some("running"));
    }
}

/// An event's params are stored as the text the App Server sent, byte for byte (spacing, key
/// order, escapes) and as SQLite text, whether shared by the reader (`Arc<str>`) or not.
#[tokio::test]
async fn an_events_params_are_stored_as_the_text_sent() {
    let (_dir, path) = registry_path();
    let registry = Registry::open(&path).await.unwrap();
    let lane = registry.create_lane(&new_lane("thread-1")).await.unwrap();
    let sent = "{ \"threadId\":\"thread-1\",  \"b\": [1, 2.50],\"a\":\"\\u00e9\\n\" }";
    let mut event = note(&lane.lane_ref, "item/started", Some("t"), 7, vec![]);
    if let Some(new) = event.event.as_mut() {
        new.params = sent.into();
    }
    registry.record(&[event]).await.unwrap();
    let mut poke = raw(&path).await;
    let (stored, kind): (String, String) =
        sqlx::query_as("SELECT params, typeof(params) FROM events WHERE lane_ref = ?1")
            .bind(&lane.lane_ref)
            .fetch_one(&mut poke)
            .await
            .unwrap();
    assert_eq!((stored.as_str(), kind.as_str()), (sent, "text"));
}
