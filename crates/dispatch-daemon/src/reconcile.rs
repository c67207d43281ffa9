//! Reconciliation: what the registry says about running turns is checked against the App
//! Server, never guessed. It runs when the daemon starts (before it serves), after an App
//! Server restart, and for any running lane that has been silent longer than the stall limit.
//!
//! For each lane the registry believes running, the lane's latest turns are read with
//! `thread/turns/list` (which reads the thread's stored history without loading it) and
//! recorded as Codex reports them, items included. A turn Codex still calls in progress runs
//! only if its thread is loaded in a serving App Server process of the pool
//! (`thread/loaded/list` of each); otherwise the process that ran it is gone and the turn is
//! recorded as interrupted, with an error that says why. After one process of a pool died,
//! only the running lanes whose threads no serving process has loaded (its lanes) are
//! reconciled, at once when another process serves, else after its restart; the other
//! processes' turns go on. Every turn that ends this way also gets a `dispatch/turnEnded` event, so `watch`
//! sees the end of a turn whatever ended it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codex_app_server::AppServer;
use codex_app_server::protocol::{
    ThreadLoadedListParams, ThreadTurnsListParams, Turn, TurnItemsView,
};
use dispatch_registry::{
    Fact, LaneFilter, LaneRow, LaneStatus, NewEvent, Recorded, RequestStatus, TurnRow, TurnStatus,
};
use serde_json::json;

use crate::convert::now_ms;
use crate::ingest::{fold_items, item_fact, turn_row};
use crate::provider_error::Cause;
use crate::service::Service;

/// The method of the event dispatch stores when it ends a turn that Codex did not report
/// ending (the `turn/completed` that never came).
pub const TURN_ENDED: &str = "dispatch/turnEnded";

/// Turns read per lane: the latest few are enough to find the one the registry tracks.
const TURNS_PER_LANE: u32 = 5;
/// Lanes reconciled at the same time.
const PARALLEL: usize = 8;

/// Why lanes are being reconciled; it words the error of an interrupted turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The daemon (and with it the App Server) restarted.
    DaemonStart,
    /// The App Server exited and was restarted.
    AppServerRestart,
    /// The lane was silent longer than the stall limit.
    Silence,
}

impl Why {
    fn interrupted(self) -> &'static str {
        match self {
            Why::DaemonStart => {
                "interrupted: the dispatch daemon stopped while this turn ran, and the Codex App \
                 Server that ran it exited with it"
            }
            Why::AppServerRestart => "interrupted: the Codex App Server exited while this turn ran",
            Why::Silence => {
                "interrupted: Codex no longer runs this turn, but never reported its end"
            }
        }
    }
}

/// Whether the registry believes `lane` is running a turn.
fn believed_running(lane: &LaneRow) -> bool {
    matches!(
        lane.status,
        LaneStatus::Busy | LaneStatus::Retrying | LaneStatus::WaitingApproval
    ) || lane
        .latest_turn
        .as_ref()
        .is_some_and(|turn| turn.status == TurnStatus::InProgress)
}

impl Service {
    /// Reconciles every lane the registry believes running (archived ones too); returns how
    /// many lanes were checked.
    pub async fn reconcile_running(self: &Arc<Self>, why: Why) -> usize {
        let filter = LaneFilter {
            status: None,
            include_archived: true,
            limit: 0,
        };
        let lanes: Vec<LaneRow> = match self.registry().list_lanes(&filter).await {
            Ok(lanes) => lanes.into_iter().filter(believed_running).collect(),
            Err(err) => {
                tracing::error!(%err, "listing lanes to reconcile");
                return 0;
            }
        };
        self.reconcile(lanes, why).await
    }

    /// App Server process `process` died (its events are all stored): when another process
    /// serves, its running lanes are reconciled now, so they are usable again (on another
    /// process) before it is back; with one process that waits for its restart.
    pub async fn process_exited(self: &Arc<Self>, process: usize) {
        if self.app_server().stopping() {
            return;
        }
        tracing::warn!(process, "an App Server process exited");
        if self.app_server().ready().is_empty() {
            return;
        }
        let reconciled = self.reconcile_running(Why::AppServerRestart).await;
        if reconciled > 0 {
            tracing::info!(
                process,
                lanes = reconciled,
                "reconciled the lanes of a dead App Server process"
            );
        }
    }

    /// Reconciles `lanes`, a few at a time; returns how many were checked. After an App
    /// Server process died, a lane whose thread a serving process has loaded is not its.
    async fn reconcile(self: &Arc<Self>, mut lanes: Vec<LaneRow>, why: Why) -> usize {
        if lanes.is_empty() {
            return 0;
        }
        let Some((reader, _)) = self.app_server().current() else {
            tracing::warn!("no App Server to reconcile lanes with");
            return 0;
        };
        let loaded = match self.loaded_in_pool().await {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::warn!(%err, "listing loaded threads; lanes are reconciled later");
                return 0;
            }
        };
        if why == Why::AppServerRestart {
            lanes.retain(|lane| !loaded.contains_key(&lane.thread_id));
        }
        let count = lanes.len();
        let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut tasks = tokio::task::JoinSet::new();
        for lane in lanes {
            let loaded_in = loaded.get(&lane.thread_id).cloned();
            let is_loaded = loaded_in.is_some();
            let (service, server, gate) = (
                Arc::clone(self),
                loaded_in.unwrap_or_else(|| reader.clone()),
                Arc::clone(&gate),
            );
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                service.reconcile_lane(&server, is_loaded, &lane, why).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        // What reconciling stored is folded into search and history now, not at the event
        // pump's next drain (until then `history` would count it on every read).
        fold_items(self).await;
        self.events_stored().await;
        count
    }

    /// Reconciles one lane now, e.g. when Codex says it runs nothing but the registry
    /// believes otherwise.
    pub async fn reconcile_one(&self, lane: &LaneRow) {
        let Some((reader, _)) = self.app_server().current() else {
            return;
        };
        match self.loaded_in_pool().await {
            Ok(loaded) => {
                let loaded_in = loaded.get(&lane.thread_id).cloned();
                let is_loaded = loaded_in.is_some();
                let server = loaded_in.unwrap_or(reader);
                self.reconcile_lane(&server, is_loaded, lane, Why::Silence)
                    .await;
                fold_items(self).await;
                self.events_stored().await;
            }
            Err(err) => tracing::warn!(%err, "listing loaded threads"),
        }
    }

    /// Every thread a serving App Server process has loaded, with that process.
    async fn loaded_in_pool(&self) -> Result<HashMap<String, AppServer>, codex_app_server::Error> {
        let mut loaded = HashMap::new();
        for process in self.app_server().ready() {
            let Some((server, _)) = self.app_server().current_of(process) else {
                continue;
            };
            match loaded_threads(&server).await {
                Ok(threads) => {
                    for thread_id in threads {
                        loaded.insert(thread_id, server.clone());
                    }
                }
                // It died meanwhile: it has nothing loaded.
                Err(codex_app_server::Error::Closed { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(loaded)
    }

    /// Records what Codex knows of `lane`'s latest turns.
    async fn reconcile_lane(&self, server: &AppServer, is_loaded: bool, lane: &LaneRow, why: Why) {
        let at_ms = now_ms();
        let read = server
            .call(&ThreadTurnsListParams {
                thread_id: lane.thread_id.clone(),
                limit: Some(TURNS_PER_LANE),
                items_view: Some(TurnItemsView::Full),
                ..Default::default()
            })
            .await;
        let turns: Vec<Turn> = match read {
            Ok(page) => page.data,
            // A thread Codex cannot read cannot be running anything in this App Server.
            Err(err) if !is_loaded => {
                tracing::warn!(lane = lane.lane_ref, %err, "reading a lane's turns");
                Vec::new()
            }
            Err(err) => {
                tracing::warn!(lane = lane.lane_ref, %err, "reading a running lane's turns");
                return;
            }
        };
        let tracked = lane
            .latest_turn
            .as_ref()
            .filter(|turn| turn.status == TurnStatus::InProgress);
        let mut batch = Vec::new();
        let mut facts = Vec::new();
        let mut ended = Vec::new();
        // Oldest first, so the newest turn ends up the latest.
        for turn in turns.iter().rev() {
            let mut row = turn_row(turn);
            if row.status == TurnStatus::InProgress && !is_loaded {
                row.status = TurnStatus::Interrupted;
            }
            let was_running = tracked.is_some_and(|t| t.turn_id == row.turn_id);
            if row.status != TurnStatus::InProgress && was_running {
                if row.status == TurnStatus::Interrupted && row.error.is_none() {
                    row.error = Some(why.interrupted().to_owned());
                    facts.push(interruption(&row, why, at_ms));
                }
                ended.push(row.clone());
            }
            facts.push(if row.status == TurnStatus::InProgress {
                Fact::TurnStarted {
                    turn_id: row.turn_id.clone(),
                    at_ms: row.started_at_ms.unwrap_or(at_ms),
                }
            } else {
                Fact::TurnCompleted { turn: row }
            });
            // Items read back are not news: they must not count as activity.
            let seen_at = lane.updated_at_ms.min(at_ms);
            facts.extend(
                turn.items
                    .iter()
                    .map(|item| item_fact(&turn.id, item, seen_at)),
            );
        }
        // The tracked turn is not among Codex's latest turns: it never got going.
        if let Some(turn) = tracked
            && !is_loaded
            && !turns.iter().any(|t| t.id == turn.turn_id)
        {
            let row = TurnRow {
                status: TurnStatus::Interrupted,
                error: Some(why.interrupted().to_owned()),
                completed_at_ms: Some(at_ms),
                duration_ms: None,
                ..turn.clone()
            };
            facts.push(interruption(&row, why, at_ms));
            facts.push(Fact::TurnCompleted { turn: row.clone() });
            ended.push(row);
        }
        if facts.is_empty() {
            return;
        }
        batch.push(Recorded {
            lane_ref: lane.lane_ref.as_str().into(),
            event: None,
            facts: facts.into(),
        });
        for turn in &ended {
            batch.push(Recorded {
                lane_ref: lane.lane_ref.as_str().into(),
                event: Some(NewEvent {
                    method: TURN_ENDED.into(),
                    turn_id: Some(turn.turn_id.clone()),
                    at_ms,
                    params: json!({
                        "threadId": lane.thread_id,
                        "turn": {
                            "id": turn.turn_id,
                            "status": turn.status.as_str(),
                            "error": turn.error.as_ref().map(|message| json!({ "message": message })),
                        },
                    })
                    .to_string()
                    .into(),
                }),
                facts: Default::default(),
            });
        }
        if let Err(err) = self.registry().record(&batch).await {
            tracing::error!(lane = lane.lane_ref, %err, "recording a reconciled lane");
            return;
        }
        if !ended.is_empty() && !is_loaded {
            self.cancel_requests(&lane.lane_ref, at_ms).await;
        }
        if !ended.is_empty() {
            tracing::info!(
                lane = lane.lane_ref,
                turns = ended.len(),
                ?why,
                "reconciled"
            );
        }
    }

    /// Cancels the lane's pending server requests: the App Server that asked is gone.
    async fn cancel_requests(&self, lane_ref: &str, at_ms: i64) {
        match self.registry().pending_requests(Some(lane_ref)).await {
            Ok(pending) => {
                for request in pending {
                    if let Err(err) = self
                        .registry()
                        .finish_request(request.id, RequestStatus::Cancelled, None, at_ms)
                        .await
                    {
                        tracing::warn!(%err, "cancelling a pending request");
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "reading pending requests"),
        }
    }

    /// Every so often, reconciles the running lanes that have been silent longer than the
    /// stall limit: a turn whose end was never reported is recorded as Codex knows it. Runs
    /// for as long as the daemon does.
    pub async fn watch_stalls(self: Arc<Self>) {
        let stall_after = self.stall_after();
        let every = (stall_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        let mut checked: std::collections::HashMap<String, i64> = Default::default();
        loop {
            tokio::time::sleep(every).await;
            let view = self.view();
            let filter = LaneFilter {
                status: None,
                include_archived: false,
                limit: 0,
            };
            let lanes = match self.registry().list_lanes(&filter).await {
                Ok(lanes) => lanes,
                Err(err) => {
                    tracing::warn!(%err, "listing lanes to find stalls");
                    continue;
                }
            };
            // Each silence is checked once; new activity makes a later silence a new one.
            let silent: Vec<LaneRow> = lanes
                .into_iter()
                .filter(|lane| crate::convert::stalled_since(lane, &view).is_some())
                .filter(|lane| checked.get(&lane.lane_ref) != Some(&lane.updated_at_ms))
                .collect();
            for lane in &silent {
                checked.insert(lane.lane_ref.clone(), lane.updated_at_ms);
            }
            self.reconcile(silent, Why::Silence).await;
        }
    }
}

/// An error fact saying why a turn was interrupted.
fn interruption(turn: &TurnRow, why: Why, at_ms: i64) -> Fact {
    Fact::Error {
        turn_id: Some(turn.turn_id.clone()),
        message: why.interrupted().to_owned(),
        will_retry: false,
        cause: Some(Cause::Interrupted.as_str().to_owned()),
        at_ms,
    }
}

/// The threads loaded in `server`.
async fn loaded_threads(server: &AppServer) -> Result<Vec<String>, codex_app_server::Error> {
    let mut loaded = Vec::new();
    let mut cursor = None;
    loop {
        let page = server
            .call(&ThreadLoadedListParams {
                cursor: cursor.take(),
                limit: None,
            })
            .await?;
        loaded.extend(page.data);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(loaded),
        }
    }
}
