//! Finding, starting and stopping the `dispatchd` process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dispatch_contract::{DispatchError, ErrorCode};
use dispatch_home::{Access, Paths, open_private};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long `up` waits for the daemon's ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `dispatchd` binary `up` starts: `DISPATCH_DAEMON_BIN`, else the one next to this
/// executable, else `dispatchd` on PATH.
pub fn daemon_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("DISPATCH_DAEMON_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("dispatchd")))
        .filter(|path| path.is_file());
    sibling.or_else(|| find_on_path("dispatchd"))
}

/// The first executable file called `name` in PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How `up` starts the daemon when the defaults do not fit (an embedding program, a test).
#[derive(Debug, Clone, Default)]
pub struct DaemonLaunch {
    /// The `dispatchd` binary; [`daemon_binary`] finds one when `None`.
    pub bin: Option<PathBuf>,
    /// Extra environment for the daemon (and so for the App Server it starts), e.g.
    /// `CODEX_HOME` or `DISPATCH_CODEX_BIN`.
    pub env: Vec<(String, std::ffi::OsString)>,
}

/// What the daemon said when it started.
pub struct Started {
    /// Its pid.
    pub pid: i64,
    /// Its socket.
    pub socket: String,
}

/// Starts `dispatchd run` in its own process group with stderr appended to the log, and waits
/// for its ready line.
pub async fn start(paths: &Paths, launch: &DaemonLaunch) -> Result<Started, DispatchError> {
    let bin = launch.bin.clone().or_else(daemon_binary).ok_or_else(|| {
        DispatchError::new(
            ErrorCode::DaemonUnreachable,
            "cannot find the dispatchd binary",
        )
        .with_hint("install dispatchd next to dispatch or on PATH, or set DISPATCH_DAEMON_BIN")
    })?;
    let log = open_private(&paths.log, Access::Append)?;
    let mut command = tokio::process::Command::new(&bin);
    // glibc raises its threshold for serving an allocation with its own mapping to the size of
    // the largest block freed, up to 32 MiB; after a few large answers (`list` of 1,000 lanes
    // builds buffers of ~500 KiB) every later one comes from the heap and stays resident. A
    // fixed threshold gives each large buffer back when it is freed (ADR 0021). A
    // `GLIBC_TUNABLES` of the user's own is left as it is; the daemon does not pass ours on
    // to the App Server.
    if cfg!(all(target_os = "linux", target_env = "gnu"))
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        command
            .env("GLIBC_TUNABLES", dispatch_home::DAEMON_GLIBC_TUNABLES)
            .env(dispatch_home::DAEMON_TUNABLES_MARKER, "1");
    }
    let mut child = command
        .arg("run")
        .env("DISPATCH_HOME", &paths.home)
        .env("DISPATCH_SOCKET", &paths.socket)
        .env("DISPATCH_DB", &paths.db)
        .env("DISPATCH_PIDFILE", &paths.pidfile)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|err| {
            DispatchError::new(
                ErrorCode::DaemonUnreachable,
                format!("cannot start {}: {err}", bin.display()),
            )
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DispatchError::internal("the daemon's stdout was not captured"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None) | Err(_)) => {
            let status = child.wait().await.ok();
            return Err(DispatchError::new(
                ErrorCode::DaemonUnreachable,
                format!(
                    "dispatchd exited before it was ready ({})",
                    status.map_or("unknown status".into(), |s| s.to_string())
                ),
            )
            .with_hint(format!("its log is {}", paths.log.display())));
        }
        Err(_) => {
            let _already_gone = child.start_kill();
            return Err(DispatchError::new(
                ErrorCode::DaemonUnreachable,
                format!(
                    "dispatchd was not ready within {} s; it was stopped",
                    READY_TIMEOUT.as_secs()
                ),
            )
            .with_hint(format!("its log is {}", paths.log.display())));
        }
    };
    let message: Value = serde_json::from_str(&line).map_err(|_| {
        DispatchError::internal(format!("dispatchd printed an unexpected line: {line}"))
    })?;
    if let Some(err) = message.get("error").and_then(DispatchError::from_body) {
        // Reap it: it exits right after reporting.
        let _status = child.wait().await;
        return Err(err);
    }
    match (message["pid"].as_i64(), message["socket"].as_str()) {
        (Some(pid), Some(socket)) => Ok(Started {
            pid,
            socket: socket.to_owned(),
        }),
        _ => Err(DispatchError::internal(format!(
            "dispatchd printed an unexpected line: {line}"
        ))),
    }
}
