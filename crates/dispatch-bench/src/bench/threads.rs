//! Issue 5's measurements: `search` over 100,000 indexed items in 1,000 lanes, and `sync` of
//! a thread with 1,000 items (from the fake App Server's `thread/read`).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use dispatch_registry::{Fact, NewLane, Ownership, Recorded, Registry};

use super::env::{AppServer, Bins, Env};
use crate::bench::{Row, fmt_duration, median, ratio, time_runs};

const LANES: usize = 1000;
const ITEMS_PER_LANE: usize = 100;

/// Fills the registry of `env` before the daemon starts: 1,000 lanes × 100 items.
fn populate(env: &Env) -> anyhow::Result<()> {
    let home = env.home();
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let db = home.join("registry.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let registry = Registry::open(&db).await?;
        for l in 0..LANES {
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
            let facts = (0..ITEMS_PER_LANE)
                .map(|i| Fact::Item {
                    turn_id: Some("t".into()),
                    item_id: format!("i{i}"),
                    kind: "agent_message".into(),
                    text: Some(format!(
                        "item {i} of lane {l} talks about topic{} and keyword{} among ordinary words",
                        l % 97,
                        i % 89
                    )),
                    status: None,
                    at_ms: 1,
                })
                .collect();
            registry
                .record(&[Recorded { lane_ref: lane.lane_ref.into(), event: None, facts }])
                .await?;
        }
        registry.close().await;
        anyhow::Ok(())
    })
}

/// `search` round trips over 100,000 items (target ≤ 10 ms).
pub fn search(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(bins, AppServer::Fake, None, &[])?;
    let filled = Instant::now();
    populate(&env)?;
    let fill = filled.elapsed();
    env.up()?;
    let mut rows = Vec::new();
    for (name, query) in [
        ("search: rare words (100,000 items)", "topic7 keyword42"),
        ("search: a common word (100,000 items)", "ordinary"),
    ] {
        let args = ["search", query, "--scope", "managed", "--json"];
        let hits = env.json(&args[..4])?["hits"].as_array().map_or(0, Vec::len);
        ensure!(hits > 0, "`search {query}` found nothing");
        let samples = time_runs(runs, || env.run(&args).map(drop))?;
        rows.push(
            Row::timing(name, &samples)
                .target(ratio(
                    median(&samples),
                    Duration::from_millis(10),
                    "target (≤ 10 ms)",
                ))
                .note(format!("{hits} hits (limit 20)")),
        );
    }
    rows[0].note.push_str(&format!(
        "; {LANES} lanes × {ITEMS_PER_LANE} items indexed in {}",
        fmt_duration(fill)
    ));
    Ok(rows)
}

/// `attach` + `sync` of a thread with 1,000 items.
pub fn sync(bins: &Bins, runs: usize) -> anyhow::Result<Row> {
    let mut samples = Vec::new();
    let mut added = 0;
    for run in 0..runs.clamp(1, 10) {
        let env = Env::new(bins, AppServer::Fake, None, &[])?;
        env.up()?;
        let id = format!("00000000-0000-7000-8000-{run:012}");
        let lane = env.json(&["attach", &id])?["lane"]["ref"]
            .as_str()
            .context("attach gave no ref")?
            .to_owned();
        let start = Instant::now();
        let synced = env.json(&["sync", &lane])?;
        samples.push(start.elapsed());
        added = synced["items_added"].as_u64().unwrap_or(0);
        ensure!(added == 1000, "sync indexed {added} items, not 1,000");
    }
    samples.sort();
    Ok(Row::timing("sync of a thread with 1,000 items", &samples)
        .note(format!("{added} items added per sync")))
}
