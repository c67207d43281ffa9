//! [`EncodedCall`]: a call of an operation encoded once, into the body the one-shot path sends
//! (`{"jsonrpc":"2.0","id":1,"method":..,"params":{"contract_hash":..,"input":..,"surface":..}}`).
//! The request size limit is counted on that body, so the body that was counted is the body
//! that is sent, and the limit is the daemon's exactly ([`MAX_REQUEST_BYTES`]).

use std::time::Duration;

use dispatch_contract::{DispatchError, Operation, Surface};
use hyper::body::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::client::caller_surface;
use crate::listener::MAX_REQUEST_BYTES;
use crate::oneshot::request_body;

/// A call of one operation with its input, encoded once; what [`crate::call_text_blocking`]
/// and [`crate::DaemonClient::send`] send.
pub struct EncodedCall<'op> {
    op: &'op Operation,
    input: Value,
    hash: Option<&'op str>,
    surface: Option<Surface>,
    /// Shared with the HTTP request that sends it, never copied.
    body: Bytes,
    deadline: Duration,
}

/// Shows the operation and the body's size, not the body (up to the request limit).
impl std::fmt::Debug for EncodedCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedCall")
            .field("op", &self.op.id)
            .field("body_bytes", &self.body.len())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// A call that cannot be sent (too large for the daemon to read), with its input given back
/// (to be checked against the contract before the error stands, say).
pub struct Refused {
    /// Why: `invalid_input` naming the limit (`internal` for an input that does not encode).
    pub error: DispatchError,
    /// The input, as it was given.
    pub input: Value,
}

/// Shows the error, not the input (larger than the request limit).
impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl From<Refused> for DispatchError {
    fn from(refused: Refused) -> DispatchError {
        refused.error
    }
}

/// The params of a call, borrowing the input: encodes as [`crate::CallParams`] does.
#[derive(Serialize)]
pub(crate) struct ParamsRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) contract_hash: Option<&'a str>,
    pub(crate) input: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) surface: Option<Surface>,
}

impl<'op> EncodedCall<'op> {
    /// A call of `op` with `input`, sending this client's contract hash of it and the caller's
    /// surface (as [`crate::DaemonClient::call_text`] does). A body larger than the daemon
    /// reads is refused here, before anything is sent: `invalid_input` naming the limit.
    pub fn new(op: &'op Operation, input: Value) -> Result<EncodedCall<'op>, Refused> {
        EncodedCall::with(op, Some(op.contract_hash), input, caller_surface())
    }

    /// A call of `op` with these params; see [`EncodedCall::new`].
    pub(crate) fn with(
        op: &'op Operation,
        hash: Option<&'op str>,
        input: Value,
        surface: Option<Surface>,
    ) -> Result<EncodedCall<'op>, Refused> {
        let params = ParamsRef {
            contract_hash: hash,
            input: &input,
            surface,
        };
        let body = match request_body(op, &params)
            .and_then(|body| check_request_size(op, body.len()).map(|()| body))
        {
            Ok(body) => body,
            Err(error) => return Err(Refused { error, input }),
        };
        let deadline = op.call_timeout(&input);
        Ok(EncodedCall {
            op,
            input,
            hash,
            surface,
            body: Bytes::from(body),
            deadline,
        })
    }

    /// The operation called.
    pub fn op(&self) -> &'op Operation {
        self.op
    }

    /// The input, as given.
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// The contract hash sent, if any.
    pub(crate) fn hash(&self) -> Option<&'op str> {
        self.hash
    }

    /// The surface sent, if any.
    pub(crate) fn surface(&self) -> Option<Surface> {
        self.surface
    }

    /// The body sent on the one-shot path.
    pub(crate) fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// How long the call may take: the operation's own bound (e.g. `watch`'s timeout) plus a
    /// margin, from the contract.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// Refuses a request of `bytes` bytes when it is larger than the daemon reads
/// ([`MAX_REQUEST_BYTES`]), with `invalid_input` naming the limit (the transport would only
/// drop the connection).
pub(crate) fn check_request_size(op: &Operation, bytes: usize) -> Result<(), DispatchError> {
    let limit = MAX_REQUEST_BYTES as usize;
    if bytes <= limit {
        return Ok(());
    }
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    Err(DispatchError::invalid_input(format!(
        "the request for `{}` is {:.1} MiB; the daemon accepts at most {} MiB per request",
        op.title,
        mib(bytes),
        mib(limit)
    ))
    .with_hint("make the input smaller: split long text into several messages")
    .with_details(serde_json::json!({ "limit_bytes": limit, "request_bytes": bytes })))
}

#[cfg(test)]
mod tests {
    use dispatch_contract::{ErrorCode, operations};
    use serde_json::json;

    use super::*;
    use crate::CallParams;

    /// The input `{"text": "xx..."}` whose call of `op` is exactly `bytes` long.
    fn input_of_size(op: &Operation, bytes: usize) -> Value {
        let empty = EncodedCall::new(op, json!({"text": ""}))
            .expect("encodes")
            .body()
            .len();
        json!({ "text": "x".repeat(bytes - empty) })
    }

    /// The body is the one-shot envelope around the params as the daemon reads them.
    #[test]
    fn the_body_is_the_envelope_around_the_call_params() {
        let op = &operations::SEND;
        let input = json!({"lane": "ab", "text": "é\"\n"});
        let call =
            EncodedCall::with(op, Some("h"), input.clone(), Some(Surface::Mcp)).expect("encodes");
        let params = CallParams {
            contract_hash: Some("h".into()),
            input: Some(input.clone()),
            surface: Some(Surface::Mcp),
        };
        let expected = json!({"jsonrpc": "2.0", "id": 1, "method": op.id, "params": params});
        let body: Value = serde_json::from_slice(&call.body()).expect("json");
        assert_eq!(body, expected);
        assert_eq!(call.body(), request_body(op, &params).expect("encodes"));
        assert_eq!(call.input(), &input);
        assert_eq!(call.deadline(), op.call_timeout(&input));
    }

    /// A call of exactly the daemon's limit is sent; one byte more is refused, with the
    /// error naming both sizes.
    #[test]
    fn the_limit_is_exact_at_the_boundary() {
        let op = &operations::SEND;
        let limit = MAX_REQUEST_BYTES as usize;
        let at = EncodedCall::new(op, input_of_size(op, limit)).expect("at the limit");
        assert_eq!(at.body().len(), limit);
        let refused = EncodedCall::new(op, input_of_size(op, limit + 1)).expect_err("over it");
        assert_eq!(refused.input, input_of_size(op, limit + 1));
        let err = refused.error;
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert_eq!(
            err.message,
            format!(
                "the request for `{}` is 8.0 MiB; the daemon accepts at most 8 MiB per request",
                op.title
            )
        );
        assert_eq!(
            err.hint.to_string(),
            "make the input smaller: split long text into several messages"
        );
        assert_eq!(
            err.details,
            json!({ "limit_bytes": limit, "request_bytes": limit + 1 })
        );
    }
}
