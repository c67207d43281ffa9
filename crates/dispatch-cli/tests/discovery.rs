//! Discovery against the real codex 0.169.0 and the stub provider: `list --unmanaged` lists a
//! thread made directly with codex and not one that is attached; `list` over 250 lanes pages
//! with `next_cursor` and loses none; `history` of a lane with turns and a command.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use responses_stub::{Behaviour, Script};
use serde_json::Value;
use support::{Home, Stub, codex_thread};

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unmanaged_lists_codex_threads_that_are_not_lanes() {
    let stub = Stub::start(Script::new().default_reply("noted"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    let loose = codex_thread(&home, &cwd, "a thread nobody attached", None);
    let adopted = codex_thread(&home, &cwd, "a thread to attach", None);
    home.up();

    let before = home.json(&["list", "--unmanaged"]).ok_json();
    let listed = ids(&before, "threads", "id");
    assert!(listed.contains(&loose), "{before}");
    assert!(listed.contains(&adopted), "{before}");
    assert!(before["lanes"].as_array().is_some_and(Vec::is_empty));

    let attached = home.json(&["attach", &adopted]).ok_json();
    assert_eq!(attached["already_attached"], false);
    let after = home.json(&["list", "--unmanaged"]).ok_json();
    let listed = ids(&after, "threads", "id");
    assert!(listed.contains(&loose), "{after}");
    assert!(
        !listed.contains(&adopted),
        "an attached thread is a lane: {after}"
    );
    let thread = after["threads"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == loose.as_str()))
        .expect("the loose thread");
    assert_eq!(thread["cwd"], cwd.as_str());

    // The directory filter is Codex's: another directory has none of them.
    let elsewhere = tempfile::tempdir().expect("other cwd");
    let other = home
        .json(&[
            "list",
            "--unmanaged",
            "--cwd",
            &elsewhere.path().display().to_string(),
        ])
        .ok_json();
    assert!(!ids(&other, "threads", "id").contains(&loose), "{other}");

    // Pages of one, continued by the cursor, reach the loose thread and never the lane.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec!["list", "--unmanaged", "--limit", "1"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = home.json(&args).ok_json();
        seen.extend(ids(&page, "threads", "id"));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(seen.contains(&loose), "{seen:?}");
    assert!(!seen.contains(&adopted), "{seen:?}");
    home.json(&["down"]).ok_json();
}

#[test]
fn list_pages_over_250_lanes_lose_none() {
    let home = Home::new();
    // Seed the registry before the daemon starts: 250 lanes, some sharing an activity time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(home.path()).expect("home");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod home");
    }
    runtime.block_on(async {
        let registry = dispatch_registry::Registry::open(&home.file("registry.db"))
            .await
            .expect("registry");
        for n in 0..250 {
            let lane = registry
                .create_lane(&dispatch_registry::NewLane {
                    thread_id: format!("seeded-thread-{n:03}"),
                    title: Some(format!("seeded {n}")),
                    handle: None,
                    ownership: dispatch_registry::Ownership::Attached,
                    cwd: None,
                    model: None,
                })
                .await
                .expect("lane");
            registry
                .touch(&lane.lane_ref, 1_700_000_000_000 + n / 4)
                .await
                .expect("touch");
        }
        registry.close().await;
    });
    home.up();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["list", "--limit", "100"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = home.json(&args).ok_json();
        pages += 1;
        seen.extend(ids(&page, "lanes", "ref"));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        250,
        "no lane twice"
    );

    // The default page is 200, and says there is more.
    let first = home.json(&["list"]).ok_json();
    assert_eq!(first["lanes"].as_array().map(Vec::len), Some(200));
    let next = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let human = home.run(&["list", "--cursor", &next]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(!human.stdout.contains("more:"), "{}", human.stdout);
    let human_first = home.run(&["list", "--limit", "3"]);
    assert!(
        human_first.stdout.contains("more: add `--cursor "),
        "{}",
        human_first.stdout
    );

    // A cursor from another query is refused with a hint, before anything is listed.
    let refused = home.json(&["list", "--all", "--cursor", &next]);
    let error = refused.error("invalid_input");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("another query")),
        "{error}"
    );
    assert!(
        error["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{error}"
    );
    home.json(&["down"]).ok_json();
}

#[test]
fn history_shows_a_lanes_turns_and_tools() {
    let (home, stub) = Home::with_stub(
        Script::new()
            .then(Behaviour::text("first answer"))
            .then(Behaviour::exec_command("echo history-probe"))
            .follow_up_reply("ran it"),
    );
    let (lane, _work) = home.new_lane("historian", &["--text", "say something"]);
    home.json(&["wait", &lane, "--until", "idle", "--timeout", "90"])
        .ok_json();
    home.json(&["send", &lane, "run the probe"]).ok_json();
    stub.wait_for_requests(2);
    let waited = home
        .json(&["wait", &lane, "--until", "idle", "--timeout", "90"])
        .ok_json();
    assert_eq!(waited["timed_out"], false, "{waited}");
    let got = home.get_until(&lane, Duration::from_secs(60), |g| {
        g["counts"]["turns"] == 2 && g["lane"]["status"] == "idle"
    });
    assert_eq!(got["counts"]["turns"], 2, "{got}");

    let overview = home.json(&["history", "--no-git"]).ok_json();
    let row = overview["lanes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["ref"] == lane.as_str()))
        .expect("the lane's row")
        .clone();
    assert_eq!(row["turns"], 2, "{row}");
    assert!(row["messages"].as_u64().is_some_and(|m| m >= 4), "{row}");
    assert!(row["tool_calls"].as_u64().is_some_and(|t| t >= 1), "{row}");

    // With a lane the row carries the git facts of its directory, here not a repository,
    // and the lane was refreshed from Codex first; without one nothing is refreshed.
    assert!(overview["refresh"].is_null(), "{overview}");
    let one = home.json(&["history", &lane]).ok_json();
    assert_eq!(one["refresh"]["refreshed"], true, "{one}");
    assert!(
        one["refresh"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("refreshed from Codex: 2 turns")),
        "{one}"
    );
    assert_eq!(
        one["lanes"][0]["git"]["skipped"], "not a git repository",
        "{one}"
    );

    let turns = home.json(&["history", &lane, "--view", "turns"]).ok_json();
    let list = turns["turns"].as_array().expect("turns");
    assert_eq!(list.len(), 2, "{turns}");
    assert!(list.iter().all(|t| t["status"] == "completed"), "{turns}");
    assert!(list.iter().all(|t| t["duration_ms"].is_i64()), "{turns}");
    assert!(
        list[0]["tool_calls"].as_u64().is_some_and(|n| n >= 1),
        "newest first: {turns}"
    );

    let tools = home.json(&["history", &lane, "--view", "tools"]).ok_json();
    let command = tools["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tool"] == "command"))
        .expect("the command tool")
        .clone();
    assert!(command["calls"].as_u64().is_some_and(|n| n >= 1), "{tools}");

    let human = home.run(&["history", &lane, "--view", "turns"]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.contains("completed"), "{}", human.stdout);

    let found = home
        .json(&[
            "search",
            "history-probe",
            "--lane",
            &lane,
            "--type",
            "command",
        ])
        .ok_json();
    assert_eq!(found["hits"].as_array().map(Vec::len), Some(1), "{found}");
    let bad = home.json(&["search", "probe", "--since", "last tuesday"]);
    bad.error("invalid_input");
    home.json(&["down"]).ok_json();
}
