//! [`DaemonClient`]: a JSON-RPC client over the daemon's Unix socket.

use std::path::Path;
use std::time::Duration;

use dispatch_contract::{DispatchError, ErrorCode, Operation, Request, longest_call_timeout};
use jsonrpsee::client_transport::ws::{Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{ClientBuilder, ClientT, Error as ClientError};
use jsonrpsee::core::params::ObjectParams;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::server::CallParams;

/// A connection to `dispatchd`.
pub struct DaemonClient {
    client: jsonrpsee::core::client::Client,
}

fn unreachable(socket: &Path, why: impl std::fmt::Display) -> DispatchError {
    DispatchError::new(
        ErrorCode::DaemonUnreachable,
        format!("cannot reach the daemon at {}: {why}", socket.display()),
    )
}

impl DaemonClient {
    /// Connects to the daemon's socket; `daemon_unreachable` when nothing answers there.
    pub async fn connect(socket: &Path) -> Result<DaemonClient, DispatchError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|err| unreachable(socket, err))?;
        let url = Url::parse("ws://dispatchd.local/")
            .map_err(|err| DispatchError::internal(format!("socket url: {err}")))?;
        let (sender, receiver) = WsTransportClientBuilder::default()
            .build_with_stream(url, stream)
            .await
            .map_err(|err| unreachable(socket, err))?;
        let client = ClientBuilder::default()
            // Each call has its own deadline (`request`); this one never fires first.
            .request_timeout(longest_call_timeout())
            .build_with_tokio(sender, receiver);
        Ok(DaemonClient { client })
    }

    /// Calls a typed operation (its input type names the operation and its output type).
    pub async fn call<R: Request>(&self, input: &R) -> Result<R::Output, DispatchError> {
        let input = encode_input(input)?;
        decode_output::<R>(self.call_json(R::OPERATION, input).await?)
    }

    /// Calls a typed operation without the contract check, e.g. to ask a stale daemon whether
    /// it is idle; an answer that does not decode as this client's output type is an error.
    pub async fn call_unchecked<R: Request>(&self, input: &R) -> Result<R::Output, DispatchError> {
        let input = encode_input(input)?;
        decode_output::<R>(self.call_json_unchecked(R::OPERATION, input).await?)
    }

    /// Calls `op` with JSON input, sending this client's contract hash of it: what the
    /// `Runner` does for every surface, whatever the operation.
    pub async fn call_json(&self, op: &Operation, input: Value) -> Result<Value, DispatchError> {
        self.request(op, Some(op.contract_hash), input).await
    }

    /// Calls `op` without the contract check, e.g. to ask a stale daemon whether it is idle.
    pub async fn call_json_unchecked(
        &self,
        op: &Operation,
        input: Value,
    ) -> Result<Value, DispatchError> {
        self.request(op, None, input).await
    }

    async fn request(
        &self,
        op: &Operation,
        hash: Option<&str>,
        input: Value,
    ) -> Result<Value, DispatchError> {
        let call = CallParams {
            contract_hash: hash.map(str::to_owned),
            input: Some(input),
        };
        let mut params = ObjectParams::new();
        if let Some(hash) = &call.contract_hash {
            params
                .insert("contract_hash", hash)
                .map_err(|err| DispatchError::internal(format!("encoding params: {err}")))?;
        }
        params
            .insert("input", &call.input)
            .map_err(|err| DispatchError::internal(format!("encoding params: {err}")))?;
        // The operation's own bound (e.g. `watch`'s timeout) plus a margin, from the contract.
        let deadline = op.call_timeout(call.input.as_ref().unwrap_or(&Value::Null));
        match tokio::time::timeout(deadline, self.client.request::<Value, _>(op.id, params)).await {
            Ok(answer) => answer.map_err(|err| from_client_error(op, deadline, err)),
            Err(_elapsed) => Err(timed_out(op, deadline)),
        }
    }
}

fn encode_input<R: Request>(input: &R) -> Result<Value, DispatchError> {
    serde_json::to_value(input)
        .map_err(|err| DispatchError::internal(format!("encoding an input: {err}")))
}

fn decode_output<R: Request>(output: Value) -> Result<R::Output, DispatchError> {
    serde_json::from_value(output).map_err(|err| {
        DispatchError::internal(format!(
            "the daemon's answer to `{}` does not match the contract: {err}",
            R::OPERATION.title
        ))
    })
}

fn timed_out(op: &Operation, deadline: Duration) -> DispatchError {
    DispatchError::new(
        ErrorCode::DaemonUnreachable,
        format!(
            "the daemon did not answer `{}` within {} s",
            op.title,
            deadline.as_secs()
        ),
    )
}

fn from_client_error(op: &Operation, deadline: Duration, err: ClientError) -> DispatchError {
    match err {
        ClientError::Call(obj) => obj
            .data()
            .and_then(|data| serde_json::from_str::<Value>(data.get()).ok())
            .and_then(|body| DispatchError::from_body(&body))
            .unwrap_or_else(|| {
                if obj.code() == jsonrpsee::types::ErrorCode::MethodNotFound.code() {
                    DispatchError::new(
                        ErrorCode::DaemonStale,
                        format!(
                            "the daemon does not know `{}`: it is older than this client",
                            op.title
                        ),
                    )
                    .with_details(serde_json::json!({ "op": op.id, "idle": null }))
                } else {
                    DispatchError::internal(format!(
                        "the daemon answered {}: {}",
                        obj.code(),
                        obj.message()
                    ))
                }
            }),
        ClientError::RequestTimeout => timed_out(op, deadline),
        other => DispatchError::new(
            ErrorCode::DaemonUnreachable,
            format!("lost the daemon during `{}`: {other}", op.title),
        ),
    }
}
