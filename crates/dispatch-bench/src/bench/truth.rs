//! Benchmarks of lane truth and deliveries, with the real Codex and the stub: a daemon restart
//! with 200 lanes mid-turn until every lane is truthful, and queued-delivery throughput.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;

use super::env::{AppServer, Bins, Env, kill9, poll};
use super::lanes::{STUB_REPLY, Stub};
use super::{Row, fmt_duration};

/// The lanes running a turn when the daemon restarts.
const BUSY_LANES: usize = 200;

/// Whether the registry shows a running turn on `lane`.
fn running(lane: &Value) -> bool {
    matches!(
        lane["status"].as_str(),
        Some("busy" | "retrying" | "waiting_approval")
    )
}

/// Lanes `list` shows running.
fn running_lanes(env: &Env) -> anyhow::Result<usize> {
    let listed = env.json(&["list", "--all", "--limit", "10000"])?;
    Ok(listed["lanes"]
        .as_array()
        .context("lanes")?
        .iter()
        .filter(|l| running(l))
        .count())
}

/// 200 lanes mid-turn, then `down` + `up` and `kill -9` + `up`: the time until `up` returns,
/// when (reconciliation runs before the daemon says it is ready) every lane is truthful.
pub fn restart_busy(bins: &Bins) -> anyhow::Result<Vec<Row>> {
    let stub = Stub::start(STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    env.up()?;
    let mut rows = Vec::new();
    for (name, kill) in [("down + up", false), ("kill -9 + up", true)] {
        for _ in 0..BUSY_LANES {
            stub.push(responses_stub::Behaviour::Hang);
        }
        let work = env.work();
        let cwd = work.display().to_string();
        let made = Instant::now();
        for n in 0..BUSY_LANES {
            let lane = format!("busy-{name}-{n}");
            env.json(&[
                "new",
                "--name",
                &lane,
                "--cwd",
                &cwd,
                "--text",
                "take your time",
            ])?;
        }
        let made = made.elapsed();
        let busy = running_lanes(&env)?;
        ensure!(
            busy >= BUSY_LANES,
            "only {busy} lanes were running before the restart"
        );
        if kill {
            let pid = env.status()?["pid"].as_u64().context("daemon pid")?;
            kill9(u32::try_from(pid)?);
            poll(
                "the daemon gone",
                Duration::from_secs(30),
                Duration::from_millis(10),
                || Ok(env.status().is_err().then_some(())),
            )?;
        } else {
            env.down()?;
        }
        let start = Instant::now();
        env.up()?;
        let ready = start.elapsed();
        let left = running_lanes(&env)?;
        let truthful = if left == 0 {
            ready
        } else {
            poll(
                "every lane truthful",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || Ok((running_lanes(&env)? == 0).then_some(())),
            )?;
            start.elapsed()
        };
        rows.push(
            Row::value(
                &format!("restart with {BUSY_LANES} lanes mid-turn ({name}) → truthful"),
                fmt_duration(truthful),
            )
            .note(format!(
                "`up` returned after {}; {left} lanes still running then; the {BUSY_LANES} \
                 lanes took {} to start",
                fmt_duration(ready),
                fmt_duration(made)
            )),
        );
    }
    env.down()?;
    Ok(rows)
}

/// Queued deliveries: `lanes` lanes, each busy with a first turn and `per_lane` messages
/// queued behind it; the time until every receipt is completed (throughput). The time from a
/// turn's end to the next delivery's turn start is the `handoff` benchmark's (the same path).
pub fn queue_throughput(bins: &Bins, lanes: usize, per_lane: usize) -> anyhow::Result<Vec<Row>> {
    let stub = Stub::start(STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    env.up()?;
    let cwd = env.work().display().to_string();
    let mut refs = Vec::new();
    for n in 0..lanes {
        let made = env.json(&[
            "new",
            "--name",
            &format!("queue-{n}"),
            "--cwd",
            &cwd,
            "--no-send",
        ])?;
        refs.push(made["lane"]["ref"].as_str().context("ref")?.to_owned());
    }
    let start = Instant::now();
    let mut receipts = Vec::new();
    for lane in &refs {
        for m in 0..per_lane {
            let sent = env.json(&["send", lane, &format!("job {m}"), "--mode", "queue"])?;
            receipts.push(sent["receipt"].as_str().context("receipt")?.to_owned());
        }
    }
    let queued_in = start.elapsed();
    poll(
        "every queued message delivered",
        Duration::from_secs(600),
        Duration::from_millis(50),
        || {
            let status = env.status()?;
            let left = status["orchestration"]["queued"]
                .as_u64()
                .unwrap_or(u64::MAX);
            let busy = status["lanes"]["busy"].as_u64().unwrap_or(u64::MAX);
            Ok((left == 0 && busy == 0).then_some(()))
        },
    )?;
    let all = start.elapsed();
    for receipt in &receipts {
        let got = env.json(&["delivery", "get", receipt])?;
        ensure!(
            got["state"] == "completed",
            "receipt {receipt} ended {}",
            got["state"]
        );
    }
    env.down()?;
    let total = receipts.len();
    let rows = vec![
        Row::value(
            &format!("queued deliveries: {lanes} lanes × {per_lane}, real codex"),
            format!("{:.1} messages/s", total as f64 / all.as_secs_f64()),
        )
        .note(format!(
            "{total} turns in {}; queuing took {}",
            fmt_duration(all),
            fmt_duration(queued_in)
        )),
    ];
    Ok(rows)
}
