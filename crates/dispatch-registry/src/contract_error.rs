//! How registry failures appear on dispatch's surfaces: as contract error codes.

use dispatch_contract::{DispatchError, ErrorCode, Hint, error_chain, operations};

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
            RegistryError::Conflict { what, .. } => {
                return DispatchError::invalid_input(what.clone()).with_hint(
                    Hint::new("choose another one; {0} shows every lane's title and handle")
                        .run(&operations::LIST, serde_json::json!({ "all": true })),
                );
            }
            RegistryError::Io { .. } => ErrorCode::RegistryUnwritable,
            RegistryError::Database { source, .. } if is_storage_failure(source) => {
                ErrorCode::RegistryUnwritable
            }
            _ => ErrorCode::Internal,
        };
        DispatchError::new(code, error_chain(&err))
    }
}

/// Whether SQLite failed because of the file or the disk (read-only, full, I/O error, cannot
/// open), not because of dispatch.
fn is_storage_failure(err: &sqlx::Error) -> bool {
    /// SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary result codes).
    const STORAGE: [i64; 4] = [8, 10, 13, 14];
    match err {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| STORAGE.contains(&(code & 0xff))),
        _ => false,
    }
}
