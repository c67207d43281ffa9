//! The daemon's middleware: per connection, calls in flight are marked (the idle sweeper
//! never closes a connection mid-call) and batches are capped; per HTTP request, the answer
//! to a body over the size cap is dispatch's own `invalid_input`, and a single call's answer
//! is the buffer its method wrote (see `answer`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dispatch_contract::DispatchError;
use hyper::header::UPGRADE;
use jsonrpsee::server::middleware::rpc::{Batch, Notification, RpcServiceT};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, MethodResponse};
use jsonrpsee::types::{Id, Request};
use serde_json::json;

use crate::answer::AnswerSlot;
use crate::connections::{Conn, InFlight};
use crate::listener::{MAX_BATCH, MAX_REQUEST_BYTES};
use crate::server::rpc_error;

/// RPC middleware of one connection: marks its calls in flight (so the sweeper never closes
/// a connection mid-call) and refuses batches over [`MAX_BATCH`].
#[derive(Clone)]
pub(crate) struct Activity<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Activity<S> {
    /// `inner`, on the connection `conn`.
    pub(crate) fn new(inner: S, conn: &Arc<Conn>) -> Activity<S> {
        Activity {
            inner,
            conn: Arc::clone(conn),
        }
    }
}

impl<S> RpcServiceT for Activity<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let in_flight = InFlight::start(&self.conn);
        // Only a single call comes here (a batch's calls go through `batch`): its method may
        // write the whole HTTP answer.
        if let Some(slot) = request.extensions().get::<AnswerSlot>() {
            slot.arm(&request.id);
        }
        let call = self.inner.call(request);
        async move {
            let response = call.await;
            drop(in_flight);
            response
        }
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let in_flight = InFlight::start(&self.conn);
        let size = requests.len();
        let inner = self.inner.clone();
        async move {
            let response = if size > MAX_BATCH {
                let err = DispatchError::invalid_input(format!(
                    "a batch may hold at most {MAX_BATCH} calls; this one holds {size}"
                ))
                .with_hint(format!(
                    "send at most {MAX_BATCH} calls per batch, or one call per request"
                ))
                .with_details(json!({ "limit": MAX_BATCH, "size": size }));
                MethodResponse::error(Id::Null, rpc_error(&err))
            } else {
                let response = inner.batch(requests).await;
                // jsonrpsee's own code for a batch answer over the limit is another dispatch
                // code's (`daemon_stale`): answer dispatch's typed error instead.
                if response.as_error_code()
                    == Some(jsonrpsee::types::error::TOO_BIG_BATCH_RESPONSE_CODE)
                {
                    MethodResponse::error(Id::Null, rpc_error(&crate::answer::too_large_batch()))
                } else {
                    response
                }
            };
            drop(in_flight);
            response
        }
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let in_flight = InFlight::start(&self.conn);
        let call = self.inner.notification(notification);
        async move {
            let response = call.await;
            drop(in_flight);
            response
        }
    }
}

/// The `invalid_input` error for a request over [`MAX_REQUEST_BYTES`].
pub(crate) fn too_large_error() -> DispatchError {
    DispatchError::invalid_input(format!(
        "the request is larger than the daemon accepts: at most {} MiB ({MAX_REQUEST_BYTES} bytes)",
        MAX_REQUEST_BYTES / (1024 * 1024)
    ))
    .with_hint("make the input smaller: split long text into several messages")
    .with_details(json!({ "limit_bytes": MAX_REQUEST_BYTES }))
}

/// HTTP middleware. jsonrpsee answers a body over the cap with HTTP 413 and its own JSON-RPC
/// error, whose code (-32007) is another dispatch code's; this replaces that body with
/// dispatch's `invalid_input` naming the limit. And a plain HTTP request (not a WebSocket
/// upgrade) gets an [`AnswerSlot`]: when its method wrote the answer there, that buffer is
/// the body, instead of jsonrpsee's placeholder.
#[derive(Debug, Clone)]
pub(crate) struct HttpAnswer<S>(pub(crate) S);

impl<S, B> tower::Service<HttpRequest<B>> for HttpAnswer<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest<B>) -> Self::Future {
        let slot = (!request.headers().contains_key(UPGRADE)).then(|| {
            let slot = AnswerSlot::default();
            request.extensions_mut().insert(slot.clone());
            slot
        });
        let answer = self.0.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if let Some(body) = slot.and_then(|slot| slot.take()) {
                return Ok(response.map(|_| HttpBody::new(http_body_util::Full::new(body))));
            }
            if response.status().as_u16() != 413 {
                return Ok(response);
            }
            let body =
                json!({"jsonrpc": "2.0", "id": null, "error": rpc_error(&too_large_error())});
            Ok(response.map(|_| HttpBody::from(body.to_string())))
        })
    }
}
