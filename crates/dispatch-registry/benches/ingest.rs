//! Ingest and listing throughput of the registry.
//!
//! `cargo bench -p dispatch-registry --bench ingest` records 100 lanes × 1,000 notifications
//! (a typical mix: turn start/end, user and agent messages streamed as deltas, a command with
//! output deltas and an approval wait, token usage updates), interleaved across lanes and fed to
//! [`Registry::record`] in batches, several runs each on a fresh registry; it prints the median
//! notifications per second and stored events per second (deltas are folded into items, not
//! stored as events). Then it lists 1,000 lanes and prints the median time of one listing.
//!
//! Optional arguments: `--runs N` (default 5), `--batch N` (repeatable; default 256 and 4096),
//! `--quick` (10 lanes, 2 runs, for a smoke test). The machine's load average is printed with
//! the results: other processes competing for the CPU lower the figures.
//!
//! `--flood N` measures instead what storing the daemon benchmark's flood costs the registry
//! and SQLite alone (ADR 0020, "Ingest, eleventh round"): one lane's turn of `N` notifications
//! shaped as `fake-app-server` sends them (`FloodPlan`), stored by [`Registry::record`] in
//! batches of 4,096 as the event pump does, then the same events and items written by SQL
//! alone (`INSERT … SELECT` from temporary tables, nothing bound per row) with the schema as
//! shipped and with parts of it taken away. The SQL-only figure is a floor for any code that
//! stores these rows in this schema on this machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dispatch_registry::{
    Fact, LaneFilter, LaneStatus, NewEvent, NewLane, Ownership, Recorded, Registry, TurnRow,
    TurnStatus,
};
use serde_json::json;

/// Notifications per turn in [`turn`]; 1,000 per lane is 25 turns.
const PER_TURN: usize = 40;

struct Options {
    lanes: usize,
    per_lane: usize,
    runs: usize,
    batches: Vec<usize>,
    /// `--flood N`: the flood's costs instead of the mixed workload.
    flood: Option<usize>,
}

fn options() -> Options {
    let mut options = Options {
        lanes: 100,
        per_lane: 1_000,
        runs: 5,
        batches: Vec::new(),
        flood: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--batch" => options
                .batches
                .extend(args.next().and_then(|v| v.parse::<usize>().ok())),
            "--flood" => options.flood = args.next().and_then(|v| v.parse().ok()),
            "--quick" => {
                options.lanes = 10;
                options.runs = 2;
            }
            // `cargo bench` passes `--bench`; ignore anything else.
            _ => {}
        }
    }
    if options.batches.is_empty() {
        options.batches = vec![256, 4096];
    }
    options
}

fn stored(lane: &str, method: &str, turn: &str, at_ms: i64, facts: Vec<Fact>) -> Recorded {
    Recorded {
        lane_ref: lane.into(),
        event: Some(NewEvent {
            method: method.to_owned().into(),
            turn_id: Some(turn.to_owned()),
            at_ms,
            params: json!({
                "threadId": format!("thread-{lane}"),
                "turnId": turn,
                "method": method,
                "payload": { "seq": at_ms, "note": "a typical small notification body" },
            })
            .to_string()
            .into(),
        }),
        facts: facts.into(),
    }
}

fn folded(lane: &str, turn: &str, item: &str, kind: &str, delta: &str, at_ms: i64) -> Recorded {
    Recorded {
        lane_ref: lane.into(),
        event: None,
        facts: vec![Fact::ItemDelta {
            turn_id: Some(turn.to_owned()),
            item_id: item.to_owned(),
            kind: kind.to_owned().into(),
            delta: delta.to_owned(),
            at_ms,
        }]
        .into(),
    }
}

fn item(turn: &str, id: &str, kind: &str, text: Option<&str>, status: &str, at_ms: i64) -> Fact {
    Fact::Item {
        turn_id: Some(turn.to_owned()),
        item_id: id.to_owned(),
        kind: kind.to_owned().into(),
        text: text.map(str::to_owned),
        status: Some(status.to_owned()),
        at_ms,
    }
}

/// One turn's notifications: 40, of which 24 are deltas and 16 are stored events.
fn turn(lane: &str, n: usize, t0: i64) -> Vec<Recorded> {
    let turn = format!("turn-{n}");
    let t = &turn;
    let at = |k: usize| t0 + i64::try_from(k).unwrap();
    let (user, msg, cmd) = (format!("u-{n}"), format!("m-{n}"), format!("c-{n}"));
    let mut out = vec![
        stored(
            lane,
            "turn/started",
            t,
            at(0),
            vec![
                Fact::TurnStarted {
                    turn_id: turn.clone(),
                    at_ms: at(0),
                },
                Fact::Status(LaneStatus::Busy),
            ],
        ),
        stored(
            lane,
            "item/started",
            t,
            at(1),
            vec![item(
                t,
                &user,
                "user_message",
                Some("please fix the failing test"),
                "in_progress",
                at(1),
            )],
        ),
        stored(
            lane,
            "item/completed",
            t,
            at(2),
            vec![item(t, &user, "user_message", None, "completed", at(2))],
        ),
        stored(
            lane,
            "item/started",
            t,
            at(3),
            vec![item(t, &msg, "agent_message", None, "in_progress", at(3))],
        ),
    ];
    for k in 0..16 {
        out.push(folded(
            lane,
            t,
            &msg,
            "agent_message",
            "some streamed words ",
            at(4 + k),
        ));
    }
    out.extend([
        stored(
            lane,
            "item/completed",
            t,
            at(20),
            vec![item(t, &msg, "agent_message", None, "completed", at(20))],
        ),
        stored(
            lane,
            "thread/tokenUsage/updated",
            t,
            at(21),
            vec![Fact::TokenUsage(json!({
                "total": { "inputTokens": 1200 + n, "outputTokens": 300, "totalTokens": 1500 + n },
                "last": { "inputTokens": 200, "outputTokens": 40, "totalTokens": 240 },
            }).to_string().into())],
        ),
        stored(
            lane,
            "item/started",
            t,
            at(22),
            vec![item(
                t,
                &cmd,
                "command",
                Some("cargo test"),
                "in_progress",
                at(22),
            )],
        ),
        stored(
            lane,
            "item/commandExecution/requestApproval",
            t,
            at(23),
            vec![Fact::Status(LaneStatus::WaitingApproval)],
        ),
        stored(
            lane,
            "serverRequest/resolved",
            t,
            at(24),
            vec![Fact::Status(LaneStatus::Busy)],
        ),
    ]);
    for k in 0..8 {
        out.push(folded(
            lane,
            t,
            &cmd,
            "command",
            "test output line\n",
            at(25 + k),
        ));
    }
    out.extend([
        stored(
            lane,
            "item/completed",
            t,
            at(33),
            vec![item(t, &cmd, "command", None, "completed", at(33))],
        ),
        stored(
            lane,
            "item/started",
            t,
            at(34),
            vec![item(
                t,
                &format!("f-{n}"),
                "file_change",
                Some("src/lib.rs"),
                "in_progress",
                at(34),
            )],
        ),
        stored(
            lane,
            "item/completed",
            t,
            at(35),
            vec![item(
                t,
                &format!("f-{n}"),
                "file_change",
                None,
                "completed",
                at(35),
            )],
        ),
        stored(
            lane,
            "thread/tokenUsage/updated",
            t,
            at(36),
            vec![Fact::TokenUsage(json!({
                "total": { "inputTokens": 1400 + n, "outputTokens": 340, "totalTokens": 1740 + n },
            }).to_string().into())],
        ),
        stored(lane, "thread/status/changed", t, at(37), vec![]),
        stored(
            lane,
            "turn/completed",
            t,
            at(38),
            vec![Fact::TurnCompleted {
                turn: TurnRow {
                    turn_id: turn.clone(),
                    status: TurnStatus::Completed,
                    error: None,
                    started_at_ms: Some(at(0)),
                    completed_at_ms: Some(at(38)),
                    duration_ms: None,
                },
            }],
        ),
        stored(
            lane,
            "thread/status/changed",
            t,
            at(39),
            vec![Fact::Status(LaneStatus::Idle)],
        ),
    ]);
    assert_eq!(out.len(), PER_TURN);
    out
}

/// The whole workload, interleaved across lanes (lanes stream concurrently).
fn workload(lanes: &[String], per_lane: usize) -> Vec<Recorded> {
    let per_lane_notes: Vec<Vec<Recorded>> = lanes
        .iter()
        .map(|lane| {
            (0..per_lane.div_ceil(PER_TURN))
                .flat_map(|n| turn(lane, n, 1_000_000 + i64::try_from(n * 100).unwrap()))
                .take(per_lane)
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(lanes.len() * per_lane);
    let mut iters: Vec<_> = per_lane_notes.into_iter().map(Vec::into_iter).collect();
    loop {
        let before = out.len();
        for iter in &mut iters {
            out.extend(iter.next());
        }
        if out.len() == before {
            break;
        }
    }
    out
}

async fn fresh(dir: &tempfile::TempDir, name: &str, lanes: usize) -> (Registry, Vec<String>) {
    let registry = Registry::open(&dir.path().join(name)).await.unwrap();
    let mut refs = Vec::with_capacity(lanes);
    for n in 0..lanes {
        let lane = registry
            .create_lane(&NewLane {
                thread_id: format!("thread-{n:05}"),
                title: Some(format!("lane number {n}")),
                handle: None,
                ownership: Ownership::Owned,
                cwd: Some("/work/project".into()),
                model: Some("gpt-5".into()),
            })
            .await
            .unwrap();
        refs.push(lane.lane_ref);
    }
    (registry, refs)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[path = "ingest/flood.rs"]
mod flood;

#[tokio::main]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before: {}", load.trim());
    }
    if let Some(total) = options.flood {
        flood::run(&dir, total, options.runs).await;
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            println!("load average after: {}", load.trim());
        }
        return;
    }

    for &batch in &options.batches {
        let mut notes_per_s = Vec::new();
        let mut events_per_s = Vec::new();
        for run in 0..options.runs {
            let (registry, lanes) =
                fresh(&dir, &format!("ingest-{batch}-{run}.db"), options.lanes).await;
            let notes = workload(&lanes, options.per_lane);
            let events = notes.iter().filter(|note| note.event.is_some()).count();
            let start = Instant::now();
            for chunk in notes.chunks(batch) {
                registry.record(chunk).await.unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            let stored: i64 = {
                let mut total = 0;
                for lane in &lanes {
                    total += registry.counts(lane).await.unwrap().events;
                }
                total
            };
            assert_eq!(stored, i64::try_from(events).unwrap());
            let last = registry.lane(&lanes[0]).await.unwrap().unwrap();
            assert_eq!(last.status, LaneStatus::Idle);
            notes_per_s.push(notes.len() as f64 / secs);
            events_per_s.push(events as f64 / secs);
            println!(
                "  run {run}: batch {batch}: {} notifications ({events} stored events) in {:.1} ms",
                notes.len(),
                secs * 1e3
            );
            registry.close().await;
        }
        println!(
            "ingest, batch {batch}: median {:.0} notifications/s, {:.0} stored events/s ({} lanes x {} notifications, {} runs)",
            median(notes_per_s),
            median(events_per_s),
            options.lanes,
            options.per_lane,
            options.runs
        );
    }

    // Listing 1,000 lanes with state, archived ones included.
    let list_lanes = if options.lanes < 100 { 100 } else { 1_000 };
    let (registry, lanes) = fresh(&dir, "list.db", list_lanes).await;
    let notes: Vec<Recorded> = lanes
        .iter()
        .flat_map(|lane| turn(lane, 0, 1_000_000))
        .collect();
    registry.record(&notes).await.unwrap();
    let filter = LaneFilter {
        include_archived: true,
        ..LaneFilter::default()
    };
    let mut timings = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let listed = registry.list_lanes(&filter).await.unwrap();
        timings.push(start.elapsed());
        assert_eq!(listed.len(), list_lanes);
    }
    let ms: Vec<f64> = timings
        .iter()
        .map(Duration::as_secs_f64)
        .map(|s| s * 1e3)
        .collect();
    println!(
        "list_lanes: median {:.2} ms for {list_lanes} lanes (50 runs)",
        median(ms)
    );
    registry.close().await;
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average after: {}", load.trim());
    }
}
