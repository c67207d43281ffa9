//! Orchestration: the daemon's task that acts on lane events (the outbox the registry fills
//! as it records facts) and keeps deliveries moving.
//!
//! - A lane event is handled once: its effects (subscription updates in the inbox, queued
//!   turns for subscribers, an approval request in the inbox) are written in the transaction
//!   that removes the event (`Registry::handle_lane_event`).
//! - When a lane's turn ends, or a message is queued for it, its queue is pumped: the next
//!   queued message starts a turn if the lane is idle, one per idle transition.
//! - Deliveries left `submitting` by a crash are `ambiguous`; they are looked for in their
//!   thread a few times, and resolved only when found there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dispatch_registry::{
    DeliveryMode, DeliveryRow, DeliveryState, Effects, LaneEvent, LaneEventKind, LaneRow,
    NewDelivery, NewInboxMessage, SubscriptionRow, TurnStatus,
};
use serde_json::json;

use crate::convert::now_ms;
use crate::service::Service;

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

/// Whether a subscription to `event` fires on `happened`.
fn matches(event: &str, happened: &LaneEvent) -> bool {
    use LaneEventKind::{Approval, TurnEnded, TurnStarted};
    matches!(
        (event, happened.kind, happened.status),
        (
            "done",
            TurnEnded,
            Some(TurnStatus::Completed | TurnStatus::Failed)
        ) | ("completed", TurnEnded, Some(TurnStatus::Completed))
            | ("failed", TurnEnded, Some(TurnStatus::Failed))
            | ("idle", TurnEnded, _)
            | ("approval", Approval, _)
            | ("activity", TurnStarted, _)
    )
}

/// What happened, in words: `finished a turn (completed)`.
fn phrase(event: &LaneEvent) -> String {
    match event.kind {
        LaneEventKind::TurnStarted => "started a turn".to_owned(),
        LaneEventKind::TurnEnded => format!(
            "finished a turn ({})",
            event.status.map_or("ended", TurnStatus::as_str)
        ),
        LaneEventKind::Approval => "waits for an approval".to_owned(),
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
    async fn handle_lane_events(&self) -> BTreeSet<String> {
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
                let effects = self.effects_of(&event).await;
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

    /// What `event` causes: subscription updates and turns, an approval request message.
    async fn effects_of(&self, event: &LaneEvent) -> Effects {
        let mut effects = Effects::default();
        let Ok(Some(lane)) = self.registry().lane(&event.lane_ref).await else {
            return effects;
        };
        if event.kind == LaneEventKind::Approval {
            effects
                .inbox
                .push(self.approval_message(&lane, event).await);
        }
        self.trigger_effects(event, &mut effects).await;
        let subscriptions = match self
            .registry()
            .subscriptions(Some(&event.lane_ref), None, false)
            .await
        {
            Ok(subscriptions) => subscriptions,
            Err(err) => {
                tracing::warn!(%err, "reading subscriptions");
                return effects;
            }
        };
        for subscription in subscriptions.iter().filter(|s| matches(&s.event, event)) {
            self.fire(subscription, &lane, event, &mut effects).await;
        }
        effects
    }

    /// Adds what `subscription` does about `event` of `target` to `effects`.
    async fn fire(
        &self,
        subscription: &SubscriptionRow,
        target: &LaneRow,
        event: &LaneEvent,
        effects: &mut Effects,
    ) {
        let messages = self
            .last_agent_messages(&target.lane_ref, subscription.tail)
            .await;
        let title = target.title.as_deref().unwrap_or("untitled");
        let subject = format!("lane {} ({title}) {}", target.lane_ref, phrase(event));
        let mut body = subject.clone();
        if let Some(turn) = &event.turn_id {
            body.push_str(&format!("\nturn: {turn}"));
        }
        for message in &messages {
            body.push_str(&format!("\n\nits last agent message:\n{message}"));
        }
        effects.inbox.push(NewInboxMessage {
            lane_ref: Some(subscription.subscriber_ref.clone()),
            kind: "subscription_update".to_owned(),
            subject,
            body: body.clone(),
            about_ref: Some(target.lane_ref.clone()),
            turn_id: event.turn_id.clone(),
            data: Some(json!({
                "subscription": subscription.id,
                "event": subscription.event,
                "status": event.status.map(TurnStatus::as_str),
                "messages": messages,
            })),
            origin: Some(format!(
                "subscription:{}:event:{}",
                subscription.id, event.id
            )),
        });
        let writable = match self.registry().lane(&subscription.subscriber_ref).await {
            Ok(Some(subscriber)) => {
                !subscriber.archived
                    && crate::convert::write_lock(&subscriber, self.allow_attached_writes())
                        .is_none()
            }
            _ => false,
        };
        if subscription.delivery == "turn" && writable {
            match dispatch_registry::receipt_id() {
                Ok(id) => effects.deliveries.push(NewDelivery {
                    id,
                    lane_ref: subscription.subscriber_ref.clone(),
                    mode: DeliveryMode::Queue,
                    text: format!("[dispatch] {body}"),
                    source: format!("subscription:{}", subscription.id),
                    sender_ref: Some(target.lane_ref.clone()),
                    idempotency: None,
                    state: DeliveryState::Queued,
                }),
                Err(err) => tracing::warn!(%err, "a receipt id for a subscription turn"),
            }
        }
        effects
            .fired_subscriptions
            .push((subscription.id, subscription.once));
    }

    /// The inbox message that says a lane waits for an approval.
    async fn approval_message(&self, lane: &LaneRow, event: &LaneEvent) -> NewInboxMessage {
        let pending = self
            .registry()
            .pending_requests(Some(&lane.lane_ref))
            .await
            .unwrap_or_default();
        let request = pending.last();
        let what = request
            .map(|r| {
                r.params
                    .get("command")
                    .and_then(|c| c.as_str())
                    .map(|c| format!("run `{c}`"))
                    .unwrap_or_else(|| r.method.clone())
            })
            .unwrap_or_else(|| "an action".to_owned());
        NewInboxMessage {
            lane_ref: Some(lane.lane_ref.clone()),
            kind: "approval_request".to_owned(),
            subject: format!("lane {} asks to {what}", lane.lane_ref),
            body: format!(
                "lane {} ({}) waits for an answer: it asks to {what}{}",
                lane.lane_ref,
                lane.title.as_deref().unwrap_or("untitled"),
                request
                    .map(|r| format!(" (request {})", r.id))
                    .unwrap_or_default()
            ),
            about_ref: Some(lane.lane_ref.clone()),
            turn_id: event.turn_id.clone(),
            data: request.map(|r| json!({ "request_id": r.id, "method": r.method })),
            origin: Some(format!("approval:event:{}", event.id)),
        }
    }

    /// The lane's last `n` agent messages, oldest first.
    pub async fn last_agent_messages(&self, lane_ref: &str, n: u32) -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        let items = self
            .registry()
            .tail(lane_ref, 500)
            .await
            .unwrap_or_default();
        let mut messages: Vec<String> = items
            .into_iter()
            .filter(|item| item.kind == "agent_message")
            .filter_map(|item| item.text)
            .collect();
        let keep = usize::try_from(n).unwrap_or(usize::MAX);
        messages.split_off(messages.len().saturating_sub(keep))
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
            if now - receipt.updated_at_ms < *wait {
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
