//! `doctor`: checks of the installation and runtime, each with a status and a recovery hint.

use std::os::unix::fs::PermissionsExt;

use dispatch_contract::types::{CheckStatus, DoctorCheck, DoctorOutput};
use dispatch_contract::{ErrorCode, Hint, Surface, operations};
use dispatch_home::{DaemonProbe, Paths, probe};
use dispatch_registry::inspect;
use dispatch_rpc::DaemonClient;
use serde_json::json;

use crate::daemon_process::{daemon_binary, find_on_path};

#[path = "doctor_codex.rs"]
mod codex;

/// A check; its hint is rendered in the words of the surface that asked (`doctor` runs in
/// the calling process, inside `dispatch mcp`'s scope on MCP).
pub(crate) fn check(
    name: &str,
    status: CheckStatus,
    summary: String,
    hint: Option<Hint>,
) -> DoctorCheck {
    DoctorCheck {
        name: name.to_owned(),
        status,
        summary,
        hint: hint.map(|h| h.render(Surface::current())),
    }
}

/// Runs every check. `no_app_server` skips the one that starts the Codex App Server.
pub async fn run(paths: &Paths, no_app_server: bool) -> DoctorOutput {
    let mut checks = vec![
        binaries_on_path(),
        daemon_binary_check(),
        home(paths),
        daemon(paths).await,
        registry(paths).await,
        agent_assets(),
    ];
    let (codex, bin) = codex::cli(paths).await;
    let usable = (codex.status != CheckStatus::Fail)
        .then_some(bin.as_ref())
        .flatten();
    checks.push(codex);
    checks.push(codex::auth(bin.as_ref()));
    if !no_app_server {
        checks.push(codex::app_server(usable).await);
    }
    let status = if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        CheckStatus::Fail
    } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
        CheckStatus::Warn
    } else {
        CheckStatus::Ok
    };
    DoctorOutput { status, checks }
}

/// The skills and the Codex plugin built into this binary parse, and the plugin's version is
/// this binary's.
fn agent_assets() -> DoctorCheck {
    match crate::assets::check() {
        Ok(summary) => check("agent_assets", CheckStatus::Ok, summary, None),
        Err(problem) => check(
            "agent_assets",
            CheckStatus::Fail,
            format!("the built-in agent assets are broken: {problem}"),
            Some(
                "this dispatch was built from a broken tree: rebuild it from a clean checkout (`scripts/install`)".into(),
            ),
        ),
    }
}

fn binaries_on_path() -> DoctorCheck {
    match find_on_path("dispatch") {
        Some(path) => check(
            "dispatch_on_path",
            CheckStatus::Ok,
            format!("dispatch is {}", path.display()),
            None,
        ),
        None => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "unknown".into());
            check(
                "dispatch_on_path",
                CheckStatus::Warn,
                format!("dispatch is not on PATH (running {exe})"),
                Some(
                    "add its directory to PATH, or `cargo install --path crates/dispatch-cli`, so agents and the plugin find it".into(),
                ),
            )
        }
    }
}

fn daemon_binary_check() -> DoctorCheck {
    match daemon_binary() {
        Some(path) if path.is_file() => check(
            "dispatchd_found",
            CheckStatus::Ok,
            format!("the daemon binary is {}", path.display()),
            None,
        ),
        Some(path) => check(
            "dispatchd_found",
            CheckStatus::Fail,
            format!(
                "DISPATCH_DAEMON_BIN names {}, which does not exist",
                path.display()
            ),
            Some("point DISPATCH_DAEMON_BIN at the dispatchd binary, or unset it".into()),
        ),
        None => check(
            "dispatchd_found",
            CheckStatus::Fail,
            "no dispatchd next to dispatch nor on PATH".into(),
            Some(
                "install both binaries together (`cargo install --path crates/dispatch-cli`)"
                    .into(),
            ),
        ),
    }
}

fn home(paths: &Paths) -> DoctorCheck {
    if let Err(err) = paths.check() {
        let err = dispatch_contract::DispatchError::from(err);
        return check("home", CheckStatus::Fail, err.message, Some(err.hint));
    }
    match std::fs::metadata(&paths.home) {
        Err(_) => check(
            "home",
            CheckStatus::Ok,
            format!(
                "{} does not exist yet; starting the daemon creates it",
                paths.home.display()
            ),
            None,
        ),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => check(
            "home",
            CheckStatus::Warn,
            format!(
                "{} is readable by others (mode {:o})",
                paths.home.display(),
                meta.permissions().mode() & 0o777
            ),
            Some(Hint::new("`chmod 700` it; {0} also tightens it").run(&operations::UP, json!({}))),
        ),
        Ok(_) => check(
            "home",
            CheckStatus::Ok,
            format!("{} (owner-only)", paths.home.display()),
            None,
        ),
    }
}

async fn daemon(paths: &Paths) -> DoctorCheck {
    let socket = paths.socket.display();
    match probe(&paths.pidfile) {
        Err(err) => check(
            "daemon",
            CheckStatus::Fail,
            format!("cannot read {}: {err}", paths.pidfile.display()),
            Some("check the permissions of DISPATCH_HOME".into()),
        ),
        Ok(DaemonProbe::Running { pid }) => {
            let pid = pid.map_or("unknown".into(), |p| p.to_string());
            let answer = match DaemonClient::connect(&paths.socket).await {
                Ok(client) => client
                    .call_json(&operations::DAEMON_STATUS, serde_json::json!({}))
                    .await
                    .map(|_| ()),
                Err(err) => Err(err),
            };
            match answer {
                Ok(()) => check(
                    "daemon",
                    CheckStatus::Ok,
                    format!("running (pid {pid}), answering on {socket}"),
                    None,
                ),
                Err(err) if err.code == ErrorCode::DaemonStale => check(
                    "daemon",
                    CheckStatus::Warn,
                    format!("running (pid {pid}) but built from a different contract"),
                    Some(
                        Hint::new("restart it: {0}, then {1}")
                            .run(&operations::DOWN, json!({}))
                            .run(&operations::UP, json!({})),
                    ),
                ),
                Err(err) => check(
                    "daemon",
                    CheckStatus::Fail,
                    format!(
                        "running (pid {pid}) but not answering on {socket}: {}",
                        err.message
                    ),
                    Some(
                        Hint::new("{0} stops it (it kills a daemon that does not exit), then {1}")
                            .run(&operations::DOWN, json!({}))
                            .run(&operations::UP, json!({})),
                    ),
                ),
            }
        }
        Ok(DaemonProbe::Stale { pid }) => check(
            "daemon",
            CheckStatus::Warn,
            format!(
                "not running; a stale pidfile{} was left by a dead daemon{}",
                if paths.socket.exists() {
                    " and socket"
                } else {
                    ""
                },
                pid.map_or(String::new(), |p| format!(" (pid {p})"))
            ),
            Some(
                Hint::new("{0} cleans them up and starts a new daemon")
                    .run(&operations::UP, json!({})),
            ),
        ),
        Ok(DaemonProbe::Absent) if paths.socket.exists() => check(
            "daemon",
            CheckStatus::Warn,
            format!("not running; a stale socket {socket} is left"),
            Some(
                Hint::new("{0} removes it and starts a new daemon").run(&operations::UP, json!({})),
            ),
        ),
        Ok(DaemonProbe::Absent) => check(
            "daemon",
            CheckStatus::Ok,
            "not running".into(),
            Some(Hint::new("{0} starts it").run(&operations::UP, json!({}))),
        ),
    }
}

async fn registry(paths: &Paths) -> DoctorCheck {
    let db = paths.db.display();
    match inspect(&paths.db).await {
        Ok(found) if !found.exists => check(
            "registry",
            CheckStatus::Ok,
            format!("{db} does not exist yet; the daemon creates it"),
            None,
        ),
        Ok(found) if found.quick_check != ["ok"] => check(
            "registry",
            CheckStatus::Fail,
            format!("{db} fails quick_check: {}", found.quick_check.join("; ")),
            Some(ErrorCode::RegistryCorrupt.hint()),
        ),
        Ok(found) => match found.schema_version {
            Some(v) if v < found.supported_version => check(
                "registry",
                CheckStatus::Fail,
                format!(
                    "{db} has schema {v}, older than {}",
                    found.supported_version
                ),
                Some(ErrorCode::RegistrySchemaTooOld.hint()),
            ),
            Some(v) if v > found.supported_version => check(
                "registry",
                CheckStatus::Fail,
                format!(
                    "{db} has schema {v}, newer than {} (this dispatch)",
                    found.supported_version
                ),
                Some(ErrorCode::RegistrySchemaTooNew.hint()),
            ),
            v => check(
                "registry",
                CheckStatus::Ok,
                format!(
                    "{db}: schema {}, quick_check ok",
                    v.map_or("empty".into(), |v| v.to_string())
                ),
                None,
            ),
        },
        Err(err) => {
            let err = dispatch_contract::DispatchError::from(err);
            check(
                "registry",
                CheckStatus::Fail,
                err.message,
                Some(err.code.hint()),
            )
        }
    }
}
