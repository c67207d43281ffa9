//! App Server failures as contract errors.

use dispatch_contract::error_chain;

/// The contract error for a failed App Server call: its own JSON-RPC errors are
/// `app_server_error` with its message; a lost or silent App Server is `app_server_unavailable`.
pub fn app_server_error(err: codex_app_server::Error) -> dispatch_contract::DispatchError {
    use dispatch_contract::{DispatchError, ErrorCode};
    let code = if err.rpc_error().is_some() {
        ErrorCode::AppServerError
    } else {
        ErrorCode::AppServerUnavailable
    };
    DispatchError::new(code, error_chain(&err))
}
