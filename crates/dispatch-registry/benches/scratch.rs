//! scratch
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use dispatch_registry::*;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::time::Instant;

const COLS: &str = "ref, thread_id, title, handle, ownership, cwd, model, status, archived, latest_turn_id, latest_turn_status, latest_turn_error, latest_turn_started_at_ms, latest_turn_completed_at_ms, latest_turn_duration_ms, goal_objective, goal_status, goal_token_budget, goal_tokens_used, token_usage, created_at_ms, updated_at_ms";

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let reg = Registry::open(&path).await.unwrap();
    let mut refs = vec![];
    for n in 0..1000 {
        let l = reg
            .create_lane(&NewLane {
                thread_id: format!("t{n}"),
                title: Some(format!("lane {n}")),
                handle: None,
                ownership: Ownership::Owned,
                cwd: Some("/x/y".into()),
                model: Some("gpt-5".into()),
            })
            .await
            .unwrap();
        reg.record(&[Recorded { lane_ref: l.lane_ref.clone(), event: None, facts: vec![Fact::TokenUsage(json!({"total": {"inputTokens": 1200, "outputTokens": 300, "totalTokens": 1500}, "last": {"inputTokens": 200}})), Fact::TurnStarted { turn_id: "turn-1".into(), at_ms: 5 }] }]).await.unwrap();
        refs.push(l.lane_ref);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let n = 200;
    let refs100 = serde_json::to_string(&refs[..100]).unwrap();
    let sql_json = format!(
        "SELECT json_group_array(json_array({COLS}) ORDER BY ref) FROM lanes WHERE ref IN (SELECT value FROM json_each(?))"
    );
    let s = Instant::now();
    let mut text = String::new();
    for _ in 0..n {
        text = sqlx::query_scalar(sqlx::AssertSqlSafe(sql_json.clone()))
            .bind(&refs100)
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    println!(
        "load 100 json sql: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let s = Instant::now();
    for _ in 0..n {
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(v.len(), 100);
    }
    println!(
        "parse 100 as Value: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let s = Instant::now();
    for _ in 0..n {
        let _: Vec<(String,)> =
            sqlx::query_as("SELECT ref FROM lanes WHERE ref IN (SELECT value FROM json_each(?))")
                .bind(&refs100)
                .fetch_all(&pool)
                .await
                .unwrap();
    }
    println!(
        "load 100 refs only rows: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let s = Instant::now();
    for _ in 0..n {
        let _: String = sqlx::query_scalar("SELECT 'x'")
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    println!(
        "trivial: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let cols_json = COLS.replace("token_usage", "json(token_usage)");
    for (name, sql) in [
        ("agg order + IN", format!("SELECT json_group_array(json_array({cols_json}) ORDER BY updated_at_ms DESC, ref) FROM lanes WHERE ref IN (SELECT ref FROM lanes WHERE archived = 0 ORDER BY updated_at_ms DESC, ref LIMIT -1)")),
        ("subquery order", format!("SELECT json_group_array(j) FROM (SELECT json_array({cols_json}) AS j FROM lanes WHERE archived = 0 ORDER BY updated_at_ms DESC, ref LIMIT -1)")),
        ("subquery order no json()", format!("SELECT json_group_array(j) FROM (SELECT json_array({COLS}) AS j FROM lanes WHERE archived = 0 ORDER BY updated_at_ms DESC, ref LIMIT -1)")),
        ("group_concat", format!("SELECT '[' || group_concat(j, ',') || ']' FROM (SELECT json_array({cols_json}) AS j FROM lanes WHERE archived = 0 ORDER BY updated_at_ms DESC, ref LIMIT -1)")),
        ("count only", "SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT ref FROM lanes WHERE archived = 0 ORDER BY updated_at_ms DESC, ref LIMIT -1)".to_string()),
    ] {
        let s = Instant::now();
        for _ in 0..n { text = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).fetch_one(&pool).await.unwrap(); }
        println!("{name}: {:.1} us ({} bytes)", s.elapsed().as_secs_f64()*1e6/n as f64, text.len());
    }
    let s = Instant::now();
    for _ in 0..n {
        let v = reg
            .list_lanes(&LaneFilter {
                include_archived: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(v.len(), 1000);
    }
    println!(
        "list_lanes 1000: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let sql_plain = format!("SELECT {COLS} FROM lanes ORDER BY updated_at_ms DESC, ref");
    let s = Instant::now();
    for _ in 0..n {
        let v = sqlx::query(sqlx::AssertSqlSafe(sql_plain.clone()))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(v.len(), 1000);
    }
    println!(
        "plain rows 1000: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
