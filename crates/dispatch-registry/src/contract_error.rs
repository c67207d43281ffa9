//! How registry failures appear on dispatch's surfaces: as contract error codes.

use dispatch_contract::{DispatchError, ErrorCode};

use crate::RegistryError;

impl From<RegistryError> for DispatchError {
    fn from(err: RegistryError) -> DispatchError {
        let code = match &err {
            RegistryError::SchemaTooOld { .. } => ErrorCode::RegistrySchemaTooOld,
            RegistryError::SchemaTooNew { .. } => ErrorCode::RegistrySchemaTooNew,
            RegistryError::Corrupt { .. } => ErrorCode::RegistryCorrupt,
            RegistryError::LaneNotFound { .. } => ErrorCode::NotFound,
            RegistryError::Conflict { .. } => ErrorCode::InvalidInput,
            _ => ErrorCode::Internal,
        };
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        DispatchError::new(code, message)
    }
}
