//! Pages of lanes, the lanes' topology, `history` aggregates and structural search filters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{new_lane, open_registry, pool_at_version, registry_path};
use dispatch_registry::{
    Fact, LaneStatus, PageFilter, Recorded, Registry, SearchFilter, TurnRow, TurnStatus,
};

fn item(turn: &str, id: &str, kind: &str, text: &str, status: Option<&str>, at_ms: i64) -> Fact {
    Fact::Item {
        turn_id: Some(turn.to_owned()),
        item_id: id.to_owned(),
        kind: kind.to_owned().into(),
        text: Some(text.to_owned()),
        status: status.map(str::to_owned),
        at_ms,
    }
}

fn turn(id: &str, status: TurnStatus, started: i64, done: i64) -> Fact {
    Fact::TurnCompleted {
        turn: TurnRow {
            turn_id: id.to_owned(),
            status,
            error: (status == TurnStatus::Failed).then(|| "boom".to_owned()),
            started_at_ms: Some(started),
            completed_at_ms: Some(done),
            duration_ms: None,
        },
    }
}

async fn record(registry: &Registry, lane_ref: &str, facts: Vec<Fact>) {
    registry
        .record(&[Recorded {
            lane_ref: lane_ref.into(),
            event: None,
            facts: facts.into(),
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn pages_cover_every_lane_once_in_activity_order() {
    let (_dir, registry) = open_registry().await;
    for n in 0..25 {
        let lane = registry
            .create_lane(&new_lane(&format!("t-{n}")))
            .await
            .unwrap();
        // Ties on the activity time are broken by ref: several lanes share one.
        registry.touch(&lane.lane_ref, 1_000 + n / 3).await.unwrap();
    }
    let archived = registry.create_lane(&new_lane("t-archived")).await.unwrap();
    record(&registry, &archived.lane_ref, vec![Fact::Archived(true)]).await;

    let filter = PageFilter::default();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = registry
            .list_lanes_page(&filter, after.as_ref(), 7)
            .await
            .unwrap();
        pages += 1;
        assert!(page.lanes.len() <= 7);
        seen.extend(
            page.lanes
                .iter()
                .map(|l| (l.updated_at_ms, l.lane_ref.clone())),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4, "25 lanes in pages of 7");
    assert_eq!(seen.len(), 25);
    let unique: HashSet<_> = seen.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(unique.len(), 25, "no lane twice");
    assert!(
        !unique.contains(&archived.lane_ref),
        "archived lanes are left out"
    );
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    assert_eq!(seen, sorted, "newest activity first, then by ref");

    // An exact page: no cursor for an empty next page.
    let all = registry.list_lanes_page(&filter, None, 25).await.unwrap();
    assert_eq!(all.lanes.len(), 25);
    assert!(all.next.is_none());

    let only = PageFilter {
        status: Some(LaneStatus::Archived),
        ..Default::default()
    };
    let page = registry.list_lanes_page(&only, None, 10).await.unwrap();
    assert_eq!(page.lanes.len(), 1);
    assert_eq!(page.lanes[0].lane_ref, archived.lane_ref);
    registry.close().await;
}

#[tokio::test]
async fn the_family_comes_from_recorded_and_codex_parents() {
    let (_dir, registry) = open_registry().await;
    let root = registry.create_lane(&new_lane("t-root")).await.unwrap();
    let fork = registry.create_lane(&new_lane("t-fork")).await.unwrap();
    let spawned = registry.create_lane(&new_lane("t-spawned")).await.unwrap();
    let grandchild = registry.create_lane(&new_lane("t-grand")).await.unwrap();
    let stranger = registry.create_lane(&new_lane("t-other")).await.unwrap();
    registry
        .set_parents(&fork.lane_ref, Some(&root.lane_ref), None)
        .await
        .unwrap();
    // Codex names the parent thread; it is a lane, so it is the parent lane.
    registry
        .set_parents(&spawned.lane_ref, None, Some("t-root"))
        .await
        .unwrap();
    registry
        .set_parents(&grandchild.lane_ref, Some(&fork.lane_ref), None)
        .await
        .unwrap();
    // A parent thread that is no lane makes no parent lane.
    registry
        .set_parents(&stranger.lane_ref, None, Some("t-unknown"))
        .await
        .unwrap();

    assert_eq!(
        registry.parent_lane(&grandchild.lane_ref).await.unwrap(),
        Some((fork.lane_ref.clone(), "t-fork".to_owned()))
    );
    assert_eq!(
        registry.parent_lane(&spawned.lane_ref).await.unwrap(),
        Some((root.lane_ref.clone(), "t-root".to_owned()))
    );
    assert_eq!(
        registry.parent_lane(&stranger.lane_ref).await.unwrap(),
        None
    );
    assert_eq!(registry.parent_lane(&root.lane_ref).await.unwrap(), None);

    let children: Vec<String> = registry
        .child_lanes(&root.lane_ref, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let mut expected = vec![fork.lane_ref.clone(), spawned.lane_ref.clone()];
    expected.sort();
    assert_eq!(children, expected);

    let tree = registry.lane_tree(&root.lane_ref).await.unwrap();
    let refs: Vec<&str> = tree.iter().map(|n| n.lane_ref.as_str()).collect();
    assert_eq!(tree.len(), 4, "{tree:?}");
    assert_eq!(refs[0], root.lane_ref);
    let depth = |r: &str| tree.iter().find(|n| n.lane_ref == r).unwrap().depth;
    assert_eq!(depth(&fork.lane_ref), 1);
    assert_eq!(depth(&spawned.lane_ref), 1);
    assert_eq!(depth(&grandchild.lane_ref), 2);
    let at = |r: &str| refs.iter().position(|x| *x == r).unwrap();
    assert_eq!(
        at(&grandchild.lane_ref),
        at(&fork.lane_ref) + 1,
        "depth first"
    );
    assert!(!refs.contains(&stranger.lane_ref.as_str()));

    // A cycle (a corrupt or hand-edited parent) ends instead of looping.
    registry
        .set_parents(&root.lane_ref, Some(&grandchild.lane_ref), None)
        .await
        .unwrap();
    let cyclic = registry.lane_tree(&root.lane_ref).await.unwrap();
    assert_eq!(cyclic.len(), 4, "{cyclic:?}");

    let only = PageFilter {
        only: Some(vec![fork.lane_ref.clone(), spawned.lane_ref.clone()]),
        ..Default::default()
    };
    let page = registry.list_lanes_page(&only, None, 10).await.unwrap();
    assert_eq!(page.lanes.len(), 2);
    registry.close().await;
}

#[tokio::test]
async fn history_counts_turns_tools_files_and_messages() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t-h")).await.unwrap();
    let quiet = registry.create_lane(&new_lane("t-quiet")).await.unwrap();
    let r = lane.lane_ref.as_str();
    record(
        &registry,
        r,
        vec![
            Fact::TurnStarted {
                turn_id: "turn-1".into(),
                at_ms: 10_000,
            },
            item(
                "turn-1",
                "u1",
                "user_message",
                "fix the build",
                None,
                10_000,
            ),
            item(
                "turn-1",
                "c1",
                "command",
                "cargo build",
                Some("failed"),
                10_100,
            ),
            item(
                "turn-1",
                "c2",
                "command",
                "cargo build",
                Some("completed"),
                10_200,
            ),
            item(
                "turn-1",
                "f1",
                "file_change",
                "/w/src/main.rs, /w/src/lib.rs",
                Some("completed"),
                10_300,
            ),
            item(
                "turn-1",
                "m1",
                "mcp_tool_call",
                "docs.search",
                Some("completed"),
                10_400,
            ),
            item("turn-1", "a1", "agent_message", "fixed", None, 10_500),
            turn("turn-1", TurnStatus::Completed, 10_000, 12_000),
            Fact::TurnStarted {
                turn_id: "turn-2".into(),
                at_ms: 20_000,
            },
            item(
                "turn-2",
                "f2",
                "file_change",
                "/w/src/main.rs",
                Some("inProgress"),
                20_100,
            ),
            turn("turn-2", TurnStatus::Failed, 20_000, 20_500),
            Fact::TokenUsage(
                serde_json::json!({"total": {"totalTokens": 4321}})
                    .to_string()
                    .into(),
            ),
        ],
    )
    .await;
    // A file change completes with another path: the old one no longer counts for it.
    record(
        &registry,
        r,
        vec![item(
            "turn-2",
            "f2",
            "file_change",
            "/w/README.md",
            Some("completed"),
            20_200,
        )],
    )
    .await;

    let overview = registry.history_overview(None, false, 10).await.unwrap();
    assert_eq!(overview.len(), 2);
    let row = overview.iter().find(|h| h.lane_ref == r).unwrap();
    assert_eq!(row.turns, 2);
    assert_eq!(row.items, 7);
    assert_eq!(row.messages, 2);
    assert_eq!(
        row.tool_calls, 5,
        "two commands, two file changes, one MCP call"
    );
    assert_eq!(row.files_changed, 3, "main.rs, lib.rs, README.md");
    assert_eq!(row.tokens_used, Some(4321));
    assert!(row.first_at_ms <= 10_000);
    assert!(row.last_at_ms >= 20_200);
    let empty = overview
        .iter()
        .find(|h| h.lane_ref == quiet.lane_ref)
        .unwrap();
    assert_eq!((empty.turns, empty.items, empty.files_changed), (0, 0, 0));
    assert_eq!(empty.tokens_used, None);
    let one = registry.history_overview(Some(r), false, 10).await.unwrap();
    assert_eq!(one.len(), 1);

    let turns = registry.history_turns(r, 10).await.unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].turn_id, "turn-2", "newest first");
    assert_eq!(turns[0].status, "failed");
    assert_eq!(turns[0].error.as_deref(), Some("boom"));
    assert_eq!(turns[0].duration_ms, Some(500));
    assert_eq!((turns[1].items, turns[1].tool_calls), (6, 4));
    assert_eq!(turns[1].duration_ms, Some(2000));

    let tools = registry.history_tools(r, 10).await.unwrap();
    let find = |name: &str| tools.iter().find(|t| t.tool == name).unwrap();
    assert_eq!(tools[0].tool, "command", "most called first");
    assert_eq!((find("command").calls, find("command").errored), (2, 1));
    assert_eq!(find("file_change").calls, 2);
    assert_eq!(find("docs.search").calls, 1);

    let files = registry.history_files(r, 10).await.unwrap();
    let paths: Vec<(&str, i64)> = files.iter().map(|f| (f.path.as_str(), f.changes)).collect();
    assert_eq!(
        paths,
        vec![
            ("/w/README.md", 1),
            ("/w/src/lib.rs", 1),
            ("/w/src/main.rs", 1)
        ]
    );
    registry.close().await;
}

#[tokio::test]
async fn search_filters_narrow_item_hits() {
    let (_dir, registry) = open_registry().await;
    let a = registry.create_lane(&new_lane("t-a")).await.unwrap();
    let b = registry.create_lane(&new_lane("t-b")).await.unwrap();
    registry
        .set_title(&a.lane_ref, Some("zebra lane"))
        .await
        .unwrap();
    record(
        &registry,
        &a.lane_ref,
        vec![
            item("t1", "m1", "agent_message", "zebra says hi", None, 1_000),
            item("t1", "c1", "command", "zebra --run", Some("failed"), 2_000),
            item(
                "t1",
                "f1",
                "file_change",
                "/repo/src/zebra.rs, /repo/x.rs",
                Some("completed"),
                3_000,
            ),
            item(
                "t1",
                "t1",
                "mcp_tool_call",
                "zebra.find",
                Some("completed"),
                4_000,
            ),
        ],
    )
    .await;
    record(
        &registry,
        &b.lane_ref,
        vec![item("t2", "m2", "agent_message", "zebra too", None, 5_000)],
    )
    .await;
    let ids = |hits: Vec<dispatch_registry::SearchRow>| -> Vec<Option<String>> {
        hits.into_iter().map(|h| h.item_id).collect()
    };
    let search = |filter: SearchFilter| {
        let registry = &registry;
        async move {
            ids(registry
                .search_filtered("zebra", &filter, 20)
                .await
                .unwrap())
        }
    };

    let everything = search(SearchFilter::default()).await;
    assert_eq!(
        everything.len(),
        6,
        "a title and five items: {everything:?}"
    );
    assert!(everything.contains(&None));

    let lane_only = search(SearchFilter {
        lane_ref: Some(b.lane_ref.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(lane_only, vec![Some("m2".to_owned())]);

    let kind = search(SearchFilter {
        kind: Some("command".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        kind,
        vec![Some("c1".to_owned())],
        "no title hit with an item filter"
    );

    let tool = search(SearchFilter {
        tool: Some("zebra.find".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(tool, vec![Some("t1".to_owned())]);

    for (file, hit) in [
        ("src/zebra.rs", true),
        ("zebra.rs", true),
        ("/repo/src/zebra.rs", true),
        ("ebra.rs", false),
        ("repo", false),
    ] {
        let found = search(SearchFilter {
            file: Some(file.into()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            found == vec![Some("f1".to_owned())],
            hit,
            "{file}: {found:?}"
        );
    }

    let errored = search(SearchFilter {
        errored: true,
        ..Default::default()
    })
    .await;
    assert_eq!(errored, vec![Some("c1".to_owned())]);

    let window = search(SearchFilter {
        since_ms: Some(2_000),
        until_ms: Some(4_000),
        ..Default::default()
    })
    .await;
    assert_eq!(window, vec![Some("f1".to_owned()), Some("c1".to_owned())]);
    registry.close().await;
}

/// A registry from before version 9 gets its file paths and per-kind counts when migrated.
#[tokio::test]
async fn migrating_fills_the_history_tables_from_existing_items() {
    let (_dir, path) = registry_path();
    let pool = pool_at_version(&path, 7).await;
    sqlx::query(
        "INSERT INTO lanes (ref, thread_id, ownership, created_at_ms, updated_at_ms) \
         VALUES ('abc123', 't-old', 'owned', 1, 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO items (lane_ref, item_id, turn_id, kind, text, status, at_ms) VALUES \
         ('abc123', 'f1', 't', 'file_change', '/a \"quoted\".rs, /b\\c.rs', 'completed', 10), \
         ('abc123', 'c1', 't', 'command', 'ls', 'completed', 20), \
         ('abc123', 'm1', 't', 'agent_message', 'hi', NULL, 30)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    dispatch_registry::migrate(&path).await.unwrap();
    let registry = Registry::open(&path).await.unwrap();
    let rows = registry.history_overview(None, false, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].items,
            rows[0].messages,
            rows[0].tool_calls,
            rows[0].files_changed
        ),
        (3, 1, 2, 2)
    );
    let files: Vec<String> = registry
        .history_files("abc123", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        files,
        vec!["/a \"quoted\".rs".to_owned(), "/b\\c.rs".to_owned()]
    );
    registry.close().await;
}
