//! Looking at a registry file before trusting it: the file header, the connection options, and
//! the schema version recorded by sqlx, all without running any migration.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::RegistryError;

/// How long a connection waits for a lock held by another connection or process.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The 16-byte header every SQLite 3 database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The table in which sqlx records applied migrations.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What a registry file's schema looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// No tables at all: a brand-new (possibly zero-byte) database.
    Empty,
    /// The highest successfully applied migration version.
    Version(i64),
}

/// Returns whether `path` exists, after checking that an existing file looks like SQLite.
///
/// A zero-byte file counts as an (empty) SQLite database. Nothing is ever written. A symbolic
/// link at the path or at its `-wal`/`-shm` files is refused ([`RegistryError::Symlink`]):
/// SQLite would follow it.
pub(crate) fn check_file(path: &Path) -> Result<bool, RegistryError> {
    for file in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        if std::fs::symlink_metadata(&file).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(RegistryError::Symlink { path: file });
        }
    }
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(RegistryError::io(path, err)),
    };
    if !metadata.is_file() {
        return Err(RegistryError::corrupt(path, "not a regular file"));
    }
    if metadata.len() == 0 {
        return Ok(true);
    }
    let mut header = [0_u8; 16];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .map_err(|err| match err.kind() {
            ErrorKind::UnexpectedEof => {
                RegistryError::corrupt(path, "not a SQLite database (file too short)")
            }
            _ => RegistryError::io(path, err),
        })?;
    if &header != SQLITE_HEADER {
        return Err(RegistryError::corrupt(
            path,
            "not a SQLite database (bad file header)",
        ));
    }
    Ok(true)
}

/// Creates `path` as an empty file with mode 0600 unless it already exists.
///
/// Returns whether the file was created. SQLite gives the `-wal` and `-shm` files it creates
/// later the same permissions as the database file.
pub(crate) fn create_private_file(path: &Path) -> Result<bool, RegistryError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(RegistryError::io(path, err)),
    }
}

/// Options for the registry's read-write pool: WAL, synchronous=NORMAL, foreign keys, busy timeout.
pub(crate) fn pool_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", (-POOL_CACHE_KIB).to_string())
}

/// Page cache of each pooled connection, in KiB (SQLite's negative `cache_size`; SQLite's
/// default is 2,000 KiB). Reading every lane of 2,000 (`get`, `tail`) filled the four
/// connections' default caches and added 9 MiB to the daemon for good; a miss is served from
/// the operating system's cache of the file. The ingest connection sets its own.
pub(crate) const POOL_CACHE_KIB: i64 = 1024;

/// How a probing connection may touch the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write, but without changing the journal mode or any other persistent setting.
    ReadWrite,
    /// `SQLITE_OPEN_READONLY`; used when a WAL file exists, so recent commits are seen.
    ReadOnly,
    /// Read-only and `immutable=1`: SQLite creates no `-wal`/`-shm` files and takes no locks.
    Immutable,
}

/// Opens a single connection for probing. Never creates the file, never sets the journal mode.
pub(crate) async fn connect_probe(
    path: &Path,
    access: Access,
) -> Result<SqliteConnection, RegistryError> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(access != Access::ReadWrite)
        .immutable(access == Access::Immutable)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(RegistryError::db_with(path, "opening the database"))
}

/// Reads the schema version from sqlx's migrations table without modifying anything.
///
/// A database with tables but no (or an empty) migrations table is not a dispatch registry;
/// one with a migration that failed half-way is damaged. Both are reported as
/// [`RegistryError::Corrupt`].
pub(crate) async fn read_schema(
    conn: &mut SqliteConnection,
    path: &Path,
) -> Result<Schema, RegistryError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(RegistryError::db_with(path, "listing tables"))?;

    if tables.is_empty() {
        return Ok(Schema::Empty);
    }
    if !tables.iter().any(|name| name == MIGRATIONS_TABLE) {
        return Err(RegistryError::corrupt(
            path,
            format!("not a dispatch registry (it has tables but no {MIGRATIONS_TABLE} table)"),
        ));
    }

    let dirty: Option<i64> =
        sqlx::query_scalar("SELECT MIN(version) FROM _sqlx_migrations WHERE NOT success")
            .fetch_one(&mut *conn)
            .await
            .map_err(RegistryError::db_with(path, "reading applied migrations"))?;
    if let Some(version) = dirty {
        return Err(RegistryError::corrupt(
            path,
            format!("migration {version} was left partially applied"),
        ));
    }

    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await
            .map_err(RegistryError::db_with(path, "reading the schema version"))?;
    match version {
        Some(version) => Ok(Schema::Version(version)),
        None if tables.len() == 1 => Ok(Schema::Empty),
        None => Err(RegistryError::corrupt(
            path,
            "not a dispatch registry (it has tables but no applied migrations)",
        )),
    }
}

/// Opens a read-write probe connection, reads the schema and closes the connection again.
pub(crate) async fn probe_schema(path: &Path) -> Result<Schema, RegistryError> {
    let mut conn = connect_probe(path, Access::ReadWrite).await?;
    let schema = read_schema(&mut conn, path).await;
    close_quietly(conn).await;
    schema
}

/// Closes a probe connection; a failure to close a connection we only read from is harmless.
pub(crate) async fn close_quietly(conn: SqliteConnection) {
    // Nothing useful can be done if closing fails: the connection is dropped either way.
    let _ = conn.close().await;
}

/// `path` with `suffix` appended to its file name, e.g. `registry.db-wal`.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
