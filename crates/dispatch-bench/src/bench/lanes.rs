//! The benchmarks that run lanes and App Servers: cold `up`, `models`, crash recovery,
//! 32 parallel turns through the real Codex, the ingest flood and `list` over 1,000 lanes
//! (the last two with the fake App Server, `dispatch-bench app-server`).

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use super::env::{AppServer, Bins, Env, kill9, poll, wait_bounded};
use super::{Row, fmt_duration, median, ratio, thousands, time_runs};
use fake_app_server::{DEFAULT_FLOOD, FLOOD_ENV, FloodPlan};

/// What the stub model answers every turn.
pub const STUB_REPLY: &str = "pong from the responses stub";

/// The Responses API stub and the runtime that serves it (dropped with it).
pub struct Stub {
    stub: Option<responses_stub::ResponsesStub>,
    runtime: tokio::runtime::Runtime,
}

impl Stub {
    /// Starts a stub whose every turn gets `reply`.
    pub fn start(reply: &str) -> anyhow::Result<Stub> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let script = responses_stub::Script::new().default_reply(reply);
        let stub = runtime.block_on(responses_stub::ResponsesStub::start(script))?;
        Ok(Stub {
            stub: Some(stub),
            runtime,
        })
    }

    /// The provider base URL.
    pub fn base_url(&self) -> String {
        self.stub
            .as_ref()
            .map(responses_stub::ResponsesStub::base_url)
            .unwrap_or_default()
    }

    /// Queues a behaviour for the next request.
    pub fn push(&self, behaviour: responses_stub::Behaviour) {
        if let Some(stub) = &self.stub {
            stub.push(behaviour);
        }
    }

    fn request_count(&self) -> usize {
        self.stub
            .as_ref()
            .map_or(0, responses_stub::ResponsesStub::request_count)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // The stub's drop closes its connections on the runtime; enter it for that.
        let _guard = self.runtime.enter();
        self.stub.take();
    }
}

fn text<'a>(value: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    value
        .as_str()
        .with_context(|| format!("{what} missing in the output"))
}

/// 1. `dispatch up` until ready with a fresh DISPATCH_HOME and CODEX_HOME each run (real
///    Codex), then `down`.
pub fn up_cold(bins: &Bins, runs: usize) -> anyhow::Result<Row> {
    let stub = Stub::start(STUB_REPLY)?;
    let once = || -> anyhow::Result<Duration> {
        let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
        let start = Instant::now();
        env.up()?;
        let took = start.elapsed();
        env.down()?;
        Ok(took)
    };
    once()?; // warm-up: the Codex binary into the page cache
    let mut samples = (0..runs)
        .map(|_| once())
        .collect::<anyhow::Result<Vec<_>>>()?;
    samples.sort();
    let m = median(&samples);
    Ok(
        Row::timing("up until ready (cold home, real codex)", &samples).target(format!(
            "{}; {}",
            ratio(m, Duration::from_millis(600), "App Server init (0.6 s)"),
            ratio(m, Duration::from_millis(1200), "Python up (1.2 s)")
        )),
    )
}

/// 2. `dispatch models --json`, a live refresh from the real App Server.
pub fn models(env: &Env, runs: usize) -> anyhow::Result<Row> {
    let first = env.json(&["models"])?;
    ensure!(first["source"] == "live", "models was not live: {first}");
    let count = first["models"].as_array().map_or(0, Vec::len);
    ensure!(count > 0, "the catalog is empty: {first}");
    let samples = time_runs(runs, || env.json(&["models"]).map(drop))?;
    Ok(
        Row::timing("models --json (live refresh)", &samples).note(format!(
            "{count} models, default {}",
            first["default_model"]
        )),
    )
}

/// 3. `kill -9` of the App Server until `daemon status` shows it ready again, restarted.
pub fn crash_recovery(env: &Env, runs: usize) -> anyhow::Result<Row> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let before = poll(
            "App Server ready before the kill",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || {
                let status = env.status()?;
                Ok((status["app_server"]["state"] == "ready").then_some(status))
            },
        )?;
        let pid = before["app_server"]["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .context("app_server.pid")?;
        let restarts = before["app_server"]["restarts"]
            .as_u64()
            .context("app_server.restarts")?;
        let start = Instant::now();
        kill9(pid);
        let after = poll(
            "App Server restarted and ready",
            Duration::from_secs(60),
            Duration::from_millis(5),
            || {
                let status = env.status()?;
                let app = &status["app_server"];
                let done = app["state"] == "ready"
                    && app["restarts"].as_u64().is_some_and(|r| r > restarts);
                Ok(done.then_some(status))
            },
        )?;
        samples.push(start.elapsed());
        ensure!(
            after["app_server"]["pid"].as_u64() != Some(u64::from(pid)),
            "the App Server pid did not change: {after}"
        );
    }
    samples.sort();
    Ok(Row::timing("App Server kill -9 → ready again", &samples)
        .note("polled `daemon status`; includes the supervisor's 200 ms first backoff".into()))
}

fn spawn_all(env: &Env, commands: &[Vec<String>]) -> anyhow::Result<Vec<Child>> {
    let mut children = Vec::with_capacity(commands.len());
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.cmd(&args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match cmd.spawn() {
            Ok(child) => children.push(child),
            Err(err) => {
                for child in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(err).context("spawning dispatch");
            }
        }
    }
    Ok(children)
}

/// 6. `lanes` lanes on one real App Server start a turn at once (one `dispatch send` process
///    each); waits until every latest turn completed and checks every lane kept its user and
///    agent messages.
pub fn parallel_turns(env: &Env, stub: &Stub, lanes: usize) -> anyhow::Result<Vec<Row>> {
    const WITHIN: Duration = Duration::from_secs(120);
    let work = env.work().display().to_string();
    let (solo_accepted, solo_done) = solo_turn(env, &work)?;
    let mut refs = Vec::with_capacity(lanes);
    for i in 0..lanes {
        let created = env.json(&[
            "new",
            "--name",
            &format!("par-{i}"),
            "--cwd",
            &work,
            "--no-send",
        ])?;
        refs.push(text(&created["lane"]["ref"], "lane.ref")?.to_owned());
    }
    let requests_before = stub.request_count();
    let sends: Vec<Vec<String>> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            ["send", r, &format!("parallel hello {i}"), "--json"]
                .map(str::to_owned)
                .to_vec()
        })
        .collect();

    let start = Instant::now();
    let children = spawn_all(env, &sends)?;
    let mut send_latency = Vec::with_capacity(lanes);
    let mut turns = HashMap::new();
    let mut failures = Vec::new();
    for (child, lane) in children.into_iter().zip(&refs) {
        let remaining = WITHIN.saturating_sub(start.elapsed());
        match wait_bounded(child, remaining.max(Duration::from_secs(1))) {
            Ok(out) if out.status.success() => {
                send_latency.push(start.elapsed());
                let sent: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                match sent["turn_id"].as_str() {
                    Some(turn) => {
                        turns.insert(lane.clone(), turn.to_owned());
                    }
                    None => failures.push(format!("{lane}: no turn id in {sent}")),
                }
            }
            Ok(out) => failures.push(format!(
                "{lane}: send failed: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            )),
            Err(err) => failures.push(format!("{lane}: {err:#}")),
        }
    }
    let accepted = start.elapsed();
    ensure!(
        failures.is_empty(),
        "{} sends failed: {}",
        failures.len(),
        failures.join("; ")
    );

    // Wait for every latest turn to complete: one `list` per round sees all lanes.
    let limit = (lanes + 10).to_string();
    let mut completed = 0;
    let wall = poll(
        "every parallel turn completed",
        WITHIN.saturating_sub(start.elapsed()),
        Duration::from_millis(10),
        || {
            let listed = env.json(&["list", "--limit", &limit])?;
            completed = listed["lanes"].as_array().map_or(0, |all| {
                all.iter()
                    .filter(|l| {
                        l["ref"]
                            .as_str()
                            .and_then(|r| turns.get(r))
                            .is_some_and(|t| {
                                l["latest_turn"]["id"] == t.as_str()
                                    && l["latest_turn"]["status"] == "completed"
                            })
                    })
                    .count()
            });
            Ok((completed == lanes).then(|| start.elapsed()))
        },
    )
    .with_context(|| format!("{completed}/{lanes} turns completed"))?;

    // Nothing lost: each lane has its message and the stub's answer, in its turn, and
    // identical turns stored the same notifications in every lane.
    let mut missing_messages = Vec::new();
    let mut events = Vec::with_capacity(lanes);
    // method → how many times it was stored, per lane
    let mut per_lane: Vec<HashMap<String, usize>> = Vec::with_capacity(lanes);
    for (i, lane) in refs.iter().enumerate() {
        let got = env.json(&["get", lane])?;
        let count = got["counts"]["events"].as_u64().unwrap_or(0);
        events.push(count);
        let mut methods = HashMap::new();
        for method in stored_methods(env, lane, count)? {
            *methods.entry(method).or_default() += 1;
        }
        per_lane.push(methods);
        let tail = env.json(&["tail", lane, "--limit", "50"])?;
        let turn = turns.get(lane).map(String::as_str);
        let has = |kind: &str, want: &str| {
            tail["items"].as_array().is_some_and(|items| {
                items.iter().any(|item| {
                    item["type"] == kind && item["text"] == want && item["turn_id"].as_str() == turn
                })
            })
        };
        if !(has("user_message", &format!("parallel hello {i}"))
            && has("agent_message", STUB_REPLY))
        {
            missing_messages.push(lane.clone());
        }
    }
    let requests = stub.request_count() - requests_before;
    send_latency.sort();
    let (fewest, most) = (
        events.iter().min().copied().unwrap_or(0),
        events.iter().max().copied().unwrap_or(0),
    );
    let uneven = uneven_methods(&per_lane);
    let mut note = format!(
        "{completed}/{lanes} completed; {}/{lanes} lanes hold their user+agent message; \
         events per lane {fewest}..{most}; {requests} stub requests",
        lanes - missing_messages.len()
    );
    if !missing_messages.is_empty() {
        note.push_str(&format!(
            "; MISSING messages in {}",
            missing_messages.join(", ")
        ));
    }
    if !uneven.is_empty() {
        note.push_str(&format!("; UNEVEN: {}", uneven.join(", ")));
    }
    let mut rows = vec![
        Row::timing(&format!("{lanes} parallel turns: all completed"), &[wall]).note(note),
        Row::timing(&format!("{lanes} parallel sends: accepted"), &send_latency).note(format!(
            "all accepted after {}; one lane alone: send {}, turn completed after {}",
            fmt_duration(accepted),
            fmt_duration(solo_accepted),
            fmt_duration(solo_done)
        )),
    ];
    if !missing_messages.is_empty() {
        rows[0].value = format!("{} LOST", rows[0].value);
    }
    Ok(rows)
}

/// The methods not stored the same number of times in every lane, e.g.
/// `thread/started ×1 in 10 lanes, ×0 in 22`.
fn uneven_methods(per_lane: &[HashMap<String, usize>]) -> Vec<String> {
    let mut all: Vec<&String> = per_lane.iter().flat_map(HashMap::keys).collect();
    all.sort();
    all.dedup();
    all.into_iter()
        .filter_map(|method| {
            let mut times: Vec<(usize, usize)> = Vec::new();
            for lane in per_lane {
                let n = lane.get(method).copied().unwrap_or(0);
                match times.iter_mut().find(|(t, _)| *t == n) {
                    Some((_, lanes)) => *lanes += 1,
                    None => times.push((n, 1)),
                }
            }
            (times.len() > 1).then(|| {
                times.sort_by_key(|t| std::cmp::Reverse(t.1));
                let parts: Vec<String> = times
                    .iter()
                    .map(|(n, lanes)| format!("×{n} in {lanes} lanes"))
                    .collect();
                format!("{method} {}", parts.join(", "))
            })
        })
        .collect()
}

/// The methods of the `count` events stored for `lane` (`watch` from the first cursor).
fn stored_methods(env: &Env, lane: &str, count: u64) -> anyhow::Result<Vec<String>> {
    let max = count.clamp(1, 10_000).to_string();
    let out = env.run(&[
        "watch",
        lane,
        "--after",
        "0",
        "--max-events",
        &max,
        "--timeout",
        "5",
        "--json",
    ])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| event["method"].as_str().map(str::to_owned))
        .collect())
}

/// A flood small enough for the App Server client's event ring (8,192 events), so that
/// the daemon's storing speed shows without the effect of lost events.
const SMALL_FLOOD: usize = 8_000;

/// One turn on one lane, for reference: (send accepted, turn completed), both timed from
/// the start of `send`. The second of two turns is kept: the first one in a new
/// CODEX_HOME is slower.
fn solo_turn(env: &Env, work: &str) -> anyhow::Result<(Duration, Duration)> {
    let created = env.json(&["new", "--name", "solo", "--cwd", work, "--no-send"])?;
    let lane = text(&created["lane"]["ref"], "lane.ref")?.to_owned();
    let mut measured = (Duration::ZERO, Duration::ZERO);
    for _ in 0..2 {
        let start = Instant::now();
        let sent = env.json(&["send", &lane, "solo hello"])?;
        let accepted = start.elapsed();
        let turn = text(&sent["turn_id"], "turn_id")?.to_owned();
        let done = poll(
            "the solo turn completed",
            Duration::from_secs(120),
            Duration::from_millis(5),
            || {
                let got = env.json(&["get", &lane])?;
                let latest = &got["lane"]["latest_turn"];
                Ok(
                    (latest["id"] == turn.as_str() && latest["status"] == "completed")
                        .then(|| start.elapsed()),
                )
            },
        )?;
        measured = (accepted, done);
    }
    Ok(measured)
}

/// 4. The fake App Server floods one turn with notifications (`DISPATCH_BENCH_FLOOD`,
///    default 100,000, then 8,000); how fast the daemon stores them, and whether all were.
pub fn ingest(bins: &Bins) -> anyhow::Result<Vec<Row>> {
    let flood: usize = std::env::var(FLOOD_ENV)
        .ok()
        .and_then(|n| n.trim().replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_FLOOD);
    let mut rows = vec![flood_once(bins, flood)?];
    if flood > SMALL_FLOOD {
        rows.push(flood_once(bins, SMALL_FLOOD)?);
    }
    Ok(rows)
}

/// How often the flood benchmark asks whether the flood is stored. The figure does not depend
/// on it (it is read from the times the daemon recorded); a rare poll keeps the poller's own
/// cost (a `dispatch get` is a process start) off the 2-core machine during the flood.
const FLOOD_POLL: Duration = Duration::from_millis(100);

/// User and system CPU time of process `pid` so far, in clock ticks (10 ms on Linux).
fn cpu_ticks(pid: u64) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => anyhow::bail!("no CPU times in /proc/{pid}/stat"),
    }
}

/// What the registry holds of a flooded lane, read beside the running daemon (read-only).
struct FloodStored {
    events: u64,
    items: u64,
    /// `at_ms` of the lane's first and last stored events: the daemon's clock when its event
    /// pump took `turn/started` and `turn/completed` (or whatever came last).
    first_ms: i64,
    last_ms: i64,
}

fn flood_stored(env: &Env, lane: &str) -> anyhow::Result<FloodStored> {
    use sqlx::{Connection, SqliteConnection};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!(
        "sqlite://{}?mode=ro",
        env.home().join("registry.db").display()
    );
    runtime.block_on(async {
        let mut conn = SqliteConnection::connect(&url).await?;
        let (events, first_ms, last_ms): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(at_ms), MAX(at_ms) FROM events WHERE lane_ref = ?",
        )
        .bind(lane)
        .fetch_one(&mut conn)
        .await?;
        let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE lane_ref = ?")
            .bind(lane)
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(FloodStored {
            events: u64::try_from(events).unwrap_or(0),
            items: u64::try_from(items).unwrap_or(0),
            first_ms: first_ms.unwrap_or(0),
            last_ms: last_ms.unwrap_or(0),
        })
    })
}

/// The flood of one turn, timed by the daemon's own clock: from the `at_ms` of the first
/// stored event (`turn/started`, as the event pump took it) to that of the last one, read
/// from the registry once the flood is stored. The commit of the last batch is not in it
/// (events are stamped as the pump takes them, just before their batch is written).
fn flood_once(bins: &Bins, flood: usize) -> anyhow::Result<Row> {
    let plan = FloodPlan::new(flood);
    let flood_text = plan.total.to_string();
    let env = Env::new(bins, AppServer::Fake, None, &[(FLOOD_ENV, &flood_text)])?;
    env.up()?;
    let work = env.work().display().to_string();
    let pid = env.status()?["pid"]
        .as_u64()
        .context("the daemon's pid in daemon status")?;
    let cpu_before = cpu_ticks(pid)?;
    let created = env.json_within(
        &["new", "--name", "flood", "--cwd", &work, "--text", "go"],
        Duration::from_secs(120),
    )?;
    let start = Instant::now();
    let lane = text(&created["lane"]["ref"], "lane.ref")?.to_owned();
    let turn = text(&created["turn_id"], "turn_id")?.to_owned();
    let expected = u64::try_from(plan.stored()).unwrap_or(u64::MAX);

    // Poll until all are stored, or the count stops moving after the turn completed.
    const WITHIN: Duration = Duration::from_secs(180);
    const STALL: Duration = Duration::from_secs(5);
    let mut last_events = 0;
    let mut last_change = start.elapsed();
    let mut latest = Value::Null;
    let outcome = poll("the flood stored", WITHIN, FLOOD_POLL, || {
        let got = env.json(&["get", &lane])?;
        let events = got["counts"]["events"].as_u64().unwrap_or(0);
        let now = start.elapsed();
        if events != last_events {
            last_events = events;
            last_change = now;
        }
        let done = got["lane"]["latest_turn"]["id"] == turn.as_str()
            && got["lane"]["latest_turn"]["status"] == "completed";
        latest = got;
        if done && events >= expected {
            return Ok(Some("all stored"));
        }
        if now - last_change > STALL && (done || events > 0) {
            return Ok(Some("count stopped moving"));
        }
        Ok(None)
    })
    .with_context(|| format!("{last_events}/{expected} events stored"))?;
    // The daemon's CPU time for `new` and the flood (less sensitive than the rate to what
    // else the machine runs), read before anything else asks it something.
    let cpu = cpu_ticks(pid)?.saturating_sub(cpu_before);
    let db = flood_stored(&env, &lane)?;
    let stored_in = Duration::from_millis(u64::try_from(db.last_ms - db.first_ms).unwrap_or(0));

    // The daemon's own account, from its log: `the event pump fell behind ... missed=N`
    // warnings, and events its retention pruned (`pruned old events pruned=N`), which were
    // stored before they were dropped on purpose.
    let log = std::fs::read_to_string(env.home().join("dispatchd.log")).unwrap_or_default();
    let (lag_warnings, missed) = log_sum(&log, "fell behind", "missed=");
    let (_, pruned) = log_sum(&log, "pruned old events", "pruned=");

    // What the daemon keeps after the flood (its queues drained).
    let rss = super::rss_kib(pid).ok();

    let (events, items) = (db.events, db.items);
    let stored = events + pruned;
    let lost = expected.saturating_sub(stored);
    // Events per second of the daemon's clock (ms resolution: 0.3% of a 0.3 s flood).
    let per_s = stored as f64 / stored_in.as_secs_f64().max(0.001);
    let turn_status = latest["lane"]["latest_turn"]["status"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let mut value = format!("{} ev/s", thousands(per_s as u64));
    if lost > 0 {
        value.push_str(" LOST");
    }
    let mut note = format!(
        "{} sent ({} deltas folded); events stored {}/{} ({} lost), items {}/{}, turn {turn_status}; \
         {outcome}; timed by the daemon: first to last stored event's at_ms {}; daemon CPU \
         time for new and the flood {} ms",
        thousands(plan.total as u64),
        thousands(plan.deltas() as u64),
        thousands(stored),
        thousands(expected),
        thousands(lost),
        thousands(items),
        thousands(plan.stored_items() as u64),
        fmt_duration(stored_in),
        cpu * 10,
    );
    if let Some(rss) = rss {
        note.push_str(&format!(
            "; daemon RSS after the flood {:.1} MiB",
            rss as f64 / 1024.0
        ));
    }
    if pruned > 0 {
        note.push_str(&format!(
            "; {} of them since pruned by the daemon's retention",
            thousands(pruned)
        ));
    }
    if lag_warnings > 0 {
        note.push_str(&format!(
            "; daemon log: {lag_warnings} \"event pump fell behind\" warnings, missed={} in all",
            thousands(missed)
        ));
    }
    let name = format!(
        "ingest: flood of {} notifications",
        thousands(plan.total as u64)
    );
    Ok(Row::value(&name, value)
        .target(format!("{:.2}× target (≥ 200,000 ev/s)", per_s / 200_000.0))
        .note(note))
}

/// In the log lines containing `needle`: how many there are, and the sum of the numbers
/// after `key` (e.g. `missed=`).
fn log_sum(log: &str, needle: &str, key: &str) -> (usize, u64) {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    let sum = lines
        .iter()
        .filter_map(|l| l.split(key).nth(1))
        .filter_map(|n| {
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .sum();
    (lines.len(), sum)
}

/// 5. `list --json` with 1,000 lanes in the registry (made with the fake App Server).
pub fn list_1000(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    const LANES: usize = 1000;
    const WORKERS: usize = 8;
    let env = Env::new(bins, AppServer::Fake, None, &[])?;
    env.up()?;
    let work = env.work().display().to_string();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= LANES {
                            return Ok(());
                        }
                        let name = format!("lane-{i:04}");
                        env.run(&["new", "--name", &name, "--cwd", &work, "--no-send"])?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a lane-creating thread panicked"))??;
        }
        Ok(())
    })?;
    let made = start.elapsed();
    let total = env.status()?["lanes"]["total"].as_u64().unwrap_or(0);
    ensure!(
        total == LANES as u64,
        "the daemon counts {total} lanes, not {LANES}"
    );

    let mut rows = Vec::new();
    for (name, args, want) in [
        (
            "list --json (1,000 lanes; default limit 200)",
            vec!["list", "--json"],
            200,
        ),
        (
            "list --limit 1000 --json (1,000 lanes)",
            vec!["list", "--limit", "1000", "--json"],
            LANES,
        ),
    ] {
        let out = env.run(&args)?;
        let listed: Value = serde_json::from_slice(&out.stdout)?;
        let got = listed["lanes"].as_array().map_or(0, Vec::len);
        if got != want {
            bail!("{name}: {got} lanes listed, expected {want}");
        }
        let bytes = out.stdout.len();
        let samples = time_runs(runs, || env.run(&args).map(drop))?;
        let m = median(&samples);
        rows.push(
            Row::timing(name, &samples)
                .target(ratio(m, Duration::from_millis(5), "target (≤ 5 ms)"))
                .note(format!("{got} lanes, {} KiB of JSON", bytes / 1024)),
        );
    }
    rows[0].note.push_str(&format!(
        "; 1,000 × `new --no-send` took {} ({:.0} lanes/s, {WORKERS} at a time)",
        fmt_duration(made),
        LANES as f64 / made.as_secs_f64()
    ));
    Ok(rows)
}
