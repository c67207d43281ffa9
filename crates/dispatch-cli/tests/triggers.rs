//! Triggers end to end, against the real codex 0.169.0 and the stub model provider: an
//! `--every` trigger firing on schedule, schedules refused at `add`, a failing trigger that
//! stops no other, pause/resume/rm, `--on turn-completed`, `--idle-for`, fires missed while the
//! daemon was down coalesced into one, and fires that a crash left unfinished finished once.
//!
//! Proving that something does *not* fire needs time to pass: those tests wait for a "clock"
//! trigger (one whose fires fail at once on a lane held busy by a hanging turn, so they cost no
//! model request) to fire a few more times, which shows the scheduler ran past the due times.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use responses_stub::{Behaviour, Script};
use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use support::{Home, Stub};

const LONG: Duration = Duration::from_secs(90);

/// `dispatch trigger add ARGS --json`, asserted to succeed: the trigger.
fn add(home: &Home, args: &[&str]) -> Value {
    let mut all = vec!["trigger", "add"];
    all.extend_from_slice(args);
    home.json(&all).ok_json()["trigger"].clone()
}

/// The trigger named `name` as `trigger list` shows it (null when there is none).
fn trigger(home: &Home, name: &str) -> Value {
    let listed = home.json(&["trigger", "list"]).ok_json();
    listed["triggers"]
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn fires(trigger: &Value) -> i64 {
    trigger["fires"].as_i64().unwrap_or(0)
}

/// Waits (bounded) until trigger `name` satisfies `done`, pacing on the events of `lane`;
/// returns the trigger as last seen.
fn until(home: &Home, name: &str, lane: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LONG;
    loop {
        let found = trigger(home, name);
        if done(&found) || Instant::now() > deadline {
            return found;
        }
        let _ = home.json(&["watch", lane, "--timeout", "0.5", "--max-events", "1"]);
    }
}

/// How many model requests carried `text` as their newest user message.
fn asked(stub: &Stub, text: &str) -> usize {
    stub.requests()
        .iter()
        .filter(|r| r.user_texts().last().is_some_and(|t| t == text))
        .count()
}

/// A clock: lane `clock` holds a hanging turn, and trigger `clock` (every 1 s, `send`) fails
/// at once on it each time, without a model request. Call before anything else uses the stub.
fn clock(home: &Home, stub: &Stub) -> (String, tempfile::TempDir) {
    stub.push(Behaviour::Hang);
    let (lane, work) = home.new_lane("clock", &["--text", "hold"]);
    stub.wait_for_requests(1);
    add(
        home,
        &[
            "--name", "clock", "--lane", &lane, "--every", "1s", "--text", "tick",
        ],
    );
    (lane, work)
}

/// Waits until the clock fired `n` more times.
fn clock_ticks(home: &Home, clock_lane: &str, n: i64) {
    let start = fires(&trigger(home, "clock"));
    let seen = until(home, "clock", clock_lane, |t| fires(t) >= start + n);
    assert!(fires(&seen) >= start + n, "the clock stopped: {seen}");
}

/// Runs `sql` against the registry and returns its rows as strings (NULL as "").
fn rows(home: &Home, sql: &str) -> Vec<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Row;
        let url = format!("sqlite://{}", home.file("registry.db").display());
        let mut conn = SqliteConnection::connect(&url)
            .await
            .expect("open the registry");
        let found = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .expect("query the registry");
        let out = found
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .ok()
                            .flatten()
                            .or_else(|| {
                                row.try_get::<Option<i64>, _>(i)
                                    .ok()
                                    .flatten()
                                    .map(|n| n.to_string())
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        conn.close().await.expect("close");
        out
    })
}

/// The due times (ms) of trigger `id`'s deliveries, from their idempotency keys, in order.
fn delivered_due_times(home: &Home, id: i64) -> Vec<i64> {
    let keys = rows(
        home,
        &format!(
            "SELECT idempotency_key FROM deliveries WHERE source = 'trigger:{id}' \
             ORDER BY created_at_ms"
        ),
    );
    keys.iter()
        .filter_map(|r| r[0].rsplit(':').next().and_then(|n| n.parse().ok()))
        .collect()
}

#[test]
fn an_every_trigger_fires_on_schedule_and_list_shows_it() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ticked"));
    let (lane, _work) = home.new_lane("ticker", &[]);
    let text = "tick from the trigger";
    let added = add(
        &home,
        &[
            "--name", "tick", "--lane", &lane, "--every", "2s", "--text", text,
        ],
    );
    assert_eq!(added["kind"], "every", "{added}");
    assert_eq!(added["spec"], "2s");
    assert_eq!(added["schedule"], "every 2s");
    assert_eq!(added["mode"], "send");
    assert_eq!(added["paused"], false);
    assert_eq!(added["fires"], 0);
    assert_eq!(added["lane"]["ref"], lane.as_str());
    assert!(added["next_fire_at"].is_string(), "{added}");
    assert!(added["last_fired_at"].is_null());

    let seen = until(&home, "tick", &lane, |t| fires(t) >= 2);
    assert!(fires(&seen) >= 2, "{seen}");
    assert_eq!(seen["last_ok"], true, "{seen}");
    let outcome = seen["last_outcome"].as_str().expect("an outcome");
    assert!(outcome.starts_with("delivered: turn "), "{outcome}");
    assert!(seen["last_receipt"].is_string(), "{seen}");
    let last = seen["last_fired_at"].as_str().expect("last fired");
    let next = seen["next_fire_at"].as_str().expect("next fire");
    assert!(next > last, "the next fire comes after the last: {seen}");
    // Each delivered turn asks the model once; the last may still be on its way.
    stub.wait_for_requests(2);
    assert!(
        asked(&stub, text) >= 2,
        "the lane's turns carry the trigger's text"
    );
    // On schedule: consecutive due times are one period apart.
    let due = delivered_due_times(&home, seen["id"].as_i64().expect("id"));
    assert!(due.len() >= 2, "{due:?}");
    assert!(
        due.windows(2).all(|w| w[1] - w[0] == 2_000),
        "due times 2 s apart: {due:?}"
    );
    let log = home.json(&["daemon", "log"]).ok_json();
    let fired: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["op"] == "trigger_fire")
        .collect();
    assert!(fired.len() >= 2, "{log}");
    assert!(
        fired
            .iter()
            .all(|e| e["outcome"] == "ok" && e["lane"] == lane.as_str())
    );
    let human = home.run(&["trigger", "list"]);
    assert!(human.stdout.contains("every 2s"), "{human:?}");
}

#[test]
fn bad_schedules_are_refused_at_add_and_nothing_is_stored() {
    let (home, _stub) = Home::with_stub(Script::new());
    let (lane, _work) = home.new_lane("target", &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["--cron", "61 * * * *"], "five fields"),
        (&["--cron", "every morning"], "five fields"),
        (&["--cron", "0 0 30 2 *"], "matches no time"),
        (&["--every", "soon"], "`30s`, `5m`, `2h`, `1d`"),
        (&["--every", "0s"], "`30s`, `5m`, `2h`, `1d`"),
        (&["--every=-5m"], "`30s`, `5m`, `2h`, `1d`"),
        (&["--every", "500ms"], "at least 1 s"),
        (&["--idle-for", "0s"], "`30s`, `5m`, `2h`, `1d`"),
        (&["--every", "1mo"], "no fixed length"),
        (
            &["--cron", "0 9 * * *", "--tz", "Mars/Olympus"],
            "`Europe/Paris`",
        ),
        (&["--every", "5m", "--tz", "UTC"], "cron schedule only"),
        (&["--every", "5m", "--cron", "0 9 * * *"], "every and cron"),
        (&[], "none was given"),
        (&["--on", "approval"], "--mode queue"),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "trigger", "add", "--name", "bad", "--lane", &lane, "--text", "hi",
        ];
        args.extend_from_slice(extra);
        let refused = home.json(&args);
        assert_eq!(refused.code, 2, "{extra:?}: {refused:?}");
        let body = refused.error("invalid_input");
        let said = format!("{} {}", body["message"], body["hint"]);
        assert!(said.contains(needle), "{extra:?}: {said}");
    }
    let unknown = home.json(&[
        "trigger", "add", "--name", "bad", "--lane", "zzzzzz", "--every", "5m", "--text", "hi",
    ]);
    assert_eq!(unknown.code, 4, "{unknown:?}");
    unknown.error("not_found");
    assert_eq!(
        home.json(&["trigger", "list"]).ok_json()["triggers"],
        serde_json::json!([]),
        "nothing was stored"
    );

    add(
        &home,
        &[
            "--name", "dup", "--lane", &lane, "--every", "1h", "--text", "hi",
        ],
    );
    let again = home.json(&[
        "trigger",
        "add",
        "--name",
        "dup",
        "--lane",
        &lane,
        "--cron",
        "0 9 * * *",
        "--text",
        "x",
    ]);
    let body = again.error("invalid_input");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dispatch trigger rm dup")),
        "{body}"
    );
    home.json(&["archive", &lane]).ok_json();
    let archived = home.json(&[
        "trigger", "add", "--name", "late", "--lane", &lane, "--every", "5m", "--text", "x",
    ]);
    assert_eq!(archived.code, 6, "{archived:?}");
    archived.error("lane_archived");
    let listed = home.json(&["trigger", "list"]).ok_json();
    assert_eq!(
        listed["triggers"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[test]
fn a_failing_trigger_stops_no_other_and_is_recorded() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("fine"));
    // Lane `held` runs a turn that never ends: a `send` trigger on it fails each time.
    stub.push(Behaviour::Hang);
    let (held, _held_work) = home.new_lane("held", &["--text", "hold"]);
    stub.wait_for_requests(1);
    let (doomed, _doomed_work) = home.new_lane("doomed", &[]);
    let (healthy, _healthy_work) = home.new_lane("healthy", &[]);
    add(
        &home,
        &[
            "--name", "pushy", "--lane", &held, "--every", "1s", "--text", "now",
        ],
    );
    add(
        &home,
        &[
            "--name", "broken", "--lane", &doomed, "--every", "1s", "--text", "x",
        ],
    );
    add(
        &home,
        &[
            "--name",
            "fine",
            "--lane",
            &healthy,
            "--every",
            "1s",
            "--text",
            "fine tick",
        ],
    );
    home.json(&["archive", &doomed]).ok_json();

    let broken = until(&home, "broken", &healthy, |t| t["last_ok"] == false);
    assert_eq!(broken["last_ok"], false, "{broken}");
    let outcome = broken["last_outcome"].as_str().unwrap_or_default();
    assert!(outcome.contains("lane_archived"), "{outcome}");
    assert_eq!(
        broken["paused"], true,
        "a trigger whose lane is archived pauses: {broken}"
    );
    let pushy = until(&home, "pushy", &healthy, |t| {
        t["last_ok"] == false && fires(t) >= 2
    });
    assert!(
        pushy["last_outcome"]
            .as_str()
            .is_some_and(|o| o.contains("lane_busy")),
        "{pushy}"
    );
    assert_eq!(pushy["paused"], false, "a busy lane does not pause it");

    let before = fires(&trigger(&home, "fine"));
    let fine = until(&home, "fine", &healthy, |t| fires(t) >= before + 2);
    assert!(fires(&fine) >= before + 2, "{fine}");
    assert_eq!(fine["last_ok"], true, "{fine}");
    stub.wait_for_requests(3);
    assert!(asked(&stub, "fine tick") >= 2);

    let inbox = rows(
        &home,
        "SELECT lane_ref, subject, body, origin FROM inbox WHERE kind = 'trigger_result' \
         ORDER BY id",
    );
    assert!(
        inbox
            .iter()
            .any(|r| r[0] == doomed && r[1].contains("broken") && r[2].contains("lane_archived")),
        "{inbox:?}"
    );
    let busy: Vec<_> = inbox.iter().filter(|r| r[0] == held).collect();
    assert!(busy.len() >= 2, "one message per failed fire: {inbox:?}");
    let log = home.json(&["daemon", "log", "--limit", "500"]).ok_json();
    let entries = log["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|e| e["op"] == "trigger_fire"
        && e["outcome"] == "error"
        && e["error_code"] == "lane_archived"
        && e["lane"] == doomed.as_str()));
    assert!(entries.iter().any(|e| e["op"] == "trigger_fire"
        && e["error_code"] == "lane_busy"
        && e["lane"] == held.as_str()));
}

#[test]
fn pause_resume_and_rm_take_effect_at_once() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (clock_lane, _clock_work) = clock(&home, &stub);
    let (lane, _work) = home.new_lane("paced", &[]);
    let text = "paced tick";
    let added = add(
        &home,
        &[
            "--name", "paced", "--lane", &lane, "--every", "1s", "--text", text,
        ],
    );
    let id = added["id"].as_i64().expect("id").to_string();
    let seen = until(&home, "paced", &lane, |t| fires(t) >= 1);
    assert!(fires(&seen) >= 1, "{seen}");

    let paused = home.json(&["trigger", "pause", "paced"]).ok_json();
    assert_eq!(paused["trigger"]["paused"], true, "{paused}");
    assert!(paused["trigger"]["next_fire_at"].is_null());
    // A fire under way when it was paused still finishes; then nothing more.
    clock_ticks(&home, &clock_lane, 1);
    let count = fires(&trigger(&home, "paced"));
    // The clock's held turn, and one request per fire of `paced`.
    stub.wait_for_requests(1 + usize::try_from(count).expect("fires"));
    let asked_before = asked(&stub, text);
    clock_ticks(&home, &clock_lane, 3);
    assert_eq!(
        fires(&trigger(&home, "paced")),
        count,
        "a paused trigger does not fire"
    );
    assert_eq!(asked(&stub, text), asked_before);

    let resumed = home.json(&["trigger", "resume", &id]).ok_json();
    assert_eq!(resumed["trigger"]["paused"], false, "{resumed}");
    assert!(resumed["trigger"]["next_fire_at"].is_string());
    let seen = until(&home, "paced", &lane, |t| fires(t) > count);
    assert!(
        fires(&seen) > count,
        "a resumed trigger fires again: {seen}"
    );

    let removed = home.json(&["trigger", "rm", &id]).ok_json();
    assert_eq!(removed["removed"], true);
    assert_eq!(removed["trigger"]["name"], "paced");
    assert!(trigger(&home, "paced").is_null());
    clock_ticks(&home, &clock_lane, 1);
    let fired = usize::try_from(fires(&removed["trigger"])).expect("fires");
    stub.wait_for_requests(1 + fired);
    let asked_after_rm = asked(&stub, text);
    clock_ticks(&home, &clock_lane, 3);
    assert_eq!(
        asked(&stub, text),
        asked_after_rm,
        "a removed trigger does not fire"
    );
    let gone = home.json(&["trigger", "rm", "paced"]);
    assert_eq!(gone.code, 4, "{gone:?}");
    gone.error("not_found");
}

#[test]
fn an_on_turn_completed_trigger_fires_when_the_turn_completes() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("done"));
    let (lane, _work) = home.new_lane("worker", &[]);
    let follow_up = "and now the follow-up";
    add(
        &home,
        &[
            "--name",
            "follow",
            "--lane",
            &lane,
            "--on",
            "turn-completed",
            "--mode",
            "queue",
            "--text",
            follow_up,
        ],
    );
    let listed = trigger(&home, "follow");
    assert_eq!(listed["kind"], "on");
    assert_eq!(listed["spec"], "turn-completed");
    assert!(listed["next_fire_at"].is_null(), "{listed}");
    assert_eq!(
        asked(&stub, follow_up),
        0,
        "nothing before a turn completes"
    );

    home.json(&["send", &lane, "first task"]).ok_json();
    let seen = until(&home, "follow", &lane, |t| fires(t) >= 1);
    // Its own turn completes too and would set it off again: stop it here.
    home.json(&["trigger", "pause", "follow"]).ok_json();
    assert!(fires(&seen) >= 1, "{seen}");
    assert_eq!(seen["last_ok"], true, "{seen}");
    stub.wait_for_requests(2);
    assert!(asked(&stub, "first task") == 1);
    assert!(
        asked(&stub, follow_up) >= 1,
        "the follow-up reached the lane"
    );
}

#[test]
fn an_idle_for_trigger_fires_once_per_idle_period() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("still here"));
    let (clock_lane, _clock_work) = clock(&home, &stub);
    let (lane, _work) = home.new_lane("sleepy", &[]);
    let text = "still there?";
    let added = add(
        &home,
        &[
            "--name",
            "nudge",
            "--lane",
            &lane,
            "--idle-for",
            "2s",
            "--text",
            text,
        ],
    );
    assert!(
        added["next_fire_at"].is_string(),
        "an idle lane has a due time: {added}"
    );
    // The first nudge's turn completes; the second one's hangs, so the lane stays busy.
    stub.push(Behaviour::text("still here"));
    stub.push(Behaviour::Hang);
    let seen = until(&home, "nudge", &lane, |t| fires(t) >= 2);
    assert_eq!(fires(&seen), 2, "{seen}");
    assert_eq!(seen["last_ok"], true, "{seen}");
    // A busy lane is in no idle period: nothing fires while its turn runs.
    clock_ticks(&home, &clock_lane, 4);
    let after = trigger(&home, "nudge");
    assert_eq!(fires(&after), 2, "{after}");
    assert_eq!(
        after["last_ok"], true,
        "it never tried a busy lane: {after}"
    );
    assert!(after["next_fire_at"].is_null(), "{after}");
    assert_eq!(asked(&stub, text), 2);
    // The second nudge came at least 2 s after the first one's turn ended.
    let timing = rows(
        &home,
        &format!(
            "SELECT d.created_at_ms, t.completed_at_ms FROM deliveries d \
             LEFT JOIN turns t ON t.lane_ref = d.lane_ref AND t.turn_id = d.turn_id \
             WHERE d.source = 'trigger:{}' ORDER BY d.created_at_ms",
            added["id"]
        ),
    );
    assert_eq!(timing.len(), 2, "{timing:?}");
    let first_ended: i64 = timing[0][1].parse().expect("the first turn ended");
    let second_at: i64 = timing[1][0].parse().expect("created");
    assert!(second_at - first_ended >= 2_000, "{timing:?}");
}

#[test]
fn fires_missed_while_the_daemon_was_down_are_coalesced_into_one() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("steady", &[]);
    let text = "steady tick";
    let added = add(
        &home,
        &[
            "--name", "steady", "--lane", &lane, "--every", "2s", "--text", text,
        ],
    );
    let id = added["id"].as_i64().expect("id");
    let seen = until(&home, "steady", &lane, |t| fires(t) >= 1);
    assert!(fires(&seen) >= 1, "{seen}");
    home.json(&["down"]).ok_json();
    home.wait_daemon_gone();
    let fired = fires(&trigger_offline(&home, "steady"));
    // A fire under way at `down` is left unfinished and finished at `up`.
    let unfinished = rows(&home, "SELECT COUNT(*) FROM trigger_fires")[0][0]
        .parse::<i64>()
        .expect("a count");
    // The scenario itself: time passes while the daemon is down, past two periods.
    std::thread::sleep(Duration::from_millis(5_500));
    home.up();
    let seen = until(&home, "steady", &lane, |t| fires(t) > fired + unfinished);
    let log = home.json(&["daemon", "log", "--limit", "100"]).ok_json();
    let coalesced: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["op"] == "trigger_fire")
        .filter_map(|e| e["detail"].as_str())
        .filter(|d| d.contains("coalesced"))
        .collect();
    assert_eq!(
        coalesced.len(),
        1,
        "one fire for the missed ones: {seen} {coalesced:?}"
    );
    let n: i64 = coalesced[0]
        .split("coalesced ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the outcome says how many: {}", coalesced[0]));
    assert!(n >= 2, "{}", coalesced[0]);
    assert!(
        coalesced[0].contains("missed fires into one"),
        "{}",
        coalesced[0]
    );
    // One delivery per fire, each due time once, each reaching the model once.
    let due = delivered_due_times(&home, id);
    assert!(due.windows(2).all(|w| w[1] > w[0]), "{due:?}");
    stub.wait_for_requests(due.len());
    assert_eq!(asked(&stub, text), due.len());
}

/// A trigger as the registry holds it while the daemon is down: its fires.
fn trigger_offline(home: &Home, name: &str) -> Value {
    let found = rows(
        home,
        &format!("SELECT fires FROM triggers WHERE name = '{name}'"),
    );
    let fires: i64 = found.first().and_then(|r| r[0].parse().ok()).unwrap_or(0);
    serde_json::json!({ "fires": fires })
}

#[test]
fn a_kill_9_right_after_a_fire_does_not_fire_twice() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("sturdy", &[]);
    let text = "sturdy tick";
    let added = add(
        &home,
        &[
            "--name", "sturdy", "--lane", &lane, "--every", "2s", "--text", text,
        ],
    );
    let id = added["id"].as_i64().expect("id");
    // Right after the first fire reached the model: kill -9.
    stub.wait_for_requests(1);
    let pid = home.pidfile_pid().expect("the daemon's pid");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    home.wait_daemon_gone();
    let due_before = delivered_due_times(&home, id);
    assert_eq!(due_before.len(), 1, "{due_before:?}");
    home.up();
    let seen = until(&home, "sturdy", &lane, |t| fires(t) >= 3);
    assert!(fires(&seen) >= 3, "{seen}");
    let due = delivered_due_times(&home, id);
    assert_eq!(due[0], due_before[0]);
    assert!(
        due.windows(2).all(|w| w[1] > w[0]),
        "every due time delivered once: {due:?}"
    );
    stub.wait_for_requests(due.len());
    assert_eq!(
        asked(&stub, text),
        due.len(),
        "each delivery reached the model once"
    );
    assert!(
        rows(&home, "SELECT trigger_id FROM trigger_fires").is_empty(),
        "no fire left unfinished"
    );
}

#[test]
fn fires_a_crash_left_unfinished_are_finished_once() {
    let (home, stub) = Home::with_stub(Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("resumed", &[]);
    let text = "after the crash";
    let added = add(
        &home,
        &[
            "--name", "hourly", "--lane", &lane, "--every", "1h", "--text", text,
        ],
    );
    let id = added["id"].as_i64().expect("id");
    home.json(&["down"]).ok_json();
    home.wait_daemon_gone();
    // As a crash leaves them: one fire claimed and nothing delivered; one claimed whose
    // delivery was recorded (and handed over) before the daemon died.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = format!("sqlite://{}", home.file("registry.db").display());
        let mut conn = SqliteConnection::connect(&url).await.expect("open");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO trigger_fires (trigger_id, due_key, due_at_ms, created_at_ms) \
               VALUES ({id}, 'at:1000', 1000, 1000), ({id}, 'at:2000', 2000, 2000);
             INSERT INTO deliveries (id, lane_ref, mode, text, source, idempotency_key, \
               payload_hash, state, turn_id, created_at_ms, updated_at_ms) \
               VALUES ('rcpt-earlier', '{lane}', 'send', '{text}', 'trigger:{id}', \
               'trigger:{id}:at:2000', 'trigger:{id}', 'completed', 'turn-earlier', 2000, 2000);"
        )))
        .execute(&mut conn)
        .await
        .expect("insert");
        conn.close().await.expect("close");
    });
    home.up();
    let seen = until(&home, "hourly", &lane, |t| fires(t) >= 2);
    assert_eq!(fires(&seen), 2, "{seen}");
    stub.wait_for_requests(1);
    assert_eq!(
        asked(&stub, text),
        1,
        "only the fire that was never delivered is"
    );
    assert!(rows(&home, "SELECT trigger_id FROM trigger_fires").is_empty());
    let log = home.json(&["daemon", "log"]).ok_json();
    let details: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["op"] == "trigger_fire")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details
            .iter()
            .any(|d| d.contains("handed over before the daemon stopped")
                && d.contains("rcpt-earlier")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("delivered: turn ")),
        "{details:?}"
    );
}
