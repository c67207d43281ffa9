//! The subscription hand-off: how long after a subscribed lane's turn ends (its
//! `turn/completed`) the subscriber's turn starts (its `turn/started`), against the real Codex
//! with the stub as its model provider, and how much of that is dispatch's: the same
//! measurement of the App Server's own turn start (`turn/start` request → `turn/started`),
//! taken on a second App Server over the same Codex home, is subtracted.
//!
//! Both ends of the hand-off are read from the registry: each notification's `at_ms` is the
//! moment the daemon's event pump received it, so the figure is what dispatch itself sees.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use codex_app_server::protocol::{
    ServerNotification, ThreadStartParams, TurnStartParams, UserInput,
};
use codex_app_server::{AppServer as Codex, Event, SpawnOptions};
use dispatch_registry::Registry;

use super::env::{AppServer, Bins, Env, poll};
use super::lanes::{STUB_REPLY, Stub};
use super::{Row, fmt_duration, median};

/// What the benchmark reports.
pub fn handoff(bins: &Bins, runs: usize) -> anyhow::Result<Vec<Row>> {
    let stub = Stub::start(STUB_REPLY)?;
    let env = Env::new(bins, AppServer::Real, Some(&stub.base_url()), &[])?;
    env.up()?;
    let work = env.work().display().to_string();
    let lane = |name: &str| -> anyhow::Result<String> {
        let made = env.json(&["new", "--name", name, "--cwd", &work, "--no-send"])?;
        made["lane"]["ref"]
            .as_str()
            .map(str::to_owned)
            .context("lane.ref")
    };
    let (target, subscriber) = (lane("target")?, lane("subscriber")?);
    // The first turns of a fresh Codex home are slow; warm both threads up.
    for lane in [&target, &subscriber] {
        env.json(&["send", lane, "warm up"])?;
        env.json_within(
            &["wait", lane, "--until", "idle", "--timeout", "120"],
            Duration::from_secs(180),
        )?;
    }
    env.json(&[
        "subscribe",
        &target,
        "--to",
        &subscriber,
        "--every-time",
        "--tail",
        "1",
    ])?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registry = runtime.block_on(Registry::open(&env.home().join("registry.db")))?;
    let mut handoffs = Vec::with_capacity(runs);
    for n in 0..runs {
        let (after_target, after_subscriber) = runtime.block_on(async {
            Ok::<_, anyhow::Error>((
                registry.last_event_id(&target).await?,
                registry.last_event_id(&subscriber).await?,
            ))
        })?;
        env.json(&["send", &target, &format!("hand-off {n}")])?;
        let (ended, started) = poll(
            "the subscriber's turn started",
            Duration::from_secs(60),
            Duration::from_millis(5),
            || {
                runtime.block_on(async {
                    let ended =
                        first_at(&registry, &target, after_target, "turn/completed").await?;
                    let started =
                        first_at(&registry, &subscriber, after_subscriber, "turn/started").await?;
                    Ok(ended.zip(started))
                })
            },
        )?;
        ensure!(
            started >= ended,
            "the subscriber's turn started before the target's ended ({started} < {ended})"
        );
        handoffs.push(Duration::from_millis(u64::try_from(started - ended)?));
        // The next run starts with both lanes idle.
        for lane in [&target, &subscriber] {
            env.json_within(
                &["wait", lane, "--until", "idle", "--timeout", "60"],
                Duration::from_secs(90),
            )?;
        }
    }
    runtime.block_on(registry.close());
    env.down()?;

    let own = runtime.block_on(own_turn_start(bins, &env, runs))?;
    handoffs.sort();
    let mut beyond: Vec<Duration> = handoffs
        .iter()
        .map(|h| h.saturating_sub(median(&own)))
        .collect();
    beyond.sort();
    let beyond_median = median(&beyond);
    Ok(vec![
        Row::timing(
            "subscription hand-off: turn/completed → subscriber's turn/started",
            &handoffs,
        )
        .note("real codex + stub, times as the daemon received them".into()),
        Row::timing(
            "App Server's own turn start: turn/start → turn/started",
            &own,
        )
        .note("a second App Server over the same Codex home".into()),
        Row::timing("hand-off beyond the App Server's turn start", &beyond).target(format!(
            "goal ≤ 100 ms: {}",
            if beyond_median <= Duration::from_millis(100) {
                format!("met ({})", fmt_duration(beyond_median))
            } else {
                format!("missed ({})", fmt_duration(beyond_median))
            }
        )),
    ])
}

/// The `at_ms` of the lane's first stored event with `method` after event `after`.
async fn first_at(
    registry: &Registry,
    lane: &str,
    after: i64,
    method: &str,
) -> anyhow::Result<Option<i64>> {
    let events = registry.events_after(lane, after, 1000).await?;
    Ok(events.iter().find(|e| e.method == method).map(|e| e.at_ms))
}

/// `turn/start` → `turn/started` on an App Server of our own over the Codex home of `env`
/// (its daemon is down by now), `runs` times after a warm-up turn.
async fn own_turn_start(bins: &Bins, env: &Env, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let codex = Codex::spawn(
        SpawnOptions::new(bins.codex.clone())
            .codex_home(env.codex_home())
            .cwd(env.work()),
    )
    .await?;
    let result = async {
        let thread = codex
            .call(&ThreadStartParams {
                cwd: Some(env.work().display().to_string()),
                ..Default::default()
            })
            .await?
            .thread
            .id;
        let mut samples = Vec::with_capacity(runs);
        for n in 0..=runs {
            let mut events = codex.subscribe_thread(&thread);
            let start = Instant::now();
            codex
                .call(&TurnStartParams {
                    thread_id: thread.clone(),
                    input: vec![UserInput::text(format!("own turn {n}"))],
                    ..Default::default()
                })
                .await?;
            let mut started = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let event = tokio::time::timeout_at(deadline, events.recv())
                    .await
                    .context("the turn did not end within 60 s")?;
                let Some(Event::Notification(note)) = event else {
                    if event.is_none() {
                        bail!("the App Server went away");
                    }
                    continue;
                };
                match note.as_ref() {
                    ServerNotification::TurnStarted(_) if started.is_none() => {
                        started = Some(start.elapsed());
                    }
                    ServerNotification::TurnCompleted(_) => break,
                    _ => {}
                }
            }
            // The first turn warms the thread up, as the hand-off's lanes were.
            if n > 0 {
                samples.push(started.context("no turn/started before turn/completed")?);
            }
        }
        samples.sort();
        Ok::<_, anyhow::Error>(samples)
    }
    .await;
    codex.shutdown().await;
    result
}
