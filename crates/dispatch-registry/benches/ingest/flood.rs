//! `--flood N`: what storing the daemon benchmark's flood costs the registry, and SQLite alone.

use std::path::Path;
use std::time::Instant;

use dispatch_registry::{
    Fact, LaneStatus, NewEvent, NewLane, Ownership, Recorded, Registry, TurnRow, TurnStatus,
};
use fake_app_server::{FloodPlan, render_flood};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use super::median;

/// Notifications per transaction, as the event pump takes them.
const BATCH: usize = 4_096;

const THREAD: &str = "019a0000-0000-7000-8000-0000000000ff";
const TURN: &str = "019a0000-0000-7000-8000-000000000001";

/// One stored event and, for item notifications, the item's state after it.
struct Note {
    method: String,
    at_ms: i64,
    params: String,
    /// The item this notification writes: id, kind (as the registry names it), text.
    item: Option<(String, &'static str, String)>,
    /// A delta: folded into its item, not stored as an event.
    delta: bool,
}

/// The daemon benchmark's flood of `total` notifications, as `fake-app-server` renders it
/// (`FloodPlan`, `render_flood`), read back into what the event pump makes of each line.
fn flood(total: usize) -> Vec<Note> {
    let plan = FloodPlan::new(total);
    let lines = render_flood(
        &plan,
        THREAD,
        TURN,
        1_000,
        &json!("client-1"),
        &json!([{ "type": "text", "text": "go" }]),
    );
    lines
        .lines()
        .map(|line| {
            let message: Message = serde_json::from_str(line).expect("a flood line");
            let params: Value = serde_json::from_str(message.params.get()).expect("its params");
            let at_ms = ["startedAtMs", "completedAtMs"]
                .iter()
                .find_map(|field| params[*field].as_i64())
                .unwrap_or(1_000);
            let item = &params["item"];
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            let (item, delta) = match message.method.as_str() {
                "item/agentMessage/delta" => (
                    Some((
                        text(&params["itemId"]),
                        "agent_message",
                        text(&params["delta"]),
                    )),
                    true,
                ),
                "item/started" | "item/completed" if item["type"] == "userMessage" => (
                    Some((text(&item["id"]), "user_message", "go".to_owned())),
                    false,
                ),
                "item/started" | "item/completed" => (
                    Some((text(&item["id"]), "agent_message", text(&item["text"]))),
                    false,
                ),
                _ => (None, false),
            };
            Note {
                method: message.method,
                at_ms,
                params: message.params.get().to_owned(),
                item,
                delta,
            }
        })
        .collect()
}

/// A line of the flood: a notification, its params as sent.
#[derive(serde::Deserialize)]
struct Message {
    method: String,
    params: Box<RawValue>,
}

/// The flood as the event pump hands it to [`Registry::record`].
fn recorded(lane: &str, notes: &[Note]) -> Vec<Recorded> {
    let lane_ref: std::sync::Arc<str> = lane.into();
    notes
        .iter()
        .map(|note| {
            let facts: Vec<Fact> = match (note.method.as_str(), &note.item) {
                ("turn/started", _) => vec![
                    Fact::TurnStarted {
                        turn_id: TURN.to_owned(),
                        at_ms: note.at_ms,
                    },
                    Fact::Status(LaneStatus::Busy),
                ],
                ("turn/completed", _) => vec![
                    Fact::TurnCompleted {
                        turn: TurnRow {
                            turn_id: TURN.to_owned(),
                            status: TurnStatus::Completed,
                            error: None,
                            started_at_ms: Some(1_000),
                            completed_at_ms: Some(2_000),
                            duration_ms: Some(1_000),
                        },
                    },
                    Fact::Status(LaneStatus::Idle),
                ],
                ("thread/tokenUsage/updated", _) => {
                    vec![Fact::TokenUsage(note.params.as_str().into())]
                }
                (_, Some((id, kind, text))) if note.delta => vec![Fact::ItemDelta {
                    turn_id: Some(TURN.to_owned()),
                    item_id: id.clone(),
                    kind: (*kind).into(),
                    delta: text.clone(),
                    at_ms: note.at_ms,
                }],
                (_, Some((id, kind, text))) => vec![Fact::Item {
                    turn_id: Some(TURN.to_owned()),
                    item_id: id.clone(),
                    kind: (*kind).into(),
                    text: Some(text.clone()),
                    status: None,
                    at_ms: note.at_ms,
                }],
                _ => Vec::new(),
            };
            Recorded {
                lane_ref: lane_ref.clone(),
                event: (!note.delta).then(|| NewEvent {
                    method: note.method.clone().into(),
                    turn_id: Some(TURN.to_owned()),
                    at_ms: note.at_ms,
                    params: note.params.as_str().into(),
                }),
                facts: facts.into_iter().collect(),
            }
        })
        .collect()
}

/// A registry with one lane, closed again: its file and the lane's ref.
async fn fresh(path: &Path) -> String {
    let registry = Registry::open(path).await.unwrap();
    let lane = registry
        .create_lane(&NewLane {
            thread_id: THREAD.to_owned(),
            title: Some("flood".to_owned()),
            handle: None,
            ownership: Ownership::Owned,
            cwd: Some("/work/project".into()),
            model: Some("gpt-5".into()),
        })
        .await
        .unwrap()
        .lane_ref;
    registry.close().await;
    lane
}

/// One SQL-only run: what is taken away from the schema as shipped.
struct Variant {
    label: &'static str,
    /// Triggers and indexes dropped before the run.
    drops: &'static [&'static str],
    foreign_keys: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        label: "the schema as shipped",
        drops: &[],
        foreign_keys: true,
    },
    Variant {
        label: "without `item_files_insert` (the items' one insert trigger)",
        drops: &["DROP TRIGGER item_files_insert"],
        foreign_keys: true,
    },
    Variant {
        label: "without that trigger and foreign keys",
        drops: &["DROP TRIGGER item_files_insert"],
        foreign_keys: false,
    },
    Variant {
        label: "without those and the secondary indexes",
        drops: &[
            "DROP TRIGGER item_files_insert",
            "DROP INDEX events_by_lane",
            "DROP INDEX items_by_time",
        ],
        foreign_keys: false,
    },
];

/// Writes the flood's events and items by `INSERT … SELECT` from temporary tables, with the
/// ingest connection's settings, one transaction per batch; returns the seconds taken.
async fn sql_only(path: &Path, lane: &str, notes: &[Note], variant: &Variant) -> f64 {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(variant.foreign_keys)
        .pragma("cache_size", "-16384")
        .pragma("wal_autocheckpoint", "0");
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    for sql in variant.drops {
        sqlx::query(*sql).execute(&mut conn).await.unwrap();
    }
    sqlx::query("CREATE TEMP TABLE flood_events (method, at_ms, params)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("CREATE TEMP TABLE flood_items (item_id, kind, text, at_ms)")
        .execute(&mut conn)
        .await
        .unwrap();
    // Each batch's rows are a range of rowids: (events, items) after its last row.
    let mut ends: Vec<(i64, i64)> = Vec::new();
    let (mut last_event, mut last_item) = (0, 0);
    let mut tx = conn.begin().await.unwrap();
    for (n, note) in notes.iter().enumerate() {
        if !note.delta {
            last_event = sqlx::query("INSERT INTO flood_events VALUES (?, ?, ?)")
                .bind(&note.method)
                .bind(note.at_ms)
                .bind(&note.params)
                .execute(&mut *tx)
                .await
                .unwrap()
                .last_insert_rowid();
        }
        // An item once per batch, in its state at the batch's end (the registry folds a
        // batch's notifications of one item into one row).
        let last_of_batch = notes.get(n + 1).is_none_or(|next| {
            (n + 1) % BATCH == 0
                || next.item.as_ref().map(|i| &i.0) != note.item.as_ref().map(|i| &i.0)
        });
        if let (Some((id, kind, text)), true) = (&note.item, last_of_batch) {
            last_item = sqlx::query("INSERT INTO flood_items VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(*kind)
                .bind(text)
                .bind(note.at_ms)
                .execute(&mut *tx)
                .await
                .unwrap()
                .last_insert_rowid();
        }
        if (n + 1) % BATCH == 0 || n + 1 == notes.len() {
            ends.push((last_event, last_item));
        }
    }
    tx.commit().await.unwrap();
    let start = Instant::now();
    let mut after = (0, 0);
    for &(events_end, items_end) in &ends {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO events (method, lane_ref, turn_id, at_ms, params) \
             SELECT method, ?, ?, at_ms, params FROM flood_events \
             WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
        )
        .bind(lane)
        .bind(TURN)
        .bind(after.0)
        .bind(events_end)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO items (item_id, lane_ref, turn_id, kind, text, status, at_ms) \
             SELECT item_id, ?, ?, kind, text, NULL, at_ms FROM flood_items \
             WHERE rowid > ? AND rowid <= ? ORDER BY rowid \
             ON CONFLICT (lane_ref, turn_id, item_id) DO UPDATE SET \
               kind = excluded.kind, text = excluded.text, \
               status = COALESCE(excluded.status, items.status)",
        )
        .bind(lane)
        .bind(TURN)
        .bind(after.1)
        .bind(items_end)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        after = (events_end, items_end);
    }
    let secs = start.elapsed().as_secs_f64();
    conn.close().await.unwrap();
    secs
}

/// Runs the flood's measurements and prints their medians.
pub async fn run(dir: &tempfile::TempDir, total: usize, runs: usize) {
    let notes = flood(total);
    let events = notes.iter().filter(|note| !note.delta).count();
    let items = notes
        .iter()
        .filter_map(|note| note.item.as_ref().map(|item| &item.0))
        .collect::<std::collections::HashSet<_>>()
        .len();
    println!(
        "flood of {total} notifications: {events} events and {items} items stored, in batches of {BATCH}"
    );
    // The median and best of a measurement; with `rate`, the flood's events per second.
    let report = |label: &str, secs: Vec<f64>, rate: bool| {
        let ms: Vec<f64> = secs.iter().map(|s| s * 1e3).collect();
        let best = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let mid = median(ms);
        let per_s = if rate {
            format!(", {:.0} events/s", events as f64 / (mid / 1e3))
        } else {
            String::new()
        };
        println!("  {label}: median {mid:.1} ms (best {best:.1}){per_s}");
    };

    // Runs alternate between the record path and the SQL-only variants, so that what else
    // the machine does (the page cache writing back earlier runs' files) falls on all alike.
    let (mut recorded_secs, mut fold_secs) = (Vec::new(), Vec::new());
    let mut sql_secs = vec![Vec::new(); VARIANTS.len()];
    for run in 0..runs {
        // Which comes first turns with the run: the one after a record run pays for more of
        // its writing back.
        for step in 0..=VARIANTS.len() {
            let path = dir.path().join(format!("flood-{run}-{step}.db"));
            let lane = fresh(&path).await;
            match (run + step) % (VARIANTS.len() + 1) {
                0 => {
                    let (stored, folded) = record(&path, &lane, &notes, events, items).await;
                    recorded_secs.push(stored);
                    fold_secs.push(folded);
                }
                n => sql_secs[n - 1].push(sql_only(&path, &lane, &notes, &VARIANTS[n - 1]).await),
            }
            remove(&path);
        }
    }
    report("Registry::record (fold, bind, SQL)", recorded_secs, true);
    report(
        "then Registry::fold_items (search index, history counts)",
        fold_secs,
        false,
    );
    for (variant, secs) in VARIANTS.iter().zip(sql_secs) {
        report(&format!("SQL alone, {}", variant.label), secs, true);
    }
}

/// Stores the flood by [`Registry::record`] in batches, then folds its items into search and
/// history ([`Registry::fold_items`]); returns the seconds each took.
async fn record(
    path: &Path,
    lane: &str,
    notes: &[Note],
    events: usize,
    items: usize,
) -> (f64, f64) {
    let registry = Registry::open(path).await.unwrap();
    let batches: Vec<Vec<Recorded>> = recorded(lane, notes)
        .chunks(BATCH)
        .map(<[Recorded]>::to_vec)
        .collect();
    let start = Instant::now();
    for batch in &batches {
        registry.record(batch).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let folded = registry.fold_items().await.unwrap();
    let fold_secs = start.elapsed().as_secs_f64();
    assert_eq!(folded, u64::try_from(items).unwrap());
    let counts = registry.counts(lane).await.unwrap();
    assert_eq!(counts.events, i64::try_from(events).unwrap());
    assert_eq!(counts.items, i64::try_from(items).unwrap());
    registry.close().await;
    (secs, fold_secs)
}

/// Removes a registry file and its WAL and shared-memory files.
fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
