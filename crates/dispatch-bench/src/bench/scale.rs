//! The scale benchmark (issue 15): `lanes` lanes (2,000 unless `--lanes N`) created with one
//! turn each against the real App Server and the Responses stub, then idle: the App Server's
//! and the daemon's resident memory, whether every lane answers `get` and `tail`, and the time
//! of a `send` to the oldest idle lane (unloaded by then, so the send reloads it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use super::env::{AppServer, Bins, Env, parallel, poll};
use super::lanes::{STUB_REPLY, Stub};
use super::{Row, fmt_duration, rss_kib};

/// `dispatch` processes run at once while creating and checking lanes.
const WORKERS: usize = 8;

/// Runs the benchmark with `lanes` lanes.
pub fn scale(bins: &Bins, lanes: usize) -> anyhow::Result<Vec<Row>> {
    let stub = Stub::start(STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    env.up()?;
    let cwd = env.work().display().to_string();

    // Every lane with one turn, `WORKERS` `new --text` at a time.
    let refs: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::with_capacity(lanes));
    let start = Instant::now();
    parallel(WORKERS, lanes, |i| {
        let created = env.json_within(
            &[
                "new",
                "--name",
                &format!("scale-{i:05}"),
                "--cwd",
                &cwd,
                "--text",
                &format!("hello {i}"),
            ],
            Duration::from_secs(120),
        )?;
        let lane = created["lane"]["ref"]
            .as_str()
            .context("lane.ref")?
            .to_owned();
        refs.lock()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?
            .push((i, lane));
        Ok(())
    })?;
    let accepted = start.elapsed();
    let mut refs = refs
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    refs.sort();
    let refs: Vec<String> = refs.into_iter().map(|(_, r)| r).collect();

    // Until every lane's turn completed (`list` pages hold at most 1,000 lanes).
    let mut completed = 0;
    poll(
        "every lane's first turn completed",
        Duration::from_secs(600),
        Duration::from_millis(200),
        || {
            completed = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut args = vec!["list", "--limit", "1000"];
                if let Some(c) = &cursor {
                    args.extend(["--cursor", c.as_str()]);
                }
                let page = env.json(&args)?;
                completed += page["lanes"].as_array().map_or(0, |all| {
                    all.iter()
                        .filter(|l| l["latest_turn"]["status"] == "completed")
                        .count()
                });
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            Ok((completed >= lanes).then_some(()))
        },
    )
    .with_context(|| format!("{completed}/{lanes} turns completed"))?;
    let all_done = start.elapsed();

    // Idle: memory of the daemon and of the App Server (with any children it started). An App
    // Server above `[app_server] recycle_above_mib` (default 512) is replaced once quiescent,
    // checked at turn completions and every minute (ADR 0022): while it is still above that,
    // give the daemon that minute (and a little) before measuring.
    const RECYCLE_ABOVE_KIB: u64 = 512 * 1024;
    const SETTLE: Duration = Duration::from_secs(75);
    let settling = Instant::now();
    let (status, app_pid, app_rss, app_processes) = loop {
        let status = env.status()?;
        let app_pid = status["app_server"]["pid"]
            .as_u64()
            .context("app_server.pid")?;
        let (app_rss, app_processes) = tree_rss_kib(app_pid);
        if app_rss <= RECYCLE_ABOVE_KIB || settling.elapsed() >= SETTLE {
            break (status, app_pid, app_rss, app_processes);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let settled = settling.elapsed();
    let recycles: u64 = status["app_servers"].as_array().map_or(0, |all| {
        all.iter()
            .map(|p| p["recycles"].as_u64().unwrap_or(0))
            .sum()
    });
    let daemon_pid = status["pid"].as_u64().context("daemon pid")?;
    let daemon_rss = rss_kib(daemon_pid)?;

    // Every lane answers `get` and `tail` with its turn.
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let checked = Instant::now();
    parallel(WORKERS, lanes, |i| {
        let lane = &refs[i];
        let outcome = (|| -> anyhow::Result<()> {
            let got = env.json(&["get", lane])?;
            ensure!(
                got["lane"]["latest_turn"]["status"] == "completed",
                "get shows no completed turn"
            );
            let tail = env.json(&["tail", lane, "--limit", "5"])?;
            let said = tail["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|item| item["type"] == "agent_message" && item["text"] == STUB_REPLY)
            });
            ensure!(said, "tail lacks the agent's answer");
            Ok(())
        })();
        if let Err(err) = outcome {
            failures
                .lock()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))?
                .push(format!("{lane}: {err:#}"));
        }
        Ok(())
    })?;
    let checked = checked.elapsed();
    let failures = failures
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;

    // A send to the oldest idle lane: the first created, least recently used, so unloaded.
    let oldest = refs.first().context("no lanes")?;
    let sent_at = Instant::now();
    let sent = env.json(&["send", oldest, "are you there?"])?;
    let send_took = sent_at.elapsed();
    let turn = sent["turn_id"].as_str().context("turn_id")?.to_owned();
    let done = poll(
        "the oldest lane's new turn completed",
        Duration::from_secs(120),
        Duration::from_millis(5),
        || {
            let got = env.json(&["get", oldest])?;
            let latest = &got["lane"]["latest_turn"];
            Ok(
                (latest["id"] == turn.as_str() && latest["status"] == "completed")
                    .then(|| sent_at.elapsed()),
            )
        },
    )?;
    env.down()?;

    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let mut check = format!(
        "{}/{lanes} lanes answer get and tail ({} for all)",
        lanes - failures.len(),
        fmt_duration(checked)
    );
    if !failures.is_empty() {
        check.push_str(&format!(
            "; FAILED: {}",
            failures
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(vec![
        Row::value(
            &format!("scale: {lanes} lanes, one turn each"),
            fmt_duration(all_done),
        )
        .note(format!(
            "all `new --text` accepted after {} ({:.0} lanes/s, {WORKERS} at a time); {check}",
            fmt_duration(accepted),
            lanes as f64 / accepted.as_secs_f64().max(f64::EPSILON)
        )),
        Row::value(
            &format!("scale: App Server RSS, {lanes} idle lanes"),
            mib(app_rss),
        )
        .target("≤ 600 MB".into())
        .note(format!(
            "{app_processes} processes (pid {app_pid} and below); at most `max_loaded_idle` \
                 (default 64) idle threads stay loaded; measured {} after the last turn, \
                 {recycles} recycle(s)",
            fmt_duration(settled)
        )),
        Row::value(
            &format!("scale: daemon RSS, {lanes} idle lanes"),
            mib(daemon_rss),
        )
        .target("≤ 40 MiB".into()),
        Row::value(
            "scale: send to the oldest idle lane",
            fmt_duration(send_took),
        )
        .target("≤ 150 ms".into())
        .note(format!(
            "{}; its turn completed after {}",
            if lanes > 64 {
                "unloaded as idle before, so the send reloads it"
            } else {
                "still loaded (64 or fewer lanes)"
            },
            fmt_duration(done)
        )),
    ])
}

/// VmRSS of `pid` and of every process below it, in KiB (0 for one that is gone), and how
/// many processes that is.
fn tree_rss_kib(pid: u64) -> (u64, usize) {
    let mut total = rss_kib(pid).unwrap_or(0);
    let mut processes = 1;
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|c| c.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    for child in children {
        let (kib, below) = tree_rss_kib(child);
        total += kib;
        processes += below;
    }
    (total, processes)
}
