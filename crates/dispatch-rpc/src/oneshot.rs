//! The one-shot call path: a JSON-RPC request as a plain HTTP/1.1 POST over the daemon's Unix
//! socket, which jsonrpsee's server answers on the same connection as a WebSocket upgrade.
//! There is no handshake round trip and no background client task, so a single call (what
//! every CLI command and MCP tool call makes) costs one write and one read. The daemon applies
//! the same defences to it as to a WebSocket (peer credentials at accept, the connection cap,
//! the idle timeouts, the request size cap; see `listener`).

use dispatch_contract::{DispatchError, Operation};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// The largest answer read, in bytes: what the daemon sends at most.
pub(crate) const MAX_RESPONSE_BYTES: usize = crate::answer::MAX_ANSWER_BYTES;

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
    /// The answer is larger than [`MAX_RESPONSE_BYTES`]; it was not read whole.
    TooLarge,
}

/// What the daemon answered: the result as the JSON text the daemon wrote (never parsed into
/// a tree here), or the JSON-RPC error object (`{code, message, data}`). Refusals with an HTTP
/// status (403, 413, 503) carry the JSON-RPC error in their body and are answered as errors
/// too.
pub(crate) type Answer = Result<Box<RawValue>, Value>;

/// A JSON-RPC answer with its result left as text; other members (`jsonrpc`, `id`) are
/// skipped.
#[derive(Deserialize)]
struct Envelope<'a> {
    /// `Some` for any result, `null` included.
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

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

    /// Sends a call's body ([`request_body`]) and reads the answer.
    pub(crate) async fn call(&self, body: impl Into<Bytes>) -> Result<Answer, Failure> {
        let request = hyper::Request::post("/")
            .header(HOST, "dispatchd.local")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.into()))
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
        let bytes = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::TooLarge);
            }
            Err(err) => return Err(Failure::Lost(format!("reading the answer: {err}"))),
        };
        read_answer(status, Vec::from(bytes))
    }
}

/// The body of a call of `op`: `{"jsonrpc":"2.0","id":1,"method":<op id>,"params":params}`,
/// on the async and the blocking path alike. A call that cannot be encoded is this client's
/// fault (`internal`), not the daemon's.
pub(crate) fn request_body(
    op: &Operation,
    params: &impl serde::Serialize,
) -> Result<Vec<u8>, DispatchError> {
    envelope(op.id, params).map_err(|err| {
        DispatchError::internal(format!("encoding the call of `{}`: {err}", op.title))
    })
}

/// `{"jsonrpc":"2.0","id":1,"method":method,"params":params}`, encoded straight from the
/// params (`json!` would build a tree first, and panics on params that do not encode).
fn envelope(method: &str, params: &impl serde::Serialize) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Request<'a, P> {
        jsonrpc: &'static str,
        id: u32,
        method: &'a str,
        params: &'a P,
    }
    serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id: 1,
        method,
        params,
    })
}

/// The body of a call of any method, operation or not: for tests of the transport.
#[cfg(test)]
pub(crate) fn body_of(method: &str, params: &Value) -> Vec<u8> {
    envelope(method, params).expect("a Value encodes")
}

/// A member that is present, whatever its value (`Option`'s own impl reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// How the daemon begins its answer to a call with id 1 (every call of this client), the
/// result following and `}` closing it (`answer`).
pub(crate) const WRITTEN_PREFIX: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"#;

/// The answer in an HTTP body: the error object if there is one, else the result's text (not
/// parsed into a tree). A result in the form the daemon writes is taken from the body where
/// it lies; any other is copied out of the envelope.
pub(crate) fn read_answer(status: u16, body: Vec<u8>) -> Result<Answer, Failure> {
    if status == 200 && body.starts_with(WRITTEN_PREFIX) && body.ends_with(b"}") {
        return written_result(body).map(Ok);
    }
    match serde_json::from_slice::<Envelope<'_>>(&body) {
        Ok(Envelope {
            error: Some(error), ..
        }) => Ok(Err(error)),
        Ok(Envelope {
            result: Some(result),
            ..
        }) if status == 200 => Ok(Ok(result.to_owned())),
        _ if status != 200 => Err(Failure::Status(status)),
        Ok(_) => Err(Failure::Lost("the answer holds no result".to_owned())),
        Err(_) => Err(Failure::Lost("the answer is not JSON".to_owned())),
    }
}

/// The result of `{"jsonrpc":"2.0","id":1,"result":<result>}`, made from the body's own
/// memory: a `list` of 1,000 lanes is some 400 KiB, which a copy took fresh pages for. The text
/// is checked to be one JSON value; anything else after the prefix (an `error` member
/// besides the result included) is not an answer.
fn written_result(mut body: Vec<u8>) -> Result<Box<RawValue>, Failure> {
    let not_json = || Failure::Lost("the answer is not JSON".to_owned());
    body.pop();
    body.drain(..WRITTEN_PREFIX.len());
    let text = String::from_utf8(body).map_err(|_| not_json())?;
    RawValue::from_string(text).map_err(|_| not_json())
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A call that cannot be encoded is this client's fault on both paths (`internal`),
    /// never a daemon that could not be reached.
    #[test]
    fn a_call_that_cannot_be_encoded_is_internal() {
        struct Unencodable;
        impl serde::Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no text for this"))
            }
        }
        let op = &dispatch_contract::operations::DAEMON_STATUS;
        let err = request_body(op, &Unencodable).expect_err("nothing to send");
        assert_eq!(err.code, dispatch_contract::ErrorCode::Internal);
        assert!(err.message.contains("no text for this"), "{}", err.message);
        let body = request_body(op, &json!({"input": {}})).expect("encodes");
        assert!(body.starts_with(br#"{"jsonrpc":"2.0","id":1,"method":"daemon_status""#));
    }

    fn text(answer: Result<Answer, Failure>) -> Result<String, String> {
        match answer {
            Ok(Ok(result)) => Ok(result.get().to_owned()),
            Ok(Err(error)) => Err(format!("error {error}")),
            Err(failure) => Err(format!("{failure:?}")),
        }
    }

    /// The result is passed on as the daemon wrote it (key order, spacing and all), a `null`
    /// result is a result, and an error object wins over a status.
    #[test]
    fn the_result_is_kept_as_the_daemon_wrote_it() {
        let read = |status, body: &'static [u8]| read_answer(status, body.to_vec());
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"z":1,"a":[true, "\u00e9\n"],"m":null}}"#;
        assert_eq!(
            text(read(200, body)),
            Ok(r#"{"z":1,"a":[true, "\u00e9\n"],"m":null}"#.to_owned())
        );
        // Not in the form the daemon writes: read through the envelope, to the same text.
        let spaced =
            br#"{ "id": 1, "result": {"z":1,"a":[true, "\u00e9\n"],"m":null}, "jsonrpc": "2.0"}"#;
        assert_eq!(
            text(read(200, spaced)),
            Ok(r#"{"z":1,"a":[true, "\u00e9\n"],"m":null}"#.to_owned())
        );
        let null = br#"{"jsonrpc":"2.0","id":1,"result":null}"#;
        assert_eq!(text(read(200, null)), Ok("null".to_owned()));
        // The daemon's form with more than one value after the prefix is not an answer.
        for broken in [
            &br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"a":}"#,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xff\"}",
            br#"{"jsonrpc":"2.0","id":1,"result":}"#,
        ] {
            assert!(
                matches!(read(200, broken), Err(Failure::Lost(_))),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
        let refused = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"no"}}"#;
        match read(403, refused) {
            Ok(Err(error)) => assert_eq!(error["code"], json!(-32003)),
            other => panic!("{:?}", text(other)),
        }
        assert!(matches!(
            read(502, b"bad gateway"),
            Err(Failure::Status(502))
        ));
        assert!(matches!(read(200, b"{\"result\":"), Err(Failure::Lost(_))));
        assert!(matches!(read(200, b"{\"id\":1}"), Err(Failure::Lost(_))));
    }

    /// An answer larger than [`MAX_RESPONSE_BYTES`] is a failure of its own, not a panic and
    /// not a lost connection.
    #[tokio::test]
    async fn an_answer_over_the_size_cap_is_too_large() {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let server = tokio::spawn(async move {
            let mut theirs = theirs;
            let mut head = vec![0u8; 4096];
            let _read = theirs.read(&mut head).await;
            let body = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"{}\"}}",
                "x".repeat(MAX_RESPONSE_BYTES)
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _sent = theirs.write_all(head.as_bytes()).await;
            let _sent = theirs.write_all(body.as_bytes()).await;
        });
        let client = match OneShot::start(ours).await {
            Ok(client) => client,
            Err(err) => panic!("{err:?}"),
        };
        let answer = client.call(body_of("list", &json!({}))).await;
        assert!(
            matches!(answer, Err(Failure::TooLarge)),
            "{:?}",
            text(answer)
        );
        server.abort();
    }
}
