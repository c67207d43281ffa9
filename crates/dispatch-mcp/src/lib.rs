//! `dispatch mcp`: an MCP stdio server (rmcp) with one tool per contract operation, named
//! `dispatch_<op>`, serving the contract's own input and output schemas. `tools/list` needs no
//! daemon; tool calls run through the same [`Runner`] as the CLI, so inputs are validated in
//! the same place and errors are the same `{code, message, hint}` (as `isError` results).
//! Tools take the wire input: the CLI's file inputs (`text_file`) do not exist here, and
//! nothing in this crate reads a file or standard input for a caller.

mod descriptor;
mod server;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod tools;
}

pub use dispatch_client::Runner;
pub use generated::tools::{TOOL_OPERATIONS, tools};
pub use server::{DispatchMcp, serve_stdio};
