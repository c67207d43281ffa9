//! `dispatch mcp`: an MCP stdio server (rmcp) with one tool per contract operation that the
//! MCP surface offers, named `dispatch_<op>`. `tools/list` needs no daemon; tool calls run
//! through the same [`Runner`] as the CLI, so inputs are validated in the same place and
//! errors are the same `{code, message, hint}` (as `isError` results whose text is the error
//! JSON), with hints rendered in MCP's words: tools and arguments, never shell flags. Tools
//! take the wire input without the CLI-only fields (`text_file`, `watch`'s `stream`), and
//! nothing in this crate reads a file or standard input for a caller. Tools come in toolsets
//! (`contract/mcp.json`, ADR 0016): the server lists the tools of the enabled ones ([`Enabled`],
//! the defaults unless chosen), and a call to another known tool answers which toolset to
//! enable.

mod descriptor;
mod server;
mod toolsets;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod tools;
}

pub use descriptor::{ToolSpec, Toolset};
pub use dispatch_client::Runner;
pub use generated::tools::{TOOL_OPERATIONS, TOOLS, TOOLSETS};
pub use server::{DispatchMcp, INSTRUCTIONS, instructions, serve_stdio};
pub use toolsets::Enabled;

/// Every tool descriptor (all toolsets), in operation id order.
pub fn tools() -> Vec<rmcp::model::Tool> {
    TOOLS.iter().map(ToolSpec::descriptor).collect()
}
