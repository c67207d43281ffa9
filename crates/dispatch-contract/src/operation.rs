//! The shape of an entry of the operation table, and typed decoding of inputs.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::DispatchError;
use crate::generated::operations::OPERATIONS;
use crate::validate::validate_input;

/// What an operation does to state; drives MCP annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Changes nothing.
    Read,
    /// Changes state.
    Write,
    /// Removes or irreversibly ends something.
    Destroy,
}

/// Which process runs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsIn {
    /// `dispatchd`, over its JSON-RPC socket.
    Daemon,
    /// The calling process; needs no daemon.
    Client,
}

/// One operation of the contract, as generated from its contract file.
#[derive(Debug)]
pub struct Operation {
    /// Stable snake_case id: the RPC method name, and the MCP tool name after `dispatch_`.
    pub id: &'static str,
    /// Human title, the command words (`daemon status`).
    pub title: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Long description: CLI long help and MCP tool description.
    pub description: &'static str,
    /// What it does to state.
    pub intent: Intent,
    /// Whether repeating it with the same input has no further effect.
    pub idempotent: bool,
    /// Whether it writes turns or history of a lane (blocked on attached lanes).
    pub writes_history: bool,
    /// Which process runs it.
    pub runs_in: RunsIn,
    /// CLI command words.
    pub cli_path: &'static [&'static str],
    /// Input fields taken as CLI positionals, in order.
    pub positionals: &'static [&'static str],
    /// Input fields the calling process fills when omitted: `(field, "current_dir")`.
    pub client_defaults: &'static [(&'static str, &'static str)],
    /// Input fields naming a file (`-`: stdin) the calling process reads into another
    /// field: `(file_field, text_field)`.
    pub file_inputs: &'static [(&'static str, &'static str)],
    /// Hash of the operation's contract; requests carry it so a stale daemon is detected.
    pub contract_hash: &'static str,
    /// Self-contained JSON Schema of the input.
    pub input_schema: &'static str,
    /// Self-contained JSON Schema of the output.
    pub output_schema: &'static str,
    /// The contract's examples as a JSON array.
    pub examples: &'static str,
}

/// A typed operation input: knows its operation and its output type.
pub trait Request: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The operation's output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The operation this input belongs to.
    const OPERATION: &'static Operation;
}

/// Validates `input` against the contract of `R`'s operation, then decodes it.
pub fn decode_input<R: Request>(input: Value) -> Result<R, DispatchError> {
    validate_input(R::OPERATION, &input)?;
    serde_json::from_value(input).map_err(|err| {
        DispatchError::invalid_input(format!("input of `{}`: {err}", R::OPERATION.title))
    })
}

/// Encodes an operation's output as JSON.
pub fn encode_output<T: Serialize>(output: T) -> Result<Value, DispatchError> {
    serde_json::to_value(output)
        .map_err(|err| DispatchError::internal(format!("encoding an output: {err}")))
}

/// The operation named by its id (`daemon_status`) or its command words (`daemon status`).
pub fn find_operation(name: &str) -> Option<&'static Operation> {
    let words: Vec<&str> = name.split_whitespace().collect();
    OPERATIONS
        .iter()
        .copied()
        .find(|op| op.id == name || op.cli_path == words.as_slice())
}
