//! The trigger scheduler: the daemon's task that fires triggers.
//!
//! - It holds the schedule in memory, a heap of triggers by their next due time, loaded from
//!   the registry at start and again whenever a trigger operation changes one (pause, resume
//!   and rm take effect at once), and sleeps until the next due time.
//! - A due fire is *claimed* before anything is delivered: one registry transaction moves the
//!   trigger's due time on (only if it is still the one due) and stores the fire as
//!   unfinished. Then the message is delivered (`Service::deliver`, with the idempotency key
//!   `trigger:<id>:<due>`), and one more transaction records the outcome: the trigger's
//!   counters, an action-log row, and for a failure a `trigger_result` inbox message.
//! - A crash between claiming and recording leaves the fire unfinished; at the next start it
//!   is finished: the key tells whether its delivery was recorded already (it is never made
//!   again: ADR 0013), and if not it is delivered now. So a fire is neither lost nor doubled.
//! - Due times that passed while the daemon was down (or while a fire of the same trigger was
//!   still under way) are coalesced into one fire, whose outcome says how many it stands for.
//! - `idle_for` triggers are due when the lane has been idle that long since its last event;
//!   they fire once per idle period. `on` triggers fire from orchestration
//!   (`orchestrate.rs`), in the transaction that handles the lane event; this task carries
//!   their fires out like the others.
//! - Fires run concurrently (each trigger one at a time), so a slow lane delays no other
//!   trigger, and a fire that fails stops nothing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dispatch_contract::{DispatchError, ErrorCode};
use dispatch_registry::{
    ClaimIf, DeliveryRow, DeliveryState, Effects, FireClaim, FireOutcome, LaneEvent, LaneEventKind,
    LaneRow, LaneStatus, NewInboxMessage, TriggerFire, TriggerKind, TriggerRow, TurnStatus,
};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::convert::{now_ms, rfc3339};
use crate::deliver::DeliveryRequest;
use crate::schedule::{OnEvent, Schedule};
use crate::service::Service;
use crate::turn_start::running_turn;

/// Fires carried out at the same time at most.
const CONCURRENT_FIRES: usize = 64;
/// The longest the task sleeps without looking at the clock again (the wall clock may jump).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long the task waits before trying the registry again after it failed.
const RETRY: Duration = Duration::from_secs(1);
/// How often at most `idle_for` triggers are looked at again while lanes are active.
const IDLE_EVERY: Duration = Duration::from_millis(200);

/// The idle period of `lane` an `idle_for` trigger of `idle_ms` (added at `created_at_ms`,
/// last fired at `last_fired`) waits for: its start (the lane's last event, or when the
/// trigger was added if later) and when the trigger is due. `None` while the lane runs a turn,
/// when it is archived, and when the trigger fired in this period already.
pub fn idle_due(
    lane: &LaneRow,
    idle_ms: i64,
    created_at_ms: i64,
    last_fired: Option<i64>,
) -> Option<(i64, i64)> {
    let running = matches!(
        lane.status,
        LaneStatus::Busy | LaneStatus::Retrying | LaneStatus::WaitingApproval
    );
    if lane.archived || running || running_turn(lane).is_some() {
        return None;
    }
    let since = lane.updated_at_ms.max(created_at_ms);
    if last_fired.is_some_and(|at| at >= since) {
        return None;
    }
    Some((since, since.saturating_add(idle_ms)))
}

/// Runs the scheduler for as long as the daemon lives.
pub async fn run(service: Arc<Service>) {
    let mut changes = service.trigger_notifications();
    let mut stored = service.event_notifications();
    let (done, mut finished) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler {
        service,
        done,
        entries: HashMap::new(),
        heap: BinaryHeap::new(),
        in_flight: HashSet::new(),
        busy: HashMap::new(),
        limit: Arc::new(Semaphore::new(CONCURRENT_FIRES)),
        idle_dirty: false,
        idle_at: Instant::now(),
        retry_at: None,
    };
    let mut reload = true;
    loop {
        if reload || scheduler.retry_at.is_some_and(|at| at <= Instant::now()) {
            scheduler.retry_at = None;
            reload = false;
            scheduler.reload().await;
        }
        if scheduler.idle_dirty && scheduler.idle_at <= Instant::now() {
            scheduler.evaluate_idle().await;
        }
        scheduler.fire_due().await;
        let wait = scheduler.wait();
        let watch_lanes = scheduler.has_idle() && !scheduler.idle_dirty;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                reload = true;
            }
            Some((id, key, recorded)) = finished.recv() => {
                if !recorded {
                    scheduler.retry_at = Some(Instant::now() + RETRY);
                }
                scheduler.finished(id, key).await;
            }
            changed = stored.changed(), if watch_lanes => {
                if changed.is_err() {
                    return;
                }
                scheduler.idle_dirty = true;
            }
        }
    }
}

/// One trigger the scheduler knows.
struct Entry {
    row: TriggerRow,
    schedule: Schedule,
    /// When it is due, as the heap has it.
    due: Option<i64>,
    /// For `idle_for`: the start of the idle period it waits for.
    idle_since: Option<i64>,
}

struct Scheduler {
    service: Arc<Service>,
    /// Each fire that ends says so here: trigger id, fire key, and whether its outcome was
    /// recorded (if not, it is carried out again after [`RETRY`]).
    done: mpsc::UnboundedSender<(i64, String, bool)>,
    entries: HashMap<i64, Entry>,
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    /// Fires under way: trigger id and fire key.
    in_flight: HashSet<(i64, String)>,
    /// Fires under way per trigger.
    busy: HashMap<i64, usize>,
    limit: Arc<Semaphore>,
    /// Lanes changed since `idle_for` triggers were last looked at.
    idle_dirty: bool,
    /// When they may be looked at again.
    idle_at: Instant,
    /// When to reload after the registry failed.
    retry_at: Option<Instant>,
}

impl Scheduler {
    fn is_busy(&self, id: i64) -> bool {
        self.busy.get(&id).is_some_and(|n| *n > 0)
    }

    fn has_idle(&self) -> bool {
        self.entries
            .values()
            .any(|e| e.row.kind == TriggerKind::IdleFor)
    }

    fn failed(&mut self, what: &str, err: impl std::fmt::Display) {
        tracing::warn!(%err, "{what}");
        self.retry_at = Some(Instant::now() + RETRY);
    }

    /// How long to sleep: until the next due time, a retry, or an `idle_for` look.
    fn wait(&self) -> Duration {
        let mut wait = MAX_SLEEP;
        if let Some(Reverse((due, _))) = self.heap.peek() {
            let ms = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            wait = wait.min(Duration::from_millis(ms));
        }
        let now = Instant::now();
        if let Some(at) = self.retry_at {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if self.idle_dirty {
            wait = wait.min(self.idle_at.saturating_duration_since(now));
        }
        wait
    }

    /// Puts `row` into the schedule (replacing what was known of it).
    fn schedule(&mut self, row: TriggerRow) {
        let id = row.id;
        if row.paused || row.kind == TriggerKind::On {
            self.entries.remove(&id);
            return;
        }
        let schedule = match Schedule::of(row.kind, &row.spec, row.tz.as_deref()) {
            Ok(schedule) => schedule,
            Err(why) => {
                tracing::error!(
                    trigger = id,
                    "a stored trigger has a broken schedule: {why}"
                );
                self.entries.remove(&id);
                return;
            }
        };
        let due = match row.kind {
            TriggerKind::Every | TriggerKind::Cron => row.next_fire_at_ms,
            _ => None,
        };
        let idle_since = self.entries.get(&id).and_then(|e| e.idle_since);
        self.entries.insert(
            id,
            Entry {
                row,
                schedule,
                due,
                idle_since,
            },
        );
        if let Some(due) = due
            && !self.is_busy(id)
        {
            self.heap.push(Reverse((due, id)));
        }
    }

    /// Loads every trigger and every unfinished fire from the registry, and carries out the
    /// unfinished fires not under way (those a crash left, and those of `on` triggers).
    async fn reload(&mut self) {
        let registry = self.service.registry().clone();
        let rows = match registry.triggers(None).await {
            Ok(rows) => rows,
            Err(err) => return self.failed("loading triggers", err),
        };
        self.entries.clear();
        self.heap.clear();
        for row in rows {
            self.schedule(row);
        }
        self.idle_dirty = true;
        self.idle_at = Instant::now();
        self.evaluate_idle().await;
        match registry.pending_trigger_fires().await {
            Ok(fires) => {
                for fire in fires {
                    if !self
                        .in_flight
                        .contains(&(fire.trigger_id, fire.due_key.clone()))
                    {
                        self.start(fire);
                    }
                }
            }
            Err(err) => self.failed("loading unfinished trigger fires", err),
        }
    }

    /// Reads trigger `id` again after one of its fires ended.
    async fn finished(&mut self, id: i64, key: String) {
        self.in_flight.remove(&(id, key));
        if let Some(n) = self.busy.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.busy.remove(&id);
            }
        }
        if self.is_busy(id) {
            return;
        }
        match self.service.registry().trigger(id).await {
            Ok(Some(row)) => {
                self.schedule(row);
                if self
                    .entries
                    .get(&id)
                    .is_some_and(|e| e.row.kind == TriggerKind::IdleFor)
                {
                    self.idle_dirty = true;
                }
            }
            Ok(None) => {
                self.entries.remove(&id);
            }
            Err(err) => self.failed("reading a trigger", err),
        }
    }

    /// Works out when each `idle_for` trigger is due from its lane, and records it.
    async fn evaluate_idle(&mut self) {
        self.idle_dirty = false;
        self.idle_at = Instant::now() + IDLE_EVERY;
        let ids: Vec<i64> = self
            .entries
            .iter()
            .filter(|(id, e)| e.row.kind == TriggerKind::IdleFor && !self.is_busy(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let Schedule::IdleFor(idle_ms) = entry.schedule else {
                continue;
            };
            let lane = match self.service.registry().lane(&entry.row.lane_ref).await {
                Ok(Some(lane)) => lane,
                Ok(None) => continue,
                Err(err) => return self.failed("reading a trigger's lane", err),
            };
            let found = idle_due(
                &lane,
                idle_ms,
                entry.row.created_at_ms,
                entry.row.last_fired_at_ms,
            );
            let due = found.map(|(_, due)| due);
            if due != entry.row.next_fire_at_ms
                && let Err(err) = self.service.registry().set_trigger_next(id, due).await
            {
                tracing::warn!(%err, trigger = id, "recording when a trigger is due");
            }
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.row.next_fire_at_ms = due;
                entry.idle_since = found.map(|(since, _)| since);
                entry.due = due;
            }
            if let Some(due) = due {
                self.heap.push(Reverse((due, id)));
            }
        }
    }

    /// Claims every fire that is due, in one transaction, and starts carrying them out.
    async fn fire_due(&mut self) {
        let now = now_ms();
        let mut claims = Vec::new();
        while let Some(Reverse((due, id))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let busy = self.is_busy(id);
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            if entry.due != Some(due) || busy {
                continue;
            }
            entry.due = None;
            match entry.row.kind {
                TriggerKind::Every | TriggerKind::Cron => {
                    let (coalesced, next) = entry.schedule.catch_up(due, now);
                    claims.push(FireClaim {
                        trigger_id: id,
                        condition: ClaimIf::DueAt {
                            due_at_ms: due,
                            next,
                        },
                        due_key: format!("at:{due}"),
                        due_at_ms: due,
                        coalesced,
                    });
                }
                TriggerKind::IdleFor => {
                    let Some(since) = entry.idle_since else {
                        continue;
                    };
                    claims.push(FireClaim {
                        trigger_id: id,
                        condition: ClaimIf::IdleSince(since),
                        due_key: format!("idle:{since}"),
                        due_at_ms: due,
                        coalesced: 1,
                    });
                }
                TriggerKind::On => {}
            }
        }
        if claims.is_empty() {
            return;
        }
        let claimed = match self.service.registry().claim_trigger_fires(&claims).await {
            Ok(claimed) => claimed,
            // Nothing was claimed: the triggers are still due in the registry.
            Err(err) => return self.failed("claiming trigger fires", err),
        };
        let started: HashSet<i64> = claimed.iter().map(|f| f.trigger_id).collect();
        for fire in claimed {
            self.start(fire);
        }
        // The others changed under the scheduler (paused, removed, rescheduled): read again.
        for claim in claims.iter().filter(|c| !started.contains(&c.trigger_id)) {
            match self.service.registry().trigger(claim.trigger_id).await {
                Ok(Some(row)) => self.schedule(row),
                Ok(None) => {
                    self.entries.remove(&claim.trigger_id);
                }
                Err(err) => return self.failed("reading a trigger", err),
            }
        }
    }

    /// Carries out `fire` in a task of its own.
    fn start(&mut self, fire: TriggerFire) {
        let id = fire.trigger_id;
        if !self.in_flight.insert((id, fire.due_key.clone())) {
            return;
        }
        *self.busy.entry(id).or_default() += 1;
        let service = Arc::clone(&self.service);
        let done = self.done.clone();
        let limit = Arc::clone(&self.limit);
        tokio::spawn(async move {
            let permit = limit.acquire_owned().await;
            let recorded = service.carry_out(&fire).await;
            drop(permit);
            // The scheduler is gone only when the daemon stops.
            let _stopping = done.send((fire.trigger_id, fire.due_key, recorded));
        });
    }
}

/// The fire's outcome in words, and whether the message got through (or is queued).
fn delivered_outcome(receipt: &DeliveryRow, earlier: bool) -> (bool, String) {
    let id = &receipt.id;
    let (ok, what) = match receipt.state {
        DeliveryState::Queued => (
            true,
            format!("queued until the lane is idle (receipt {id})"),
        ),
        DeliveryState::Submitting => (true, format!("being submitted (receipt {id})")),
        DeliveryState::Accepted | DeliveryState::Completed => (
            true,
            format!(
                "delivered: turn {} (receipt {id})",
                receipt.turn_id.as_deref().unwrap_or("unknown")
            ),
        ),
        DeliveryState::Failed => (
            false,
            format!(
                "failed: {} (receipt {id})",
                receipt.error.as_deref().unwrap_or("the delivery failed")
            ),
        ),
        DeliveryState::Ambiguous => (
            false,
            format!(
                "ambiguous: the daemon stopped while the message was submitted; it is never sent \
                 again (receipt {id})"
            ),
        ),
    };
    if earlier {
        (ok, format!("handed over before the daemon stopped; {what}"))
    } else {
        (ok, what)
    }
}

impl Service {
    /// Carries out one claimed fire and records its outcome; `false` when the registry failed
    /// or the daemon is stopping, and the fire is still unfinished.
    async fn carry_out(&self, fire: &TriggerFire) -> bool {
        let registry = self.registry();
        let row = match registry.trigger(fire.trigger_id).await {
            Ok(Some(row)) => row,
            // Removed: its unfinished fires went with it.
            Ok(None) => return true,
            Err(err) => {
                tracing::warn!(%err, trigger = fire.trigger_id, "reading a trigger to fire");
                return false;
            }
        };
        let key = format!("trigger:{}:{}", row.id, fire.due_key);
        let delivered = match registry.delivery_id_by_key(&key).await {
            Ok(Some(receipt)) => match registry.delivery(&receipt).await {
                Ok(Some(receipt)) => Ok((receipt, true)),
                Ok(None) => Err(DispatchError::internal(format!(
                    "receipt {receipt} vanished"
                ))),
                Err(err) => Err(err.into()),
            },
            Ok(None) => {
                // A daemon that agreed to stop delivers nothing: the fire stays unfinished
                // and the next daemon carries it out (never twice: its key).
                let Ok(_work) = self.admit_model_work() else {
                    tracing::info!(trigger = row.id, "the daemon is stopping; the fire waits");
                    return false;
                };
                self.deliver_fire(&row, key).await
            }
            Err(err) => {
                tracing::warn!(%err, trigger = row.id, "looking up a trigger's delivery");
                return false;
            }
        };
        let outcome = self.fire_outcome(&row, fire, delivered);
        match registry.finish_trigger_fire(&outcome).await {
            Ok(_) => true,
            // The fire stays unfinished; it is finished later from its receipt, never twice.
            Err(err) => {
                tracing::warn!(%err, trigger = row.id, "recording a trigger's fire");
                false
            }
        }
    }

    async fn deliver_fire(
        &self,
        row: &TriggerRow,
        key: String,
    ) -> Result<(DeliveryRow, bool), DispatchError> {
        let lane = self.registry().lane(&row.lane_ref).await?.ok_or_else(|| {
            DispatchError::new(
                ErrorCode::NotFound,
                format!("lane {} is gone", row.lane_ref),
            )
        })?;
        let delivered = self
            .deliver(DeliveryRequest {
                lane,
                mode: row.mode,
                text: row.text.clone(),
                source: format!("trigger:{}", row.id),
                sender_ref: None,
                idempotency: Some((key, format!("trigger:{}", row.id))),
                effort: None,
                images: Vec::new(),
                output_schema: None,
            })
            .await?;
        for warning in &delivered.warnings {
            tracing::warn!(
                trigger = row.id,
                receipt = delivered.receipt.id,
                "{warning}"
            );
        }
        Ok((delivered.receipt, delivered.repeated))
    }

    /// What a fire did, as the registry records it.
    fn fire_outcome(
        &self,
        row: &TriggerRow,
        fire: &TriggerFire,
        delivered: Result<(DeliveryRow, bool), DispatchError>,
    ) -> FireOutcome {
        let (ok, mut outcome, receipt, error_code, pause) = match &delivered {
            Ok((receipt, earlier)) => {
                let (ok, what) = delivered_outcome(receipt, *earlier);
                (ok, what, Some(receipt.id.clone()), None, false)
            }
            Err(err) => {
                let pause = err.code == ErrorCode::LaneArchived;
                let mut what = format!("failed ({}): {}", err.code.as_str(), err.message);
                if pause {
                    what.push_str(
                        "; the trigger is paused until the lane is restored and it is resumed",
                    );
                }
                let receipt = err
                    .details
                    .get("receipt")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                (
                    false,
                    what,
                    receipt,
                    Some(err.code.as_str().to_owned()),
                    pause,
                )
            }
        };
        if fire.coalesced > 1 {
            outcome.push_str(&format!(
                "; coalesced {} missed fires into one",
                fire.coalesced
            ));
        }
        let detail = format!("trigger {} ({}): {outcome}", row.name, row.id);
        let inbox = (!ok).then(|| NewInboxMessage {
            lane_ref: Some(row.lane_ref.clone()),
            kind: "trigger_result".to_owned(),
            subject: format!("trigger {} could not deliver its message", row.name),
            body: format!(
                "trigger {} (id {}) could not deliver its message to lane {} (due {}): \
                 {outcome}\n\nits message:\n{}",
                row.name,
                row.id,
                row.lane_ref,
                rfc3339(fire.due_at_ms),
                row.text
            ),
            about_ref: Some(row.lane_ref.clone()),
            turn_id: None,
            data: Some(json!({
                "trigger": row.id,
                "name": row.name,
                "due_at": rfc3339(fire.due_at_ms),
                "error_code": error_code,
                "receipt": receipt,
                "coalesced": fire.coalesced,
                "paused": pause,
            })),
            origin: Some(format!("trigger:{}:{}", row.id, fire.due_key)),
        });
        FireOutcome {
            trigger_id: row.id,
            due_key: fire.due_key.clone(),
            lane_ref: row.lane_ref.clone(),
            ok,
            outcome,
            receipt,
            error_code,
            pause,
            detail,
            inbox,
        }
    }

    /// Adds the fires of the lane's `on` triggers that `event` sets off to `effects`, so they
    /// are stored in the transaction that handles the event (once, even across crashes). An
    /// error leaves the event unhandled, to be handled again with its fires.
    pub(crate) async fn trigger_effects(
        &self,
        event: &LaneEvent,
        effects: &mut Effects,
    ) -> Result<(), DispatchError> {
        let wanted = match (event.kind, event.status) {
            (LaneEventKind::TurnEnded, Some(TurnStatus::Completed)) => OnEvent::TurnCompleted,
            (LaneEventKind::Approval, _) => OnEvent::Approval,
            _ => return Ok(()),
        };
        let triggers = self.registry().triggers_on(&event.lane_ref).await?;
        let now = now_ms();
        for trigger in triggers.iter().filter(|t| t.spec == wanted.as_str()) {
            effects.trigger_fires.push(TriggerFire {
                trigger_id: trigger.id,
                due_key: format!("event:{}", event.id),
                due_at_ms: event.at_ms,
                coalesced: 1,
                claimed_at_ms: now,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(status: LaneStatus, updated_at_ms: i64) -> LaneRow {
        LaneRow {
            status,
            updated_at_ms,
            ..crate::test_rows::lane_row("abcdef", "t")
        }
    }

    #[test]
    fn an_idle_trigger_fires_once_per_idle_period() {
        let idle = lane(LaneStatus::Idle, 10_000);
        assert_eq!(idle_due(&idle, 5_000, 0, None), Some((10_000, 15_000)));
        // Added after the lane's last event: the period starts then.
        assert_eq!(idle_due(&idle, 5_000, 12_000, None), Some((12_000, 17_000)));
        // Fired in this period already.
        assert_eq!(idle_due(&idle, 5_000, 0, Some(15_000)), None);
        // Fired in an earlier period.
        assert_eq!(
            idle_due(&idle, 5_000, 0, Some(9_000)),
            Some((10_000, 15_000))
        );
        assert_eq!(
            idle_due(&lane(LaneStatus::Busy, 10_000), 5_000, 0, None),
            None
        );
        let mut archived = idle;
        archived.archived = true;
        assert_eq!(idle_due(&archived, 5_000, 0, None), None);
    }
}
