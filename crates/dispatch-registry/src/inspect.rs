//! A strictly read-only look at a registry file, for `dispatch doctor`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::probe::{self, Access, Schema};
use crate::{LATEST_SCHEMA_VERSION, RegistryError};

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    /// Whether the registry file exists.
    pub exists: bool,
    /// The schema version, or `None` if the file is missing or an empty database.
    pub schema_version: Option<i64>,
    /// The schema version this binary knows ([`LATEST_SCHEMA_VERSION`]).
    pub supported_version: i64,
    /// The result of `PRAGMA quick_check` (`["ok"]` when fine); empty if the file is missing.
    pub quick_check: Vec<String>,
}

/// Looks at the registry at `path` without creating, migrating or writing anything.
///
/// A missing file is reported as `exists: false`, not as an error. A file that is not a
/// SQLite database or not a dispatch registry yields [`RegistryError::Corrupt`]. Schema versions
/// other than [`LATEST_SCHEMA_VERSION`] are reported, not rejected.
///
/// If a `-wal` file sits next to the registry (a dispatch process has it open, or crashed),
/// the file is opened read-only so that committed WAL content is seen; otherwise it is opened
/// `immutable`, so SQLite creates no `-wal`/`-shm` files and takes no locks.
pub async fn inspect(path: &Path) -> Result<Inspection, RegistryError> {
    if !probe::check_file(path)? {
        return Ok(Inspection {
            exists: false,
            schema_version: None,
            supported_version: LATEST_SCHEMA_VERSION,
            quick_check: Vec::new(),
        });
    }

    let access = if probe::sidecar(path, "-wal").exists() {
        Access::ReadOnly
    } else {
        Access::Immutable
    };
    let mut conn = probe::connect_probe(path, access).await?;
    let result = async {
        let schema = probe::read_schema(&mut conn, path).await?;
        let quick_check: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&mut conn)
            .await
            .map_err(RegistryError::db_with(path, "running quick_check"))?;
        Ok(Inspection {
            exists: true,
            schema_version: match schema {
                Schema::Empty => None,
                Schema::Version(version) => Some(version),
            },
            supported_version: LATEST_SCHEMA_VERSION,
            quick_check,
        })
    }
    .await;
    probe::close_quietly(conn).await;
    result
}
