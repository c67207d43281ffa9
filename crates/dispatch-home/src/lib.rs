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

/// The glibc allocator settings `dispatch up` gives the daemon (unless `GLIBC_TUNABLES` is
/// set already): a fixed mmap threshold of 1 MiB. Blocks above it get mappings of their own
/// and go back to the system when freed, instead of staying in the heap after the threshold
/// has grown (ADR 0021); blocks below it, such as the few hundred KiB a `list` of 1,000 lanes
/// needs, come from the heap instead of a fresh mapping per call (ADR 0024).
pub const DAEMON_GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=1048576";

/// Set with [`DAEMON_GLIBC_TUNABLES`], so that the daemon removes both from what the App
/// Server, and the commands it runs for the user, inherit.
pub const DAEMON_TUNABLES_MARKER: &str = "DISPATCH_DAEMON_GLIBC_TUNABLES";
pub use pidfile::{DaemonProbe, Pidfile, probe, signal_kill, signal_terminate, wait_released};
