//! Threads dispatch did not make, against the real codex 0.169.0: a thread created directly
//! through `codex app-server` is found, renamed, archived and restored by its id, then
//! attached (observe-only), synced and searched.

mod support;

use std::time::Duration;

use codex_app_server::protocol::{ThreadListParams, ThreadListResponse};
use codex_app_server::{AppServer, SpawnOptions};
use responses_stub::Script;
use serde_json::Value;
use support::{Home, Stub, codex_bin, codex_thread};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn codex(home: &Home) -> AppServer {
    AppServer::spawn(SpawnOptions::new(codex_bin()).codex_home(home.codex_home()))
        .await
        .expect("codex app-server")
}

/// Codex's own view of a thread: (name, archived), from `thread/list`.
fn codex_view(home: &Home, id: &str) -> Option<(Option<String>, bool)> {
    runtime().block_on(async {
        let server = codex(home).await;
        let mut found = None;
        for archived in [false, true] {
            let listed: ThreadListResponse = server
                .call(&ThreadListParams {
                    archived: Some(archived),
                    limit: Some(100),
                    ..Default::default()
                })
                .await
                .expect("thread/list");
            if let Some(thread) = listed.data.iter().find(|t| t.id == id) {
                found = Some((thread.name.clone(), archived));
            }
        }
        server.shutdown().await;
        found
    })
}

fn hit_ids(search: &Value) -> Vec<String> {
    search["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unmanaged_threads_are_found_renamed_archived_attached_synced_and_searched() {
    let stub = Stub::start(Script::new().default_reply("the zebra is in the stable"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    let work = tempfile::tempdir().expect("cwd");
    let id = codex_thread(
        &home,
        &work.path().display().to_string(),
        "where is the zebra",
        Some("outside thread"),
    );
    home.up();

    let found = home
        .json(&["search", "zebra", "--scope", "unmanaged"])
        .ok_json();
    assert!(hit_ids(&found).contains(&id), "{found}");
    assert!(found["hits"][0]["ref"].is_null());

    let renamed = home.json(&["rename", &id, "renamed outside"]).ok_json();
    assert_eq!(renamed["scope"], "unmanaged");
    let archived = home.json(&["archive", &id]).ok_json();
    assert_eq!(archived["archived"], true);
    home.json(&["down"]).ok_json();
    assert_eq!(
        codex_view(&home, &id),
        Some((Some("renamed outside".into()), true))
    );
    home.up();
    home.json(&["restore", &id]).ok_json();
    home.json(&["down"]).ok_json();
    assert_eq!(
        codex_view(&home, &id),
        Some((Some("renamed outside".into()), false))
    );
    home.up();

    let attached = home
        .json(&["attach", &id, "--handle", "@outside"])
        .ok_json();
    let lane = attached["lane"]["ref"].as_str().expect("ref").to_owned();
    assert_eq!(attached["already_attached"], false);
    assert_eq!(attached["lane"]["ownership"], "attached");
    assert_eq!(attached["lane"]["writable"], false);
    assert!(attached["lane"]["write_locked_reason"].is_string());
    assert_eq!(attached["lane"]["title"], "renamed outside");
    let again = home.json(&["attach", &id]).ok_json();
    assert_eq!(again["already_attached"], true);
    assert_eq!(again["lane"]["ref"], lane.as_str());

    for args in [
        vec!["send", &lane, "hello"],
        vec!["stop", &lane],
        vec!["goal", "set", "@outside", "take over"],
        vec!["goal", "clear", &lane],
    ] {
        let blocked = home.json(&args);
        assert_eq!(blocked.code, 7, "{args:?}: {blocked:?}");
        blocked.error("attached_lane_write_blocked");
    }
    let empty = home.json(&["tail", &lane]).ok_json();
    assert!(
        empty["items"].as_array().is_some_and(Vec::is_empty),
        "metadata only until sync"
    );

    let synced = home.json(&["sync", &lane]).ok_json();
    assert_eq!(synced["turns"], 1);
    assert!(
        synced["items_added"].as_u64().is_some_and(|n| n >= 2),
        "{synced}"
    );
    let tail = home.json(&["tail", &lane]).ok_json();
    let texts: Vec<&str> = tail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"where is the zebra") && texts.contains(&"the zebra is in the stable"),
        "{tail}"
    );
    let resynced = home.json(&["sync", &lane]).ok_json();
    assert_eq!(
        (
            resynced["items_added"].clone(),
            resynced["items_updated"].clone()
        ),
        (0.into(), 0.into()),
        "idempotent"
    );

    let managed = home
        .json(&["search", "stable", "--scope", "managed"])
        .ok_json();
    assert_eq!(managed["hits"][0]["ref"], lane.as_str(), "{managed}");
    assert!(
        managed["hits"][0]["snippet"]
            .as_str()
            .is_some_and(|s| s.contains("stable"))
    );
    let all = home.json(&["search", "zebra"]).ok_json();
    assert!(
        all["hits"].as_array().is_some_and(|h| h
            .iter()
            .all(|h| h["id"] != id.as_str() || h["scope"] == "managed")),
        "a lane is not also listed as unmanaged: {all}"
    );
}

#[test]
fn attaching_an_unknown_thread_is_not_found_and_fts_syntax_is_text() {
    let home = Home::new();
    home.up();
    let unknown = home.json(&["attach", "019a0000-0000-7000-8000-000000000000"]);
    assert_eq!(unknown.code, 4, "{unknown:?}");
    unknown.error("not_found");
    for query in [
        "\"unbalanced",
        "zebra*",
        "a NEAR b",
        "(open",
        "NOT",
        "col:umn",
        "''",
        "AND OR",
    ] {
        let searched = home.json(&["search", query]);
        assert_eq!(searched.code, 0, "{query}: {searched:?}");
    }
}

#[test]
fn the_policy_can_allow_writes_on_attached_lanes() {
    let stub = Stub::start(Script::new().default_reply("taken over"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    let work = tempfile::tempdir().expect("cwd");
    let id = codex_thread(
        &home,
        &work.path().display().to_string(),
        "first words",
        Some("adopted"),
    );
    std::fs::create_dir_all(home.path()).expect("home");
    std::fs::write(
        home.file("config.toml"),
        "[policy]\nallow_attached_writes = true\n",
    )
    .expect("config");
    home.up();
    let attached = home.json(&["attach", &id]).ok_json();
    assert_eq!(attached["lane"]["writable"], true, "{attached}");
    let lane = attached["lane"]["ref"].as_str().expect("ref").to_owned();
    let sent = home.json(&["send", &lane, "carry on"]).ok_json();
    let turn = sent["turn_id"].as_str().expect("turn").to_owned();
    let got = home.get_until(&lane, Duration::from_secs(90), |g| {
        g["lane"]["latest_turn"]["id"] == turn.as_str()
            && g["lane"]["latest_turn"]["status"] == "completed"
    });
    assert_eq!(got["lane"]["latest_turn"]["status"], "completed", "{got}");
}
