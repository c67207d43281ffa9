//! Error types and the reasons a connection ends.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::RequestId;

/// How the App Server process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ExitReason {
    /// It exited with this code.
    Code {
        /// The exit code.
        code: i32,
    },
    /// It was killed by this signal.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// The status could not be collected.
    Unknown {
        /// Why.
        detail: String,
    },
}

impl ExitReason {
    /// Interpret a process exit status.
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(code) = status.code() {
            Self::Code { code }
        } else if let Some(signal) = status.signal() {
            Self::Signal { signal }
        } else {
            Self::Unknown {
                detail: format!("{status}"),
            }
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, Self::Code { code: 0 })
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code { code } => write!(f, "exited with code {code}"),
            Self::Signal { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "was killed by signal {signal} ({name})"),
                None => write!(f, "was killed by signal {signal}"),
            },
            Self::Unknown { detail } => write!(f, "ended with an unknown status ({detail})"),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Why the connection to the App Server is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum CloseReason {
    /// The process ended.
    Exited {
        /// How.
        reason: ExitReason,
    },
    /// Its stdout closed while the process was (as far as we know) still running.
    StdoutClosed,
    /// This client shut the connection down.
    ShutDown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited { reason } => write!(f, "the codex app-server process {reason}"),
            Self::StdoutClosed => f.write_str("the codex app-server closed its stdout"),
            Self::ShutDown => f.write_str("the connection was shut down by this client"),
        }
    }
}

/// A JSON-RPC error object (from a reply, or sent as a reply to a server request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// The error code (codex uses -32600 for most request errors).
    pub code: i64,
    /// The message, e.g. `no active turn to interrupt`.
    pub message: String,
    /// Extra data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Codex binary could be found.
    #[error("codex binary not found: {0}")]
    CodexNotFound(String),
    /// The process could not be started.
    #[error("could not start `{bin} app-server`: {source}", bin = bin.display())]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `codex --version` failed or printed something unexpected.
    #[error("could not get the version of `{bin}`: {detail}", bin = bin.display())]
    Version {
        /// The binary.
        bin: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The `initialize` handshake failed; `stderr` holds the last lines the process
    /// printed there (for the operator; never interpreted).
    #[error("codex app-server `{bin}` failed the initialize handshake: {source}{tail}",
        bin = bin.display(),
        tail = stderr_suffix(stderr))]
    Handshake {
        /// The binary.
        bin: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<Error>,
        /// The last stderr lines (ANSI colours removed), newline-separated.
        stderr: String,
    },
    /// The process printed something that is not a JSON-RPC message on stdout during
    /// the handshake: it is probably not a Codex App Server.
    #[error("it printed a line that is not a JSON-RPC message on stdout: {line:?}")]
    NotJsonRpc {
        /// The offending line (truncated).
        line: String,
    },
    /// The connection closed before the reply arrived (or before the request was sent).
    #[error("`{method}` got no reply: {reason}")]
    Closed {
        /// The method.
        method: String,
        /// Why the connection is closed.
        reason: CloseReason,
    },
    /// No reply within the deadline. The request may still take effect on the server;
    /// do not blindly retry a write.
    #[error("`{method}` got no reply within {timeout:?} (it may still take effect)")]
    Timeout {
        /// The method.
        method: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The server answered with a JSON-RPC error.
    #[error("`{method}` failed: {error}")]
    Rpc {
        /// The method.
        method: String,
        /// The error object.
        error: Box<RpcError>,
    },
    /// The result did not match the expected type.
    #[error("`{method}` returned a result that does not match the pinned protocol: {source}")]
    InvalidResult {
        /// The method.
        method: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The params could not be encoded, or are not a JSON object.
    #[error("could not encode the params of `{method}`: {detail}")]
    InvalidParams {
        /// The method.
        method: String,
        /// What went wrong.
        detail: String,
    },
    /// `respond` was given an id that is not a pending server request (already answered,
    /// never received, or the connection closed).
    #[error("no pending server request with id {0}")]
    UnknownServerRequest(RequestId),
}

impl Error {
    /// The JSON-RPC error, when the server answered with one.
    pub fn rpc_error(&self) -> Option<&RpcError> {
        match self {
            Self::Rpc { error, .. } => Some(error),
            Self::Handshake { source, .. } => source.rpc_error(),
            _ => None,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last stderr lines ---\n{stderr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_well() {
        assert_eq!(
            ExitReason::Code { code: 3 }.to_string(),
            "exited with code 3"
        );
        assert_eq!(
            ExitReason::Signal { signal: 9 }.to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            CloseReason::Exited {
                reason: ExitReason::Code { code: 1 }
            }
            .to_string(),
            "the codex app-server process exited with code 1"
        );
    }
}
