//! `dispatch mcp`: an MCP stdio server (rmcp) with one tool per contract operation that the
//! MCP surface offers, named `dispatch_<op>`. `tools/list` needs no daemon; tool calls run
//! through the same [`Runner`] as the CLI, so inputs are validated in the same place and
//! errors are the same `{code, message, hint}` (as `isError` results whose text is the error
//! JSON), with hints rendered in MCP's words: tools and arguments, never shell flags. Tools
//! take the wire input without the CLI-only fields (`text_file`, `watch`'s `stream`), and
//! nothing in this crate reads a file or standard input for a caller.

mod descriptor;
mod server;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod tools;
}

pub use descriptor::ToolSpec;
pub use dispatch_client::Runner;
pub use generated::tools::{TOOL_OPERATIONS, TOOLS};
pub use server::{DispatchMcp, INSTRUCTIONS, serve_stdio};

/// Every tool descriptor, in operation id order.
pub fn tools() -> Vec<rmcp::model::Tool> {
    TOOLS.iter().map(ToolSpec::descriptor).collect()
}
