//! [`DispatchError`]: a stable code, a message, a hint and structured details.

use serde_json::{Value, json};

use crate::generated::errors::ErrorCode;
use crate::hint::{Hint, Surface};

/// `err` and its sources, joined with `: `: the whole story of a failure on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A typed error as every surface shows it: `{code, message, hint, details}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DispatchError {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, in lower case.
    pub message: String,
    /// How to recover; the code's own hint unless a better one is known. Rendered in the
    /// words of the surface that shows it.
    pub hint: Hint,
    /// Structured context (the field, the candidates, ...), or null.
    pub details: Value,
}

impl DispatchError {
    /// An error with the code's own hint and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DispatchError {
            code,
            message: message.into(),
            hint: code.hint(),
            details: Value::Null,
        }
    }

    /// This error, reported after a side effect that already happened (`done`): the same
    /// code, the message `"<done>: <message>"`, the code's own hint and no details (the caller
    /// usually says how to finish, and what was done, with [`Self::with_hint`] and
    /// [`Self::with_details`]).
    pub fn after(self, done: impl std::fmt::Display) -> Self {
        Self::new(self.code, format!("{done}: {}", self.message))
    }

    /// `invalid_input` with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// `internal` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Replaces the hint: plain text (no command lines or flags: every surface shows it), or a
    /// [`Hint`] with suggested operations.
    pub fn with_hint(mut self, hint: impl Into<Hint>) -> Self {
        self.hint = hint.into();
        self
    }

    /// Replaces the details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The error body `{code, message, hint, details?}`, its hint in the words of
    /// [`Surface::current`].
    pub fn body(&self) -> Value {
        self.body_for(Surface::current())
    }

    /// The error body with its hint in the words of `surface`.
    pub fn body_for(&self, surface: Surface) -> Value {
        let mut body = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "hint": self.hint.render(surface),
        });
        if !self.details.is_null() {
            body["details"] = self.details.clone();
        }
        body
    }

    /// The lane a partly done operation made or touched (`details.lane_ref`), so the action
    /// log and the caller can name it.
    pub fn lane_ref(&self) -> Option<&str> {
        self.details.get("lane_ref").and_then(Value::as_str)
    }

    /// The error as the CLI prints it with `--json`: `{"error": body}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": self.body() })
    }

    /// Reads an error body back; `None` when `body` is not one. Its hint was rendered by the
    /// side that wrote it, for the surface that asked.
    pub fn from_body(body: &Value) -> Option<Self> {
        let code = ErrorCode::from_code(body.get("code")?.as_str()?)?;
        Some(DispatchError {
            code,
            message: body.get("message")?.as_str()?.to_owned(),
            hint: match body.get("hint").and_then(Value::as_str) {
                Some(text) => Hint::new(text.to_owned()),
                None => code.hint(),
            },
            details: body.get("details").cloned().unwrap_or(Value::Null),
        })
    }
}
