//! The shape of an entry of the operation table, and typed decoding of inputs.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::DispatchError;
use crate::generated::operations::OPERATIONS;
use crate::handle::LaneArg;
use crate::hint::Surface;
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
    /// Whether it can start model work on a lane (`x-dispatch.model_work` has `starts`): a
    /// turn, or a held action that runs. The daemon is not idle while one runs.
    pub starts_model_work: bool,
    /// Which process runs it.
    pub runs_in: RunsIn,
    /// CLI command words.
    pub cli_path: &'static [&'static str],
    /// Input fields taken as CLI positionals, in order.
    pub positionals: &'static [&'static str],
    /// Input fields the calling process fills when omitted, and from where.
    pub client_defaults: &'static [(&'static str, ClientDefault)],
    /// CLI-only input fields naming a file (`-`: stdin) that the CLI reads into another
    /// field: `(file_field, text_field)`. They are absent from `input_schema`, so every other
    /// surface refuses them.
    pub file_inputs: &'static [(&'static str, &'static str)],
    /// CLI-only input fields naming a launch packet directory that the CLI reads into an
    /// object field: `(dir_field, packet_field)`. The directory field is absent from
    /// `input_schema`; MCP leaves the packet field out.
    pub packet_inputs: &'static [(&'static str, &'static str)],
    /// The input field that bounds how long a call runs (`x-dispatch.bounded_by`), if any.
    pub bound: Option<CallBound>,
    /// Hash of the operation's contract; requests carry it so a stale daemon is detected.
    pub contract_hash: &'static str,
    /// Self-contained JSON Schema of the input the operation takes: what MCP, JSON-RPC and
    /// the daemon accept.
    pub input_schema: &'static str,
    /// Self-contained JSON Schema of the CLI's form of the input: `input_schema` plus the
    /// CLI-only fields (file inputs).
    pub cli_input_schema: &'static str,
    /// Self-contained JSON Schema of the output.
    pub output_schema: &'static str,
    /// The contract's examples as a JSON array.
    pub examples: &'static str,
    /// How the CLI runs it as a live stream (`x-dispatch.streaming`), if it does.
    pub streaming: Option<Streaming>,
    /// The front ends that offer it (`x-dispatch.surfaces`).
    pub surfaces: &'static [Surface],
}

/// Where the calling process finds a client default (`x-dispatch.client_defaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientDefault {
    /// The caller's current directory (`current_dir`): `new`'s `cwd`.
    CurrentDir,
    /// A variable of the caller's environment (`env:<VAR>`), e.g. `CODEX_THREAD_ID`: the
    /// caller's context, which no surface offers as an argument and MCP refuses.
    Env(&'static str),
}

/// The fields through which a CLI streams an operation's events (`watch`): it calls the
/// operation again and again with `switch` on, `after` set to the last `cursor` and `limit`
/// lowered by what was printed, until `ended` is no longer `batch` or its bound is reached.
#[derive(Debug, Clone, Copy)]
pub struct Streaming {
    /// Boolean input field that makes a call return as soon as some events are there.
    pub switch: &'static str,
    /// Integer input field: continue after this cursor.
    pub after: &'static str,
    /// Integer input field: events to return at most.
    pub limit: &'static str,
    /// The limit's default.
    pub limit_default: u64,
    /// Array output field: the events.
    pub events: &'static str,
    /// Output field: the cursor to continue from.
    pub cursor: &'static str,
    /// String output field: why the call ended; `batch` means more may come.
    pub ended: &'static str,
}

/// An input field, in seconds, that bounds how long a call may run (e.g. `watch`'s
/// `timeout`).
#[derive(Debug, Clone, Copy)]
pub struct CallBound {
    /// The input field.
    pub field: &'static str,
    /// Its value when the input omits it.
    pub default: f64,
    /// The largest value the contract accepts.
    pub maximum: f64,
}

/// How long a client waits for the answer to a call whose operation declares no bound.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a client adds to a call's own bound before giving up on the daemon.
pub const CALL_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

impl Operation {
    /// The input fields filled from the caller's environment, with their variables: the
    /// caller's context, never an argument.
    pub fn context_fields(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.client_defaults
            .iter()
            .filter_map(|(field, source)| match source {
                ClientDefault::Env(var) => Some((*field, *var)),
                ClientDefault::CurrentDir => None,
            })
    }

    /// Whether `surface` offers this operation.
    pub fn on(&self, surface: Surface) -> bool {
        self.surfaces.contains(&surface)
    }

    /// How long a client waits for the answer to this operation called with `input`: the
    /// operation's own bound (its `bounded_by` field, or that field's default) plus
    /// [`CALL_TIMEOUT_MARGIN`], and never less than [`DEFAULT_CALL_TIMEOUT`].
    pub fn call_timeout(&self, input: &Value) -> Duration {
        let Some(bound) = self.bound else {
            return DEFAULT_CALL_TIMEOUT;
        };
        let seconds = input
            .get(bound.field)
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(bound.default)
            .min(bound.maximum);
        seconds_plus_margin(seconds).max(DEFAULT_CALL_TIMEOUT)
    }
}

fn seconds_plus_margin(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or(Duration::MAX)
        .saturating_add(CALL_TIMEOUT_MARGIN)
}

/// The longest [`Operation::call_timeout`] of any operation with any valid input.
pub fn longest_call_timeout() -> Duration {
    OPERATIONS
        .iter()
        .filter_map(|op| op.bound)
        .map(|b| seconds_plus_margin(b.maximum))
        .fold(DEFAULT_CALL_TIMEOUT, Duration::max)
}

/// A typed operation input: knows its operation and its output type.
pub trait Request: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The operation's output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The operation this input belongs to.
    const OPERATION: &'static Operation;

    /// The lane this input names, as the contract's `x-dispatch.lane_field` says (generated);
    /// `None` when the operation declares none.
    fn lane(&self) -> Option<LaneArg<'_>> {
        None
    }
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
