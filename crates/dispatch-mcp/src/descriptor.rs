//! Building one rmcp tool descriptor from an operation of the contract.

use std::sync::Arc;

use dispatch_contract::Operation;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::Value;

/// The behaviour hints of a tool, derived from the operation's intent by the generator.
pub struct Hints {
    /// The tool changes nothing.
    pub read_only: bool,
    /// The tool removes or irreversibly ends something.
    pub destructive: bool,
    /// Repeating the call has no further effect.
    pub idempotent: bool,
}

fn object(schema: &str) -> Arc<JsonObject> {
    match serde_json::from_str(schema) {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The tool `name` for `op`, with the contract's schemas as they are.
pub fn descriptor(name: &'static str, op: &'static Operation, hints: Hints) -> Tool {
    let annotations = ToolAnnotations::with_title(op.title)
        .read_only(hints.read_only)
        .destructive(hints.destructive)
        .idempotent(hints.idempotent)
        .open_world(false);
    Tool::new(name, op.description, object(op.input_schema))
        .with_title(op.title)
        .with_raw_output_schema(object(op.output_schema))
        .with_annotations(annotations)
}
