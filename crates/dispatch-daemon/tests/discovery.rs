//! Discovery against the scripted fake App Server, in seconds: `list` in pages behind a cursor
//! bound to its query, `list --unmanaged` (Codex's threads less the attached ones, paged),
//! a lane's family in `list` and `get`, `history` views, and `search` filters and dates.
//! The binary is its own fake App Server (see `harness`).

mod harness;

use std::collections::HashSet;
use std::process::ExitCode;

use dispatch_contract::ErrorCode;
use dispatch_contract::types::{
    AttachInput, AttachOutput, GetInput, GetOutput, HistoryInput, HistoryOutput, ListInput,
    ListOutput, SearchInput, SearchOutput,
};
use dispatch_registry::{Fact, Ownership, TurnStatus};
use fake_app_server::Script;
use harness::{Daemon, expect_error, trial, trial_with};
use libtest_mimic::Arguments;
use serde_json::json;

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        trial("list_pages_with_a_cursor_bound_to_its_query", |d| {
            Box::pin(list_pages_with_a_cursor_bound_to_its_query(d))
        }),
        trial("list_answers_exactly_the_text_it_always_did", |d| {
            Box::pin(list_answers_exactly_the_text_it_always_did(d))
        }),
        trial_with(
            "list_unmanaged_pages_codex_threads_that_are_not_lanes",
            codex_threads,
            |d| Box::pin(list_unmanaged_pages_codex_threads_that_are_not_lanes(d)),
        ),
        trial_with(
            "attach_records_codex_parent_and_get_and_list_show_the_family",
            forked_threads,
            |d| Box::pin(attach_records_codex_parent_and_get_and_list_show_the_family(d)),
        ),
        trial("history_shows_overview_turns_tools_and_files", |d| {
            Box::pin(history_shows_overview_turns_tools_and_files(d))
        }),
        trial("search_filters_and_dates", |d| {
            Box::pin(search_filters_and_dates(d))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

fn codex_threads() -> Script {
    Script {
        threads: (0..7).map(|n| format!("codex-thread-{n}")).collect(),
        ..Script::default()
    }
}

fn forked_threads() -> Script {
    Script {
        forked_from: Some("thread-root".into()),
        ..Script::default()
    }
}

/// `list` of lanes in every state, with their stored columns pinned, answers exactly this text
/// (members, their order, nulls and absent members): what a client reads is unchanged by
/// how the daemon reads and encodes it (ADR 0020).
async fn list_answers_exactly_the_text_it_always_did(d: &Daemon) {
    let names = [
        "idle", "attached", "busy", "retrying", "waiting", "failed", "archived", "goal",
    ];
    for name in names {
        let ownership = if name == "attached" {
            Ownership::Attached
        } else {
            Ownership::Owned
        };
        d.lane(name, ownership).await;
    }
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        d.db.display()
    ))
    .await
    .expect("a second connection");
    // Far in the future, so that no busy lane counts as stalled; one ms apart, newest first.
    let base: i64 = 4_102_444_800_000;
    let pinned = [
        ("idle", "cwd = '/work/a', model = 'gpt-5', handle = 'first'"),
        (
            "attached",
            "cwd = '/w\"q\\x', title = 'tab' || char(9) || 'and é'",
        ),
        (
            "busy",
            "status = 'busy', latest_turn_id = 'turn-b', latest_turn_status = 'in_progress', \
             latest_turn_started_at_ms = 4102444700000",
        ),
        (
            "retrying",
            "status = 'busy', retry_attempts = 3, retry_error = 'upstream 502', \
             retry_at_ms = 4102444700500, error_cause = 'network', latest_turn_id = 'turn-r', \
             latest_turn_status = 'in_progress'",
        ),
        (
            "waiting",
            "status = 'waiting_approval', latest_turn_id = 'turn-w', \
             latest_turn_status = 'in_progress'",
        ),
        (
            "failed",
            "status = 'error', error_cause = 'authentication', latest_turn_id = 'turn-f', \
             latest_turn_status = 'failed', latest_turn_error = 'unauthorized', \
             latest_turn_started_at_ms = 4102444600000, \
             latest_turn_completed_at_ms = 4102444600250, latest_turn_duration_ms = 250, \
             token_usage = '{\"total\":{\"totalTokens\":7}}'",
        ),
        ("archived", "archived = 1"),
        (
            "goal",
            "goal_objective = 'ship it', goal_status = 'active', goal_token_budget = 1000, \
             goal_tokens_used = 12, worktree_path = '/wt/goal', worktree_branch = 'dispatch/goal', \
             worktree_repo = '/repo'",
        ),
    ];
    for (i, (name, set)) in pinned.iter().enumerate() {
        let at = base - i64::try_from(i).expect("small");
        let sql = format!(
            "UPDATE lanes SET {set}, ref = '{:0<6}', thread_id = 'thread-{name}', \
             created_at_ms = {}, updated_at_ms = {at} WHERE title = '{name}' OR thread_id = 'thread-{name}'",
            &name[..3],
            at - 1000,
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .expect(&sql);
        assert_eq!(done.rows_affected(), 1, "{sql}");
    }
    let listed = d
        .call::<ListInput>(json!({ "all": true, "limit": 5 }))
        .await
        .expect("list");
    let text = serde_json::to_string(&listed).expect("encoded");
    let cursor = listed.next_cursor.clone().expect("a second page");
    let expected = concat!(
        r##"{"lanes":[{"created_at":"2099-12-31T23:59:59Z","cwd":"/work/a","goal":null,"handle":"first","hint":null,"id":"thread-idle","latest_turn":null,"model":"gpt-5","ownership":"owned","ref":"idl000","retry":null,"stalled_since":null,"status":"idle","title":"idle","updated_at":"2100-01-01T00:00:00Z","worktree":null,"writable":true,"write_locked_reason":null}"##,
        r##",{"created_at":"2099-12-31T23:59:58.999Z","cwd":"/w\"q\\x","goal":null,"handle":null,"hint":null,"id":"thread-attached","latest_turn":null,"model":null,"ownership":"attached","ref":"att000","retry":null,"stalled_since":null,"status":"idle","title":"tab\tand é","updated_at":"2099-12-31T23:59:59.999Z","worktree":null,"writable":false,"write_locked_reason":"attached lane: dispatch observes it but does not write turns or history into a conversation it does not own"}"##,
        r##",{"created_at":"2099-12-31T23:59:58.998Z","cwd":null,"goal":null,"handle":null,"hint":null,"id":"thread-busy","latest_turn":{"completed_at":null,"duration_ms":null,"error":null,"id":"turn-b","started_at":"2099-12-31T23:58:20Z","status":"in_progress"},"model":null,"ownership":"owned","ref":"bus000","retry":null,"stalled_since":null,"status":"busy","title":"busy","updated_at":"2099-12-31T23:59:59.998Z","worktree":null,"writable":true,"write_locked_reason":null}"##,
        r##",{"created_at":"2099-12-31T23:59:58.997Z","cwd":null,"goal":null,"handle":null,"hint":"Codex cannot reach the model provider and keeps retrying: check the network and the provider's base_url in Codex's config.toml; `dispatch stop ret000` ends the turn","id":"thread-retrying","latest_turn":{"completed_at":null,"duration_ms":null,"error":null,"id":"turn-r","started_at":null,"status":"in_progress"},"model":null,"ownership":"owned","ref":"ret000","retry":{"at":"2099-12-31T23:58:20.5Z","attempts":3,"last_error":"upstream 502"},"stalled_since":null,"status":"retrying","title":"retrying","updated_at":"2099-12-31T23:59:59.997Z","worktree":null,"writable":true,"write_locked_reason":null}"##,
        r##",{"created_at":"2099-12-31T23:59:58.996Z","cwd":null,"goal":null,"handle":null,"hint":"a request waits for an answer: `dispatch requests --lane wai000` lists it, `dispatch respond <request-id> 'accept|decline'` answers it","id":"thread-waiting","latest_turn":{"completed_at":null,"duration_ms":null,"error":null,"id":"turn-w","started_at":null,"status":"in_progress"},"model":null,"ownership":"owned","ref":"wai000","retry":null,"stalled_since":null,"status":"waiting_approval","title":"waiting","updated_at":"2099-12-31T23:59:59.996Z","worktree":null,"writable":true,"write_locked_reason":null}],"next_cursor":"76317c653539363664626661616639363635617c4c7c343130323434343739393939367c776169303030"}"##,
    );
    assert_eq!(text, expected, "{text}");
    let second = d
        .call::<ListInput>(json!({ "all": true, "limit": 5, "cursor": cursor }))
        .await
        .expect("list");
    let text = serde_json::to_string(&second).expect("encoded");
    let expected = concat!(
        r##"{"lanes":[{"created_at":"2099-12-31T23:59:58.995Z","cwd":null,"goal":null,"handle":null,"hint":"authentication failed at the model provider: run `codex login` (or fix the provider's API key), then `dispatch send fai000 <text>` again","id":"thread-failed","latest_turn":{"completed_at":"2099-12-31T23:56:40.25Z","duration_ms":250,"error":"unauthorized","id":"turn-f","started_at":"2099-12-31T23:56:40Z","status":"failed"},"model":null,"ownership":"owned","ref":"fai000","retry":null,"stalled_since":null,"status":"error","title":"failed","updated_at":"2099-12-31T23:59:59.995Z","worktree":null,"writable":true,"write_locked_reason":null}"##,
        r##",{"created_at":"2099-12-31T23:59:58.994Z","cwd":null,"goal":null,"handle":null,"hint":null,"id":"thread-archived","latest_turn":null,"model":null,"ownership":"owned","ref":"arc000","retry":null,"stalled_since":null,"status":"archived","title":"archived","updated_at":"2099-12-31T23:59:59.994Z","worktree":null,"writable":true,"write_locked_reason":null}"##,
        r##",{"created_at":"2099-12-31T23:59:58.993Z","cwd":null,"goal":{"objective":"ship it","status":"active","token_budget":1000,"tokens_used":12},"handle":null,"hint":null,"id":"thread-goal","latest_turn":null,"model":null,"ownership":"owned","ref":"goa000","retry":null,"stalled_since":null,"status":"idle","title":"goal","updated_at":"2099-12-31T23:59:59.993Z","worktree":{"branch":"dispatch/goal","path":"/wt/goal","repo":"/repo"},"writable":true,"write_locked_reason":null}]}"##,
    );
    assert_eq!(text, expected, "{text}");
}

async fn list_pages_with_a_cursor_bound_to_its_query(d: &Daemon) {
    for n in 0..12 {
        d.lane(&format!("lane-{n:02}"), Ownership::Owned).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut input = json!({ "limit": 5 });
        if let Some(c) = &cursor {
            input["cursor"] = json!(c);
        }
        let page = d.call::<ListInput>(input).await.expect("list");
        pages += 1;
        seen.extend(page.lanes.iter().map(|l| l.ref_.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 12);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        12,
        "no lane twice"
    );

    // A cursor is bound to its filters: another query refuses it, saying why.
    let first = d
        .call::<ListInput>(json!({ "limit": 5 }))
        .await
        .expect("list");
    let cursor = first.next_cursor.expect("a second page");
    let err = expect_error(
        d.call::<ListInput>(json!({ "limit": 5, "cursor": cursor, "all": true }))
            .await,
        ErrorCode::InvalidInput,
    );
    assert!(err.message.contains("another query"), "{}", err.message);
    // A page size may change between pages.
    let rest = d
        .call::<ListInput>(json!({ "limit": 100, "cursor": cursor }))
        .await
        .expect("the same query with another page size");
    assert_eq!(rest.lanes.len(), 7);
    assert!(rest.next_cursor.is_none());
    for junk in ["xyz", "0102", "bm90IGEgY3Vyc29y"] {
        expect_error(
            d.call::<ListInput>(json!({ "cursor": junk })).await,
            ErrorCode::InvalidInput,
        );
    }
    // A lanes cursor does not continue unmanaged threads.
    expect_error(
        d.call::<ListInput>(json!({ "unmanaged": true, "cursor": cursor }))
            .await,
        ErrorCode::InvalidInput,
    );
    // Combinations that mean nothing.
    for input in [
        json!({ "archived": true }),
        json!({ "cwd": "/tmp" }),
        json!({ "unmanaged": true, "status": "idle" }),
        json!({ "tree": "lane-00", "children_of": "lane-01" }),
    ] {
        expect_error(d.call::<ListInput>(input).await, ErrorCode::InvalidInput);
    }
}

async fn list_unmanaged_pages_codex_threads_that_are_not_lanes(d: &Daemon) {
    let attached: AttachOutput = d
        .call::<AttachInput>(json!({ "thread_id": "codex-thread-2" }))
        .await
        .expect("attach");
    assert!(!attached.already_attached);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut input = json!({ "unmanaged": true, "limit": 3 });
        if let Some(c) = &cursor {
            input["cursor"] = json!(c);
        }
        let page: ListOutput = d.call::<ListInput>(input).await.expect("list --unmanaged");
        assert!(page.lanes.is_empty());
        assert!(page.threads.len() <= 3);
        seen.extend(page.threads.iter().map(|t| t.id.clone()));
        if let Some(first) = page.threads.first() {
            assert!(first.preview.starts_with("first message of"));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7)
        .filter(|n| *n != 2)
        .map(|n| format!("codex-thread-{n}"))
        .collect();
    assert_eq!(seen, expected, "newest first, the attached thread left out");
    let asked = d.requests();
    assert!(asked.iter().any(|m| m == "thread/list"), "{asked:?}");
}

async fn attach_records_codex_parent_and_get_and_list_show_the_family(d: &Daemon) {
    let root = d.lane("root", Ownership::Owned).await;
    // Codex says the attached thread was forked from `thread-root`: the root lane's thread.
    let child: AttachOutput = d
        .call::<AttachInput>(json!({ "thread_id": "codex-child" }))
        .await
        .expect("attach");
    let grandchild = d.lane("grandchild", Ownership::Owned).await;
    d.service
        .registry()
        .set_parents(&grandchild.lane_ref, Some(&child.lane.ref_), None)
        .await
        .expect("parent");

    let got: GetOutput = d
        .call::<GetInput>(json!({ "lane": child.lane.ref_ }))
        .await
        .expect("get");
    assert_eq!(
        got.parent.as_ref().map(|p| p.ref_.as_str()),
        Some(root.lane_ref.as_str())
    );
    assert_eq!(
        got.children
            .iter()
            .map(|c| c.ref_.as_str())
            .collect::<Vec<_>>(),
        vec![grandchild.lane_ref.as_str()]
    );

    let tree: ListOutput = d
        .call::<ListInput>(json!({ "tree": root.lane_ref }))
        .await
        .expect("list --tree");
    let nodes: Vec<(&str, u64)> = tree
        .tree
        .iter()
        .map(|n| (n.ref_.as_str(), n.depth))
        .collect();
    assert_eq!(
        nodes,
        vec![
            (root.lane_ref.as_str(), 0),
            (child.lane.ref_.as_str(), 1),
            (grandchild.lane_ref.as_str(), 2)
        ]
    );
    assert_eq!(tree.lanes.len(), 3);

    let children: ListOutput = d
        .call::<ListInput>(json!({ "children_of": root.lane_ref }))
        .await
        .expect("list --children-of");
    assert_eq!(
        children
            .lanes
            .iter()
            .map(|l| l.ref_.as_str())
            .collect::<Vec<_>>(),
        vec![child.lane.ref_.as_str()]
    );
    let parent: ListOutput = d
        .call::<ListInput>(json!({ "parent": grandchild.lane_ref }))
        .await
        .expect("list --parent");
    assert_eq!(
        parent
            .lanes
            .iter()
            .map(|l| l.ref_.as_str())
            .collect::<Vec<_>>(),
        vec![child.lane.ref_.as_str()]
    );
    let orphan: ListOutput = d
        .call::<ListInput>(json!({ "parent": root.lane_ref }))
        .await
        .expect("list --parent of a root");
    assert!(orphan.lanes.is_empty());
    expect_error(
        d.call::<ListInput>(json!({ "tree": "zzzzzz" })).await,
        ErrorCode::NotFound,
    );
}

async fn history_shows_overview_turns_tools_and_files(d: &Daemon) {
    let lane = d.lane("worker", Ownership::Owned).await;
    let idle = d.lane("idle", Ownership::Owned).await;
    d.start_turn(&lane, "turn-1").await;
    d.record(
        &lane,
        None,
        vec![
            Fact::Item {
                turn_id: Some("turn-1".into()),
                item_id: "cmd-1".into(),
                kind: "command".into(),
                text: Some("cargo test".into()),
                status: Some("failed".into()),
                at_ms: harness::now_ms(),
            },
            Fact::Item {
                turn_id: Some("turn-1".into()),
                item_id: "edit-1".into(),
                kind: "file_change".into(),
                text: Some("/w/a.rs, /w/b.rs".into()),
                status: Some("completed".into()),
                at_ms: harness::now_ms(),
            },
        ],
    )
    .await;
    d.say(&lane, "turn-1", "done").await;
    d.end_turn(&lane, "turn-1", TurnStatus::Completed).await;

    let overview: HistoryOutput = d
        .call::<HistoryInput>(json!({ "no_git": true }))
        .await
        .expect("history");
    assert_eq!(overview.lanes.len(), 2);
    let row = overview
        .lanes
        .iter()
        .find(|r| r.ref_ == lane.lane_ref)
        .expect("the worker's row");
    assert_eq!(
        (
            row.turns,
            row.items,
            row.messages,
            row.tool_calls,
            row.files_changed
        ),
        (1, 3, 1, 2, 2)
    );
    assert!(row.git.is_none(), "git facts only when asked");
    let quiet = overview
        .lanes
        .iter()
        .find(|r| r.ref_ == idle.lane_ref)
        .expect("idle row");
    assert_eq!((quiet.turns, quiet.items), (0, 0));

    // Git facts are bounded and say why they are missing: these lanes have no directory.
    let with_git: HistoryOutput = d
        .call::<HistoryInput>(json!({ "lane": lane.lane_ref }))
        .await
        .expect("history of a lane");
    assert_eq!(with_git.lanes.len(), 1);
    // A named lane is refreshed from Codex first (this fake thread holds no turns, which
    // removes none the registry knows); the overview of every lane refreshes nothing.
    let refresh = with_git
        .refresh
        .as_ref()
        .expect("a refresh for a named lane");
    assert!(refresh.refreshed, "{refresh:?}");
    assert!(
        refresh.detail.starts_with("refreshed from Codex"),
        "{refresh:?}"
    );
    assert_eq!(with_git.lanes[0].turns, 1, "the registry's turn stays");
    assert!(overview.refresh.is_none());
    let git = with_git.lanes[0].git.as_ref().expect("git facts");
    assert!(git.skipped.is_some(), "{git:?}");

    let turns: HistoryOutput = d
        .call::<HistoryInput>(json!({ "lane": lane.lane_ref, "view": "turns" }))
        .await
        .expect("turns");
    assert_eq!(turns.turns.len(), 1);
    assert_eq!(turns.turns[0].id, "turn-1");
    assert_eq!((turns.turns[0].items, turns.turns[0].tool_calls), (3, 2));

    let tools: HistoryOutput = d
        .call::<HistoryInput>(json!({ "lane": lane.lane_ref, "view": "tools" }))
        .await
        .expect("tools");
    let named: Vec<(&str, u64, u64)> = tools
        .tools
        .iter()
        .map(|t| (t.tool.as_str(), t.calls, t.errored))
        .collect();
    assert_eq!(named, vec![("command", 1, 1), ("file_change", 1, 0)]);

    let files: HistoryOutput = d
        .call::<HistoryInput>(json!({ "lane": lane.lane_ref, "view": "files" }))
        .await
        .expect("files");
    let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["/w/a.rs", "/w/b.rs"]);

    let err = expect_error(
        d.call::<HistoryInput>(json!({ "view": "files" })).await,
        ErrorCode::InvalidInput,
    );
    assert!(err.message.contains("one lane"), "{}", err.message);
    expect_error(
        d.call::<HistoryInput>(json!({ "lane": "zzzzzz" })).await,
        ErrorCode::NotFound,
    );
}

async fn search_filters_and_dates(d: &Daemon) {
    let a = d.lane("alpha", Ownership::Owned).await;
    let b = d.lane("beta", Ownership::Owned).await;
    d.turn(&a, "turn-a", "the walrus sings", TurnStatus::Completed)
        .await;
    d.turn(&b, "turn-b", "the walrus dances", TurnStatus::Completed)
        .await;

    let managed = |extra: serde_json::Value| {
        let mut input = json!({ "query": "walrus", "scope": "managed" });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        input
    };
    let all: SearchOutput = d
        .call::<SearchInput>(managed(json!({})))
        .await
        .expect("search");
    assert_eq!(all.hits.len(), 2);
    let one: SearchOutput = d
        .call::<SearchInput>(managed(json!({ "lane": "beta" })))
        .await
        .expect("search --lane");
    assert_eq!(one.hits.len(), 1);
    assert_eq!(one.hits[0].ref_.as_deref(), Some(b.lane_ref.as_str()));
    let typed: SearchOutput = d
        .call::<SearchInput>(managed(json!({ "type": "command" })))
        .await
        .expect("search --type");
    assert!(typed.hits.is_empty());
    // Today (local time) holds both; a day long ago, neither; a time in the future, neither.
    let today = jiff::Zoned::now().date().to_string();
    let dated: SearchOutput = d
        .call::<SearchInput>(managed(json!({ "since": today, "until": today })))
        .await
        .expect("search --since --until");
    assert_eq!(dated.hits.len(), 2);
    let old: SearchOutput = d
        .call::<SearchInput>(managed(json!({ "until": "2001-01-01" })))
        .await
        .expect("search --until");
    assert!(old.hits.is_empty());
    let future: SearchOutput = d
        .call::<SearchInput>(managed(json!({ "since": "2999-01-01T00:00:00Z" })))
        .await
        .expect("search --since");
    assert!(future.hits.is_empty());
    // With a filter, unmanaged threads are left out of `all`, and refused alone.
    let filtered_all: SearchOutput = d
        .call::<SearchInput>(json!({ "query": "walrus", "errored": true }))
        .await
        .expect("search all with a filter");
    assert!(filtered_all.hits.is_empty());
    assert!(!d.requests().iter().any(|m| m == "thread/list"));
    expect_error(
        d.call::<SearchInput>(json!({ "query": "walrus", "scope": "unmanaged", "errored": true }))
            .await,
        ErrorCode::InvalidInput,
    );
    for bad in ["yesterday", "2026-02-30", "31/12/2026"] {
        let err = expect_error(
            d.call::<SearchInput>(managed(json!({ "since": bad })))
                .await,
            ErrorCode::InvalidInput,
        );
        assert!(err.message.contains("`since`"), "{}", err.message);
    }
    expect_error(
        d.call::<SearchInput>(managed(json!({ "lane": "zzzzzz" })))
            .await,
        ErrorCode::NotFound,
    );
}
