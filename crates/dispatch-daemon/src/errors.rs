//! Rendering of the daemon's internal failures for its log.

/// `err` and its sources, joined with `: `.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

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
