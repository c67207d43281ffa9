//! Trigger fire lag with 1,000 triggers, against the fake App Server (`dispatch-bench
//! app-server`, each turn three notifications long): from a fire's due time to its delivery's
//! submission (the receipt recorded `submitting`, right before `turn/start` is sent).
//!
//! 1,000 lanes each get one `--every 10s --mode send` trigger. Their due times are then spread
//! evenly over the period (one every 10 ms: 100 fires a second, the load 1,000 ten-second
//! triggers make once their phases are spread), written to the registry and picked up by the
//! scheduler; two periods are measured. Then every trigger is made due at the same instant,
//! the worst case. The lag of each fire is read back from the registry: its due time is in its
//! delivery's idempotency key (`trigger:<id>:at:<due>`), its submission is the receipt's
//! creation time.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sqlx::{Connection, SqliteConnection};

use super::Row;
use super::env::{AppServer, Bins, Env, parallel};
use fake_app_server::{FLOOD_ENV, SYNC_ITEMS_ENV};

const TRIGGERS: usize = 1000;
const WORKERS: usize = 8;
const PERIOD_MS: i64 = 10_000;
const ROUNDS: i64 = 2;
const GOAL: Duration = Duration::from_millis(50);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The registry of `env`, opened beside the running daemon (WAL allows it).
struct Db {
    runtime: tokio::runtime::Runtime,
    conn: SqliteConnection,
}

impl Db {
    fn open(env: &Env) -> anyhow::Result<Db> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = format!("sqlite://{}", env.home().join("registry.db").display());
        let conn = runtime.block_on(SqliteConnection::connect(&url))?;
        Ok(Db { runtime, conn })
    }

    /// Makes the triggers (but `reload`) due at `due(i)`, `i` their order by id.
    fn set_due(&mut self, due: impl Fn(i64) -> i64) -> anyhow::Result<()> {
        let ids: Vec<i64> = self.runtime.block_on(
            sqlx::query_scalar("SELECT id FROM triggers WHERE name != 'reload' ORDER BY id")
                .fetch_all(&mut self.conn),
        )?;
        let Db { runtime, conn } = self;
        runtime.block_on(async {
            let mut tx = conn.begin().await?;
            for (i, id) in ids.iter().enumerate() {
                sqlx::query("UPDATE triggers SET next_fire_at_ms = ? WHERE id = ?")
                    .bind(due(i64::try_from(i).unwrap_or(0)))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        })
    }

    /// The lag (submission − due time, ms) of every trigger delivery due in `from..to`.
    fn lags(&mut self, from: i64, to: i64) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(String, i64)> = self.runtime.block_on(
            sqlx::query_as(
                "SELECT idempotency_key, created_at_ms FROM deliveries \
                 WHERE source LIKE 'trigger:%' AND idempotency_key IS NOT NULL",
            )
            .fetch_all(&mut self.conn),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, created)| {
                let due: i64 = key.rsplit(':').next()?.parse().ok()?;
                (from..to).contains(&due).then_some(created - due)
            })
            .collect())
    }

    /// Trigger fires that failed since `from`.
    fn failures(&mut self, from: i64) -> anyhow::Result<i64> {
        Ok(self.runtime.block_on(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM action_log WHERE op = 'trigger_fire' \
                 AND outcome = 'error' AND at_ms >= ?",
            )
            .bind(from)
            .fetch_one(&mut self.conn),
        )?)
    }

    /// Waits until `want` deliveries due in `from..to` exist, at most until `deadline`.
    fn wait_for(
        &mut self,
        want: usize,
        from: i64,
        to: i64,
        deadline: Instant,
    ) -> anyhow::Result<Vec<i64>> {
        loop {
            let lags = self.lags(from, to)?;
            if lags.len() >= want || Instant::now() > deadline {
                return Ok(lags);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `p`-th percentile of sorted `lags` (ms).
fn percentile(sorted: &[i64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let ms = sorted[rank.clamp(1, sorted.len()) - 1].max(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn row(name: &str, mut lags: Vec<i64>, want: usize, failures: i64, note: &str) -> Row {
    lags.sort_unstable();
    let (p50, p99) = (percentile(&lags, 50.0), percentile(&lags, 99.0));
    let max = lags.last().copied().unwrap_or(0);
    Row::value(
        name,
        format!("p50 {} ms / p99 {} ms", p50.as_millis(), p99.as_millis()),
    )
    .target(format!(
        "p99 {:.2}× goal (≤ {} ms)",
        p99.as_secs_f64() / GOAL.as_secs_f64(),
        GOAL.as_millis()
    ))
    .note(format!(
        "{} of {want} fires measured, max {max} ms, {failures} failed; {note}",
        lags.len()
    ))
}

/// The trigger benchmark: two rows, the spread load and the burst.
pub fn fire_lag(bins: &Bins) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(
        bins,
        AppServer::Fake,
        None,
        &[(FLOOD_ENV, "3"), (SYNC_ITEMS_ENV, "0")],
    )?;
    env.up()?;
    let work = env.work().display().to_string();
    let started = Instant::now();
    let lanes: Vec<std::sync::Mutex<String>> = (0..TRIGGERS)
        .map(|_| std::sync::Mutex::new(String::new()))
        .collect();
    parallel(WORKERS, TRIGGERS, |i| {
        let name = format!("lane-{i:04}");
        let made = env.json(&["new", "--name", &name, "--cwd", &work, "--no-send"])?;
        let lane = made["lane"]["ref"].as_str().context("a lane ref")?;
        *lanes[i].lock().map_err(|_| anyhow::anyhow!("poisoned"))? = lane.to_owned();
        Ok(())
    })?;
    let lanes: Vec<String> = lanes
        .into_iter()
        .map(|l| l.into_inner().unwrap_or_default())
        .collect();
    let made_lanes = started.elapsed();
    let started = Instant::now();
    parallel(WORKERS, TRIGGERS, |i| {
        let name = format!("t-{i:04}");
        let text = format!("scheduled message {i}");
        env.run(&[
            "trigger", "add", "--name", &name, "--lane", &lanes[i], "--every", "10s", "--text",
            &text, "--json",
        ])
        .map(drop)
    })?;
    let added = started.elapsed();
    // A trigger that never fires: pausing it makes the scheduler reload the registry.
    env.run(&[
        "trigger", "add", "--name", "reload", "--lane", &lanes[0], "--every", "1h", "--text",
        "noop", "--json",
    ])?;
    let listed = env.json(&["trigger", "list"])?;
    let count = listed["triggers"].as_array().map_or(0, Vec::len);
    ensure!(
        count == TRIGGERS + 1,
        "{count} triggers listed, not {}",
        TRIGGERS + 1
    );
    let reload = || env.run(&["trigger", "pause", "reload", "--json"]).map(drop);

    let mut db = Db::open(&env)?;
    let mut rows = Vec::new();

    // Spread: one due every PERIOD_MS / TRIGGERS ms, for ROUNDS periods.
    let step = PERIOD_MS / TRIGGERS as i64;
    let t0 = now_ms() + 2_000;
    db.set_due(|i| t0 + i * step)?;
    reload()?;
    let end = t0 + ROUNDS * PERIOD_MS;
    let want = TRIGGERS * ROUNDS as usize;
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(end - now_ms()).unwrap_or(0))
        + Duration::from_secs(60);
    let lags = db.wait_for(want, t0, end, deadline)?;
    let failures = db.failures(t0)?;
    rows.push(row(
        "trigger fire lag (1,000 × every 10 s, spread)",
        lags,
        want,
        failures,
        &format!(
            "100 fires/s, fake App Server; 1,000 × `new` took {:.1} s, 1,000 × `trigger add` {:.1} s",
            made_lanes.as_secs_f64(),
            added.as_secs_f64()
        ),
    ));

    // Burst: every trigger due at the same instant.
    std::thread::sleep(Duration::from_millis(500));
    let t1 = now_ms() + 3_000;
    db.set_due(|_| t1)?;
    reload()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let lags = db.wait_for(TRIGGERS, t1, t1 + 1, deadline)?;
    let failures = db.failures(t1)?;
    if lags.is_empty() {
        bail!("no fire of the burst was recorded");
    }
    rows.push(row(
        "trigger fire lag (1,000 due at once)",
        lags,
        TRIGGERS,
        failures,
        "the worst case, for reference",
    ));
    Ok(rows)
}
