//! Chaos: 20 lanes mid-turn and `kill -9` of the daemon at random points, 20 times, against
//! the real codex 0.169.0 and the stub provider. Afterwards, within 5 s of `up`, no lane is
//! busy (nothing can run: every turn died with its App Server), every acknowledged send is in
//! its thread exactly once (read by a separate App Server on the same CODEX_HOME), and the
//! registry passes `PRAGMA integrity_check`.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use codex_app_server::protocol::{ThreadItem, ThreadTurnsListParams, TurnItemsView, UserInput};
use codex_app_server::{AppServer, SpawnOptions};
use responses_stub::{Behaviour, Pace, Script};
use serde_json::Value;
use support::Home;

const LANES: usize = 20;
const ROUNDS: usize = 20;

/// A small xorshift generator: random kill points that a failing seed can replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn slow_reply() -> Behaviour {
    Behaviour::SlowText {
        chunks: vec!["thinking ".into(); 10],
        pace: Pace::Every(Duration::from_millis(40)),
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_repeats_nothing() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    let (home, stub) = Home::with_stub(Script::new().default_reply("done"));
    for _ in 0..LANES * ROUNDS {
        stub.push(slow_reply());
    }
    let lanes: Vec<(String, tempfile::TempDir)> = (0..LANES)
        .map(|n| home.new_lane(&format!("chaos-{n}"), &[]))
        .collect();
    let refs: Vec<String> = lanes.iter().map(|(r, _)| r.clone()).collect();
    let home = std::sync::Arc::new(home);
    let mut acknowledged: Vec<(String, String)> = Vec::new();

    for round in 0..ROUNDS {
        let kill_after = rng.below(LANES);
        let (tx, rx) = mpsc::channel();
        let sender = {
            let (home, refs) = (home.clone(), refs.clone());
            std::thread::spawn(move || {
                for lane in &refs {
                    let text = format!("round {round} to {lane}");
                    let sent = home.json(&["send", lane, &text]);
                    let accepted = sent.code == 0 && sent.json()["message_accepted"] == true;
                    if tx.send((lane.clone(), text, accepted)).is_err() {
                        return;
                    }
                }
            })
        };
        // Kill the daemon after a random number of sends were answered, while turns run.
        for _ in 0..=kill_after {
            match rx.recv() {
                Ok((lane, text, true)) => acknowledged.push((lane, text)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let pid = home.pidfile_pid().expect("the daemon's pid");
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        // Sends after the kill fail (the daemon is gone) or were answered before it.
        sender.join().expect("sender");
        acknowledged.extend(
            rx.try_iter()
                .filter(|(_, _, accepted)| *accepted)
                .map(|(lane, text, _)| (lane, text)),
        );
        home.wait_daemon_gone();
        home.up();
    }

    // Within 5 s of `up` no lane is running: every turn died with its App Server.
    let deadline = Instant::now() + Duration::from_secs(5);
    let busy = loop {
        let busy: Vec<Value> = home.json(&["list", "--all", "--limit", "100"]).ok_json()["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .filter(|l| {
                matches!(
                    l["status"].as_str(),
                    Some("busy" | "retrying" | "waiting_approval")
                )
            })
            .cloned()
            .collect();
        if busy.is_empty() || Instant::now() > deadline {
            break busy;
        }
        std::thread::yield_now();
    };
    assert!(
        busy.is_empty(),
        "lanes busy without a running turn: {busy:?}"
    );
    assert!(
        acknowledged.len() >= ROUNDS,
        "the test acknowledged too few sends to mean anything: {}",
        acknowledged.len()
    );

    // Every acknowledged send is in its thread exactly once.
    let threads: HashMap<String, String> = refs
        .iter()
        .map(|lane| {
            let got = home.json(&["get", lane]).ok_json();
            (
                lane.clone(),
                got["lane"]["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let messages: HashMap<String, Vec<String>> = runtime.block_on(async {
        let reader =
            AppServer::spawn(SpawnOptions::new(support::codex_bin()).codex_home(home.codex_home()))
                .await
                .expect("a second App Server");
        let mut all = HashMap::new();
        for (lane, thread) in &threads {
            all.insert(lane.clone(), user_messages(&reader, thread).await);
        }
        reader.shutdown().await;
        all
    });
    for (lane, text) in &acknowledged {
        let seen = messages[lane].iter().filter(|m| *m == text).count();
        assert_eq!(
            seen,
            1,
            "`{text}` was acknowledged; it is in the thread {seen} times; the thread has {:?}; \
             dispatch's tail: {}",
            messages[lane],
            home.json(&["tail", lane, "--limit", "200"]).stdout
        );
    }

    home.json(&["down"]).ok_json();
    let integrity: Vec<String> = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            home.file("registry.db").display()
        ))
        .await
        .expect("open the registry");
        let rows = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .expect("integrity_check");
        conn.close().await.expect("close");
        rows
    });
    assert_eq!(integrity, vec!["ok".to_owned()]);
}

/// The text of every user message in the thread, oldest turn first.
async fn user_messages(server: &AppServer, thread_id: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut cursor = None;
    loop {
        let page = server
            .call(&ThreadTurnsListParams {
                thread_id: thread_id.to_owned(),
                cursor: cursor.take(),
                limit: Some(100),
                items_view: Some(TurnItemsView::Full),
                ..Default::default()
            })
            .await
            .expect("thread/turns/list");
        for turn in &page.data {
            for item in &turn.items {
                if let ThreadItem::UserMessage(message) = item {
                    for input in &message.content {
                        if let UserInput::Text { text, .. } = input {
                            texts.push(text.clone());
                        }
                    }
                }
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return texts,
        }
    }
}
