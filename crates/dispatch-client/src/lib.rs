//! Runs contract operations for the CLI and the MCP server, so both surfaces behave the same:
//! client-side operations (`up`, `down`, `doctor`, `schema`, `registry migrate`, `assets`) run
//! in this process; daemon operations go over the socket, restarting an idle stale daemon once.

mod assets;
mod daemon_process;
mod doctor;
mod local;
mod prepare;
mod runner;

pub use daemon_process::{DaemonLaunch, daemon_binary};
pub use local::LocalOps;
pub use runner::{Runner, block_on};
