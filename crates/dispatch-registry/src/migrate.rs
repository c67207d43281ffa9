//! Explicit upgrades of old registries, with a consistent backup taken first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnection;

use crate::actions::now_ms;
use crate::open::check_version;
use crate::probe::{self, Access, Schema};
use crate::{LATEST_SCHEMA_VERSION, Registry, RegistryError};

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    /// There was no registry (or an empty database); one was created at the latest version.
    Created,
    /// An older registry was backed up and upgraded.
    Migrated,
    /// The registry was already at the latest version; nothing was changed.
    UpToDate,
}

/// The outcome of [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// What happened.
    pub status: MigrationStatus,
    /// The schema version before, or `None` if the registry was created.
    pub from_version: Option<i64>,
    /// The schema version now ([`LATEST_SCHEMA_VERSION`]).
    pub to_version: i64,
    /// The backup taken before migrating (only for [`MigrationStatus::Migrated`]).
    pub backup: Option<PathBuf>,
}

/// Upgrades the registry at `path` to [`LATEST_SCHEMA_VERSION`].
///
/// Before any migration runs, a consistent copy is written with `VACUUM INTO` to
/// `<path>.bak-v<from>-<unix_ms>` (mode 0600) next to the file. A missing file (or empty
/// database) is created at the latest version without a backup; a registry already at the latest
/// version is left alone. A newer registry yields [`RegistryError::SchemaTooNew`] and a file
/// that is not a registry [`RegistryError::Corrupt`], both without touching the file.
pub async fn migrate(path: &Path) -> Result<MigrationReport, RegistryError> {
    if !probe::check_file(path)? {
        return create(path).await;
    }

    let mut conn = probe::connect_probe(path, Access::ReadWrite).await?;
    let from = match probe::read_schema(&mut conn, path).await {
        Ok(Schema::Version(from)) if from < LATEST_SCHEMA_VERSION => from,
        Ok(schema) => {
            probe::close_quietly(conn).await;
            return match schema {
                Schema::Empty => create(path).await,
                Schema::Version(found) => up_to_date(path, found).await,
            };
        }
        Err(err) => {
            probe::close_quietly(conn).await;
            return Err(err);
        }
    };

    let backup = probe::sidecar(path, &format!(".bak-v{from}-{}", now_ms()));
    let backed_up = back_up(&mut conn, path, &backup).await;
    probe::close_quietly(conn).await;
    backed_up?;

    let registry = Registry::connect_and_migrate(path).await?;
    let to_version = registry.schema_version().await;
    registry.close().await;
    Ok(MigrationReport {
        status: MigrationStatus::Migrated,
        from_version: Some(from),
        to_version: to_version?,
        backup: Some(backup),
    })
}

/// Creates (or initialises an empty) registry at the latest version.
async fn create(path: &Path) -> Result<MigrationReport, RegistryError> {
    let registry = Registry::open(path).await?;
    let to_version = registry.schema_version().await;
    registry.close().await;
    Ok(MigrationReport {
        status: MigrationStatus::Created,
        from_version: None,
        to_version: to_version?,
        backup: None,
    })
}

/// Confirms a registry at version `found` is current (validating applied migrations by opening).
async fn up_to_date(path: &Path, found: i64) -> Result<MigrationReport, RegistryError> {
    check_version(path, found)?;
    Registry::open(path).await?.close().await;
    Ok(MigrationReport {
        status: MigrationStatus::UpToDate,
        from_version: Some(found),
        to_version: found,
        backup: None,
    })
}

/// Writes a consistent copy of the database to `backup`, a new file created with mode 0600.
///
/// On failure the partial backup is removed.
async fn back_up(
    conn: &mut SqliteConnection,
    path: &Path,
    backup: &Path,
) -> Result<(), RegistryError> {
    let target = backup.to_str().ok_or_else(|| {
        RegistryError::io(
            backup,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "backup path is not valid UTF-8",
            ),
        )
    })?;
    // `create_new` refuses to clobber an existing file; VACUUM INTO accepts an empty target.
    if !probe::create_private_file(backup)? {
        return Err(RegistryError::io(
            backup,
            std::io::ErrorKind::AlreadyExists.into(),
        ));
    }
    let vacuum = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut *conn)
        .await;
    if let Err(source) = vacuum {
        // Best effort: a half-written backup is worse than none.
        let _ = std::fs::remove_file(backup);
        return Err(RegistryError::db(
            path,
            "backing up before migrating",
            source,
        ));
    }
    Ok(())
}
