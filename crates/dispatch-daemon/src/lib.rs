//! `dispatchd`: owns the registry, the event log and the Codex App Server child, and
//! serves the contract's daemon operations on a Unix socket.
//!
//! Start-up protocol: once the socket accepts connections the daemon prints one JSON line on
//! stdout, `{"ready":true,"pid":..,"socket":".."}`, or `{"error":{code,message,hint}}` when it
//! cannot start; `dispatch up` waits for that line.
//!
//! Every daemon operation is implemented once, as `impl Handle<<Op>Input> for Service` (the
//! generated `Dispatch` trait requires one per operation), in the module that owns it:
//! `lanes.rs` (`new`, `send`, `stop`, `get`, `tail`, `goal set|get|clear`), `discovery.rs`
//! (`list`, with `lane_texts.rs`, its cache of lanes as last shown), `history.rs`,
//! `watch.rs`, `approvals.rs` (`requests`, `respond`), `threads.rs` (`attach`, `sync`,
//! `rename`, `archive`, `restore`), `search.rs`, `models.rs`, `daemon.rs` (`daemon
//! status`, `daemon log`), `trigger_ops.rs` (`trigger add|list|rm|pause|resume`; the
//! scheduler that fires them is `triggers.rs`), `inbox.rs` (`inbox list|read|ack`),
//! `subscriptions.rs` (`subscribe`, `subscriptions`, `unsubscribe`), `thread_ops.rs` (`fork`,
//! `revert`, `compact`, `review`, `delete`), `worktree_ops.rs` (`worktree remove`; the git
//! machinery is `worktree.rs`, the image checks `images.rs`), `account.rs` (`usage`, `permissions`),
//! `launch.rs` (`config show`; the launch layers `new` resolves, parsed by `launch_config.rs`) and
//! `wait.rs`. `service.rs` holds the state they share and the two hooks every
//! call passes through: the attached-lane lock and the action log.

mod account;
mod approvals;
mod caller;
mod convert;
mod daemon;
mod deliver;
mod discovery;
mod errors;
mod history;
mod idle_flag;
pub mod images;
mod inbox;
mod ingest;
mod intro;
mod lane_access;
mod lane_texts;
mod lanes;
mod launch;
mod launch_config;
mod lifecycle;
mod models;
mod new_lane;
mod orchestrate;
mod placement;
mod provider_error;
mod receipts;
mod reconcile;
mod recycle;
mod schedule;
mod search;
mod service;
mod subscriptions;
mod supervisor;
#[cfg(test)]
mod test_rows;
mod thread_ops;
mod threads;
mod trigger_ops;
mod triggers;
mod turn_start;
mod view;
mod wait;
mod watch;
mod work_gate;
pub mod worktree;
mod worktree_ops;

use std::process::ExitCode;

/// The event pump (one per App Server process), for tests that drive a `Service` directly.
pub use ingest::run as pump;
pub use lifecycle::run;
pub use reconcile::Why;
pub use recycle::Recycled;
pub use service::Service;
pub use supervisor::Supervisor;
pub use wait::Waiting;

/// Runs the daemon in the foreground with the layout from the environment; the process's
/// `main` for `dispatchd run`.
pub fn main_run() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dispatchd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            lifecycle::report_start_failure(&err);
            err.code.exit_status()
        }
    }
}
