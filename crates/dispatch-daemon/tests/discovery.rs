//! Discovery against the scripted fake App Server, in seconds: `list` in pages behind a cursor
//! bound to its query, `list --unmanaged` (Codex's threads less the attached ones, paged),
//! a lane's family in `list` and `get`, `history` views, and `search` filters and dates.
//! The binary is its own fake App Server (see `harness`).

mod harness;

use std::collections::HashSet;
use std::process::ExitCode;

use dispatch_contract::types::{
    AttachInput, AttachOutput, GetInput, GetOutput, HistoryInput, HistoryOutput, Lane, ListInput,
    ListOutput, SearchInput, SearchOutput,
};
use dispatch_contract::{ErrorCode, Surface};
use dispatch_registry::{Fact, GoalRow, Ownership, TurnRow, TurnStatus, WorktreeRow};
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
        trial("list_with_a_warm_cache_shows_every_write", |d| {
            Box::pin(list_with_a_warm_cache_shows_every_write(d))
        }),
        trial(
            "list_of_a_running_lane_follows_the_clock_on_a_warm_cache",
            |d| Box::pin(list_of_a_running_lane_follows_the_clock_on_a_warm_cache(d)),
        ),
        trial(
            "list_keeps_a_running_lane_until_the_moment_it_stalls",
            |d| Box::pin(list_keeps_a_running_lane_until_the_moment_it_stalls(d)),
        ),
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
    let mut conn = d.raw_connection().await;
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
    // Three times: made (the lanes seen), made and kept (seen again), and copied.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let listed = d
            .call::<ListInput>(json!({ "all": true, "limit": 5 }))
            .await
            .expect("list");
        answers.push(serde_json::to_string(&listed).expect("encoded"));
    }
    assert_eq!(
        d.service.lane_texts().size().0,
        5,
        "every lane of the page is kept, the running ones until they would stall"
    );
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
    for answer in &answers {
        assert_eq!(answer, expected);
    }
    // Every row written again (the same values): the next call finds the page mostly
    // changed and the calls after it read the page plainly; the same text either way.
    let texts = d.service.lane_texts();
    sqlx::query("UPDATE lanes SET title = title")
        .execute(&mut conn)
        .await
        .expect("every row written");
    let mut plain = Vec::new();
    for _ in 0..3 {
        let listed = d
            .call::<ListInput>(json!({ "all": true, "limit": 5 }))
            .await
            .expect("list");
        plain.push(texts.plain_calls(Surface::Cli));
        assert_eq!(serde_json::to_string(&listed).expect("encoded"), expected);
    }
    assert_eq!(plain, [3, 2, 1], "read plainly after the changed page");
    // The last plain call; the call after it probes (the page and its stamps in one
    // statement), finds the lanes as the changed page noted them and keeps them; the next one
    // copies them. The same text every time.
    for _ in 0..3 {
        let listed = d
            .call::<ListInput>(json!({ "all": true, "limit": 5 }))
            .await
            .expect("list");
        assert_eq!(texts.plain_calls(Surface::Cli), 0);
        assert_eq!(serde_json::to_string(&listed).expect("encoded"), expected);
    }
    assert_eq!(texts.size().0, 5, "kept again");
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

/// `list` of every lane (the cache warm from the calls before) against each lane converted
/// afresh (`get` never uses the cache): the same text, lane by lane, twice (a lane is kept
/// when the second call sees it unchanged). Returns how many lanes the cache holds a text
/// of after the calls.
async fn list_matches_fresh_conversions(d: &Daemon, after: &str) -> usize {
    for call in ["first", "second"] {
        list_once_matches_fresh_conversions(d, &format!("{after} ({call} call)")).await;
    }
    d.service.lane_texts().size().0
}

/// One `list` of every lane against each lane converted afresh.
async fn list_once_matches_fresh_conversions(d: &Daemon, after: &str) {
    let listed = d
        .call::<ListInput>(json!({ "all": true, "limit": 1000 }))
        .await
        .expect("list");
    for lane in &listed.lanes {
        let lane_ref = lane.decode().expect("decoded").ref_.clone();
        let fresh: GetOutput = d
            .call::<GetInput>(json!({ "lane": lane_ref }))
            .await
            .expect("get");
        assert_eq!(
            serde_json::to_string(lane).expect("encoded"),
            serde_json::to_string(&fresh.lane).expect("encoded"),
            "after {after}: the listed lane differs from a fresh conversion"
        );
    }
}

/// Every kind of write to a lane's row, by the registry's own calls, by the operations and
/// by another connection's raw SQL, shows in the next `list` although the cache holds the
/// lane as it was before.
async fn list_with_a_warm_cache_shows_every_write(d: &Daemon) {
    let lane = d.lane("subject", Ownership::Owned).await;
    let bystander = d.lane("bystander-0", Ownership::Owned).await;
    for n in 1..3 {
        d.lane(&format!("bystander-{n}"), Ownership::Owned).await;
    }
    d.lane("observed", Ownership::Attached).await;
    let subject = lane.lane_ref.clone();
    assert_eq!(list_matches_fresh_conversions(d, "creating").await, 5);
    assert_eq!(
        list_matches_fresh_conversions(d, "nothing").await,
        5,
        "the cache is warm"
    );
    let at = |offset: i64| harness::now_ms() + offset;
    let facts: Vec<(&str, Vec<Fact>)> = vec![
        (
            "a turn starting",
            vec![Fact::TurnStarted {
                turn_id: "turn-1".into(),
                at_ms: at(0),
            }],
        ),
        (
            "an error Codex retries",
            vec![Fact::Error {
                turn_id: Some("turn-1".into()),
                message: "upstream 502".into(),
                will_retry: true,
                cause: Some("network".into()),
                at_ms: at(1),
            }],
        ),
        (
            "a turn failing",
            vec![Fact::TurnCompleted {
                turn: TurnRow {
                    turn_id: "turn-1".into(),
                    status: TurnStatus::Failed,
                    error: Some("unauthorized".into()),
                    started_at_ms: Some(at(-50)),
                    completed_at_ms: Some(at(2)),
                    duration_ms: None,
                },
            }],
        ),
        (
            "an error cause",
            vec![Fact::Error {
                turn_id: None,
                message: "no credentials".into(),
                will_retry: false,
                cause: Some("authentication".into()),
                at_ms: at(3),
            }],
        ),
        (
            "a turn completing",
            vec![
                Fact::TurnStarted {
                    turn_id: "turn-2".into(),
                    at_ms: at(4),
                },
                Fact::TurnCompleted {
                    turn: TurnRow {
                        turn_id: "turn-2".into(),
                        status: TurnStatus::Completed,
                        error: None,
                        started_at_ms: Some(at(4)),
                        completed_at_ms: Some(at(5)),
                        duration_ms: Some(1),
                    },
                },
            ],
        ),
        (
            "an approval request",
            vec![Fact::Status(dispatch_registry::LaneStatus::WaitingApproval)],
        ),
        (
            "a status back to idle",
            vec![Fact::Status(dispatch_registry::LaneStatus::Idle)],
        ),
        (
            "a goal",
            vec![Fact::Goal(Some(GoalRow {
                objective: "ship it".into(),
                status: "active".into(),
                token_budget: Some(1000),
                tokens_used: Some(3),
            }))],
        ),
        ("a title", vec![Fact::Title(Some("renamed".into()))]),
        (
            "token usage",
            vec![Fact::TokenUsage(
                json!({ "total": { "totalTokens": 9 } }).to_string().into(),
            )],
        ),
        ("archiving", vec![Fact::Archived(true)]),
        ("restoring", vec![Fact::Archived(false)]),
    ];
    for (what, facts) in facts {
        d.record(&lane, None, facts).await;
        assert!(list_matches_fresh_conversions(d, what).await >= 4, "{what}");
    }
    let registry = d.service.registry();
    registry
        .set_title(&subject, Some("titled"))
        .await
        .expect("title");
    list_matches_fresh_conversions(d, "set_title").await;
    registry
        .set_handle(&subject, Some("handled"))
        .await
        .expect("handle");
    list_matches_fresh_conversions(d, "set_handle").await;
    registry
        .set_worktree(
            &subject,
            Some(&WorktreeRow {
                path: "/wt/subject".into(),
                branch: "dispatch/subject".into(),
                repo: "/repo".into(),
            }),
        )
        .await
        .expect("worktree");
    list_matches_fresh_conversions(d, "set_worktree").await;
    registry
        .set_worktree(&subject, None)
        .await
        .expect("worktree");
    list_matches_fresh_conversions(d, "removing the worktree").await;
    registry.touch(&subject, at(60_000)).await.expect("touch");
    list_matches_fresh_conversions(d, "touch").await;
    // Another connection, as another process would write, past every call of the registry.
    let mut conn = d.raw_connection().await;
    for (what, set) in [
        ("raw SQL: the model", "model = 'gpt-raw'"),
        ("raw SQL: the cwd", "cwd = '/raw'"),
        ("raw SQL: the ownership", "ownership = 'attached'"),
        ("raw SQL: the same values again", "ownership = 'attached'"),
        (
            "raw SQL: the retry columns",
            "status = 'busy', retry_attempts = 2, retry_error = 'e'",
        ),
        (
            "raw SQL: back to owned and idle",
            "status = 'idle', retry_attempts = 0, ownership = 'owned'",
        ),
    ] {
        let sql = format!("UPDATE lanes SET {set} WHERE ref = '{subject}'");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect(what);
        list_matches_fresh_conversions(d, what).await;
    }
    // A lane written back by hand from an older copy (a retired ref): the trigger of its
    // INSERT bumps the copy's version to the one the cache holds, with other values; only
    // its new incarnation tells them apart.
    sqlx::query("CREATE TEMP TABLE saved AS SELECT * FROM lanes WHERE ref = ?1")
        .bind(&bystander.lane_ref)
        .execute(&mut conn)
        .await
        .expect("save");
    sqlx::query("UPDATE lanes SET title = 'in between' WHERE ref = ?1")
        .bind(&bystander.lane_ref)
        .execute(&mut conn)
        .await
        .expect("update");
    list_matches_fresh_conversions(d, "a title in between").await;
    sqlx::query("UPDATE saved SET title = 'came back'")
        .execute(&mut conn)
        .await
        .expect("edit");
    sqlx::query("INSERT OR REPLACE INTO lanes SELECT * FROM saved")
        .execute(&mut conn)
        .await
        .expect("replace");
    list_matches_fresh_conversions(d, "a row replaced").await;
    // Operations, through the daemon.
    d.call::<dispatch_contract::types::ArchiveInput>(json!({ "target": subject }))
        .await
        .expect("archive");
    list_matches_fresh_conversions(d, "archive").await;
    d.call::<dispatch_contract::types::RenameInput>(
        json!({ "target": subject, "title": "named by rename" }),
    )
    .await
    .expect("rename");
    list_matches_fresh_conversions(d, "rename").await;
}

/// The lane `lane_ref` as `page` shows it.
fn listed(page: &ListOutput, lane_ref: &str) -> Lane {
    page.lanes
        .iter()
        .map(|l| l.decode().expect("decoded").into_owned())
        .find(|l| l.ref_ == lane_ref)
        .expect("listed")
}

/// A running lane's `stalled_since` and hint depend on the clock: a warm cache never holds
/// it, and its hint counts the seconds as they pass.
async fn list_of_a_running_lane_follows_the_clock_on_a_warm_cache(d: &Daemon) {
    let lane = d.lane("running", Ownership::Owned).await;
    d.lane("resting", Ownership::Owned).await;
    let mut conn = d.raw_connection().await;
    // Silent for an hour: stalled under the default limit.
    let silent_since = harness::now_ms() - 3_600_000;
    sqlx::query(
        "UPDATE lanes SET status = 'busy', latest_turn_id = 't',          latest_turn_status = 'in_progress', updated_at_ms = ?2 WHERE ref = ?1",
    )
    .bind(&lane.lane_ref)
    .bind(silent_since)
    .execute(&mut conn)
    .await
    .expect("busy");
    let hint_of = |page: &ListOutput| {
        let shown = listed(page, &lane.lane_ref);
        (shown.stalled_since.clone(), shown.hint.clone())
    };
    let asked_at = harness::now_ms();
    let first = d.call::<ListInput>(json!({})).await.expect("list");
    let answered_at = harness::now_ms();
    let (stalled, hint) = hint_of(&first);
    // Seen a second time unchanged, the resting lane is kept; the running one is not.
    let second = d.call::<ListInput>(json!({})).await.expect("list");
    assert_eq!(hint_of(&second).0, stalled);
    assert!(stalled.is_some(), "stalled");
    // The silence as the daemon counted it, somewhere between the call and its answer.
    let silent_s = hint
        .as_deref()
        .and_then(|h| h.split("no event from the App Server for ").nth(1))
        .and_then(|rest| rest.split(" s").next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no silence in the hint: {hint:?}"));
    assert!(
        ((asked_at - silent_since) / 1000..=(answered_at - silent_since) / 1000)
            .contains(&silent_s),
        "{hint:?}"
    );
    assert_eq!(
        d.service.lane_texts().size().0,
        1,
        "only the resting lane is kept"
    );
    // The hint counts on as the clock moves, the row unchanged: wait for the next second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = d.call::<ListInput>(json!({})).await.expect("list");
        let (stalled_again, hint_again) = hint_of(&again);
        assert_eq!(stalled_again, stalled);
        if hint_again != hint {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hint never moved on: {hint_again:?}"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(d.service.lane_texts().size().0, 1);
}

/// A running lane not yet stalled shows the same text until its silence reaches the stall
/// limit: a warm cache keeps it, and it shows as stalled from exactly the moment the clock
/// passes that bound (every answer asked for at or after it is stalled, every answer given
/// before it is not).
async fn list_keeps_a_running_lane_until_the_moment_it_stalls(d: &Daemon) {
    let lane = d.lane("running", Ownership::Owned).await;
    d.lane("resting", Ownership::Owned).await;
    let stall_after_ms = d.service.view().stall_after_ms;
    let mut conn = d.raw_connection().await;
    // Silent for the stall limit less three seconds: it stalls at `stalls_at`.
    let silent_since = harness::now_ms() - stall_after_ms + 3_000;
    let stalls_at = silent_since + stall_after_ms;
    sqlx::query(
        "UPDATE lanes SET status = 'busy', latest_turn_id = 't', \
         latest_turn_status = 'in_progress', updated_at_ms = ?2 WHERE ref = ?1",
    )
    .bind(&lane.lane_ref)
    .bind(silent_since)
    .execute(&mut conn)
    .await
    .expect("busy");
    // The running lane as listed, and the clock before the call and after its answer.
    let list = || async {
        let asked_at = harness::now_ms();
        let page = d.call::<ListInput>(json!({})).await.expect("list");
        let answered_at = harness::now_ms();
        let shown = listed(&page, &lane.lane_ref);
        (shown, asked_at, answered_at)
    };
    // Noted, then kept (seen a second time unchanged), then copied: both lanes are kept.
    for _ in 0..3 {
        let (shown, _, answered_at) = list().await;
        assert!(answered_at < stalls_at, "the calls took too long to test");
        assert_eq!(shown.stalled_since, None);
        assert_eq!(shown.hint, None);
    }
    assert_eq!(
        d.service.lane_texts().size().0,
        2,
        "the running lane is kept until it would stall"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (shown, asked_at, answered_at) = list().await;
        if answered_at < stalls_at {
            assert_eq!(shown.stalled_since, None, "stalled before its time");
        }
        if asked_at >= stalls_at {
            assert!(
                shown.stalled_since.is_some(),
                "not stalled {} ms after the bound",
                asked_at - stalls_at
            );
            assert!(
                shown
                    .hint
                    .as_deref()
                    .is_some_and(|h| h.contains("no event")),
                "{:?}",
                shown.hint
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock never reached the bound"
        );
        tokio::task::yield_now().await;
    }
    // Stalled, it reads the clock's value (its hint counts seconds): no longer kept.
    list().await;
    assert_eq!(d.service.lane_texts().size().0, 1, "only the resting lane");
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
        seen.extend(
            page.lanes
                .iter()
                .map(|l| l.decode().expect("decoded").ref_.clone()),
        );
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
            .map(|l| l.decode().expect("decoded").ref_.clone())
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
            .map(|l| l.decode().expect("decoded").ref_.clone())
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
