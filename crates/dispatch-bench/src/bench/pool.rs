//! The App Server pool benchmark (`pool`, ADR 0019): with `[app_server] processes = 3` and
//! lanes mid-turn on every process, `kill -9` of one process; the time until its lanes are
//! truthful (their turns interrupted) and until one of them takes a message again, and a
//! check that the other processes' turns were not touched.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;

use super::env::{AppServer, Bins, Env, kill9, poll};
use super::lanes::{STUB_REPLY, Stub};
use super::{Row, fmt_duration};

/// App Server processes in the pool.
const PROCESSES: usize = 3;
/// Lanes mid-turn on each process.
const PER_PROCESS: usize = 10;

/// Whether `list` shows `lane` running a turn.
fn running(lane: &Value) -> bool {
    matches!(
        lane["status"].as_str(),
        Some("busy" | "retrying" | "waiting_approval")
    )
}

/// The refs of the lanes `list` shows running.
fn running_refs(env: &Env) -> anyhow::Result<Vec<String>> {
    let listed = env.json(&["list", "--limit", "1000"])?;
    Ok(listed["lanes"]
        .as_array()
        .context("lanes")?
        .iter()
        .filter(|l| running(l))
        .filter_map(|l| l["ref"].as_str().map(str::to_owned))
        .collect())
}

/// One sample: a fresh pool, lanes mid-turn, `kill -9` of process 0; (kill → its lanes
/// truthful, kill → one of them takes a message, others still running).
fn sample(bins: &Bins, run: usize) -> anyhow::Result<(Duration, Duration, usize)> {
    let stub = Stub::start(STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    std::fs::create_dir_all(env.home())?;
    std::fs::write(
        env.home().join("config.toml"),
        format!("[app_server]\nprocesses = {PROCESSES}\n"),
    )?;
    env.up()?;
    let status = env.status()?;
    let pids: Vec<u32> = status["app_servers"]
        .as_array()
        .context("app_servers")?
        .iter()
        .filter_map(|p| p["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect();
    ensure!(
        pids.len() == PROCESSES,
        "not {PROCESSES} processes: {status}"
    );
    let lanes = PROCESSES * PER_PROCESS;
    for _ in 0..lanes {
        stub.push(responses_stub::Behaviour::Hang);
    }
    let cwd = env.work().display().to_string();
    let mut refs = Vec::with_capacity(lanes);
    for n in 0..lanes {
        let made = env.json(&[
            "new",
            "--name",
            &format!("pool-{run}-{n}"),
            "--cwd",
            &cwd,
            "--text",
            "take your time",
        ])?;
        refs.push(made["lane"]["ref"].as_str().context("ref")?.to_owned());
    }
    ensure!(
        running_refs(&env)?.len() == lanes,
        "not every lane was running before the kill"
    );
    // New lanes go to the least loaded process, the lowest index first: lane n is on n % 3.
    let victims: Vec<&String> = refs.iter().step_by(PROCESSES).collect();
    let start = Instant::now();
    kill9(pids[0]);
    poll(
        "the killed process's lanes truthful",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || {
            let running = running_refs(&env)?;
            Ok(victims.iter().all(|v| !running.contains(v)).then_some(()))
        },
    )?;
    let truthful = start.elapsed();
    poll(
        "a message to a lane of the killed process",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || Ok(env.json(&["send", victims[0], "again"]).ok().map(drop)),
    )?;
    let usable = start.elapsed();
    let others = running_refs(&env)?
        .iter()
        .filter(|r| !victims.contains(r))
        .count();
    env.down()?;
    Ok((truthful, usable, others))
}

/// `runs` samples of a pool process crash.
pub fn crash(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    let mut truthful = Vec::with_capacity(runs);
    let mut usable = Vec::with_capacity(runs);
    let mut untouched = Vec::with_capacity(runs);
    for run in 0..runs {
        let (t, u, others) = sample(bins, run)?;
        truthful.push(t);
        usable.push(u);
        untouched.push(others);
    }
    truthful.sort();
    usable.sort();
    let expected = (PROCESSES - 1) * PER_PROCESS;
    Ok(vec![
        Row::timing(
            &format!("pool of {PROCESSES}: kill -9 → its lanes truthful"),
            &truthful,
        )
        .note(format!(
            "{PER_PROCESS} lanes mid-turn on each process; the other processes' lanes still \
             running after: {untouched:?} of {expected}"
        )),
        Row::timing(
            &format!("pool of {PROCESSES}: kill -9 → its lane takes a message"),
            &usable,
        )
        .target(format!("goal ≤ {}", fmt_duration(Duration::from_secs(2)))),
    ])
}
