//! The dispatch contract in Rust: the generated types of every operation's input and output,
//! the operation table, the [`Dispatch`] and [`ClientOps`] traits, the stable [`ErrorCode`]s,
//! and the one place where inputs are validated against the contract's JSON Schema.
//!
//! Everything under `generated/` is written by `cargo xtask gen` from `contract/`.

// The generated types name `::dispatch_contract::Encoded` (typify's `x-rust-type`), which
// must resolve inside this crate too.
extern crate self as dispatch_contract;

mod encoded;
mod error;
mod handle;
mod hint;
mod operation;
mod validate;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod api;
    pub mod errors;
    pub mod hints;
    pub mod operations;
    pub mod types;
}

pub use encoded::{Encoded, EncodedText};
pub use error::{DispatchError, error_chain};
pub use generated::api::{ClientOps, Dispatch, call_client_op};
pub use generated::errors::ErrorCode;
pub use generated::operations::{self as operations, OPERATIONS};
pub use generated::types;
pub use handle::{Handle, LaneArg, Logged, WriteRecord, run_operation};
pub use hint::{Hint, Suggestion, Surface, foreign_words};
pub use operation::{
    CALL_TIMEOUT_MARGIN, CallBound, ClientDefault, DEFAULT_CALL_TIMEOUT, Intent, Operation,
    Request, RunsIn, Streaming, decode_input, encode_output, find_operation, longest_call_timeout,
};
pub use validate::{validate_cli_input, validate_input, validate_output};
