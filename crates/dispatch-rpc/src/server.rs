//! Method registration: hash check, input validation, error mapping. Serving the module on
//! the socket is `listener`'s job.

use std::future::Future;
use std::sync::Arc;

use dispatch_contract::{
    Dispatch, DispatchError, ErrorCode, Intent, Request, decode_input, encode_output,
};
use jsonrpsee::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
        async move {
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
        }
    });
    if let Err(err) = registered {
        // Ids are unique by the contract lint; this only fires on a codegen defect.
        tracing::error!(op = op.id, %err, "could not register an RPC method");
    }
}
