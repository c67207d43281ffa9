//! The runtime layout of dispatch: where `DISPATCH_HOME` and its files are, the daemon's
//! pidfile lock (the singleton), and probes for a running or stale daemon.
//!
//! `DISPATCH_HOME` defaults to `~/.dispatch`; `DISPATCH_SOCKET`, `DISPATCH_DB` and
//! `DISPATCH_PIDFILE` override single files; `config.toml` holds the daemon's settings.

mod config;
mod paths;
mod pidfile;

pub use config::{ApprovalPolicy, CodexSettings, Config, ConfigError, Lanes, Policy};
pub use paths::{HomeError, Paths};
pub use pidfile::{DaemonProbe, Pidfile, probe, signal_kill, signal_terminate, wait_released};
