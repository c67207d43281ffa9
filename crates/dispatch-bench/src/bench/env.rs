//! What every benchmark stands on: bounded child processes, and private runtime layouts
//! (`DISPATCH_HOME` + `CODEX_HOME`) whose daemon and files are removed when dropped, on
//! error, on panic, and on Ctrl-C / SIGTERM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Bound on an ordinary `dispatch` command (the CLI's own RPC timeout is 120 s).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `dispatch down` (it waits up to 10 s for SIGTERM and 10 s more after SIGKILL).
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion with captured output, killing it (SIGKILL) after `timeout`.
pub fn exec(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    wait_bounded(child, timeout).with_context(|| format!("{cmd:?}"))
}

/// Waits for `child` (its stdout/stderr piped or not) at most `timeout`; SIGKILLs it then.
pub fn wait_bounded(child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => Ok(output?),
        Err(_) => {
            kill9(pid);
            // Reap it (the waiter thread does), bounded in case the pipes stay open.
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!("timed out after {timeout:?} (killed pid {pid})")
        }
    }
}

/// SIGKILL to `pid`, ignoring a process that is already gone.
pub fn kill9(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Whether `pid` is alive and its command line contains `needle`.
fn alive_with(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        .unwrap_or(false)
}

/// Fails with the command's output unless it succeeded.
pub fn check(what: &str, out: &Output) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The binaries every layout uses.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The release `dispatch` (its sibling `dispatchd` is the daemon `up` starts).
    pub dispatch: PathBuf,
    /// The real, pinned Codex CLI (`scripts/install-codex`).
    pub codex: PathBuf,
    /// This `dispatch-bench` binary, which is the fake App Server when run as `dispatch-bench app-server`.
    pub fake: PathBuf,
}

/// Which App Server a layout's daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppServer {
    /// The real Codex, its model provider being the bench's Responses stub.
    Real,
    /// The `dispatch-bench` binary itself (`dispatch-bench app-server`).
    Fake,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Layouts alive right now, for the signal handler: (id, dispatch binary, DISPATCH_HOME, dir).
static ACTIVE: Mutex<Vec<(u64, PathBuf, PathBuf, PathBuf)>> = Mutex::new(Vec::new());

fn active() -> std::sync::MutexGuard<'static, Vec<(u64, PathBuf, PathBuf, PathBuf)>> {
    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On Ctrl-C or SIGTERM: stop every live layout's daemon, remove its files, exit 130.
pub fn install_signal_cleanup() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\nbench: interrupted; stopping daemons and removing temporary files");
            let layouts: Vec<_> = active().drain(..).collect();
            for (_, dispatch, home, dir) in layouts {
                let mut down = Command::new(dispatch);
                down.arg("down").env("DISPATCH_HOME", &home);
                let _ = exec(down, DOWN_TIMEOUT);
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        });
    });
}

/// A private layout: `<dir>` is HOME, `<dir>/home` DISPATCH_HOME, `<dir>/codex` CODEX_HOME,
/// `<dir>/work` a working directory for lanes. Dropping it stops its daemon (`down`, then SIGKILL of
/// whatever is left) and removes `<dir>`.
pub struct Env {
    id: u64,
    dir: PathBuf,
    dispatch: PathBuf,
    codex_bin: PathBuf,
    extra_env: Vec<(String, OsString)>,
    /// App Server pids seen, killed on drop if still alive (e.g. after a failed `down`).
    app_server_pids: Mutex<Vec<u32>>,
}

impl Env {
    /// A fresh layout whose daemon runs `server`; `stub_url` is written as the model
    /// provider of CODEX_HOME (the discard port when `None`).
    pub fn new(
        bins: &Bins,
        server: AppServer,
        stub_url: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Env> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dispatch-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let env = Env {
            id: n,
            dispatch: bins.dispatch.clone(),
            codex_bin: match server {
                AppServer::Real => bins.codex.clone(),
                AppServer::Fake => bins.fake.clone(),
            },
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect(),
            app_server_pids: Mutex::new(Vec::new()),
            dir,
        };
        active().push((env.id, env.dispatch.clone(), env.home(), env.dir.clone()));
        responses_stub::write_codex_config(
            &env.codex_home(),
            stub_url.unwrap_or("http://127.0.0.1:9/v1"),
            &responses_stub::CodexConfig::default(),
        )?;
        Ok(env)
    }

    /// DISPATCH_HOME.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// CODEX_HOME.
    pub fn codex_home(&self) -> PathBuf {
        self.dir.join("codex")
    }

    /// A directory lanes can work in.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// `dispatch args...` in this layout (stdin closed, output not yet captured).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.dispatch);
        cmd.args(args)
            .env("DISPATCH_HOME", self.home())
            .env("CODEX_HOME", self.codex_home())
            .env("DISPATCH_CODEX_BIN", &self.codex_bin)
            // Codex starts a login shell per thread (its shell snapshot); with the operator's
            // HOME that runs their shell profile (on the benchmark machine, a `pyenv rehash`
            // that serializes on a lock), which would be measured instead of dispatch.
            .env("HOME", &self.dir)
            .env_remove("DISPATCH_SOCKET")
            .env_remove("DISPATCH_DB")
            .env_remove("DISPATCH_PIDFILE")
            .env_remove("DISPATCH_DAEMON_BIN")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `dispatch args...`, bounded, and requires success.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_within(args, COMMAND_TIMEOUT)
    }

    /// [`Env::run`] with its own bound.
    pub fn run_within(&self, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
        let out = exec(self.cmd(args), timeout)?;
        check(&format!("dispatch {}", args.join(" ")), &out)?;
        Ok(out)
    }

    /// Runs `dispatch args... --json`, bounded, and returns its output object.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.json_within(args, COMMAND_TIMEOUT)
    }

    /// [`Env::json`] with its own bound.
    pub fn json_within(&self, args: &[&str], timeout: Duration) -> anyhow::Result<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run_within(&args, timeout)?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("dispatch {}: stdout is not JSON", args.join(" ")))
    }

    /// `dispatch up`, required to start a new daemon.
    pub fn up(&self) -> anyhow::Result<Value> {
        let up = self.json(&["up"])?;
        if up["status"] != "started" {
            bail!("dispatch up did not start a daemon: {up}");
        }
        Ok(up)
    }

    /// `dispatch daemon status --json`; remembers the App Servers' pids for the cleanup.
    pub fn status(&self) -> anyhow::Result<Value> {
        let status = self.json(&["daemon", "status"])?;
        let processes = status["app_servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for pid in processes
            .iter()
            .map(|p| &p["pid"])
            .chain([&status["app_server"]["pid"]])
            .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
        {
            let mut pids = self
                .app_server_pids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        Ok(status)
    }

    /// `dispatch down`, bounded.
    pub fn down(&self) -> anyhow::Result<()> {
        self.run_within(&["down"], DOWN_TIMEOUT).map(drop)
    }

    fn pidfile_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home().join("dispatchd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.home().exists()
            && self.down().is_err()
            && let Some(pid) = self.pidfile_pid().filter(|p| alive_with(*p, "dispatchd"))
        {
            kill9(pid);
        }
        let pids = self
            .app_server_pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for pid in pids {
            if alive_with(pid, "app-server") {
                kill9(pid);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        active().retain(|(id, ..)| *id != self.id);
    }
}

/// Calls `probe` until it returns `Some`, at most until `within` has passed (then an error
/// naming `what`); sleeps `every` between calls.
pub fn poll<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = probe()? {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {within:?}");
        }
        std::thread::sleep(every);
    }
}

/// `path` relative to the current directory made absolute.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Runs `job(i)` for `i` in `0..count` on `workers` threads; the first error stops the rest
/// and wins.
pub fn parallel(
    workers: usize,
    count: usize,
    job: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        if let Err(err) = job(i) {
                            // Stop the other workers too.
                            next.store(count, Ordering::Relaxed);
                            return Err(err);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(())
    })
}
