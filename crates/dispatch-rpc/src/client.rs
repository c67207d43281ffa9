//! [`DaemonClient`]: a JSON-RPC client over the daemon's Unix socket: one HTTP/1.1 POST per
//! call ([`DaemonClient::connect`], what single calls use), or a WebSocket
//! ([`DaemonClient::connect_streaming`], for streaming operations such as `watch`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use dispatch_contract::{
    DispatchError, ErrorCode, Operation, Request, Surface, longest_call_timeout,
};
use jsonrpsee::client_transport::ws::{Url, WsHandshakeError, WsTransportClientBuilder};
use jsonrpsee::core::client::{ClientBuilder, ClientT, Error as ClientError};
use jsonrpsee::core::params::ObjectParams;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::UnixStream;

use crate::answer::too_large_answer;
use crate::call::{EncodedCall, check_request_size};
use crate::listener::{full_hint, refused_user_hint};
use crate::oneshot::{Answer, Failure, OneShot};

/// A connection to `dispatchd`.
pub struct DaemonClient {
    socket: PathBuf,
    transport: Transport,
}

enum Transport {
    /// Plain HTTP/1.1 POSTs: no handshake, nothing running in the background.
    Http(OneShot),
    /// A WebSocket: the socket's streaming path.
    Ws(jsonrpsee::core::client::Client),
}

pub(crate) fn unreachable(socket: &Path, why: impl std::fmt::Display) -> DispatchError {
    DispatchError::new(
        ErrorCode::DaemonUnreachable,
        format!("cannot reach the daemon at {}: {why}", socket.display()),
    )
}

/// The surface a call names in its params: the caller's, unless it is the CLI (which every
/// daemon assumes).
pub(crate) fn caller_surface() -> Option<Surface> {
    let surface = Surface::current();
    (surface != Surface::Cli).then_some(surface)
}

/// `connect` failed: `permission_denied` when the socket is not ours to use, `invalid_input`
/// when the path holds something else, `daemon_unreachable` otherwise.
pub(crate) fn connect_failed(socket: &Path, err: &std::io::Error) -> DispatchError {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        return DispatchError::new(
            ErrorCode::PermissionDenied,
            format!("cannot connect to the daemon at {}: {err}", socket.display()),
        )
        .with_hint("the socket (or its directory) belongs to another user: run dispatch as that user, or use a DISPATCH_HOME of your own and `dispatch up`");
    }
    let not_a_socket = std::fs::symlink_metadata(socket)
        .is_ok_and(|meta| !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    if not_a_socket {
        return DispatchError::invalid_input(format!(
            "{} is not a socket, so no daemon can be listening there",
            socket.display()
        ))
        .with_hint(
            "point DISPATCH_SOCKET at a path of its own, or move the file away, then `dispatch up`",
        );
    }
    unreachable(socket, err)
}

/// The WebSocket handshake failed; the daemon answers a refused caller with an HTTP status.
fn handshake_failed(socket: &Path, err: WsHandshakeError) -> DispatchError {
    match err {
        WsHandshakeError::Rejected { status_code } => refused(socket, status_code)
            .unwrap_or_else(|| unreachable(socket, format!("it answered HTTP {status_code}"))),
        other => unreachable(socket, other),
    }
}

/// The daemon answered a refused caller with this HTTP status (on either call path).
fn refused(socket: &Path, status: u16) -> Option<DispatchError> {
    match status {
        403 => Some(DispatchError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the daemon at {} refused this user (uid {}): it serves only the user who started it",
                socket.display(),
                rustix::process::geteuid().as_raw()
            ),
        )
        .with_hint(refused_user_hint())),
        429 | 503 => Some(DispatchError::new(
            ErrorCode::DaemonUnreachable,
            format!(
                "the daemon at {} is at its connection limit, each connection with a call in flight",
                socket.display()
            ),
        )
        .with_hint(full_hint())),
        _ => None,
    }
}

impl DaemonClient {
    /// Connects to the daemon's socket for plain calls, one HTTP/1.1 POST each (no handshake):
    /// `daemon_unreachable` when nothing answers there, `permission_denied` when the socket is
    /// another user's (or, at the first call, when the daemon refuses this user). A daemon
    /// running as another user, root excepted, is never spoken to.
    pub async fn connect(socket: &Path) -> Result<DaemonClient, DispatchError> {
        let stream = connect_vetted(socket).await?;
        let client = OneShot::start(stream)
            .await
            .map_err(|err| lost_at_connect(socket, err))?;
        Ok(DaemonClient {
            socket: socket.to_owned(),
            transport: Transport::Http(client),
        })
    }

    /// Connects over a WebSocket, the socket's streaming path: what a caller that makes many
    /// calls in a row (a streaming operation such as `watch`) uses. Errors as [`Self::connect`],
    /// the daemon's refusal included.
    pub async fn connect_streaming(socket: &Path) -> Result<DaemonClient, DispatchError> {
        let stream = connect_vetted(socket).await?;
        let url = Url::parse("ws://dispatchd.local/")
            .map_err(|err| DispatchError::internal(format!("socket url: {err}")))?;
        let (sender, receiver) = WsTransportClientBuilder::default()
            .build_with_stream(url, stream)
            .await
            .map_err(|err| handshake_failed(socket, err))?;
        let client = ClientBuilder::default()
            // Each call has its own deadline (`request`); this one never fires first.
            .request_timeout(longest_call_timeout())
            .build_with_tokio(sender, receiver);
        Ok(DaemonClient {
            socket: socket.to_owned(),
            transport: Transport::Ws(client),
        })
    }

    /// [`Self::connect_streaming`] for a streaming operation, else [`Self::connect`].
    pub async fn connect_for(socket: &Path, op: &Operation) -> Result<DaemonClient, DispatchError> {
        if op.streaming.is_some() {
            DaemonClient::connect_streaming(socket).await
        } else {
            DaemonClient::connect(socket).await
        }
    }
}

/// Connects to `socket` and checks who serves it: a daemon of this user, or root.
async fn connect_vetted(socket: &Path) -> Result<UnixStream, DispatchError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|err| connect_failed(socket, &err))?;
    let peer = stream
        .peer_cred()
        .map_err(|err| unreachable(socket, err))?
        .uid();
    vet_peer(socket, peer)?;
    Ok(stream)
}

/// A socket served by `peer` (a uid) is spoken to only when that is this user or root.
pub(crate) fn vet_peer(socket: &Path, peer: u32) -> Result<(), DispatchError> {
    let uid = rustix::process::geteuid().as_raw();
    if peer != uid && peer != 0 {
        return Err(DispatchError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the socket {} is served by uid {peer}, not by you (uid {uid}); dispatch does not talk to another user's daemon",
                    socket.display()
                ),
            )
            .with_hint("point DISPATCH_HOME (or DISPATCH_SOCKET) at a directory of your own and `dispatch up`"));
    }
    Ok(())
}

fn lost_at_connect(socket: &Path, err: Failure) -> DispatchError {
    match err {
        Failure::Status(status) => refused(socket, status)
            .unwrap_or_else(|| unreachable(socket, format!("it answered HTTP {status}"))),
        Failure::Lost(why) => unreachable(socket, why),
        Failure::TooLarge => unreachable(socket, "its answer was too large"),
    }
}

impl DaemonClient {
    /// Calls a typed operation (its input type names the operation and its output type).
    pub async fn call<R: Request>(&self, input: &R) -> Result<R::Output, DispatchError> {
        let input = encode_input(input)?;
        decode_output::<R>(&self.call_text(R::OPERATION, input).await?)
    }

    /// Calls a typed operation without the contract check, e.g. to ask a stale daemon whether
    /// it is idle; an answer that does not decode as this client's output type is an error.
    pub async fn call_unchecked<R: Request>(&self, input: &R) -> Result<R::Output, DispatchError> {
        let input = encode_input(input)?;
        decode_output::<R>(&self.request(R::OPERATION, None, input, None).await?)
    }

    /// Calls `op` with JSON input, sending this client's contract hash of it: what the
    /// `Runner` does for every surface, whatever the operation. Hints in the answer are in the
    /// words of [`Surface::current`].
    pub async fn call_json(&self, op: &Operation, input: Value) -> Result<Value, DispatchError> {
        parse_output(op, &self.call_text(op, input).await?)
    }

    /// [`Self::call_json`], answering the daemon's result as the JSON text it wrote, never
    /// parsed here: what a caller that passes the answer on as text (`--json`) uses.
    pub async fn call_text(
        &self,
        op: &Operation,
        input: Value,
    ) -> Result<Box<RawValue>, DispatchError> {
        self.request(op, Some(op.contract_hash), input, caller_surface())
            .await
    }

    /// Calls `op` without the contract check (and in the params every daemon knows), e.g. to
    /// ask a stale daemon whether it is idle.
    pub async fn call_json_unchecked(
        &self,
        op: &Operation,
        input: Value,
    ) -> Result<Value, DispatchError> {
        parse_output(op, &self.request(op, None, input, None).await?)
    }

    async fn request<'op>(
        &self,
        op: &'op Operation,
        hash: Option<&'op str>,
        input: Value,
        surface: Option<Surface>,
    ) -> Result<Box<RawValue>, DispatchError> {
        self.send(&EncodedCall::with(op, hash, input, surface).map_err(DispatchError::from)?)
            .await
    }

    /// Sends a call encoded before ([`EncodedCall::new`]): on the HTTP path its body as it
    /// is, on a WebSocket its params (whose envelope jsonrpsee writes).
    pub async fn send(&self, call: &EncodedCall<'_>) -> Result<Box<RawValue>, DispatchError> {
        let (op, deadline) = (call.op(), call.deadline());
        let answer = match &self.transport {
            Transport::Http(client) => {
                tokio::time::timeout(deadline, async {
                    post_outcome(&self.socket, op, client.call(call.body()).await)
                })
                .await
            }
            Transport::Ws(client) => {
                // jsonrpsee's envelope is the one-shot body's but for its id, a counter.
                check_request_size(op, call.body().len() + WS_ID_DIGITS)?;
                let params = ws_params(call)?;
                tokio::time::timeout(deadline, async {
                    client
                        .request::<Box<RawValue>, _>(op.id, params)
                        .await
                        .map_err(|err| from_client_error(op, deadline, err))
                })
                .await
            }
        };
        match answer {
            Ok(answer) => {
                answer.map_err(|err| older_than_surface(op, call.surface().is_some(), err))
            }
            Err(_elapsed) => Err(timed_out(op, deadline)),
        }
    }
}

/// The most digits a WebSocket call's id (a `u64` counter) has beyond the one of the
/// one-shot body's id.
const WS_ID_DIGITS: usize = 19;

/// The result or error of one call on the HTTP path (async or blocking), from what was read.
pub(crate) fn post_outcome(
    socket: &Path,
    op: &Operation,
    answer: Result<Answer, Failure>,
) -> Result<Box<RawValue>, DispatchError> {
    match answer {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(from_error_object(
            op,
            error["code"].as_i64().unwrap_or_default(),
            error["message"].as_str().unwrap_or_default(),
            error.get("data"),
        )),
        Err(Failure::Status(status)) => Err(refused(socket, status).unwrap_or_else(|| {
            DispatchError::new(
                ErrorCode::DaemonUnreachable,
                format!("the daemon answered `{}` with HTTP {status}", op.title),
            )
        })),
        Err(Failure::Lost(why)) => Err(DispatchError::new(
            ErrorCode::DaemonUnreachable,
            format!("lost the daemon during `{}`: {why}", op.title),
        )),
        Err(Failure::TooLarge) => Err(too_large_answer(op)),
    }
}

/// The daemon's result text as a `Value`: it is JSON the daemon wrote, so a failure here means
/// the answer was cut or corrupted on the way.
pub fn parse_output(op: &Operation, text: &RawValue) -> Result<Value, DispatchError> {
    serde_json::from_str(text.get()).map_err(|err| {
        DispatchError::internal(format!(
            "the daemon's answer to `{}` is not JSON: {err}",
            op.title
        ))
    })
}

/// The params of a call on the WebSocket path.
fn ws_params(call: &EncodedCall<'_>) -> Result<ObjectParams, DispatchError> {
    let mut params = ObjectParams::new();
    if let Some(hash) = call.hash() {
        params
            .insert("contract_hash", hash)
            .map_err(|err| DispatchError::internal(format!("encoding params: {err}")))?;
    }
    params
        .insert("input", call.input())
        .map_err(|err| DispatchError::internal(format!("encoding params: {err}")))?;
    if let Some(surface) = call.surface() {
        params
            .insert("surface", surface)
            .map_err(|err| DispatchError::internal(format!("encoding params: {err}")))?;
    }
    Ok(params)
}

fn encode_input<R: Request>(input: &R) -> Result<Value, DispatchError> {
    serde_json::to_value(input)
        .map_err(|err| DispatchError::internal(format!("encoding an input: {err}")))
}

fn decode_output<R: Request>(output: &RawValue) -> Result<R::Output, DispatchError> {
    serde_json::from_str(output.get()).map_err(|err| {
        DispatchError::internal(format!(
            "the daemon's answer to `{}` does not match the contract: {err}",
            R::OPERATION.title
        ))
    })
}

/// A daemon older than the `surface` param refuses the params it does not know: that is a
/// stale daemon, which the client restarts when it is idle, not an input error.
pub(crate) fn older_than_surface(
    op: &Operation,
    sent_surface: bool,
    err: DispatchError,
) -> DispatchError {
    if sent_surface
        && err.code == ErrorCode::InvalidInput
        && err.message.starts_with("params must be")
        && err.message.contains("`surface`")
    {
        DispatchError::new(
            ErrorCode::DaemonStale,
            format!(
                "the daemon does not take the `surface` of `{}`: it is older than this client",
                op.title
            ),
        )
        .with_details(serde_json::json!({ "op": op.id, "idle": null }))
    } else {
        err
    }
}

pub(crate) fn timed_out(op: &Operation, deadline: Duration) -> DispatchError {
    DispatchError::new(
        ErrorCode::DaemonUnreachable,
        format!(
            "the daemon did not answer `{}` within {} s",
            op.title,
            deadline.as_secs()
        ),
    )
}

/// The dispatch error of a JSON-RPC error object: its `data` is dispatch's error body; an
/// unknown method means a daemon older than this client.
fn from_error_object(
    op: &Operation,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> DispatchError {
    data.and_then(DispatchError::from_body).unwrap_or_else(|| {
        if code == i64::from(jsonrpsee::types::ErrorCode::MethodNotFound.code()) {
            DispatchError::new(
                ErrorCode::DaemonStale,
                format!(
                    "the daemon does not know `{}`: it is older than this client",
                    op.title
                ),
            )
            .with_details(serde_json::json!({ "op": op.id, "idle": null }))
        } else {
            DispatchError::internal(format!("the daemon answered {code}: {message}"))
        }
    })
}

fn from_client_error(op: &Operation, deadline: Duration, err: ClientError) -> DispatchError {
    match err {
        ClientError::Call(obj) => {
            let data = obj
                .data()
                .and_then(|data| serde_json::from_str::<Value>(data.get()).ok());
            from_error_object(op, i64::from(obj.code()), obj.message(), data.as_ref())
        }
        ClientError::RequestTimeout => timed_out(op, deadline),
        other => DispatchError::new(
            ErrorCode::DaemonUnreachable,
            format!("lost the daemon during `{}`: {other}", op.title),
        ),
    }
}

#[cfg(test)]
mod tests {
    use dispatch_contract::operations;

    use super::*;

    /// What a daemon from before the `surface` param answers an MCP client: its params
    /// refusal is a stale daemon (restarted when idle), not the caller's invalid input.
    #[test]
    fn a_daemon_that_refuses_the_surface_param_is_stale() {
        let old = DispatchError::invalid_input(
            "params must be {\"contract_hash\": .., \"input\": {..}}: unknown field `surface`, \
             expected `contract_hash` or `input`",
        );
        let err = older_than_surface(&operations::GET, true, old.clone());
        assert_eq!(err.code, ErrorCode::DaemonStale);
        assert_eq!(err.details["idle"], Value::Null);
        // Without the param sent, or for any other refusal, the error stands.
        assert_eq!(
            older_than_surface(&operations::GET, false, old.clone()),
            old
        );
        let other = DispatchError::invalid_input("invalid input for `get`: `lane` is required");
        assert_eq!(
            older_than_surface(&operations::GET, true, other.clone()),
            other
        );
    }
}
