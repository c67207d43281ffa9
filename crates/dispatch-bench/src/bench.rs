//! `cargo xtask bench [--runs N] [--only NAME[,NAME...]] [--lanes N]`: builds the release binaries and
//! prints what a user and an agent feel most: CLI start-up, a CLI round trip to the daemon,
//! MCP spawn until the `tools/list` answer, the bytes of that answer and of dispatch's tools in
//! a Codex model request, the idle daemon's resident memory, a cold `up`,
//! a live `models` refresh, App Server crash recovery, ingest throughput under a flood of
//! notifications, `list` over 1,000 lanes, 32 lanes running turns at once, the fire lag
//! of 1,000 triggers, the time from a subscribed lane's turn end to its subscriber's turn
//! start, the `history` overview over 1,000 lanes, and `list` pages over 10,000 lanes.
//!
//! Figures are printed, never asserted: timings on a shared machine are evidence, not tests.
//! Every wait is bounded, and every daemon, App Server and temporary directory a benchmark
//! starts is stopped or removed when it ends, fails, panics or is interrupted.

mod env;
mod handoff;
mod history;
mod lanes;
mod mcp_cost;
mod pool;
mod scale;
#[path = "../../../xtask/src/target_dir.rs"]
mod target_dir;
mod threads;
mod triggers;
mod truth;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use target_dir::{release_dir, target_dir};

use env::{AppServer, Bins, Env, absolute, exec};

/// Every benchmark, in the order they run; `--only` takes these names.
const NAMES: &[(&str, &str)] = &[
    ("help", "dispatch --help"),
    ("status", "daemon status --json round trip"),
    ("mcp", "dispatch mcp spawn → tools/list"),
    ("mcp-bytes", "tools/list bytes, Codex request tool bytes"),
    ("rss", "dispatchd idle resident memory"),
    ("models", "models --json, live refresh"),
    ("parallel", "32 lanes running turns at once"),
    ("crash", "App Server kill -9 → ready"),
    ("up", "up until ready, cold home"),
    ("ingest", "ingest of a notification flood"),
    ("list", "list --json with 1,000 lanes"),
    ("search", "search over 100,000 items in 1,000 lanes"),
    ("sync", "sync of a thread with 1,000 items"),
    (
        "history",
        "history overview over 1,000 lanes with 100,000 items",
    ),
    ("pages", "list pages of 200 over 10,000 lanes"),
    ("triggers", "trigger fire lag with 1,000 triggers"),
    (
        "handoff",
        "subscription hand-off: a turn's end → the subscriber's turn start",
    ),
    (
        "restart",
        "daemon restart with 200 lanes mid-turn → truthful",
    ),
    ("queue", "queued deliveries: throughput and hand-off"),
    (
        "pool",
        "pool of 3 App Servers: kill -9 of one → its lanes usable again",
    ),
    (
        "scale",
        "2,000 lanes (--lanes N) with one turn each, then idle: memory, get/tail, send",
    ),
];

const USAGE: &str = "usage: cargo xtask bench [--runs N] [--only NAME[,NAME...]] [--lanes N]";

struct Options {
    runs: usize,
    only: Option<Vec<String>>,
    /// Lanes of the `scale` benchmark.
    lanes: usize,
}

impl Options {
    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut options = Options {
            runs: 50,
            only: None,
            lanes: 2000,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match *arg {
                "--runs" => {
                    let n = args.next().context(USAGE)?;
                    options.runs = n.parse().context("--runs takes a number")?;
                    ensure!(options.runs > 0, "--runs takes a number above 0");
                }
                "--lanes" => {
                    let n = args.next().context(USAGE)?;
                    options.lanes = n.parse().context("--lanes takes a number")?;
                    ensure!(options.lanes > 0, "--lanes takes a number above 0");
                }
                "--only" => {
                    let names = args.next().context(USAGE)?;
                    for name in names.split(',').filter(|n| !n.is_empty()) {
                        if !NAMES.iter().any(|(known, _)| *known == name) {
                            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                            bail!(
                                "unknown benchmark `{name}`; choose from {}",
                                known.join(", ")
                            );
                        }
                        options.only.get_or_insert_with(Vec::new).push(name.into());
                    }
                }
                _ => bail!(USAGE),
            }
        }
        Ok(options)
    }

    /// Whether `--only` names `name` (for benchmarks too long to run by default).
    fn asked(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_some_and(|only| only.iter().any(|n| n == name))
    }

    fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    }
}

/// One line of the final table.
pub struct Row {
    name: String,
    value: String,
    range: String,
    target: String,
    note: String,
}

impl Row {
    fn new(name: &str, value: String) -> Row {
        Row {
            name: name.to_owned(),
            value,
            range: String::new(),
            target: String::new(),
            note: String::new(),
        }
    }

    /// A row of sorted timing samples: median, min..max and the count.
    pub fn timing(name: &str, sorted: &[Duration]) -> Row {
        let mut row = Row::new(name, fmt_duration(median(sorted)));
        if let (Some(first), Some(last)) = (sorted.first(), sorted.last()) {
            row.range = format!(
                "{}..{} (n={})",
                fmt_duration(*first),
                fmt_duration(*last),
                sorted.len()
            );
        }
        row
    }

    /// A value that is not a timing.
    pub fn value(name: &str, value: String) -> Row {
        Row::new(name, value)
    }

    /// Adds the comparison with a target or reference.
    pub fn target(mut self, target: String) -> Row {
        self.target = target;
        self
    }

    /// Adds a remark (counts, checks).
    pub fn note(mut self, note: String) -> Row {
        self.note = note;
        self
    }

    /// Prints the row as soon as it is measured.
    fn print_now(&self) {
        let mut line = format!("{:<44} {:>12}", self.name, self.value);
        for extra in [&self.range, &self.target, &self.note] {
            if !extra.is_empty() {
                line.push_str("  ");
                line.push_str(extra);
            }
        }
        println!("{line}");
    }
}

/// The median of sorted samples.
pub fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// `12.34 ms` or `1.234 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.3} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

/// `measured / target` as `0.42× target (≤ 5 ms)` style text.
pub fn ratio(measured: Duration, reference: Duration, label: &str) -> String {
    format!(
        "{:.2}× {label}",
        measured.as_secs_f64() / reference.as_secs_f64().max(f64::EPSILON)
    )
}

/// Thousands separators: 100000 → 100,000.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Report {
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Report {
    fn add(&mut self, row: Row) {
        row.print_now();
        self.rows.push(row);
    }

    /// Records a benchmark that could not be measured; the others still run.
    fn failed(&mut self, name: &str, err: &anyhow::Error) {
        println!("{name:<44} {:>12}  {err:#}", "FAILED");
        self.failures.push(format!("{name}: {err:#}"));
        self.rows
            .push(Row::value(name, "FAILED".into()).note(format!("{err:#}")));
    }

    fn table(&self) {
        let headers = [
            "benchmark",
            "median",
            "min..max",
            "target / reference",
            "notes",
        ];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.name.as_str(),
                    r.value.as_str(),
                    r.range.as_str(),
                    r.target.as_str(),
                    r.note.as_str(),
                ]
            })
            .collect();
        let mut widths = headers.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if i == 1 {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                if i + 1 < cells.len() {
                    out.push_str(" | ");
                }
            }
            out.trim_end().to_owned()
        };
        println!();
        println!("{}", line(headers));
        println!(
            "{}",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-|-")
        );
        for row in cells {
            println!("{}", line(row));
        }
    }
}

/// Benchmarks the `dispatch` and `dispatchd` in this directory instead of building them:
/// e.g. to compare two builds (profiles, linker flags) with the same benchmark code.
const BIN_DIR_ENV: &str = "DISPATCH_BENCH_BIN_DIR";

/// Runs the benchmarks `args` selects (`--runs N`, default 50; `--only NAME,...`).
pub fn run(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    env::install_signal_cleanup();
    let bin_dir = build(root)?;
    let needs_real = [
        "status",
        "mcp",
        "mcp-bytes",
        "rss",
        "models",
        "parallel",
        "crash",
        "up",
        "handoff",
        "restart",
        "queue",
        "pool",
    ]
    .iter()
    .any(|n| options.wants(n))
        || options.asked("scale");
    let bins = Bins {
        dispatch: bin_dir.join("dispatch"),
        codex: if needs_real {
            codex_bin(root)?
        } else {
            PathBuf::new()
        },
        fake: std::env::current_exe().context("the dispatch-bench binary")?,
    };
    let runs = options.runs;
    println!(
        "dispatch benchmarks ({}): {runs} runs unless noted, median (min..max)",
        bin_dir.display()
    );
    let mut report = Report {
        rows: Vec::new(),
        failures: Vec::new(),
    };

    if options.wants("help") {
        let dispatch = bins.dispatch.clone();
        let result = time_runs(runs, || {
            let mut cmd = Command::new(&dispatch);
            cmd.arg("--help").stdin(Stdio::null());
            quiet(cmd)
        });
        match result {
            Ok(samples) => report.add(Row::timing("dispatch --help", &samples)),
            Err(err) => report.failed("dispatch --help", &err),
        }
    }

    let shared_daemon = ["status", "mcp", "rss", "models", "parallel", "crash"];
    if shared_daemon.iter().any(|n| options.wants(n))
        && let Err(err) = real_server_benches(&bins, &options, &mut report)
    {
        report.failed("real App Server benchmarks", &err);
    }

    if options.wants("mcp-bytes") {
        for toolsets in ["default", "all"] {
            match mcp_cost::tools_list_row(&bins, toolsets) {
                Ok(row) => report.add(row),
                Err(err) => report.failed(
                    &format!("MCP tools/list answer ({toolsets} toolsets)"),
                    &err,
                ),
            }
        }
        match mcp_cost::codex_request_row(&bins) {
            Ok(row) => report.add(row),
            Err(err) => report.failed("Codex model request: dispatch's tools", &err),
        }
    }
    if options.wants("up") {
        match lanes::up_cold(&bins, runs.min(10)) {
            Ok(row) => report.add(row),
            Err(err) => report.failed("up (cold)", &err),
        }
    }
    if options.wants("ingest") {
        match lanes::ingest(&bins) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("ingest flood", &err),
        }
    }
    if options.wants("list") {
        match lanes::list_1000(&bins, runs) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("list with 1,000 lanes", &err),
        }
    }
    if options.wants("search") {
        match threads::search(&bins, runs) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("search over 100,000 items", &err),
        }
    }
    if options.wants("sync") {
        match threads::sync(&bins, runs) {
            Ok(row) => report.add(row),
            Err(err) => report.failed("sync of 1,000 items", &err),
        }
    }
    if options.wants("history") {
        match history::history(&bins, runs) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("history over 1,000 lanes", &err),
        }
    }
    if options.wants("pages") {
        match history::pages(&bins, runs) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("list pages over 10,000 lanes", &err),
        }
    }

    if options.wants("triggers") {
        match triggers::fire_lag(&bins) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("trigger fire lag", &err),
        }
    }
    if options.wants("handoff") {
        match handoff::handoff(&bins, runs.min(20)) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("subscription hand-off", &err),
        }
    }
    if options.wants("restart") {
        match truth::restart_busy(&bins) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("restart with 200 lanes mid-turn", &err),
        }
    }
    if options.wants("queue") {
        match truth::queue_throughput(&bins, 4, 25) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("queued deliveries", &err),
        }
    }
    if options.wants("pool") {
        match pool::crash(&bins, runs.min(3)) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("App Server pool crash", &err),
        }
    }

    if options.asked("scale") {
        match scale::scale(&bins, options.lanes) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("scale", &err),
        }
    }

    report.table();
    if !report.failures.is_empty() {
        bail!(
            "{} benchmark(s) failed:\n  {}",
            report.failures.len(),
            report.failures.join("\n  ")
        );
    }
    Ok(())
}

/// The benchmarks that share one daemon driving the real Codex (with the stub as its model
/// provider): the daemon round trip, MCP, idle memory, `models`, 32 parallel turns and,
/// last because it kills the App Server, crash recovery.
fn real_server_benches(bins: &Bins, options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let runs = options.runs;
    let stub = lanes::Stub::start(lanes::STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    env.up()?;

    if options.wants("status") {
        let name = "daemon status --json (daemon up)";
        match time_runs(runs, || quiet(env.cmd(&["daemon", "status", "--json"]))) {
            Ok(samples) => report.add(Row::timing(name, &samples)),
            Err(err) => report.failed(name, &err),
        }
    }
    if options.wants("mcp") {
        let name = "dispatch mcp: spawn → tools/list answer";
        match time_runs(runs, || mcp_tools_list(env.cmd(&["mcp"]))) {
            Ok(samples) => report.add(Row::timing(name, &samples)),
            Err(err) => report.failed(name, &err),
        }
    }
    if options.wants("rss") {
        let name = "dispatchd idle resident memory";
        let measured = env.status().and_then(|status| {
            let pid = status["pid"].as_u64().context("daemon pid")?;
            Ok((pid, rss_kib(pid)?))
        });
        match measured {
            Ok((pid, rss)) => report.add(
                Row::value(name, format!("{:.1} MiB", rss as f64 / 1024.0))
                    .note(format!("VmRSS of pid {pid}, App Server excluded")),
            ),
            Err(err) => report.failed(name, &err),
        }
    }
    if options.wants("models") {
        match lanes::models(&env, runs) {
            Ok(row) => report.add(row),
            Err(err) => report.failed("models --json (live)", &err),
        }
    }
    if options.wants("parallel") {
        match lanes::parallel_turns(&env, &stub, 32) {
            Ok(rows) => rows.into_iter().for_each(|r| report.add(r)),
            Err(err) => report.failed("32 lanes running turns at once", &err),
        }
    }
    if options.wants("crash") {
        match lanes::crash_recovery(&env, runs.min(5)) {
            Ok(row) => report.add(row),
            Err(err) => report.failed("App Server kill -9 → ready", &err),
        }
    }
    Ok(())
}

/// Builds the release binaries into the target directory and returns `<target>/release`.
fn build(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        let bin_dir = absolute(Path::new(&dir));
        for bin in ["dispatch", "dispatchd"] {
            ensure!(
                bin_dir.join(bin).is_file(),
                "{BIN_DIR_ENV}: {} is not a file",
                bin_dir.join(bin).display()
            );
        }
        return Ok(bin_dir);
    }
    let target = target_dir(root);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "dispatch-cli"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root)
        .status()
        .context("cargo build --release")?;
    ensure!(status.success(), "release build failed");
    let bin_dir = release_dir(root);
    for bin in ["dispatch", "dispatchd"] {
        ensure!(
            bin_dir.join(bin).is_file(),
            "{} is missing after the build",
            bin_dir.join(bin).display()
        );
    }
    Ok(bin_dir)
}

/// The real Codex: `DISPATCH_CODEX_BIN`, else what `scripts/install-codex` prints.
fn codex_bin(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("DISPATCH_CODEX_BIN").filter(|b| !b.is_empty()) {
        return Ok(absolute(Path::new(&bin)));
    }
    let mut cmd = Command::new(root.join("scripts/install-codex"));
    cmd.current_dir(root).stdin(Stdio::null());
    let out = exec(cmd, Duration::from_secs(600)).context("scripts/install-codex")?;
    env::check("scripts/install-codex", &out)?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        Path::new(&path).is_file(),
        "scripts/install-codex printed `{path}`, not a file"
    );
    Ok(PathBuf::from(path))
}

fn quiet(cmd: Command) -> anyhow::Result<()> {
    let out = exec(cmd, env::COMMAND_TIMEOUT)?;
    env::check("command", &out)
}

fn mcp_tools_list(mut cmd: Command) -> anyhow::Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut talk = || -> anyhow::Result<()> {
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
            Ok(())
        };
        let _ = tx.send(talk());
        // stdin drops here: dispatch mcp sees EOF and exits.
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("dispatch mcp did not answer within 30 s")));
    if outcome.is_err() {
        let _ = child.kill();
    }
    let waited = env::wait_bounded(child, Duration::from_secs(10));
    outcome?;
    waited.map(drop)
}

/// Times `runs` calls of `f` after one warm-up call; returns the sorted samples.
pub fn time_runs(
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

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u64) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}
