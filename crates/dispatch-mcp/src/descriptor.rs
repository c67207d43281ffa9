//! One generated tool of the MCP surface, and the rmcp descriptor built from it; one toolset.

use std::sync::Arc;

use dispatch_contract::Operation;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::Value;

/// A tool as `cargo xtask gen` projects it from the contract (`generated/tools.rs`).
#[derive(Debug)]
pub struct ToolSpec {
    /// `dispatch_<op>`.
    pub name: &'static str,
    /// The operation it runs.
    pub op: &'static Operation,
    /// The toolset it belongs to (`x-dispatch.mcp_toolset`, one of [`TOOLSETS`]).
    ///
    /// [`TOOLSETS`]: crate::TOOLSETS
    pub toolset: &'static str,
    /// The MCP description: surface-neutral text plus the MCP addition.
    pub description: &'static str,
    /// The compact input schema (JSON text): the wire input without the CLI-only fields.
    pub input_schema: &'static str,
    /// The top level of the output schema (JSON text).
    pub output_schema: &'static str,
    /// The tool changes nothing.
    pub read_only: bool,
    /// The tool removes something, or can end running work.
    pub destructive: bool,
    /// Repeating the call has no further effect.
    pub idempotent: bool,
    /// The tool can make Codex act in the world (start a turn, let a held action run).
    pub open_world: bool,
    /// Input fields only the CLI offers: refused here, naming what to do instead.
    pub cli_only_inputs: &'static [&'static str],
}

/// A group of tools that `dispatch mcp` serves or leaves out as one (`contract/mcp.json`).
#[derive(Debug)]
pub struct Toolset {
    /// Its name (`lanes`).
    pub name: &'static str,
    /// One line on what its tools are for.
    pub description: &'static str,
    /// Served when no toolsets are chosen.
    pub default: bool,
}

fn object(schema: &str) -> Arc<JsonObject> {
    match serde_json::from_str(schema) {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ToolSpec {
    /// The rmcp descriptor. Its annotations carry only the hints that differ from MCP's
    /// defaults (`readOnlyHint: false`, `destructiveHint: true`, `idempotentHint: false`,
    /// `openWorldHint: true`), since agents pay for every byte; a read-only tool carries no
    /// `destructiveHint` or `idempotentHint`, which mean something only for tools that change
    /// state.
    pub fn descriptor(&self) -> Tool {
        let mut annotations = ToolAnnotations::new();
        if self.read_only {
            annotations = annotations.read_only(true);
        } else {
            if !self.destructive {
                annotations = annotations.destructive(false);
            }
            if self.idempotent {
                annotations = annotations.idempotent(true);
            }
        }
        if !self.open_world {
            annotations = annotations.open_world(false);
        }
        Tool::new(self.name, self.description, object(self.input_schema))
            .with_title(self.op.title)
            .with_raw_output_schema(object(self.output_schema))
            .with_annotations(annotations)
    }
}
