//! The one-shot call path: a JSON-RPC request as a plain HTTP/1.1 POST over the daemon's Unix
//! socket, which jsonrpsee's server answers on the same connection as a WebSocket upgrade.
//! There is no handshake round trip and no background client task, so a single call (what
//! every CLI command and MCP tool call makes) costs one write and one read. The daemon applies
//! the same defences to it as to a WebSocket (peer credentials at accept, the connection cap,
//! the idle timeouts, the request size cap; see `listener`).

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// The largest answer read, in bytes: the same bound as the WebSocket client's default.
pub(crate) const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// An HTTP/1.1 connection to the daemon, kept alive between calls; calls on it take turns.
pub(crate) struct OneShot {
    sender: Mutex<SendRequest<Full<Bytes>>>,
}

/// How a one-shot call went wrong before a JSON-RPC answer was read.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The daemon answered with this HTTP status and no JSON-RPC error in the body.
    Status(u16),
    /// The connection broke, or the answer was not JSON-RPC.
    Lost(String),
}

/// What the daemon answered: the result, or the JSON-RPC error object
/// (`{code, message, data}`). Refusals with an HTTP status (403, 413, 503) carry the JSON-RPC
/// error in their body and are answered as errors too.
pub(crate) type Answer = Result<Value, Value>;

impl OneShot {
    /// Starts HTTP/1.1 on a connected (and already vetted) stream. No byte is exchanged yet.
    pub(crate) async fn start(stream: UnixStream) -> Result<OneShot, Failure> {
        let (sender, connection) = handshake(TokioIo::new(stream))
            .await
            .map_err(|err| Failure::Lost(err.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "the daemon connection ended with an error");
            }
        });
        Ok(OneShot {
            sender: Mutex::new(sender),
        })
    }

    /// Sends `{"jsonrpc":"2.0","id":1,"method":method,"params":params}` and reads the answer.
    pub(crate) async fn call(
        &self,
        method: &str,
        params: &impl serde::Serialize,
    ) -> Result<Answer, Failure> {
        let body = serde_json::to_vec(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": params,
        }))
        .map_err(|err| Failure::Lost(format!("encoding the request: {err}")))?;
        let request = hyper::Request::post("/")
            .header(HOST, "dispatchd.local")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| Failure::Lost(format!("building the request: {err}")))?;
        let mut sender = self.sender.lock().await;
        sender
            .ready()
            .await
            .map_err(|err| Failure::Lost(err.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| Failure::Lost(err.to_string()))?;
        drop(sender);
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|err| Failure::Lost(format!("reading the answer: {err}")))?
            .to_bytes();
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        match parsed {
            Some(mut answer) => {
                if let Some(error) = answer.get_mut("error") {
                    return Ok(Err(error.take()));
                }
                match answer.get_mut("result") {
                    Some(result) if status == 200 => Ok(Ok(result.take())),
                    _ if status != 200 => Err(Failure::Status(status)),
                    _ => Err(Failure::Lost("the answer holds no result".to_owned())),
                }
            }
            None if status != 200 => Err(Failure::Status(status)),
            None => Err(Failure::Lost("the answer is not JSON".to_owned())),
        }
    }
}

/// Connects to `socket`; for tests that drive the listener by hand.
#[cfg(test)]
pub(crate) async fn connect_for_test(socket: &std::path::Path) -> OneShot {
    let stream = UnixStream::connect(socket).await.expect("connect");
    match OneShot::start(stream).await {
        Ok(client) => client,
        Err(err) => panic!("http/1.1 over the socket: {err:?}"),
    }
}
