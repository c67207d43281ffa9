//! The daemon's JSON-RPC surface: one method per daemon operation, served by jsonrpsee on a
//! Unix socket, and the client the CLI and the MCP server use to reach it.
//!
//! Wire format: method = operation id; params = `{"contract_hash": "<hash>", "input": {..}}`
//! (both optional, for hand-made calls); result = the operation's output; errors carry the
//! dispatch error body `{code, message, hint, details}` as `data`. A request whose hash differs
//! from the daemon's answers `daemon_stale`.
//!
//! The socket serves only processes of the daemon's own uid, a bounded number of connections,
//! and requests up to [`MAX_REQUEST_BYTES`]; see `listener`.

mod answer;
#[cfg(target_os = "linux")]
mod blocking;
mod call;
mod client;
mod connections;
mod listener;
mod middleware;
mod oneshot;
mod server;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod rpc;
}

pub use answer::MAX_ANSWER_BYTES;
#[cfg(target_os = "linux")]
pub use blocking::call_text_blocking;
pub use call::{EncodedCall, Refused};
pub use client::{DaemonClient, parse_output};
pub use generated::rpc::{METHODS, rpc_module};
pub use listener::{Limits, MAX_BATCH, MAX_REQUEST_BYTES, serve, serve_with};
pub use server::CallParams;
