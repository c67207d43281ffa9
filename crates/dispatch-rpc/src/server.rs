//! Method registration: hash check, input validation, error mapping. Serving the module on
//! the socket is `listener`'s job.

use dispatch_contract::{
    Dispatch, DispatchError, ErrorCode, Handle, Request, Surface, decode_input, run_operation,
};
use jsonrpsee::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::answer::{AnswerSlot, SizeHint, answer};

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
/// input against the contract, then runs the daemon's `Handle<R>` through
/// [`run_operation`] (the attached-lane lock, the operation, the action log).
pub fn register<D, R>(module: &mut RpcModule<D>)
where
    D: Dispatch + Handle<R>,
    R: Request,
{
    let op = R::OPERATION;
    let hint = SizeHint::default();
    let registered = module.register_async_method(op.id, move |params, service, extensions| {
        let params = parse_params(&params);
        let slot = extensions.get::<AnswerSlot>().cloned();
        let hint = hint.clone();
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
                let input = decode_input::<R>(params.input.unwrap_or_else(|| json!({})))?;
                // Straight to JSON text, once, into the buffer that becomes the HTTP body
                // (see `answer`): an output tree (1,000 lanes) built only to be written out,
                // and copies of the text, were most of a large answer's cost.
                let output = run_operation(&*service, input).await?;
                answer(op, &output, slot.as_ref(), &hint)
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
