//! `dispatchd`: owns the registry, the event log and the Codex App Server child, and
//! serves the contract's daemon operations on a Unix socket.
//!
//! Start-up protocol: once the socket accepts connections the daemon prints one JSON line on
//! stdout, `{"ready":true,"pid":..,"socket":".."}`, or `{"error":{code,message,hint}}` when it
//! cannot start; `dispatch up` waits for that line.

mod approvals;
mod convert;
mod deliver;
mod errors;
mod ingest;
mod lane_access;
mod lanes;
mod lifecycle;
mod models;
mod orchestrate;
mod provider_error;
mod reconcile;
mod search;
mod service;
mod supervisor;
mod threads;
mod turn_start;
mod watch;

use std::process::ExitCode;

pub use lifecycle::run;
pub use service::Service;

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
            ExitCode::from(u8::try_from(err.code.exit_code()).unwrap_or(1))
        }
    }
}
