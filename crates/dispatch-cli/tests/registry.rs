//! The registry's schema version as users meet it: an old registry is refused until
//! `registry migrate` backs it up and upgrades it; a newer one is refused and left untouched.

mod support;

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use support::Home;

async fn execute(db: &Path, sql: &'static str) {
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url)
        .await
        .expect("open registry");
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .expect("execute");
    conn.close().await.expect("close");
}

async fn downgrade_to_v1(db: &Path) {
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url)
        .await
        .expect("open registry");
    sqlx::raw_sql(
        "INSERT INTO action_log (at_ms, op, outcome, detail) VALUES (1, 'legacy', 'ok', 'kept')",
    )
    .execute(&mut conn)
    .await
    .expect("insert");
    let later: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN \
         ('action_log', 'meta', '_sqlx_migrations') AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    sqlx::raw_sql("PRAGMA foreign_keys = OFF")
        .execute(&mut conn)
        .await
        .expect("pragma");
    for table in later {
        // Table names come from sqlite_master of the test's own file.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS \"{table}\""
        )))
        .execute(&mut conn)
        .await
        .expect("drop");
    }
    sqlx::raw_sql("DELETE FROM _sqlx_migrations WHERE version >= 2; PRAGMA user_version = 1;")
        .execute(&mut conn)
        .await
        .expect("forget migrations");
    conn.close().await.expect("close");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn an_old_registry_is_refused_until_migrated_with_a_backup() {
    let home = Home::new();
    assert_eq!(
        home.json(&["registry", "migrate"]).ok_json()["status"],
        "created"
    );
    let db = home.file("registry.db");
    // Turn it into a schema-1 registry, as an older dispatch left it: only schema 1's tables.
    block_on(downgrade_to_v1(&db));

    let refused = home.json(&["up"]);
    assert_eq!(refused.code, 10, "{refused:?}");
    let body = refused.error("registry_schema_too_old");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch registry migrate"))
    );

    let doctor = home.json(&["doctor", "--no-app-server"]);
    assert_eq!(doctor.code, 1, "doctor fails on an old registry");
    assert_eq!(doctor.json()["status"], "fail");

    let migrated = home.json(&["registry", "migrate"]).ok_json();
    assert_eq!(migrated["status"], "migrated");
    assert_eq!(migrated["from_version"], 1);
    assert_eq!(
        migrated["to_version"],
        dispatch_registry::LATEST_SCHEMA_VERSION
    );
    let backup = migrated["backup"].as_str().expect("a backup path");
    assert!(Path::new(backup).is_file(), "the backup exists");

    home.up();
    let ops = home.logged_ops();
    assert_eq!(
        ops,
        ["daemon_start", "registry_migrate", "legacy"],
        "history is kept"
    );

    let running = home.json(&["registry", "migrate"]);
    assert_eq!(running.code, 6);
    running.error("daemon_running");
    let allowed = home
        .json(&["registry", "migrate", "--allow-running"])
        .ok_json();
    assert_eq!(allowed["status"], "up_to_date");
}

#[test]
fn a_newer_registry_is_refused_and_left_untouched() {
    let home = Home::new();
    home.json(&["registry", "migrate"]).ok_json();
    let db = home.file("registry.db");
    block_on(execute(
        &db,
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (99, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0);",
    ));
    let before = std::fs::read(&db).expect("read registry");

    let up = home.json(&["up"]);
    assert_eq!(up.code, 10, "{up:?}");
    up.error("registry_schema_too_new");
    let migrate = home.json(&["registry", "migrate"]);
    assert_eq!(migrate.code, 10);
    migrate.error("registry_schema_too_new");
    assert_eq!(
        std::fs::read(&db).expect("read registry"),
        before,
        "the file is untouched"
    );
}

#[test]
fn a_garbage_registry_is_reported_corrupt() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    std::fs::write(
        home.file("registry.db"),
        b"this is not sqlite, not at all, no",
    )
    .expect("write");
    let up = home.json(&["up"]);
    assert_eq!(up.code, 11, "{up:?}");
    up.error("registry_corrupt");
    let doctor = home.json(&["doctor", "--no-app-server"]);
    assert_eq!(doctor.json()["status"], "fail");
}
