//! Orchestration: the daemon's task that acts on lane events (the outbox the registry fills
//! as it records facts) and keeps deliveries moving.
//!
//! - A lane event is handled once: its effects (subscription updates in the inbox, queued
//!   turns for subscribers; see `subscriptions.rs`) are written in the transaction that
//!   removes the event (`Registry::handle_lane_event`). Approval requests leave their inbox
//!   message when they are stored (`inbox.rs`), one per request.
//! - When a lane's turn ends, or a message is queued for it, its queue is pumped: the next
//!   queued message starts a turn if the lane is idle, one per idle transition.
//! - Deliveries left `submitting` by a crash are `ambiguous`; they are looked for in their
//!   thread a few times, and resolved only when found there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dispatch_contract::DispatchError;
use dispatch_registry::{DeliveryRow, DeliveryState, Effects, LaneEvent, LaneEventKind};

use crate::convert::now_ms;
use crate::service::Service;
use crate::subscriptions;

/// Lane events handled per registry read.
const BATCH: u32 = 256;
/// How often the task looks even without a notification (ambiguous deliveries, a registry
/// that failed a moment ago).
const TICK: Duration = Duration::from_secs(1);
/// Automatic looks for an ambiguous delivery in its thread, and the wait before each.
const CHECK_AFTER_MS: [i64; 3] = [0, 2_000, 10_000];

/// Runs orchestration for as long as the daemon lives.
pub async fn run(service: Arc<Service>) {
    let mut stored = service.event_notifications();
    let mut wakeups = service.take_queue_wakeups();
    let mut tick = tokio::time::interval(TICK);
    // Queues left waiting when the daemon stopped move as soon as their lanes are idle.
    let mut lanes: BTreeSet<String> = service
        .registry()
        .open_deliveries(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.state == DeliveryState::Queued)
        .map(|d| d.lane_ref)
        .collect();
    loop {
        lanes.extend(service.handle_lane_events().await);
        for lane in std::mem::take(&mut lanes) {
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                if let Err(err) = service.pump_queue(&lane).await {
                    tracing::warn!(lane, err = %err.message, "pumping a lane's queue");
                }
            });
        }
        tokio::select! {
            changed = stored.changed() => if changed.is_err() { return },
            Some(lane) = next_wakeup(&mut wakeups) => { lanes.insert(lane); }
            _ = tick.tick() => service.check_ambiguous().await,
        }
    }
}

/// The next lane whose queue was woken; pending for ever without a receiver.
async fn next_wakeup(
    wakeups: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> Option<String> {
    match wakeups {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Service {
    /// At start-up, before serving: deliveries a crash left `submitting` become `ambiguous`
    /// (they are looked for in their threads by [`Service::check_ambiguous`]).
    pub async fn settle_deliveries_at_start(&self) {
        match self.registry().mark_submitting_ambiguous().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "deliveries left submitting are ambiguous"),
            Err(err) => tracing::error!(%err, "marking ambiguous deliveries"),
        }
    }

    /// Handles every waiting lane event; returns the lanes whose queue may move.
    /// Orchestration calls it whenever events are stored; tests call it directly.
    pub async fn handle_lane_events(&self) -> BTreeSet<String> {
        let mut pump = BTreeSet::new();
        loop {
            let events = match self.registry().unhandled_lane_events(BATCH).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(%err, "reading lane events");
                    return pump;
                }
            };
            if events.is_empty() {
                return pump;
            }
            for event in events {
                let effects = match self.effects_of(&event).await {
                    Ok(effects) => effects,
                    Err(err) => {
                        // Left for the next round: an event is consumed only with its effects.
                        tracing::warn!(err = %err.message, event = event.id, "working out a lane event's effects");
                        return pump;
                    }
                };
                match self.registry().handle_lane_event(event.id, &effects).await {
                    Ok(handled) => {
                        if handled && !effects.trigger_fires.is_empty() {
                            self.triggers_changed();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, event = event.id, "handling a lane event");
                        return pump;
                    }
                }
                if event.kind == LaneEventKind::TurnEnded {
                    pump.insert(event.lane_ref.clone());
                }
                pump.extend(effects.deliveries.iter().map(|d| d.lane_ref.clone()));
            }
        }
    }

    /// What `event` causes: the updates (and turns) of the subscriptions it matches. An
    /// error leaves the event unhandled, to be handled again: a registry that fails a read
    /// for a moment must not consume an event without its effects.
    pub(crate) async fn effects_of(&self, event: &LaneEvent) -> Result<Effects, DispatchError> {
        let mut effects = Effects::default();
        let Some(lane) = self.registry().lane(&event.lane_ref).await? else {
            return Ok(effects);
        };
        self.trigger_effects(event, &mut effects).await?;
        let subscriptions = self
            .registry()
            .subscriptions(Some(&event.lane_ref), None, false)
            .await?;
        for subscription in subscriptions
            .iter()
            .filter(|s| subscriptions::matches(&s.event, event))
        {
            self.fire(subscription, &lane, event, &mut effects).await?;
        }
        Ok(effects)
    }

    /// Looks for ambiguous deliveries in their threads, each a few times with a pause; found
    /// ones are resolved, and the last look says the checks are exhausted.
    async fn check_ambiguous(&self) {
        let Ok(open) = self.registry().open_deliveries(None).await else {
            return;
        };
        let now = now_ms();
        for receipt in open.iter().filter(|r| r.state == DeliveryState::Ambiguous) {
            let Some(wait) = usize::try_from(receipt.checks)
                .ok()
                .and_then(|n| CHECK_AFTER_MS.get(n))
            else {
                continue;
            };
            if !waited(now, receipt.updated_at_ms, *wait) {
                continue;
            }
            self.look_for(receipt).await;
        }
    }

    /// One look for `receipt` in its thread; after the last automatic one, the receipt says
    /// so.
    pub async fn look_for(&self, receipt: &DeliveryRow) -> bool {
        match self.find_delivery(receipt).await {
            Ok(true) => {
                tracing::info!(
                    receipt = receipt.id,
                    "an ambiguous delivery was found in its thread"
                );
                true
            }
            Ok(false) => {
                if receipt.checks + 1 >= CHECK_AFTER_MS.len() as i64 {
                    let note = "not found in the thread after the automatic checks; it is held, \
                                never resent";
                    let _ = self
                        .registry()
                        .set_delivery_state(
                            &receipt.id,
                            &[DeliveryState::Ambiguous],
                            DeliveryState::Ambiguous,
                            None,
                            Some(note),
                        )
                        .await;
                }
                false
            }
            Err(err) => {
                tracing::warn!(receipt = receipt.id, err = %err.message, "looking for a delivery");
                false
            }
        }
    }
}

/// Whether `wait_ms` have passed from `since_ms` to `now_ms`; a time written by hand far in
/// the past neither overflows nor wraps.
fn waited(now_ms: i64, since_ms: i64, wait_ms: i64) -> bool {
    now_ms.saturating_sub(since_ms) >= wait_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_measured_without_overflow() {
        assert!(waited(12_000, 10_000, 2_000));
        assert!(!waited(11_999, 10_000, 2_000));
        assert!(waited(10_000, i64::MIN, 10_000));
        assert!(!waited(i64::MIN, 10_000, 0));
    }
}
