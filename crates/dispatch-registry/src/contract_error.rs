//! How registry failures appear on dispatch's surfaces: as contract error codes.

use dispatch_contract::{DispatchError, ErrorCode, error_chain};

use crate::RegistryError;

impl From<RegistryError> for DispatchError {
    fn from(err: RegistryError) -> DispatchError {
        let code = match &err {
            RegistryError::SchemaTooOld { .. } => ErrorCode::RegistrySchemaTooOld,
            RegistryError::SchemaTooNew { .. } => ErrorCode::RegistrySchemaTooNew,
            RegistryError::Corrupt { .. } => ErrorCode::RegistryCorrupt,
            RegistryError::LaneNotFound { .. } => ErrorCode::NotFound,
            RegistryError::Symlink { path } => {
                return DispatchError::new(ErrorCode::PermissionDenied, error_chain(&err))
                    .with_hint(format!(
                        "move the link {} aside and point DISPATCH_DB at the real file",
                        path.display()
                    ));
            }
            RegistryError::Conflict { .. } => ErrorCode::InvalidInput,
            _ => ErrorCode::Internal,
        };
        DispatchError::new(code, error_chain(&err))
    }
}
