//! Start-up, serving and shutdown of the daemon: pidfile lock, log file, registry, socket,
//! signals, and the ready line `dispatch up` waits for.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use dispatch_contract::{DispatchError, ErrorCode, Hint, error_chain, operations};
use dispatch_home::{Access, Config, Paths, Pidfile, open_private, remove_stale_socket};
use dispatch_registry::{NewAction, Outcome, Registry};
use serde_json::json;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::reconcile::Why;
use crate::service::Service;
use crate::supervisor::Supervisor;

fn internal(context: &str, err: impl std::fmt::Display) -> DispatchError {
    DispatchError::internal(format!("{context}: {err}"))
}

/// Prints the failure as the start-up protocol's error line (stdout) and for humans (stderr).
pub fn report_start_failure(err: &DispatchError) {
    let mut stdout = std::io::stdout().lock();
    let _stdout_gone = writeln!(stdout, "{}", err.to_json()).and_then(|()| stdout.flush());
    eprintln!("dispatchd: {}\nhint: {}", err.message, err.hint);
}

/// Runs the daemon until SIGTERM or SIGINT, or until it agrees to stop while idle.
pub async fn run() -> Result<(), DispatchError> {
    let paths = Paths::from_env()?;
    paths.prepare()?;
    let Some(pidfile) = Pidfile::acquire(&paths.pidfile)? else {
        return Err(DispatchError::new(
            ErrorCode::DaemonRunning,
            format!("another dispatchd holds {}", paths.pidfile.display()),
        )
        .with_hint(
            Hint::new("{0} shows it; {1} stops it")
                .run(&operations::DAEMON_STATUS, json!({}))
                .run(&operations::DOWN, json!({})),
        ));
    };
    let result = match init_logging(&paths.log) {
        Ok(()) => serve(&paths).await,
        Err(err) => Err(err),
    };
    if let Err(err) = &result {
        tracing::error!(code = err.code.as_str(), "{}", err.message);
    }
    if let Err(err) = pidfile.remove() {
        tracing::warn!(%err, "removing the pidfile");
    }
    result
}

async fn serve(paths: &Paths) -> Result<(), DispatchError> {
    let config = Config::load(&paths.config).map_err(|err| {
        DispatchError::invalid_input(err.to_string())
            .with_hint("fix or remove the file; [policy] takes allow_attached_writes = true|false and approvals = \"hold\"|\"decline\"")
    })?;
    let registry = Registry::open(&paths.db).await?;
    if let Err(err) = check_integrity(&registry).await {
        registry.close().await;
        return Err(err);
    }
    let pid = std::process::id();
    // A registry that cannot be written is refused before anything starts: otherwise every
    // write would happen in Codex and then fail to be recorded.
    registry
        .record_action(&NewAction {
            op: "daemon_start".to_owned(),
            lane: None,
            outcome: Outcome::Ok,
            error_code: None,
            detail: Some(format!("pid {pid}, version {}", env!("CARGO_PKG_VERSION"))),
        })
        .await
        .map_err(DispatchError::from)?;
    let app_server =
        Supervisor::start(config.codex.bin.clone(), config.app_server.processes).await?;
    let listener = match bind(&paths.socket) {
        Ok(listener) => listener,
        Err(err) => {
            app_server.stop().await;
            return Err(err);
        }
    };
    tracing::info!(pid, socket = %paths.socket.display(), "dispatchd started");

    let service = Arc::new(
        Service::new(registry, app_server.clone(), paths.socket.clone(), &config)
            .with_worktrees_root(paths.home.join("worktrees"))
            .with_global_config(paths.config.clone()),
    );
    let pump = tokio::spawn(crate::ingest::run(Arc::clone(&service)));
    // What the registry says about running turns is checked before anyone can ask.
    let reconciled = service.reconcile_running(Why::DaemonStart).await;
    if reconciled > 0 {
        tracing::info!(
            lanes = reconciled,
            "reconciled running lanes with the App Server"
        );
    }
    service.settle_deliveries_at_start().await;
    let stalls = tokio::spawn(Arc::clone(&service).watch_stalls());
    let recycler = tokio::spawn(Arc::clone(&service).recycle_timer());
    let orchestration = tokio::spawn(crate::orchestrate::run(Arc::clone(&service)));
    let triggers = tokio::spawn(crate::triggers::run(Arc::clone(&service)));
    let module = dispatch_rpc::rpc_module(Arc::clone(&service));
    let signalled = shutdown_signal()?;
    let asked = Arc::clone(&service);
    // SIGTERM/SIGINT, or a conditional stop the daemon accepted (`daemon stop-if-idle`).
    let shutdown = async move {
        tokio::select! {
            () = signalled => {}
            () = asked.stop_requested() => tracing::info!("stopping: idle, as asked"),
        }
    };
    announce_ready(pid, &paths.socket);
    dispatch_rpc::serve(listener, module, shutdown).await;

    tracing::info!("dispatchd stopping");
    app_server.stop().await;
    pump.abort();
    stalls.abort();
    recycler.abort();
    orchestration.abort();
    triggers.abort();
    let _aborted = pump.await;
    let _aborted = stalls.await;
    let _aborted = recycler.await;
    let _aborted = orchestration.await;
    let _aborted = triggers.await;
    if let Err(err) = remove_stale_socket(&paths.socket) {
        tracing::warn!(err = %error_chain(&err), "removing the socket");
    }
    record(service.registry(), "daemon_stop", format!("pid {pid}")).await;
    match Arc::try_unwrap(service) {
        Ok(service) => service.into_registry().close().await,
        Err(_) => {
            tracing::warn!("connections still hold the service; closing without a checkpoint")
        }
    }
    Ok(())
}

async fn record(registry: &Registry, op: &str, detail: String) {
    let action = NewAction {
        op: op.to_owned(),
        lane: None,
        outcome: Outcome::Ok,
        error_code: None,
        detail: Some(detail),
    };
    if let Err(err) = registry.record_action(&action).await {
        tracing::warn!(err = %error_chain(&err), op, "recording an action");
    }
}

/// Refuses a registry whose `PRAGMA quick_check` finds damage: serving it would answer from,
/// and write into, a broken file.
async fn check_integrity(registry: &Registry) -> Result<(), DispatchError> {
    let problems = registry.quick_check().await?;
    if problems.iter().all(|line| line == "ok") {
        return Ok(());
    }
    let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
    Err(DispatchError::new(
        ErrorCode::RegistryCorrupt,
        format!(
            "registry {} fails its integrity check: {}",
            registry.path().display(),
            shown.join("; ")
        ),
    )
    .with_details(json!({ "path": registry.path().display().to_string(), "problems": problems })))
}

/// Binds the socket owner-only. The caller holds the pidfile lock, so a socket already at the
/// path was left by a dead daemon and is removed; anything else there is refused, not removed.
fn bind(socket: &Path) -> Result<UnixListener, DispatchError> {
    if remove_stale_socket(socket)? {
        tracing::info!(socket = %socket.display(), "removed a stale socket");
    }
    // The umask makes the socket 0600 from its creation; no window with wider permissions.
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(socket);
    rustix::process::umask(previous);
    let listener = bound.map_err(|err| {
        let hint = if socket.as_os_str().len() > 100 {
            "the socket path is too long for a Unix socket; set DISPATCH_SOCKET to a shorter path"
        } else {
            "check that the directory of DISPATCH_SOCKET is writable"
        };
        internal(&format!("binding {}", socket.display()), err).with_hint(hint)
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| internal(&format!("securing {}", socket.display()), err))?;
    Ok(listener)
}

fn announce_ready(pid: u32, socket: &Path) {
    let line = json!({ "ready": true, "pid": pid, "socket": socket.display().to_string() });
    let mut stdout = std::io::stdout().lock();
    // `dispatch up` may have gone away; the daemon runs on regardless.
    let _reader_gone = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Installs the SIGTERM and SIGINT handlers now (before the daemon says it is ready, so a
/// signal sent right after `up` returns is never the default, fatal one) and returns the
/// future that resolves when one arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, DispatchError> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|err| internal("installing the SIGTERM handler", err))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|err| internal("installing the SIGINT handler", err))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn init_logging(log: &Path) -> Result<(), DispatchError> {
    let file = open_private(log, Access::Append)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DISPATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|err| internal("starting the logger", err))
}
