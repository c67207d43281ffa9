//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

/// All embedded migrations, exactly as the library embeds them.
pub static ALL_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// A fresh temporary directory and a (not yet existing) registry path inside it.
pub fn registry_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.db");
    (dir, path)
}

/// A plain read-write connection to an existing file, for poking at it behind the library's back.
pub async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("raw connection")
}

/// Creates a schema-version-1 registry (only `0001_init.sql` applied) holding two actions.
pub async fn build_v1_registry(path: &Path) {
    let pool = pool_at_version(path, 1).await;
    sqlx::query(
        "INSERT INTO action_log (at_ms, op, lane, outcome, error_code, detail) VALUES \
         (1000, 'old.first', NULL, 'ok', NULL, NULL), \
         (2000, 'old.second', 'abc123', 'error', 'E_OLD', 'from v1')",
    )
    .execute(&pool)
    .await
    .expect("insert v1 actions");
    pool.close().await;
}

/// The `(op, lane, outcome, error_code, detail)` rows of `action_log`, oldest first.
pub async fn action_rows(
    conn: &mut SqliteConnection,
) -> Vec<(
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
)> {
    sqlx::query_as("SELECT op, lane, outcome, error_code, detail FROM action_log ORDER BY id")
        .fetch_all(conn)
        .await
        .expect("read action_log")
}

/// `PRAGMA user_version` of the file.
pub async fn user_version(path: &Path) -> i64 {
    let mut conn = raw(path).await;
    let version = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut conn)
        .await
        .expect("user_version");
    conn.close().await.expect("close");
    version
}

/// Permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// `path` with `suffix` appended to the file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether SQLite left `-wal`, `-shm` or `-journal` files next to `path`.
pub fn has_sidecars(path: &Path) -> bool {
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| with_suffix(path, suffix).exists())
}

/// Files in `dir` whose name contains `.bak-`.
pub fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains(".bak-"))
        .collect();
    found.sort();
    found
}

/// Deterministic pseudo-random bytes (xorshift64), so failures are reproducible.
pub fn garbage(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// An owned lane to create for `thread_id`, with everything else unset.
pub fn new_lane(thread_id: &str) -> dispatch_registry::NewLane {
    dispatch_registry::NewLane {
        thread_id: thread_id.to_owned(),
        title: None,
        handle: None,
        ownership: dispatch_registry::Ownership::Owned,
        cwd: None,
        model: None,
    }
}

/// Creates an owned lane for `thread_id` (as [`new_lane`]) and returns its ref.
pub async fn new_lane_ref(registry: &dispatch_registry::Registry, thread_id: &str) -> String {
    registry
        .create_lane(&new_lane(thread_id))
        .await
        .expect("create lane")
        .lane_ref
}

/// A pool on a new registry file at `path` with the migrations up to `version` applied (an
/// older schema, to migrate from).
pub async fn pool_at_version(path: &Path, version: i64) -> sqlx::SqlitePool {
    let migrations: Vec<_> = ALL_MIGRATIONS
        .iter()
        .filter(|migration| migration.version <= version)
        .cloned()
        .collect();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .expect("pool");
    Migrator::with_migrations(migrations)
        .run(&pool)
        .await
        .expect("apply the migrations");
    pool
}

/// A fresh registry in a temporary directory.
pub async fn open_registry() -> (TempDir, dispatch_registry::Registry) {
    let (dir, path) = registry_path();
    let registry = dispatch_registry::Registry::open(&path)
        .await
        .expect("open registry");
    (dir, registry)
}
