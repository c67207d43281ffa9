//! Issue 13's measurements: the `history` overview over 1,000 lanes holding 100,000 items
//! (the registry query the daemon runs, and the CLI round trip), and `list` pages of 200
//! over 10,000 lanes behind the cursor (end to end).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use dispatch_registry::{
    Fact, NewLane, Ownership, PageFilter, Recorded, Registry, TurnRow, TurnStatus,
};

use super::env::{AppServer, Bins, Env};
use crate::bench::{Row, fmt_duration, median, ratio, thousands, time_runs};

const HISTORY_LANES: usize = 1000;
const ITEMS_PER_LANE: usize = 100;
const PAGE_LANES: usize = 10_000;

/// A fresh registry in `env`'s home, before the daemon starts.
async fn open(env: &Env) -> anyhow::Result<Registry> {
    let home = env.home();
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    Ok(Registry::open(&home.join("registry.db")).await?)
}

/// The facts of one lane's history: 10 turns of 10 items (a user message, commands, file
/// changes, an MCP call, agent messages), and its token usage.
fn lane_facts(l: usize) -> Vec<Fact> {
    let mut facts = Vec::new();
    for t in 0..ITEMS_PER_LANE / 10 {
        let turn = format!("turn-{t}");
        let at = 1_700_000_000_000 + (t as i64) * 60_000;
        facts.push(Fact::TurnStarted {
            turn_id: turn.clone(),
            at_ms: at,
        });
        for i in 0..10i64 {
            let (kind, text) = match i {
                0 => ("user_message", format!("task {t} of lane {l}")),
                1..=3 => ("command", format!("cargo test -p crate{i}{t}")),
                4 | 5 => (
                    "file_change",
                    format!(
                        "/work/lane{l}/src/file{}.rs, /work/lane{l}/README.md",
                        t % 7
                    ),
                ),
                6 => ("mcp_tool_call", "docs.search".to_owned()),
                7 => ("reasoning", "thinking".to_owned()),
                _ => ("agent_message", format!("answer {i} of turn {t}")),
            };
            facts.push(Fact::Item {
                turn_id: Some(turn.clone()),
                item_id: format!("i{i}"),
                kind: kind.into(),
                text: Some(text),
                status: Some(if i == 2 { "failed" } else { "completed" }.to_owned()),
                at_ms: at + i * 1000,
            });
        }
        facts.push(Fact::TurnCompleted {
            turn: TurnRow {
                turn_id: turn,
                status: TurnStatus::Completed,
                error: None,
                started_at_ms: Some(at),
                completed_at_ms: Some(at + 30_000),
                duration_ms: Some(30_000),
            },
        });
    }
    facts.push(Fact::TokenUsage(
        serde_json::json!({"total": {"totalTokens": 1000 * l}})
            .to_string()
            .into(),
    ));
    facts
}

/// `history` over 1,000 lanes × 100 items: the overview query in the registry (the daemon's
/// side, target ≤ 20 ms) and `history --no-git --limit 1000 --json` end to end.
pub fn history(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(bins, AppServer::Fake, None, &[])?;
    let filled = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (query, rows_seen) = runtime.block_on(async {
        let registry = open(&env).await?;
        for l in 0..HISTORY_LANES {
            let lane = registry
                .create_lane(&NewLane {
                    thread_id: format!("00000000-0000-7000-8000-{l:012}"),
                    title: Some(format!("lane {l}")),
                    handle: None,
                    ownership: Ownership::Owned,
                    cwd: None,
                    model: None,
                })
                .await?;
            registry
                .record(&[Recorded {
                    lane_ref: lane.lane_ref.into(),
                    event: None,
                    facts: lane_facts(l).into(),
                }])
                .await?;
        }
        let limit = u32::try_from(HISTORY_LANES)?;
        let mut samples = Vec::new();
        let mut rows_seen = 0;
        for _ in 0..runs {
            let start = Instant::now();
            let rows = registry.history_overview(None, false, limit).await?;
            samples.push(start.elapsed());
            rows_seen = rows.len();
        }
        registry.close().await;
        samples.sort();
        anyhow::Ok((samples, rows_seen))
    })?;
    let fill = filled.elapsed();
    ensure!(
        rows_seen == HISTORY_LANES,
        "the overview has {rows_seen} rows, not {HISTORY_LANES}"
    );
    env.up()?;
    let args = ["history", "--no-git", "--limit", "1000", "--json"];
    let answer = env.json(&args[..4])?;
    let lanes = answer["lanes"].as_array().map_or(0, Vec::len);
    ensure!(lanes == HISTORY_LANES, "history listed {lanes} lanes");
    ensure!(
        answer["lanes"][0]["files_changed"].as_u64() == Some(8),
        "files_changed is {}, not 8",
        answer["lanes"][0]["files_changed"]
    );
    let round_trips = time_runs(runs, || env.run(&args).map(drop))?;
    let items = thousands((HISTORY_LANES * ITEMS_PER_LANE) as u64);
    Ok(vec![
        Row::timing(
            &format!("history overview: registry query ({HISTORY_LANES} lanes, {items} items)"),
            &query,
        )
        .target(ratio(
            median(&query),
            Duration::from_millis(20),
            "target (≤ 20 ms daemon side)",
        ))
        .note(format!(
            "{HISTORY_LANES} rows; registry filled in {}",
            fmt_duration(fill)
        )),
        Row::timing(
            "history --no-git --limit 1000 --json (end to end)",
            &round_trips,
        )
        .note(format!("{lanes} rows")),
    ])
}

/// `list` pages of 200 over 10,000 lanes: the first page and a page deep in, behind its
/// cursor (target ≤ 5 ms per page end to end).
pub fn pages(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(bins, AppServer::Fake, None, &[])?;
    let filled = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let query = runtime.block_on(async {
        let registry = open(&env).await?;
        for l in 0..PAGE_LANES {
            let lane = registry
                .create_lane(&NewLane {
                    thread_id: format!("00000000-0000-7000-8000-{l:012}"),
                    title: Some(format!("lane {l}")),
                    handle: None,
                    ownership: Ownership::Owned,
                    cwd: None,
                    model: None,
                })
                .await?;
            registry
                .touch(&lane.lane_ref, 1_700_000_000_000 + (l / 3) as i64)
                .await?;
        }
        // The daemon's side: the registry query of the first page and of the 26th.
        let filter = PageFilter::default();
        let mut after = None;
        for _ in 0..25 {
            after = registry
                .list_lanes_page(&filter, after.as_ref(), 200)
                .await?
                .next;
        }
        let mut samples = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let first = registry.list_lanes_page(&filter, None, 200).await?;
            let deep = registry
                .list_lanes_page(&filter, after.as_ref(), 200)
                .await?;
            samples.push(start.elapsed() / 2);
            ensure!(
                first.lanes.len() == 200 && deep.lanes.len() == 200,
                "short page"
            );
        }
        registry.close().await;
        samples.sort();
        anyhow::Ok(samples)
    })?;
    let fill = filled.elapsed();
    env.up()?;

    // Walk every page once: 50 pages of 200, no lane twice.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut deep = None;
    loop {
        let mut args = vec!["list", "--limit", "200"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = env.json(&args)?;
        pages += 1;
        for lane in page["lanes"].as_array().context("no lanes")? {
            ensure!(
                seen.insert(lane["ref"].as_str().unwrap_or_default().to_owned()),
                "a lane came twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        if pages == 25 {
            deep = cursor.clone();
        }
        ensure!(pages <= 60, "paging does not end");
    }
    ensure!(
        seen.len() == PAGE_LANES,
        "{} lanes seen, not {PAGE_LANES}",
        seen.len()
    );
    let deep = deep.context("no 26th page")?;
    let mut rows = vec![
        Row::timing("list page of 200: registry query (10,000 lanes)", &query)
            .note("mean of the first page and the 26th, per sample".to_owned()),
    ];
    for (name, args) in [
        (
            "list --limit 200 --json: first page (10,000 lanes)",
            vec!["list", "--limit", "200", "--json"],
        ),
        (
            "list --limit 200 --cursor .. --json: 26th page (10,000 lanes)",
            vec![
                "list",
                "--limit",
                "200",
                "--cursor",
                deep.as_str(),
                "--json",
            ],
        ),
    ] {
        let samples = time_runs(runs, || env.run(&args).map(drop))?;
        rows.push(Row::timing(name, &samples).target(ratio(
            median(&samples),
            Duration::from_millis(5),
            "target (≤ 5 ms)",
        )));
    }
    rows[1].note = format!(
        "{pages} pages walked, {} lanes, none twice; registry filled in {}",
        thousands(seen.len() as u64),
        fmt_duration(fill)
    );
    Ok(rows)
}
