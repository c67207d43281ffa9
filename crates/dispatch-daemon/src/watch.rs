//! `watch`: a bounded live sample of a lane's events. It answers from the registry as the
//! event pump stores events, so what it shows is exactly what was persisted.

use std::time::Duration;

use dispatch_contract::types::{
    WatchEvent, WatchInput, WatchInputUntil, WatchOutput, WatchOutputEnded,
};
use dispatch_contract::{DispatchError, Handle};
use dispatch_registry::EventRow;
use serde_json::Value;

use crate::convert::{self, rfc3339};
use crate::reconcile::TURN_ENDED;
use crate::service::Service;

fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A short human line for an event.
fn summary(event: &EventRow) -> Option<String> {
    let p = &event.params;
    let s = |v: &Value| v.as_str().map(short);
    match event.method.as_str() {
        "turn/started" => Some("turn started".into()),
        "turn/completed" | TURN_ENDED => {
            s(&p["turn"]["status"]).map(|st| match p["turn"]["error"]["message"].as_str() {
                Some(err) => format!("turn {st}: {}", short(err)),
                None => format!("turn {st}"),
            })
        }
        "item/completed" | "item/started" => {
            let item = &p["item"];
            let body = item["text"]
                .as_str()
                .or_else(|| item["command"].as_str())
                .map(short)
                .unwrap_or_default();
            Some(
                format!("{} {body}", item["type"].as_str().unwrap_or("item"))
                    .trim()
                    .to_owned(),
            )
        }
        // The line already says `error`: the summary says whether Codex retries.
        "error" => s(&p["error"]["message"]).map(|m| {
            if p["willRetry"] == true {
                format!("Codex retries: {m}")
            } else {
                m
            }
        }),
        "thread/status/changed" => s(&p["status"]["type"]),
        _ => None,
    }
}

/// `watch`.
impl Handle<WatchInput> for Service {
    async fn handle(&self, input: WatchInput) -> Result<WatchOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(input.timeout.clamp(0.0, 600.0));
        let max = input.max_events.get();
        let mut cursor = match input.after {
            Some(after) => i64::try_from(after).unwrap_or(i64::MAX),
            None => self.registry().last_event_id(&lane.lane_ref).await?,
        };
        let mut stored = self.event_notifications();
        let mut events = Vec::new();
        let ended = loop {
            let wanted = u32::try_from(max - events.len() as u64).unwrap_or(u32::MAX);
            let rows = self
                .registry()
                .events_after(&lane.lane_ref, cursor, wanted)
                .await?;
            let mut turn_ended = false;
            for row in rows {
                cursor = row.id;
                // Codex's own end of a turn, or dispatch's when Codex could not report one
                // (its App Server exited, the daemon restarted).
                turn_ended |= row.method == "turn/completed" || row.method == TURN_ENDED;
                events.push(WatchEvent {
                    id: row.id,
                    at: rfc3339(row.at_ms),
                    summary: summary(&row),
                    method: row.method,
                    turn_id: row.turn_id,
                    params: crate::convert::params(row.params),
                });
            }
            if turn_ended && input.until == Some(WatchInputUntil::TurnEnd) {
                break WatchOutputEnded::TurnEnd;
            }
            if events.len() as u64 >= max {
                break WatchOutputEnded::MaxEvents;
            }
            if input.stream && !events.is_empty() {
                break WatchOutputEnded::Batch;
            }
            match tokio::time::timeout_at(deadline, stored.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break WatchOutputEnded::Timeout,
            }
        };
        Ok(WatchOutput {
            lane: convert::lane_ref(&lane),
            events,
            cursor,
            ended,
        })
    }
}
