//! Method registration (hash check, input validation, error mapping) and serving an
//! [`RpcModule`] on a Unix socket.

use std::future::Future;
use std::sync::Arc;

use dispatch_contract::{
    Dispatch, DispatchError, ErrorCode, Intent, Request, Surface, decode_input, encode_output,
};
use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, serve_with_graceful_shutdown, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::UnixListener;

/// The params of every dispatch method.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallParams {
    /// The caller's contract hash of the operation; omitted by hand-made calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_hash: Option<String>,
    /// The operation's input; `{}` when omitted.
    #[serde(default)]
    pub input: Option<Value>,
    /// The front end the caller serves (`mcp`); hints in the answer are in its words. The
    /// CLI's when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface: Option<Surface>,
}

/// The JSON-RPC error object for `err`.
pub fn rpc_error(err: &DispatchError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        err.code.jsonrpc_code(),
        err.message.clone(),
        Some(err.body()),
    )
}

fn parse_params(params: &Params<'_>) -> Result<CallParams, DispatchError> {
    match params.as_str() {
        None => Ok(CallParams::default()),
        Some(text) => serde_json::from_str(text).map_err(|err| {
            DispatchError::invalid_input(format!(
                "params must be {{\"contract_hash\": .., \"input\": {{..}}}}: {err}"
            ))
        }),
    }
}

/// Registers the method of `R`'s operation: checks the caller's contract hash, validates the
/// input against the contract, then calls `handler`.
pub fn register<D, R, F, Fut>(module: &mut RpcModule<D>, handler: F)
where
    D: Dispatch,
    R: Request,
    F: Fn(Arc<D>, R) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Output, DispatchError>> + Send + 'static,
{
    let op = R::OPERATION;
    let registered = module.register_async_method(op.id, move |params, service, _| {
        let handler = handler.clone();
        let params = parse_params(&params);
        let surface = params
            .as_ref()
            .ok()
            .and_then(|p| p.surface)
            .unwrap_or_default();
        surface.scope(async move {
            let result = async {
                let params = params?;
                if let Some(hash) = params.contract_hash.as_deref()
                    && hash != op.contract_hash
                {
                    return Err(DispatchError::new(
                        ErrorCode::DaemonStale,
                        format!(
                            "the daemon serves a different contract of `{}` than this client",
                            op.title
                        ),
                    )
                    .with_details(json!({
                        "op": op.id,
                        "client_hash": hash,
                        "daemon_hash": op.contract_hash,
                        "idle": service.idle(),
                    })));
                }
                let raw = params.input.unwrap_or_else(|| json!({}));
                let input = decode_input::<R>(raw.clone())?;
                if op.writes_history {
                    service.authorize_history_write(op, &raw).await?;
                }
                let outcome = match handler(Arc::clone(&service), input).await {
                    Ok(output) => encode_output(output),
                    Err(err) => Err(err),
                };
                if op.intent != Intent::Read {
                    service.record_write(op, &raw, outcome.as_ref()).await;
                }
                outcome
            }
            .await;
            result.map_err(|err| rpc_error(&err))
        })
    });
    if let Err(err) = registered {
        // Ids are unique by the contract lint; this only fires on a codegen defect.
        tracing::error!(op = op.id, %err, "could not register an RPC method");
    }
}

/// Serves `module` on `listener` until `shutdown` resolves, then lets in-flight calls finish.
pub async fn serve<D: Send + Sync + 'static>(
    listener: UnixListener,
    module: RpcModule<D>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_handle, server_handle) = stop_channel();
    let service_builder = Server::builder().to_service_builder();
    let methods: jsonrpsee::Methods = module.into();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::warn!(%err, "accepting a connection failed");
                        continue;
                    }
                };
                let service = service_builder.clone().build(methods.clone(), stop_handle.clone());
                let stopped = stop_handle.clone().shutdown();
                connections.spawn(async move {
                    if let Err(err) = serve_with_graceful_shutdown(stream, service, stopped).await {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _already_stopped = server_handle.stop();
    while connections.join_next().await.is_some() {}
}
