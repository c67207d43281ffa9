//! Client for the Codex App Server: `codex app-server`, JSON-RPC 2.0 over stdio, one
//! JSON object per line.
//!
//! [`AppServer::spawn`] starts the child (binary from [`CodexLookup::resolve`] or the
//! caller, `CODEX_HOME` and other environment given by the caller), performs the bounded
//! `initialize` handshake and returns a cheap-to-clone handle:
//!
//! - **Requests**: [`AppServer::call`] with a typed params struct from [`protocol`]
//!   (generated from the pinned schema; each implements [`protocol::ClientMethod`]), or
//!   [`AppServer::request`] with raw JSON. Every request has a deadline; every pending
//!   request fails at once when the child's stdout closes or the child exits (with the
//!   exit status).
//! - **Notifications**: [`AppServer::subscribe`] (everything) and
//!   [`AppServer::subscribe_thread`] (one thread); see [`events`] for ordering and what
//!   happens to a subscriber that lags. Unknown notifications are delivered raw.
//! - **Server requests** (approvals, …): one [`ServerRequestPolicy`] decides; the
//!   default [`HoldPolicy`] keeps them pending for [`AppServer::respond`]. See
//!   [`server_request`].
//! - **Lifetime**: [`AppServer::exited`] resolves with the [`ExitReason`] as soon as the
//!   child dies; [`AppServer::shutdown`] (or dropping the last handle) refuses held
//!   requests, closes stdin, kills after a grace period and reaps the child.
//!
//! The child's stderr goes to `tracing` under the target `codex_app_server::stderr`
//! (never parsed); this crate logs under `codex_app_server`.

/// The pinned Codex version as a literal, for `concat!` (see [`PINNED_CODEX_VERSION`]).
macro_rules! pinned {
    () => {
        "0.169.0"
    };
}

mod client;
mod error;
pub mod events;
mod framing;
mod locate;
/// Files written by `cargo xtask gen`; never edit them by hand.
mod generated {
    pub mod protocol;
}
pub mod protocol;
pub mod server_request;
mod version;

pub use client::{AppServer, SpawnOptions};
pub use error::{CloseReason, Error, ExitReason, RpcError};
pub use events::{Event, Subscription};
pub use locate::{
    CODEX_INSTALL_COMMAND, CODEX_INSTALL_HINT, CodexBin, CodexBinSource, CodexLookup,
    installed_codex_bin, installed_codex_prefix,
};
pub use server_request::{
    HoldPolicy, PolicyDecision, PolicyFuture, RefusePolicy, ServerRequest, ServerRequestKind,
    ServerRequestPolicy, ServerRequestReply,
};
pub use version::{CODEX_BIN_ENV, CodexVersion, PINNED_CODEX_VERSION, codex_version};
