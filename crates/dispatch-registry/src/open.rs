//! Opening a registry: creating it if missing, refusing foreign schema versions, migrating a new
//! database, and the handful of whole-database queries.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use crate::probe::{self, Access, Schema};
use crate::{LATEST_SCHEMA_VERSION, MIGRATOR, RegistryError};

/// Maximum number of pooled SQLite connections.
const MAX_CONNECTIONS: u32 = 4;

/// Page cache of the ingest connection, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// WAL pages after which a commit on the ingest connection checkpoints: never (`0`). A
/// checkpoint inside a commit made a flood's batches wait for it; the ingest checkpoints
/// instead once it has drained what arrived ([`Registry::checkpoint`]), which also writes the
/// pages every batch touches (the lanes, index leaves) back to the database once instead of
/// many times. The pool's connections keep SQLite's default (1000 pages).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 0;

/// An open registry: a small pool of read-write SQLite connections in WAL mode, plus one
/// connection dedicated to [`Registry::record`].
///
/// The dedicated connection keeps its page cache warm between batches: in WAL mode a
/// connection drops its cache whenever another one has written, which a pool handing out
/// connections in turn would make happen on every batch.
///
/// Cloning is cheap and shares the connections; [`Registry::close`] closes them for every
/// clone.
#[derive(Debug, Clone)]
pub struct Registry {
    pub(crate) pool: SqlitePool,
    /// The ingest connection, opened on first use.
    writer: Arc<Mutex<Option<SqliteConnection>>>,
    path: PathBuf,
}

/// Exclusive use of the ingest connection; see [`Registry::writer`].
pub(crate) struct Writer<'a> {
    guard: MutexGuard<'a, Option<SqliteConnection>>,
}

impl Writer<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> Option<&mut SqliteConnection> {
        self.guard.as_mut()
    }

    /// Drops the connection (after a failure), so that the next use opens a fresh one.
    pub(crate) fn discard(&mut self) {
        self.guard.take();
    }
}

impl Registry {
    /// Opens the registry at `path`.
    ///
    /// A missing file (or an empty database) is created with mode 0600 and migrated to
    /// [`LATEST_SCHEMA_VERSION`]; the parent directory must already exist. An existing registry
    /// with an older schema yields [`RegistryError::SchemaTooOld`] (run [`crate::migrate`]), a
    /// newer one [`RegistryError::SchemaTooNew`]; a file that is not a SQLite database, not a
    /// dispatch registry, or unreadable yields [`RegistryError::Corrupt`]. In all those error
    /// cases the file is left as it was.
    ///
    /// The pool uses WAL journaling, `synchronous=NORMAL`, foreign keys and a 5 s busy timeout.
    pub async fn open(path: &Path) -> Result<Registry, RegistryError> {
        if !probe::check_file(path)? {
            probe::create_private_file(path)?;
        }
        if let Schema::Version(found) = probe::probe_schema(path).await? {
            check_version(path, found)?;
        }
        let registry = Self::connect_and_migrate(path).await?;
        // Items a crash left unfolded (see `crate::items_fold`) are folded now.
        if let Err(err) = registry.fold_if_any().await {
            registry.close().await;
            return Err(err);
        }
        Ok(registry)
    }

    /// Folds new items in, without the ingest connection (a write lock) when there are none:
    /// a read on the pool that begins now sees every commit made before it.
    pub(crate) async fn fold_if_any(&self) -> Result<(), RegistryError> {
        if self.items_to_fold().await? {
            self.fold_items().await?;
        }
        Ok(())
    }

    /// Opens the pool and applies any pending embedded migrations, without version checks.
    ///
    /// Callers must have checked that the file is either empty or at a version we know.
    pub(crate) async fn connect_and_migrate(path: &Path) -> Result<Registry, RegistryError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(probe::pool_options(path))
            .await
            .map_err(RegistryError::db_with(path, "opening the connection pool"))?;
        let registry = Registry {
            pool,
            writer: Arc::new(Mutex::new(None)),
            path: path.to_path_buf(),
        };
        if let Err(err) = registry.migrate_pool().await {
            registry.close().await;
            return Err(err);
        }
        Ok(registry)
    }

    /// Runs the embedded migrator and mirrors the resulting version into `PRAGMA user_version`.
    async fn migrate_pool(&self) -> Result<(), RegistryError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| RegistryError::Migration {
                path: self.path.clone(),
                source,
            })?;
        let version = self.schema_version().await?;
        let user_version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(&self.path, "reading user_version"))?;
        if user_version != version {
            // PRAGMA arguments cannot be bound; `version` is an integer read from the database.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {version}"
            )))
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(&self.path, "setting user_version"))?;
        }
        Ok(())
    }

    /// Waits for exclusive use of the ingest connection, opening it if needed.
    pub(crate) async fn writer(&self) -> Result<Writer<'_>, RegistryError> {
        let mut guard = self.writer.lock().await;
        if guard.is_none() {
            let conn = probe::pool_options(&self.path)
                .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
                .pragma(
                    "wal_autocheckpoint",
                    WRITER_AUTOCHECKPOINT_PAGES.to_string(),
                )
                .connect()
                .await
                .map_err(RegistryError::db_with(
                    &self.path,
                    "opening the ingest connection",
                ))?;
            *guard = Some(conn);
        }
        Ok(Writer { guard })
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction on the writer connection: committed
    /// when it returns `Ok`, rolled back otherwise. After a failure the connection is
    /// dropped, so no half-finished transaction outlives it.
    pub(crate) async fn write_tx<T>(
        &self,
        context: &'static str,
        body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut writer = self.writer().await?;
        let Some(conn) = writer.conn() else {
            return Err(RegistryError::db(
                &self.path,
                context,
                sqlx::Error::PoolClosed,
            ));
        };
        let result = async {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(&self.path, context))?;
            match body(&mut *conn).await {
                Ok(value) => {
                    sqlx::query("COMMIT")
                        .execute(&mut *conn)
                        .await
                        .map_err(RegistryError::db_with(&self.path, context))?;
                    Ok(value)
                }
                Err(err) => Err(err),
            }
        }
        .await;
        if result.is_err() {
            writer.discard();
        }
        result
    }

    /// Folds the WAL into the database as far as no reader needs it
    /// (`PRAGMA wal_checkpoint(PASSIVE)` on the ingest connection, which does not checkpoint
    /// on commit), and gives back the ingest connection's page cache (`PRAGMA shrink_memory`:
    /// up to [`WRITER_CACHE_KIB`] that a flood filled and an idle daemon would otherwise keep).
    /// The ingest calls it between floods.
    pub async fn checkpoint(&self) -> Result<(), RegistryError> {
        let mut writer = self.writer().await?;
        let Some(conn) = writer.conn() else {
            return Ok(());
        };
        for pragma in ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA shrink_memory"] {
            sqlx::query(pragma)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(&self.path, "checkpointing the WAL"))?;
        }
        Ok(())
    }

    /// The registry file this registry was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest successfully applied migration version.
    pub async fn schema_version(&self) -> Result<i64, RegistryError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(RegistryError::db_with(
                    &self.path,
                    "reading the schema version",
                ))?;
        version.ok_or_else(|| RegistryError::corrupt(&self.path, "no applied migrations"))
    }

    /// Runs `PRAGMA quick_check`: `Ok(vec!["ok"])` when the database is fine, otherwise the
    /// problems SQLite reports, one per element.
    pub async fn quick_check(&self) -> Result<Vec<String>, RegistryError> {
        sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&self.pool)
            .await
            .map_err(RegistryError::db_with(&self.path, "running quick_check"))
    }

    /// Closes every pooled connection, waiting for them to be returned first, and leaves the
    /// registry as a single self-contained file when no other process has it open.
    pub async fn close(self) {
        if let Some(conn) = self.writer.lock().await.take() {
            // Nothing useful can be done if closing fails: the connection is dropped either way.
            let _ = conn.close().await;
        }
        self.pool.close().await;
        fold_wal(&self.path).await;
    }
}

/// Checkpoints a WAL left behind by a pool that has just been closed.
///
/// sqlx can close several pooled connections at the same moment; each then sees the others still
/// open, so none checkpoints the WAL on close and the `-wal`/`-shm` files stay behind. A single
/// connection that reads and closes is the last one, so SQLite checkpoints and removes them. If
/// another process has the registry open this does nothing, which is equally fine: the WAL is
/// durable either way. Failures are ignored for the same reason.
async fn fold_wal(path: &Path) {
    if !probe::sidecar(path, "-wal").exists() {
        return;
    }
    if let Ok(mut conn) = probe::connect_probe(path, Access::ReadWrite).await {
        // Any read opens the WAL, so that closing the connection checkpoints it.
        let _ = sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
            .execute(&mut conn)
            .await;
        probe::close_quietly(conn).await;
    }
}

/// Rejects any version other than [`LATEST_SCHEMA_VERSION`].
pub(crate) fn check_version(path: &Path, found: i64) -> Result<(), RegistryError> {
    match found.cmp(&LATEST_SCHEMA_VERSION) {
        Ordering::Equal => Ok(()),
        Ordering::Less => Err(RegistryError::SchemaTooOld {
            path: path.to_path_buf(),
            found,
            supported: LATEST_SCHEMA_VERSION,
        }),
        Ordering::Greater => Err(RegistryError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: LATEST_SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry in a new temporary directory, which lives as long as the returned guard.
    async fn fresh() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let registry = Registry::open(&dir.path().join("registry.sqlite"))
            .await
            .expect("open");
        (dir, registry)
    }

    /// Each pooled connection keeps a small page cache; the ingest connection a large one.
    #[tokio::test]
    async fn the_pool_and_the_ingest_connection_have_their_page_caches() {
        let (_dir, registry) = fresh().await;
        for _ in 0..MAX_CONNECTIONS {
            let pooled: i64 = sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(&registry.pool)
                .await
                .expect("pool cache_size");
            assert_eq!(pooled, -probe::POOL_CACHE_KIB);
        }
        let mut writer = registry.writer().await.expect("the ingest connection");
        let ingest: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(writer.conn().expect("opened"))
            .await
            .expect("ingest cache_size");
        assert_eq!(ingest, -WRITER_CACHE_KIB);
        drop(writer);
        registry.close().await;
    }

    /// The bundled SQLite is built with the options of `.cargo/config.toml` (ADR 0028): a build
    /// that lost them (another working directory, the variable dropped) fails here.
    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        let (_dir, registry) = fresh().await;
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&registry.pool)
            .await
            .expect("compile options");
        for wanted in ["DEFAULT_MEMSTATUS=0", "USE_ALLOCA"] {
            assert!(
                options.iter().any(|option| option == wanted),
                "{wanted} missing from {options:?}"
            );
        }
        registry.close().await;
    }
}
