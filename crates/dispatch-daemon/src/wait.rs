//! `wait`: block until any (or all) of some lanes end a turn or are idle, bounded by a
//! timeout. It answers from the registry and wakes when events are stored
//! ([`Service::event_notifications`]), never on a timer.
//!
//! What the conditions mean:
//! - `turn-end`: a turn of the lane ends after the wait began. For a lane running a turn when
//!   the wait starts, that turn's end (or any later one); for an idle lane, the end of the
//!   next turn it runs. Seen as a turn-end event stored after the wait began (Codex's
//!   `turn/completed`, or dispatch's own end of a turn Codex could not report), or as the
//!   lane's latest turn having ended since.
//! - `idle`: the lane runs no turn. An idle lane has reached it already.
//!
//! A lane that reached the condition stays reached for the rest of the wait, so `all` means
//! "each lane reached it at some point during the wait".

use std::time::Duration;

use dispatch_contract::types::{WaitInput, WaitInputUntil, WaitLane, WaitOutput};
use dispatch_contract::{DispatchError, Handle};
use dispatch_registry::{LaneRow, TurnStatus};

use crate::convert;
use crate::reconcile::TURN_ENDED;
use crate::service::Service;
use crate::turn_start::running_turn;

/// The events that end a turn.
const TURN_ENDS: [&str; 2] = ["turn/completed", TURN_ENDED];

/// A lane as the wait found it when it began.
struct Start {
    lane: LaneRow,
    /// The lane's newest stored event then.
    cursor: i64,
    /// Its latest turn then, and whether it was running.
    latest: Option<(String, bool)>,
    reached: bool,
}

/// A wait that has begun: the lanes as they were, and a listener for what is stored after.
/// [`Service::begin_wait`] makes it, [`Service::finish_wait`] waits on it; `wait` is both.
pub struct Waiting {
    starts: Vec<Start>,
    until: WaitInputUntil,
    stored: tokio::sync::watch::Receiver<u64>,
}

impl Service {
    /// Begins a wait for `lanes` to reach `until`: listens for stored events, then notes where
    /// each lane is (its latest turn and event), so nothing stored from here on is missed.
    pub async fn begin_wait(
        &self,
        lanes: Vec<LaneRow>,
        until: WaitInputUntil,
    ) -> Result<Waiting, DispatchError> {
        let stored = self.event_notifications();
        let mut starts: Vec<Start> = Vec::with_capacity(lanes.len());
        for lane in lanes {
            if starts.iter().any(|s| s.lane.lane_ref == lane.lane_ref) {
                continue;
            }
            starts.push(Start {
                cursor: self.registry().last_event_id(&lane.lane_ref).await?,
                latest: lane
                    .latest_turn
                    .as_ref()
                    .map(|turn| (turn.turn_id.clone(), running_turn(&lane).is_some())),
                lane,
                reached: false,
            });
        }
        Ok(Waiting {
            starts,
            until,
            stored,
        })
    }

    /// Waits until any lane of `waiting` (each, with `all`) has reached its condition, or until
    /// `deadline`; then says where each lane is.
    pub async fn finish_wait(
        &self,
        mut waiting: Waiting,
        all: bool,
        deadline: tokio::time::Instant,
    ) -> Result<WaitOutput, DispatchError> {
        let timed_out = loop {
            for start in waiting.starts.iter_mut().filter(|s| !s.reached) {
                // The stored turn ends are read before the lane, so the lane shown is at
                // least as new as the event that ended the wait (read the other way round,
                // a turn end stored in between showed a lane still running that turn).
                let ended_by_event = waiting.until == WaitInputUntil::TurnEnd
                    && self
                        .registry()
                        .first_event_after(&start.lane.lane_ref, start.cursor, &TURN_ENDS)
                        .await?
                        .is_some();
                if let Some(now) = self.registry().lane(&start.lane.lane_ref).await? {
                    start.reached = ended_by_event || reached(start, &now, waiting.until);
                    start.lane = now;
                }
            }
            let done = if all {
                waiting.starts.iter().all(|s| s.reached)
            } else {
                waiting.starts.iter().any(|s| s.reached)
            };
            if done {
                break false;
            }
            match tokio::time::timeout_at(deadline, waiting.stored.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break true,
            }
        };
        let view = self.view();
        let mut lanes = Vec::with_capacity(waiting.starts.len());
        for start in waiting.starts {
            let last_agent_message = self
                .registry()
                .last_agent_messages(&start.lane.lane_ref, 1, None)
                .await?
                .pop();
            let lane_ref = convert::lane_ref(&start.lane);
            let shown = convert::lane(start.lane, &view);
            lanes.push(WaitLane {
                lane: lane_ref,
                reached: start.reached,
                status: shown.status,
                latest_turn: shown.latest_turn,
                last_agent_message,
            });
        }
        Ok(WaitOutput {
            pending: lanes
                .iter()
                .filter(|l| !l.reached)
                .map(|l| l.lane.ref_.clone())
                .collect(),
            timed_out,
            lanes,
        })
    }
}

/// Whether `start`'s lane, as it is now (`now`), reached `until` by its state alone (a turn
/// that started and ended since the wait began is found by its stored event instead).
fn reached(start: &Start, now: &LaneRow, until: WaitInputUntil) -> bool {
    match until {
        WaitInputUntil::Idle => running_turn(now).is_none(),
        WaitInputUntil::TurnEnd => now
            .latest_turn
            .as_ref()
            .filter(|turn| turn.status != TurnStatus::InProgress)
            .is_some_and(|turn| match &start.latest {
                // The turn that ran when the wait began has ended, or a later one has.
                Some((id, running)) => *running || turn.turn_id != *id,
                None => true,
            }),
    }
}

/// `wait`.
impl Handle<WaitInput> for Service {
    async fn handle(&self, input: WaitInput) -> Result<WaitOutput, DispatchError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(input.timeout.clamp(0.0, 600.0));
        let mut lanes = Vec::with_capacity(input.lanes.len());
        for selector in &input.lanes {
            lanes.push(self.resolve(selector).await?);
        }
        let waiting = self.begin_wait(lanes, input.until).await?;
        self.finish_wait(waiting, input.all, deadline).await
    }
}
