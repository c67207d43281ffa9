//! The registry's error type.

use std::path::{Path, PathBuf};

use sqlx::migrate::MigrateError;

/// Everything that can go wrong while opening, inspecting, migrating or using a registry.
///
/// Every variant names the registry file (or backup file) involved; the underlying cause,
/// when there is one, is available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry was written by an older dispatch; `dispatch registry migrate` upgrades it
    /// (the error's hint says so, in the words of the surface that shows it).
    #[error(
        "registry {path} has schema version {found}, older than the supported version {supported}"
    )]
    SchemaTooOld {
        /// The registry file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The schema version this binary knows ([`crate::LATEST_SCHEMA_VERSION`]).
        supported: i64,
    },

    /// The registry was written by a newer dispatch; this binary must not touch it.
    #[error(
        "registry {path} has schema version {found}, newer than the version {supported} this dispatch supports; upgrade dispatch"
    )]
    SchemaTooNew {
        /// The registry file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The schema version this binary knows ([`crate::LATEST_SCHEMA_VERSION`]).
        supported: i64,
    },

    /// The file is not a SQLite database, not a dispatch registry, or SQLite reports it damaged
    /// or unreadable.
    #[error("registry {path} is unusable: {detail}")]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The registry file, or its `-wal`/`-shm` file, is a symbolic link, which dispatch
    /// refuses to follow.
    #[error("{path} is a symbolic link; dispatch does not follow links for the registry")]
    Symlink {
        /// The link.
        path: PathBuf,
    },

    /// A filesystem operation on the registry (or its backup) failed.
    #[error("I/O error on registry file {path}")]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A query or connection failed.
    #[error("registry {path}: failed {context}")]
    Database {
        /// The registry file.
        path: PathBuf,
        /// What was being done, e.g. `"recording an action"`.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// A write would break a uniqueness rule, e.g. creating a second lane for a thread that
    /// already has one.
    #[error("registry {path}: {what}")]
    Conflict {
        /// The registry file.
        path: PathBuf,
        /// What conflicts, for humans, e.g. `"thread T already has lane abc123"`.
        what: String,
    },

    /// No lane has this ref.
    #[error("registry {path}: no lane has ref {lane_ref:?}")]
    LaneNotFound {
        /// The registry file.
        path: PathBuf,
        /// The ref that was asked for.
        lane_ref: String,
    },

    /// Every freshly generated lane ref was already taken (or retired), `attempts` times in a
    /// row. With 62^6 refs this means the random source is broken, not that refs ran out.
    #[error("registry {path}: no free lane ref after {attempts} attempts")]
    RefsExhausted {
        /// The registry file.
        path: PathBuf,
        /// How many refs were tried.
        attempts: u32,
    },

    /// The embedded migrations could not be applied (or an applied one no longer matches).
    #[error("registry {path}: applying migrations failed")]
    Migration {
        /// The registry file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: MigrateError,
    },
}

impl RegistryError {
    /// Builds an [`RegistryError::Io`].
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds a [`RegistryError::Corrupt`].
    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Builds a [`RegistryError::LaneNotFound`].
    pub(crate) fn lane_not_found(path: &Path, lane_ref: &str) -> Self {
        Self::LaneNotFound {
            path: path.to_path_buf(),
            lane_ref: lane_ref.to_owned(),
        }
    }

    /// Classifies a sqlx error: SQLite's "not a database", "corrupt" and "cannot open" results
    /// become [`RegistryError::Corrupt`], everything else [`RegistryError::Database`].
    pub(crate) fn db(path: &Path, context: &'static str, source: sqlx::Error) -> Self {
        if let Some(detail) = corruption_detail(&source) {
            return Self::corrupt(path, format!("{context}: {detail}"));
        }
        Self::Database {
            path: path.to_path_buf(),
            context,
            source,
        }
    }

    /// Returns a closure for `map_err` that calls [`RegistryError::db`].
    pub(crate) fn db_with(path: &Path, context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::db(path, context, source)
    }
}

/// SQLite primary result codes that mean "this file is not something we can read".
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The SQLite message if `error` carries a corruption-like result code.
fn corruption_detail(error: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let code: i64 = db.code()?.parse().ok()?;
    // Extended result codes keep the primary code in the low byte.
    matches!(
        code & 0xff,
        SQLITE_CORRUPT | SQLITE_CANTOPEN | SQLITE_NOTADB
    )
    .then(|| db.message().to_owned())
}
