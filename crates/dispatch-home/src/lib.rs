//! The runtime layout of dispatch: where `DISPATCH_HOME` and its files are, the daemon's
//! pidfile lock (the singleton), and probes for a running or stale daemon.
//!
//! `DISPATCH_HOME` defaults to `~/.dispatch`; `DISPATCH_SOCKET`, `DISPATCH_DB` and
//! `DISPATCH_PIDFILE` override single files; `config.toml` holds the daemon's settings. Every
//! directory of the layout must belong to this user alone, and dispatch's own files are opened
//! without following symbolic links (`files`).

mod config;
mod error;
mod files;
mod paths;
mod pidfile;

pub use config::{
    AppServerSettings, ApprovalPolicy, CodexSettings, Config, ConfigError, Lanes, LaunchTable,
    MAX_PROCESSES, McpSettings, Policy,
};
pub use error::HomeError;
pub use files::{
    Access, open_private, refuse_unsafe_file, remove_stale_pidfile, remove_stale_socket,
};
pub use paths::Paths;
pub use pidfile::{DaemonProbe, Pidfile, probe, signal_kill, signal_terminate, wait_released};
