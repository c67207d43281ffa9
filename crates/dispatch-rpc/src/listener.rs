//! Serving an [`RpcModule`] on the daemon's Unix socket, defended against its callers.
//!
//! - **Only this user.** Every connection's peer credentials (`SO_PEERCRED`) are read at
//!   accept; a process of another uid gets an HTTP 403 whose body is a `permission_denied`
//!   JSON-RPC error, and the connection is closed. The socket's 0600 mode is the first line;
//!   this holds even when the mode is loosened.
//! - **A connection cap.** At most [`Limits::max_connections`] connections are served at once.
//!   A newcomer beyond that closes the oldest connection with no call in flight; when every
//!   connection has a call in flight, the newcomer gets an HTTP 503 and is closed.
//! - **Idle and half-open connections are closed**: one that makes no call within
//!   [`Limits::handshake_timeout`] of being accepted, or none within [`Limits::idle_timeout`]
//!   of its last call ending. A call in flight (a `watch` may last 600 s) is never cut.
//! - **Requests and batches are capped** ([`MAX_REQUEST_BYTES`], [`MAX_BATCH`]).
//! - **No spinning on exhausted descriptors.** When `accept` fails (`EMFILE`, `ENFILE`...), the
//!   loop closes an idle connection if it can, sleeps briefly and logs once per interval.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dispatch_contract::{DispatchError, ErrorCode};
use jsonrpsee::RpcModule;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    BatchRequestConfig, Server, ServerConfig, serve_with_graceful_shutdown, stop_channel,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::connections::{Guarded, Table, sweep};
use crate::middleware::{Activity, HttpAnswer};
use crate::server::rpc_error;

/// The largest request the daemon reads, in bytes (the whole JSON-RPC message, or the HTTP
/// body of a POST). Larger ones are refused before they are parsed.
pub const MAX_REQUEST_BYTES: u32 = 8 * 1024 * 1024;

/// The most calls one JSON-RPC batch may hold.
pub const MAX_BATCH: usize = 32;

/// How often a log line about refused connections or failing `accept`s may be written.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after `accept` fails.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a refused connection is kept open for the caller to read its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// How much of a refused caller's request is read (and discarded) at most.
const REFUSAL_DRAIN: usize = 64 * 1024;

/// How many refusals are answered at once; beyond that a refused connection is just closed.
const MAX_REFUSALS: usize = 32;

/// How long shutdown waits for calls in flight before it closes their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The connection limits of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a new connection may take to make its first call.
    pub handshake_timeout: Duration,
    /// How long a connection may stay open with no call in flight after its last call.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `module` on `listener` with the default [`Limits`] until `shutdown` resolves, then
/// lets calls in flight finish (at most a few seconds).
pub async fn serve<D: Send + Sync + 'static>(
    listener: UnixListener,
    module: RpcModule<D>,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(listener, module, shutdown, Limits::default()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with<D: Send + Sync + 'static>(
    listener: UnixListener,
    module: RpcModule<D>,
    shutdown: impl Future<Output = ()> + Send,
    limits: Limits,
) {
    let (stop_handle, server_handle) = stop_channel();
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        // The table below is the real cap; jsonrpsee's own guard (a permit per HTTP request
        // or WebSocket) only needs room for connections that are still closing.
        .max_connections(
            u32::try_from(limits.max_connections.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        // Checked by `Activity`, which answers with dispatch's own `invalid_input`.
        .set_batch_request_config(BatchRequestConfig::Unlimited)
        .build();
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer_fn(HttpAnswer))
        .to_service_builder();
    let methods: jsonrpsee::Methods = module.into();
    let table = Arc::new(Table::new(limits));
    let sweeper = tokio::spawn(sweep(Arc::clone(&table)));
    let uid = rustix::process::geteuid().as_raw();
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut accept_log = Throttle::default();
    let mut refusal_log = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    if let Some(suppressed) = accept_log.allow() {
                        tracing::warn!(%err, suppressed, "accepting a connection failed; backing off");
                    }
                    // Out of descriptors: an idle connection gives one back.
                    table.close_oldest_idle();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        match judge(&stream, uid, &table, &mut refusal_log) {
            Ok(None) => {}
            Ok(Some(refusal)) => {
                refuse(stream, refusal, &refusals);
                continue;
            }
            Err(err) => {
                tracing::debug!(%err, "no peer credentials; closing the connection");
                continue;
            }
        }
        let io = Guarded::new(stream, &table);
        let activity = Arc::clone(io.conn());
        let middleware =
            RpcServiceBuilder::new().layer_fn(move |inner| Activity::new(inner, &activity));
        let service = builder
            .clone()
            .set_rpc_middleware(middleware)
            .build(methods.clone(), stop_handle.clone());
        let stopped = stop_handle.clone().shutdown();
        tokio::spawn(async move {
            if let Err(err) = serve_with_graceful_shutdown(io, service, stopped).await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
    let _already_stopped = server_handle.stop();
    table.close_idle();
    if !table.wait_empty(SHUTDOWN_GRACE).await {
        table.close_all();
        table.wait_empty(Duration::from_secs(1)).await;
    }
    sweeper.abort();
}

/// Whether to turn a new connection away: another uid's, or one beyond the cap when no idle
/// connection can make room. Logs the refusal (at most once per interval).
fn judge(
    stream: &UnixStream,
    uid: u32,
    table: &Table,
    log: &mut Throttle,
) -> io::Result<Option<Refusal>> {
    let peer = stream.peer_cred()?;
    let refusal = if peer.uid() != uid {
        Refusal::OtherUser(peer.uid())
    } else if table.open() >= table.limits.max_connections && !table.close_oldest_idle() {
        Refusal::Full(table.limits.max_connections)
    } else {
        return Ok(None);
    };
    if let Some(suppressed) = log.allow() {
        match refusal {
            Refusal::OtherUser(peer_uid) => tracing::warn!(
                peer_uid,
                peer_pid = peer.pid(),
                suppressed,
                "refused a connection from another user"
            ),
            Refusal::Full(limit) => tracing::warn!(
                limit,
                suppressed,
                "refused a connection: every connection has a call in flight"
            ),
        }
    }
    Ok(Some(refusal))
}

/// Why a connection is turned away.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Its process runs as this uid, not the daemon's.
    OtherUser(u32),
    /// Every one of this many connections has a call in flight.
    Full(usize),
}

impl Refusal {
    /// The HTTP status and the dispatch error it answers with.
    fn answer(self) -> (&'static str, DispatchError) {
        match self {
            Refusal::OtherUser(peer) => (
                "403 Forbidden",
                DispatchError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "the daemon serves only its own user (uid {}); this caller runs as uid {peer}",
                        rustix::process::geteuid().as_raw()
                    ),
                )
                .with_hint(refused_user_hint()),
            ),
            Refusal::Full(limit) => (
                "503 Service Unavailable",
                DispatchError::new(
                    ErrorCode::DaemonUnreachable,
                    format!("the daemon is serving its limit of {limit} connections, each with a call in flight"),
                )
                .with_hint(full_hint()),
            ),
        }
    }
}

/// The hint for a caller the daemon refused because it runs as another user.
pub(crate) fn refused_user_hint() -> &'static str {
    "run dispatch as the user who started the daemon, or use a DISPATCH_HOME of your own and start your own daemon with `dispatch up`"
}

/// The hint for a caller refused because the daemon is at its connection limit.
pub(crate) fn full_hint() -> &'static str {
    "retry when some calls have finished; long `watch` calls each hold a connection"
}

/// Answers a refused connection with an HTTP error whose body is the JSON-RPC error (once the
/// head of its request has arrived, or half of [`REFUSAL_TIME`] has passed), then reads and
/// discards what the caller still sends (boundedly: [`REFUSAL_DRAIN`] bytes,
/// [`REFUSAL_TIME`]) until it hangs up, so that its own writes do not fail before it has read
/// the answer; then closes the connection.
fn refuse(mut stream: UnixStream, refusal: Refusal, refusals: &Arc<AtomicUsize>) {
    if refusals.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS {
        refusals.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusals = Arc::clone(refusals);
    tokio::spawn(async move {
        let (status, err) = refusal.answer();
        let body = json!({"jsonrpc": "2.0", "id": null, "error": rpc_error(&err)}).to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        // The request's head first (boundedly): an HTTP/1.1 client such as hyper takes an
        // answer that arrives before it has sent its request for a broken connection.
        let mut drained = 0;
        let mut chunk = [0_u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_TIME / 2, async {
            let mut tail = Vec::with_capacity(8);
            while drained < REFUSAL_DRAIN {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                drained += n;
                tail.extend_from_slice(&chunk[..n]);
                if tail.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                let keep = tail.len().saturating_sub(3);
                tail.drain(..keep);
            }
            Ok::<(), io::Error>(())
        })
        .await;
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
            while drained < REFUSAL_DRAIN {
                match stream.read(&mut chunk).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        refusals.fetch_sub(1, Ordering::AcqRel);
    });
}

/// At most one log line per [`LOG_INTERVAL`]; counts the ones it held back.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(number held back since the last line)` when a line may be written now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneshot::body_of;
    use jsonrpsee::client_transport::ws::{Url, WsHandshakeError, WsTransportClientBuilder};
    use jsonrpsee::core::client::{Client, ClientBuilder, ClientT};
    use jsonrpsee::rpc_params;

    type Started = tokio::sync::mpsc::UnboundedSender<()>;

    /// A module with `ping` (answers at once) and `slow` (says it started, then answers after
    /// `SLOW`).
    fn module(started: Started) -> RpcModule<Started> {
        let mut module = RpcModule::new(started);
        module
            .register_method("ping", |_, _, _| "pong")
            .expect("ping");
        module
            .register_async_method("slow", |_, started, _| async move {
                let _ = started.send(());
                tokio::time::sleep(SLOW).await;
                "done"
            })
            .expect("slow");
        let hint = crate::answer::SizeHint::default();
        module
            .register_async_method("echo", move |params, _, extensions| {
                let hint = hint.clone();
                async move {
                    let size: usize = params.one()?;
                    let output = json!({ "text": "é".repeat(size / 2), "size": size });
                    let slot = extensions.get::<crate::answer::AnswerSlot>();
                    crate::answer::answer(
                        &dispatch_contract::operations::LIST,
                        &output,
                        slot,
                        &hint,
                    )
                    .map_err(|err| rpc_error(&err))
                }
            })
            .expect("echo");
        module
    }

    const SLOW: Duration = Duration::from_millis(800);

    const TIGHT: Limits = Limits {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(200),
    };

    struct Served {
        socket: std::path::PathBuf,
        started: tokio::sync::mpsc::UnboundedReceiver<()>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    fn serve_tight() -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve_with(
            listener,
            module(started_tx),
            async move {
                let _ = stopped.await;
            },
            TIGHT,
        ));
        Served {
            socket,
            started,
            stop: Some(stop),
            _dir: dir,
        }
    }

    async fn client(socket: &std::path::Path) -> Result<Client, WsHandshakeError> {
        let stream = UnixStream::connect(socket).await.expect("connect");
        let url = Url::parse("ws://dispatchd.local/").expect("url");
        let (sender, receiver) = WsTransportClientBuilder::default()
            .build_with_stream(url, stream)
            .await?;
        Ok(ClientBuilder::default().build_with_tokio(sender, receiver))
    }

    /// Reads until the daemon closes the connection (end-of-file); how long that took.
    async fn closed_after(mut stream: UnixStream) -> Duration {
        let started = Instant::now();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
            .await
            .expect("closed within 10 s");
        assert!(read.is_ok());
        started.elapsed()
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
        let served = serve_tight();
        let silent = UnixStream::connect(&served.socket).await.expect("connect");
        let waited = closed_after(silent).await;
        assert!(waited >= TIGHT.handshake_timeout, "{waited:?}");
    }

    #[tokio::test]
    async fn a_call_in_flight_outlives_the_idle_timeout_and_then_the_connection_is_closed() {
        let served = serve_tight();
        let client = client(&served.socket).await.expect("handshake");
        let answer: String = client
            .request("slow", rpc_params![])
            .await
            .expect("a slow call is not cut");
        assert_eq!(answer, "done");
        let answer: String = client.request("ping", rpc_params![]).await.expect("ping");
        assert_eq!(answer, "pong");
        // Idle now: closed once the idle timeout passes.
        tokio::time::timeout(Duration::from_secs(10), client.on_disconnect())
            .await
            .expect("the idle connection is closed");
    }

    #[tokio::test]
    async fn a_newcomer_closes_the_oldest_idle_connection_beyond_the_cap() {
        let served = serve_tight();
        let first = UnixStream::connect(&served.socket).await.expect("connect");
        let _second = UnixStream::connect(&served.socket).await.expect("connect");
        let third = client(&served.socket).await.expect("served");
        let answer: String = third.request("ping", rpc_params![]).await.expect("ping");
        assert_eq!(answer, "pong");
        let waited = closed_after(first).await;
        assert!(
            waited < TIGHT.handshake_timeout,
            "evicted, not timed out: {waited:?}"
        );
    }

    #[tokio::test]
    async fn when_every_connection_has_a_call_in_flight_a_newcomer_gets_503() {
        let mut served = serve_tight();
        let mut calls = Vec::new();
        for _ in 0..2 {
            let busy = Arc::new(client(&served.socket).await.expect("served"));
            calls.push(tokio::spawn(async move {
                busy.request::<String, _>("slow", rpc_params![]).await
            }));
        }
        for _ in 0..2 {
            served.started.recv().await.expect("a call started");
        }
        let refused = client(&served.socket).await;
        assert!(
            matches!(
                refused,
                Err(WsHandshakeError::Rejected { status_code: 503 })
            ),
            "{refused:?}"
        );
        for call in calls {
            let answer = call.await.expect("joined").expect("not cut");
            assert_eq!(answer, "done");
        }
    }

    /// The one-shot path: a plain HTTP/1.1 POST, no WebSocket handshake, on the same socket
    /// and under the same limits.
    #[tokio::test]
    async fn a_one_shot_post_is_answered_and_a_call_in_flight_outlives_the_idle_timeout() {
        let served = serve_tight();
        let client = crate::oneshot::connect_for_test(&served.socket).await;
        let answer = client
            .call(body_of("ping", &json!({})))
            .await
            .expect("answered");
        assert_eq!(parsed(answer), Ok(json!("pong")));
        // Kept alive: a second call on the same connection, longer than the idle timeout.
        let answer = client
            .call(body_of("slow", &json!({})))
            .await
            .expect("not cut");
        assert_eq!(parsed(answer), Ok(json!("done")));
        let unknown = client
            .call(body_of("nope", &json!({})))
            .await
            .expect("answered");
        assert_eq!(
            unknown.expect_err("no such method")["code"],
            json!(jsonrpsee::types::ErrorCode::MethodNotFound.code())
        );
    }

    #[tokio::test]
    async fn when_every_connection_has_a_call_in_flight_a_one_shot_call_gets_503() {
        let mut served = serve_tight();
        let mut calls = Vec::new();
        for _ in 0..2 {
            let busy = crate::oneshot::connect_for_test(&served.socket).await;
            calls.push(tokio::spawn(async move {
                busy.call(body_of("slow", &json!({})))
                    .await
                    .map_err(|e| format!("{e:?}"))
            }));
        }
        for _ in 0..2 {
            served.started.recv().await.expect("a call started");
        }
        let refused = crate::oneshot::connect_for_test(&served.socket).await;
        let answer = refused
            .call(body_of("ping", &json!({})))
            .await
            .expect("an answer");
        let error = answer.expect_err("refused");
        assert_eq!(error["data"]["code"], "daemon_unreachable", "{error}");
        assert_eq!(error["data"]["hint"], full_hint(), "{error}");
        for call in calls {
            let answer = call.await.expect("joined").expect("not cut");
            assert_eq!(parsed(answer), Ok(json!("done")));
        }
    }

    #[tokio::test]
    async fn a_one_shot_request_over_the_size_cap_is_invalid_input() {
        let served = serve_tight();
        let client = crate::oneshot::connect_for_test(&served.socket).await;
        let big = "x".repeat(MAX_REQUEST_BYTES as usize + 1);
        let answer = client.call(body_of("ping", &json!({ "text": big }))).await;
        let error = answer.expect("an answer").expect_err("refused");
        assert_eq!(error["data"]["code"], "invalid_input", "{error}");
    }

    /// The daemon reads a one-shot request of exactly [`MAX_REQUEST_BYTES`] and refuses one
    /// byte more: the limit that `EncodedCall` counts its body against, byte for byte.
    #[tokio::test]
    async fn a_one_shot_request_of_exactly_the_limit_is_read() {
        let served = serve_tight();
        let limit = MAX_REQUEST_BYTES as usize;
        let empty = body_of("ping", &json!({ "text": "" })).len();
        let sized = |bytes: usize| body_of("ping", &json!({ "text": "x".repeat(bytes - empty) }));
        let at = sized(limit);
        assert_eq!(at.len(), limit);
        let client = crate::oneshot::connect_for_test(&served.socket).await;
        let answer = client.call(at).await.expect("an answer");
        assert_eq!(parsed(answer), Ok(json!("pong")));
        let client = crate::oneshot::connect_for_test(&served.socket).await;
        let answer = client.call(sized(limit + 1)).await;
        let error = answer.expect("an answer").expect_err("refused");
        assert_eq!(error["data"]["code"], "invalid_input", "{error}");
    }

    /// A single call's answer is the buffer its method wrote (not jsonrpsee's placeholder),
    /// with the call's id; the same method answers the same on a WebSocket and in a batch.
    #[tokio::test]
    async fn a_single_call_is_answered_with_the_buffer_its_method_wrote() {
        let served = serve_tight();
        let one_shot = crate::oneshot::connect_for_test(&served.socket).await;
        for size in [0, 10, 300_000, 40] {
            let answer = one_shot
                .call(body_of("echo", &json!([size])))
                .await
                .expect("answered");
            let result = parsed(answer).expect("a result");
            assert_eq!(result["size"], json!(size));
            assert_eq!(result["text"].as_str().map(str::len), Some(size / 2 * 2));
        }
        let ws = client(&served.socket).await.expect("ws");
        let result: serde_json::Value = ws
            .request("echo", rpc_params![300_000])
            .await
            .expect("ws answer");
        assert_eq!(result["size"], json!(300_000));
        let batch = r#"[{"jsonrpc":"2.0","id":"a","method":"echo","params":[4]},{"jsonrpc":"2.0","id":2,"method":"echo","params":[6]}]"#;
        let answers: serde_json::Value =
            serde_json::from_str(&raw_post(&served.socket, batch).await).expect("json");
        let sizes: Vec<_> = answers
            .as_array()
            .expect("a batch answer")
            .iter()
            .map(|a| (a["id"].clone(), a["result"]["size"].clone()))
            .collect();
        assert!(sizes.contains(&(json!("a"), json!(4))), "{answers}");
        assert!(sizes.contains(&(json!(2), json!(6))), "{answers}");
        let single = r#"{"jsonrpc":"2.0","id":"x\"y","method":"echo","params":[2]}"#;
        let answer: serde_json::Value =
            serde_json::from_str(&raw_post(&served.socket, single).await).expect("json");
        assert_eq!(answer["id"], json!("x\"y"), "{answer}");
        assert_eq!(answer["result"]["size"], json!(2), "{answer}");
    }

    /// An answer over the limit is dispatch's own typed error naming the limit (jsonrpsee's
    /// oversize error has -32008, which a client reads as `lane_archived`), on both paths.
    #[tokio::test]
    async fn an_answer_over_the_limit_is_a_typed_error_on_every_path() {
        let served = serve_tight();
        let one_shot = crate::oneshot::connect_for_test(&served.socket).await;
        let size = crate::answer::MAX_ANSWER_BYTES;
        let error = one_shot
            .call(body_of("echo", &json!([size])))
            .await
            .expect("answered")
            .expect_err("too large");
        assert_eq!(error["data"]["code"], "internal", "{error}");
        assert_eq!(
            error["data"]["details"]["limit_bytes"],
            json!(crate::answer::MAX_ANSWER_BYTES),
            "{error}"
        );
        let ws = client(&served.socket).await.expect("ws");
        let error = ws
            .request::<serde_json::Value, _>("echo", rpc_params![size])
            .await
            .expect_err("too large");
        let jsonrpsee::core::client::Error::Call(error) = error else {
            panic!("{error:?}");
        };
        let data: serde_json::Value =
            serde_json::from_str(error.data().map_or("null", |d| d.get())).expect("data");
        assert_eq!(data["code"], "internal", "{data}");
        // A batch whose answers add up to more than the limit, each under it.
        let half = crate::answer::MAX_ANSWER_BYTES * 6 / 10;
        let batch = format!(
            r#"[{{"jsonrpc":"2.0","id":1,"method":"echo","params":[{half}]}},{{"jsonrpc":"2.0","id":2,"method":"echo","params":[{half}]}}]"#
        );
        let answer: serde_json::Value =
            serde_json::from_str(&raw_post(&served.socket, &batch).await).expect("json");
        assert_eq!(answer["error"]["data"]["code"], "internal", "{answer}");
        assert_eq!(
            answer["error"]["data"]["details"]["limit_bytes"],
            json!(crate::answer::MAX_ANSWER_BYTES),
            "{answer}"
        );
        // The daemon still serves calls (on a new connection: the first one may have passed
        // the tight idle timeout meanwhile).
        let one_shot = crate::oneshot::connect_for_test(&served.socket).await;
        let answer = one_shot
            .call(body_of("echo", &json!([8])))
            .await
            .expect("answered");
        assert_eq!(parsed(answer).expect("a result")["size"], json!(8));
    }

    /// POSTs `body` on a connection of its own and returns the answer's body.
    async fn raw_post(socket: &std::path::Path, body: &str) -> String {
        let mut stream = UnixStream::connect(socket).await.expect("connect");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: dispatchd.local\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered within 10 s")
            .expect("read");
        let answer = String::from_utf8(answer).expect("utf-8");
        let (_head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        body.to_owned()
    }

    /// A one-shot answer with its result text parsed.
    fn parsed(answer: crate::oneshot::Answer) -> Result<serde_json::Value, serde_json::Value> {
        answer.map(|text| serde_json::from_str(text.get()).expect("the result is JSON"))
    }

    #[test]
    fn the_throttle_allows_one_line_per_interval_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        throttle.last = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(throttle.allow(), Some(2));
    }
}
