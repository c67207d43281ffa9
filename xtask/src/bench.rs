//! `cargo xtask bench`: builds the release binaries and prints median timings of the
//! operations a user and an agent feel most: CLI start-up, a CLI round trip to the daemon,
//! MCP spawn until the `tools/list` answer, and the idle daemon's resident memory.
//!
//! Figures are printed, never asserted: timings on a shared machine are evidence, not tests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Runs every benchmark; `args` may hold `--runs N` (default 50).
pub fn run(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let runs = match args {
        [] => 50,
        ["--runs", n] => n.parse().context("--runs takes a number")?,
        _ => bail!("usage: cargo xtask bench [--runs N]"),
    };
    let bin_dir = build(root)?;
    let dispatch = bin_dir.join("dispatch");
    let home = std::env::temp_dir().join(format!("dispatch-bench-{}", std::process::id()));
    let _cleanup = Cleanup {
        dispatch: dispatch.clone(),
        home: home.clone(),
    };
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&dispatch);
        c.args(args)
            .env("DISPATCH_HOME", &home)
            .stdin(Stdio::null());
        c
    };

    println!("dispatch benchmarks: {runs} runs each, medians (min..max)");
    report(
        "dispatch --help",
        &time_runs(runs, || quiet(cmd(&["--help"])))?,
    );

    quiet(cmd(&["up"]))?;
    report(
        "dispatch daemon status --json (daemon up)",
        &time_runs(runs, || quiet(cmd(&["daemon", "status", "--json"])))?,
    );
    report(
        "dispatch mcp: spawn → tools/list answer",
        &time_runs(runs, || mcp_tools_list(cmd(&["mcp"])))?,
    );

    let status: serde_json::Value =
        serde_json::from_slice(&cmd(&["daemon", "status", "--json"]).output()?.stdout)?;
    let pid = status["pid"].as_u64().context("daemon pid")?;
    let rss = rss_kib(pid)?;
    println!(
        "{:<48} {:>8.1} MiB (VmRSS of pid {pid})",
        "dispatchd idle resident memory",
        rss as f64 / 1024.0
    );
    Ok(())
}

struct Cleanup {
    dispatch: PathBuf,
    home: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.dispatch)
            .arg("down")
            .env("DISPATCH_HOME", &self.home)
            .output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "dispatch-cli"])
        .current_dir(root)
        .status()
        .context("cargo build --release")?;
    ensure!(status.success(), "release build failed");
    Ok(root.join("target/release"))
}

fn quiet(mut cmd: Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn mcp_tools_list(mut cmd: Command) -> anyhow::Result<()> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
    writeln!(stdin, "{init}")?;
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{}}}}"#
    )?;
    loop {
        line.clear();
        ensure!(
            stdout.read_line(&mut line)? > 0,
            "dispatch mcp closed before answering"
        );
        if line.contains(r#""id":2"#) {
            break;
        }
    }
    ensure!(
        line.contains("dispatch_daemon_status"),
        "tools/list lacks the tools"
    );
    drop(stdin);
    child.wait()?;
    Ok(())
}

fn time_runs(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    f()?; // warm-up: page cache, first connection
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn report(name: &str, sorted: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = sorted[sorted.len() / 2];
    println!(
        "{name:<48} {:>8.2} ms ({:.2}..{:.2})",
        ms(median),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1])
    );
}

fn rss_kib(pid: u64) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}
