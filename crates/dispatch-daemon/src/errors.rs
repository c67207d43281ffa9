//! Mapping of the daemon's internal failures to the contract's error codes.

use dispatch_contract::DispatchError;
use dispatch_registry::RegistryError;

/// The contract error for a registry failure.
pub fn registry_error(err: RegistryError) -> DispatchError {
    DispatchError::from(err)
}

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
