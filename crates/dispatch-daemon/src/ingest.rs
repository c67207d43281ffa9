//! The event pump: every notification and server request of the App Server that concerns a
//! lane is persisted, in batches, with the lane state it implies. After an App Server restart,
//! turns that were running are marked interrupted and pending requests cancelled.

use std::borrow::Cow;
use std::sync::Arc;

use codex_app_server::protocol::{
    ErrorNotification, ServerNotification, ThreadActiveFlag, ThreadItem, ThreadStatus,
    TurnInterruptParams, UserInput,
};
use codex_app_server::{Event, ServerRequest};
use dispatch_registry::{
    Fact, Facts, LaneStatus, NewEvent, NewRequest, Recorded, RequestStatus, TurnRow, TurnStatus,
};
use serde_json::Value;
use smallvec::smallvec;

use dispatch_home::ApprovalPolicy;

use crate::convert::{goal_row, now_ms, wire_name};
use crate::provider_error;
use crate::reconcile::Why;
use crate::service::Service;

/// std's map with foldhash, seeded per map, cheaper than SipHash on the short ids every
/// notification is looked up by (ADR 0020, "Ingest, sixth round").
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// std's set with foldhash, as [`HashMap`].
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Events taken from the subscription into one registry transaction at the most. A batch
/// costs a fixed handful of statements, so a flood is stored in few, large transactions.
const BATCH: usize = 4096;
/// Stored events kept per lane; older ones are pruned (items, turns and errors stay).
const EVENTS_PER_LANE: u32 = 50_000;
/// Batches between two prunings.
const PRUNE_EVERY: u32 = 512;
/// How long the pump waits for a process whose events ended to be reaped.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one pump per App Server process of the pool for as long as the daemon lives.
pub async fn run(service: Arc<Service>) {
    let mut pumps = tokio::task::JoinSet::new();
    for process in 0..service.app_server().processes() {
        pumps.spawn(run_process(Arc::clone(&service), process));
    }
    while pumps.join_next().await.is_some() {}
}

/// The pump of App Server process `process`: after the process died its lanes are
/// reconciled (`Service::process_exited`), and after its restart too.
async fn run_process(service: Arc<Service>, process: usize) {
    let mut generations = service.app_server().generations(process);
    let mut seen_generation = 0;
    loop {
        let Some((server, generation)) = service.app_server().current_of(process) else {
            if generations.changed().await.is_err() {
                return;
            }
            continue;
        };
        // Subscribe before anything else, so no event of the new process is missed while the
        // recovery below talks to the registry and the App Server.
        let mut subscription = server.subscribe_lossless();
        let exited = server.exited();
        drop(server);
        if generation.incarnation != seen_generation {
            // A recycle replaced a quiescent process: nothing to reconcile, nothing to resume
            // (that is the point).
            if seen_generation != 0
                && !service
                    .app_server()
                    .is_recycled(process, generation.incarnation)
            {
                service.reconcile_running(Why::AppServerRestart).await;
                service.resume_loaded(process).await;
            }
            seen_generation = generation.incarnation;
        }
        let mut lanes = LaneCache::default();
        let mut checkpoints = Checkpoints::default();
        let mut batches: u32 = 0;
        // Whether batches were written since new items were last folded into search and
        // history.
        let mut unfolded = false;
        loop {
            tokio::select! {
                event = subscription.recv_raw() => {
                    let Some(first) = event else {
                        // Reaped, so that no one asks it anything any more (bounded: a child
                        // may hold its stdout open).
                        let _ = tokio::time::timeout(EXIT_WAIT, exited).await;
                        // A recycled process is not a death.
                        if !service
                            .app_server()
                            .is_recycled(process, generation.incarnation + 1)
                        {
                            service.process_exited(process).await;
                        }
                        // Its successor bumps the generation.
                        if generations.changed().await.is_err() {
                            return;
                        }
                        break;
                    };
                    let mut events = vec![first];
                    while events.len() < BATCH {
                        match subscription.try_recv_raw() {
                            Some(event) => events.push(event),
                            None => break,
                        }
                    }
                    let stored = events.len();
                    let turn_completed = events.iter().any(|(event, _)| {
                        matches!(event.notification(), Some(ServerNotification::TurnCompleted(_)))
                    });
                    unfolded |= persist(&service, &mut lanes, events).await;
                    if turn_completed {
                        service.recycle_soon(process);
                    }
                    let drained = subscription.is_empty();
                    // Fold new items into search and history between floods, not inside their
                    // batches (and not at all after notifications that stored nothing: an idle
                    // daemon does not open the ingest connection for them).
                    if drained && unfolded {
                        fold_items(&service).await;
                        unfolded = false;
                    }
                    // Checkpoint the WAL between floods, not inside their commits.
                    checkpoints.stored(stored);
                    if checkpoints.due(drained) {
                        checkpoints.run(&service).await;
                    }
                    batches = batches.wrapping_add(1);
                    if batches.is_multiple_of(PRUNE_EVERY) {
                        match service.registry().prune_events(EVENTS_PER_LANE).await {
                            Ok(0) => {}
                            Ok(pruned) => tracing::info!(pruned, "pruned old events"),
                            Err(err) => tracing::warn!(%err, "pruning old events"),
                        }
                    }
                }
                changed = generations.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Events stored since the last WAL checkpoint above which one runs as soon as the
/// subscription is drained.
const CHECKPOINT_IDLE_AFTER: usize = 4096;
/// Events stored since the last WAL checkpoint above which one runs even in the middle of a
/// flood, so that the WAL stays bounded (about 100 MiB with the flood's small events).
const CHECKPOINT_ANYWAY_AFTER: usize = 500_000;

/// When the ingest checkpoints the registry's WAL: the ingest connection does not checkpoint
/// on commit (see `dispatch_registry::Registry::checkpoint`), so that a flood's commits stay
/// short; the WAL is folded into the database once the flood has been stored.
#[derive(Default)]
struct Checkpoints {
    since: usize,
}

impl Checkpoints {
    fn stored(&mut self, events: usize) {
        self.since = self.since.saturating_add(events);
    }

    fn due(&self, drained: bool) -> bool {
        (drained && self.since >= CHECKPOINT_IDLE_AFTER) || self.since >= CHECKPOINT_ANYWAY_AFTER
    }

    async fn run(&mut self, service: &Service) {
        self.since = 0;
        // In the middle of a long flood, so that what is pending stays bounded too.
        fold_items(service).await;
        if let Err(err) = service.registry().checkpoint().await {
            tracing::warn!(%err, "checkpointing the registry's WAL");
        }
    }
}

/// Folds the items stored since the last time into the full-text index and the per-lane
/// counts (`Registry::fold_items`); a search does the same first, and `history` counts what
/// is not folded yet, so a failure here delays nothing a search or `history` can see.
pub(crate) async fn fold_items(service: &Service) {
    if let Err(err) = service.registry().fold_items().await {
        tracing::warn!(%err, "folding new items into search and history");
    }
}

/// Notifications kept per thread that is not a lane (yet), and threads kept at the most.
const EARLY_PER_THREAD: usize = 64;
const EARLY_THREADS: usize = 256;

/// thread id → lane ref, so most events need no query; and the notifications of threads that
/// are not lanes yet: `thread/start` answers before `new` has created the lane, and what
/// the App Server says in between belongs to the lane once it exists.
#[derive(Default)]
struct LaneCache {
    refs: HashMap<String, Option<Arc<str>>>,
    early: HashMap<String, Vec<Received>>,
    /// Turns dispatch interrupted because the provider refused the credentials, with the
    /// message to record: they end as failed, not interrupted.
    auth_failed: HashMap<String, String>,
    /// [`Service::lanes_removed`] when `refs` was last valid.
    removed: u64,
    /// Running review turns (`review/start`, seen by their `enteredReviewMode` item).
    reviews: HashSet<String>,
}

impl LaneCache {
    async fn lane_of(&mut self, service: &Service, thread_id: &str) -> Option<Arc<str>> {
        if let Some(Some(known)) = self.refs.get(thread_id) {
            return Some(Arc::clone(known));
        }
        // Unknown threads are asked again: a lane may have been created since.
        let found = match service.registry().lane_by_thread(thread_id).await {
            Ok(row) => row.map(|r| Arc::from(r.lane_ref)),
            Err(err) => {
                tracing::warn!(%err, "looking up a lane by thread");
                None
            }
        };
        self.refs.insert(thread_id.to_owned(), found.clone());
        found
    }

    /// Keeps `notification` of a thread that is not a lane, within bounds.
    fn keep_early(&mut self, thread_id: &str, notification: Received) {
        if !self.early.contains_key(thread_id) && self.early.len() >= EARLY_THREADS {
            self.early.clear();
        }
        let kept = self.early.entry(thread_id.to_owned()).or_default();
        if kept.len() < EARLY_PER_THREAD {
            kept.push(notification);
        }
    }

    /// Whether `notification` starts the inner turn of a running review. Codex runs a review
    /// as a turn (the one `review/start` answers with, which ends with `turn/completed`) that
    /// starts an inner turn (its `rootTurnId` is the review's) whose end is never reported:
    /// recorded as the lane's turn, it would leave the lane busy for ever.
    fn inside_review(&mut self, notification: &ServerNotification) -> bool {
        match notification {
            ServerNotification::ItemStarted(n)
                if matches!(n.item, ThreadItem::EnteredReviewMode(_)) =>
            {
                if self.reviews.len() >= EARLY_THREADS {
                    self.reviews.clear();
                }
                self.reviews.insert(n.turn_id.clone());
                false
            }
            ServerNotification::TurnStarted(n) => n
                .turn
                .root_turn_id
                .as_ref()
                .is_some_and(|root| *root != n.turn.id && self.reviews.contains(root)),
            ServerNotification::TurnCompleted(n) => {
                self.reviews.remove(&n.turn.id);
                false
            }
            _ => false,
        }
    }

    /// The notifications kept for `thread_id` before it became a lane.
    fn take_early(&mut self, thread_id: &str) -> Vec<Received> {
        self.early.remove(thread_id).unwrap_or_default()
    }
}

/// Whether `notification` says the thread's context was compacted: the `contextCompaction`
/// item completed, or (deprecated, still sent) `thread/compacted`.
fn compacted(notification: &ServerNotification) -> bool {
    match notification {
        ServerNotification::ContextCompacted(_) => true,
        ServerNotification::ItemCompleted(n) => matches!(n.item, ThreadItem::ContextCompaction(_)),
        _ => false,
    }
}

/// A notification and its params as the App Server sent them.
type Received = (Arc<ServerNotification>, Option<Arc<str>>);

/// Stores `events`; returns whether a batch was written.
async fn persist(
    service: &Service,
    lanes: &mut LaneCache,
    events: Vec<(Event, Option<Arc<str>>)>,
) -> bool {
    let mut written = false;
    // A lane was deleted: the threads it cached may be gone with it.
    let removed = service.lanes_removed();
    if lanes.removed != removed {
        lanes.refs.clear();
        lanes.removed = removed;
    }
    let mut batch = Vec::with_capacity(events.len());
    for (event, raw) in events {
        match event {
            Event::Notification(notification) => {
                if let ServerNotification::AccountRateLimitsUpdated(n) = notification.as_ref() {
                    service.note_rate_limits(now_ms(), n.rate_limits.clone());
                    continue;
                }
                let Some(thread_id) = notification.thread_id() else {
                    continue;
                };
                let Some(lane_ref) = lanes.lane_of(service, thread_id).await else {
                    let thread_id = thread_id.to_owned();
                    lanes.keep_early(&thread_id, (notification, raw));
                    continue;
                };
                for (early, early_raw) in lanes.take_early(thread_id) {
                    batch.push(record(
                        Arc::clone(&lane_ref),
                        early,
                        early_raw,
                        &mut lanes.auth_failed,
                    ));
                }
                if let ServerNotification::Error(error) = notification.as_ref() {
                    end_refused_turn(service, lanes, error);
                }
                // Read before `record` takes the notification (moving its texts out).
                let inside_review = lanes.inside_review(&notification);
                let compacted = compacted(&notification);
                let resolved = match notification.as_ref() {
                    ServerNotification::ServerRequestResolved(resolved) => {
                        Some((thread_id.to_owned(), resolved.request_id.clone()))
                    }
                    _ => None,
                };
                let mut recorded = record(lane_ref, notification, raw, &mut lanes.auth_failed);
                if inside_review {
                    // The review's inner turn: the lane's turn stays the review's own.
                    recorded
                        .facts
                        .retain(|f| !matches!(f, Fact::TurnStarted { .. }));
                }
                let lane_ref: &str = &recorded.lane_ref;
                if compacted
                    && let Err(err) = service.registry().note_compacted(lane_ref, now_ms()).await
                {
                    tracing::warn!(%err, lane = lane_ref, "recording a compaction");
                }
                if let Some((thread_id, request_id)) = resolved {
                    let lane_ref = lane_ref.to_owned();
                    batch.push(recorded);
                    written |= flush(service, &mut batch).await;
                    settle_request(service, &lane_ref, &thread_id, &request_id).await;
                } else {
                    batch.push(recorded);
                }
            }
            Event::ServerRequest(request) => {
                // Keep the order: what came before the request is stored first.
                written |= flush(service, &mut batch).await;
                let Some(thread_id) = request.thread_id().map(str::to_owned) else {
                    tracing::warn!(method = %request.method, "a server request without a thread is left pending");
                    continue;
                };
                if let Some(lane_ref) = lanes.lane_of(service, &thread_id).await {
                    hold_request(service, lane_ref.to_string(), thread_id, &request).await;
                }
            }
            Event::Lagged { missed } => {
                tracing::warn!(
                    missed,
                    "the event pump fell behind; some notifications were not stored"
                );
            }
        }
    }
    written | flush(service, &mut batch).await
}

/// Codex retries a provider that refused the credentials as if it were a network failure
/// (`Reconnecting... 1/5` with HTTP 401): retrying cannot help, so dispatch ends the turn at
/// the first such error, and records it as failed for authentication.
fn end_refused_turn(service: &Service, lanes: &mut LaneCache, error: &ErrorNotification) {
    let cause = provider_error::classify(&error.error);
    if !error.will_retry || !cause.is_authentication() {
        return;
    }
    if lanes.auth_failed.contains_key(&error.turn_id) {
        return;
    }
    lanes.auth_failed.insert(
        error.turn_id.clone(),
        provider_error::message(&error.error, cause),
    );
    let Ok((server, _)) = service.server_of(&error.thread_id) else {
        return;
    };
    let params = TurnInterruptParams {
        thread_id: error.thread_id.clone(),
        turn_id: error.turn_id.clone(),
    };
    tokio::spawn(async move {
        if let Err(err) = server.call(&params).await {
            tracing::warn!(%err, turn = params.turn_id, "ending a turn the provider refused");
        }
    });
}

/// Whether `fact` can change a lane's status, and so the daemon's idle flag: a turn starting
/// or ending, an explicit status, archiving. Items, deltas, errors (a retry only ever moves a
/// busy lane between busy and retrying), token usage, goals and titles cannot.
/// Exhaustive, so that a new kind of fact is decided here.
fn changes_status(fact: &Fact) -> bool {
    match fact {
        Fact::TurnStarted { .. }
        | Fact::TurnCompleted { .. }
        | Fact::Status(_)
        | Fact::Archived(_) => true,
        Fact::Item { .. }
        | Fact::ItemDelta { .. }
        | Fact::Error { .. }
        | Fact::Goal(_)
        | Fact::Title(_)
        | Fact::TokenUsage(_) => false,
    }
}

/// Writes `batch` (emptying it); returns whether there was anything to write.
async fn flush(service: &Service, batch: &mut Vec<Recorded>) -> bool {
    if batch.is_empty() {
        return false;
    }
    let status_changed = batch
        .iter()
        .any(|recorded| recorded.facts.iter().any(changes_status));
    match service.registry().record(batch).await {
        Ok(()) => {}
        // A lane deleted meanwhile: the others' events are stored without its own.
        Err(dispatch_registry::RegistryError::LaneNotFound { .. }) => {
            let mut kept = Vec::with_capacity(batch.len());
            for recorded in batch.drain(..) {
                if let Ok(Some(_)) = service.registry().lane(&recorded.lane_ref).await {
                    kept.push(recorded);
                }
            }
            if let Err(err) = service.registry().record(&kept).await {
                tracing::error!(%err, events = kept.len(), "storing events failed");
            }
        }
        Err(err) => tracing::error!(%err, events = batch.len(), "storing events failed"),
    }
    batch.clear();
    // The idle flag is a count over all lanes: in the middle of a flood of output, where no
    // status changes, it is not counted again after every batch.
    if status_changed {
        service.events_stored().await;
    } else {
        service.wake_watchers();
    }
    true
}

async fn hold_request(
    service: &Service,
    lane_ref: String,
    thread_id: String,
    request: &ServerRequest,
) {
    let params = &request.params;
    let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
    let new = NewRequest {
        lane_ref: lane_ref.clone(),
        thread_id,
        turn_id: text("turnId"),
        item_id: text("itemId"),
        method: request.method.clone(),
        rpc_id: serde_json::to_value(&request.id).unwrap_or(Value::Null),
        params: params.clone(),
        at_ms: now_ms(),
    };
    let row = match service.registry().insert_request(&new).await {
        Ok(row) => row,
        Err(err) => {
            tracing::error!(%err, "storing a server request failed; it stays pending in the App Server");
            return;
        }
    };
    if service.approval_policy() == ApprovalPolicy::Decline {
        service.decline_by_policy(row, request).await;
        return;
    }
    service.announce_request(&row).await;
    let event = NewEvent {
        method: request.method.clone().into(),
        turn_id: new.turn_id.clone(),
        at_ms: new.at_ms,
        params: params.to_string().into(),
    };
    let recorded = Recorded {
        lane_ref: lane_ref.into(),
        event: Some(event),
        facts: smallvec![Fact::Status(LaneStatus::WaitingApproval)],
    };
    if let Err(err) = service.registry().record(&[recorded]).await {
        tracing::error!(%err, "marking a lane waiting for approval failed");
    }
    service.events_stored().await;
}

/// A request settled elsewhere (or after our answer): it is no longer pending, and the lane
/// goes back to busy once nothing else waits.
async fn settle_request(
    service: &Service,
    lane_ref: &str,
    thread_id: &str,
    id: &codex_app_server::protocol::RequestId,
) {
    let registry = service.registry();
    let rpc_id = serde_json::to_value(id).unwrap_or(Value::Null);
    if let Ok(Some(pending)) = registry.pending_request_by_rpc_id(thread_id, &rpc_id).await {
        let _ = registry
            .finish_request(pending.id, RequestStatus::ResolvedElsewhere, None, now_ms())
            .await;
    }
    let waiting = registry
        .pending_requests(Some(lane_ref))
        .await
        .map(|p| !p.is_empty())
        .unwrap_or(false);
    let lane = registry.lane(lane_ref).await.ok().flatten();
    if !waiting && lane.is_some_and(|l| l.status == LaneStatus::WaitingApproval) {
        let recorded = Recorded {
            lane_ref: lane_ref.into(),
            event: None,
            facts: smallvec![Fact::Status(LaneStatus::Busy)],
        };
        if let Err(err) = registry.record(&[recorded]).await {
            tracing::warn!(%err, "returning a lane to busy");
        }
        service.events_stored().await;
    }
}

/// Codex's item kind as dispatch names it: `commandExecution` → `command`, else snake_case.
/// The kinds Codex sends most are static text (no allocation per item).
pub fn item_kind(kind: &str) -> Cow<'static, str> {
    if kind == "commandExecution" {
        return Cow::Borrowed("command");
    }
    if let Some(known) = KNOWN_KINDS.iter().find(|(wire, _)| *wire == kind) {
        return Cow::Borrowed(known.1);
    }
    Cow::Owned(snake_case(kind))
}

/// `camelCase` → `camel_case`, sized once: a `_` is added before each capital.
fn snake_case(kind: &str) -> String {
    let capitals = kind.bytes().filter(u8::is_ascii_uppercase).count();
    let mut out = String::with_capacity(kind.len() + capitals);
    for c in kind.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Codex's commonest item kinds and their snake_case names (a test checks each against the
/// general rule of [`item_kind`]).
const KNOWN_KINDS: [(&str, &str); 8] = [
    ("agentMessage", "agent_message"),
    ("reasoning", "reasoning"),
    ("userMessage", "user_message"),
    ("fileChange", "file_change"),
    ("mcpToolCall", "mcp_tool_call"),
    ("dynamicToolCall", "dynamic_tool_call"),
    ("webSearch", "web_search"),
    ("contextCompaction", "context_compaction"),
];

/// The text a user looks for in an item, and its status.
fn item_text(item: &ThreadItem) -> (Option<String>, Option<String>) {
    match item {
        ThreadItem::UserMessage(m) => {
            let text: Vec<&str> = m
                .content
                .iter()
                .filter_map(|input| match input {
                    UserInput::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            (Some(text.join("\n")), None)
        }
        ThreadItem::AgentMessage(m) => (Some(m.text.clone()), None),
        ThreadItem::Reasoning(r) => (Some(r.summary.join("\n")).filter(|s| !s.is_empty()), None),
        ThreadItem::CommandExecution(c) => (Some(c.command.clone()), Some(wire_name(&c.status))),
        ThreadItem::ExitedReviewMode(r) => (Some(r.review.clone()), None),
        ThreadItem::FileChange(f) => {
            let paths: Vec<String> = f.changes.iter().map(|c| c.path.clone()).collect();
            (Some(paths.join(", ")), Some(wire_name(&f.status)))
        }
        // The tool's name, for `history` and `search --tool`.
        ThreadItem::McpToolCall(m) => (
            Some(format!("{}.{}", m.server, m.tool)),
            Some(wire_name(&m.status)),
        ),
        ThreadItem::DynamicToolCall(d) => (
            Some(match &d.namespace {
                Some(namespace) => format!("{namespace}.{}", d.tool),
                None => d.tool.clone(),
            }),
            Some(wire_name(&d.status)),
        ),
        _ => (None, None),
    }
}

/// The registry's fact for one item of a turn.
pub fn item_fact(turn_id: &str, item: &ThreadItem, at_ms: i64) -> Fact {
    let (text, status) = item_text(item);
    Fact::Item {
        turn_id: Some(turn_id.to_owned()),
        item_id: item.id().to_owned(),
        kind: item_kind(item.kind()),
        text,
        status,
        at_ms,
    }
}

/// [`item_fact`] for an item the pump owns: an agent message's id and text are moved, not
/// copied (other kinds are copied from it as [`item_fact`] does).
fn item_fact_owned(turn_id: String, item: ThreadItem, at_ms: i64) -> Fact {
    match item {
        ThreadItem::AgentMessage(m) => Fact::Item {
            turn_id: Some(turn_id),
            item_id: m.id,
            kind: item_kind(AGENT_MESSAGE),
            text: Some(m.text),
            status: None,
            at_ms,
        },
        other => item_fact(&turn_id, &other, at_ms),
    }
}

/// Codex's kind of an agent message item (`ThreadItem::kind`).
const AGENT_MESSAGE: &str = "agentMessage";

fn seconds_or_ms(value: i64) -> i64 {
    // Codex reports turn times in seconds; be tolerant of milliseconds.
    if value > 100_000_000_000 {
        value
    } else {
        value * 1000
    }
}

/// A Codex turn as the registry stores it.
pub fn turn_row(turn: &codex_app_server::protocol::Turn) -> TurnRow {
    use codex_app_server::protocol::TurnStatus as Wire;
    TurnRow {
        turn_id: turn.id.clone(),
        status: match turn.status {
            Wire::InProgress => TurnStatus::InProgress,
            Wire::Completed => TurnStatus::Completed,
            Wire::Interrupted => TurnStatus::Interrupted,
            Wire::Failed => TurnStatus::Failed,
        },
        error: turn
            .error
            .as_ref()
            .map(|e| provider_error::message(e, provider_error::classify(e))),
        started_at_ms: turn.started_at.map(seconds_or_ms),
        completed_at_ms: turn.completed_at.map(seconds_or_ms),
        duration_ms: turn.duration_ms,
    }
}

/// The registry's record of one notification, whose params are stored as `raw` (the text the
/// App Server sent) when known; `auth_failed` holds the turns dispatch ended for
/// authentication (taken out when they complete).
///
/// When the pump holds the only reference to the notification (nobody else subscribes to its
/// thread), the texts of the kinds a flood is made of (items, deltas) are moved out of it
/// instead of copied: [`record_owned`]. Either way the record is the same.
fn record(
    lane_ref: Arc<str>,
    notification: Arc<ServerNotification>,
    raw: Option<Arc<str>>,
    auth_failed: &mut HashMap<String, String>,
) -> Recorded {
    let at_ms = now_ms();
    match Arc::try_unwrap(notification) {
        Ok(owned) => record_owned(lane_ref, owned, raw, auth_failed, at_ms),
        Err(shared) => record_shared(lane_ref, &shared, raw, auth_failed, at_ms),
    }
}

/// [`record_shared`] for a notification the pump owns: item and delta texts (ids, turn ids,
/// message texts) are moved into the record, not copied; other kinds, and notifications
/// without their params text, go to [`record_shared`].
fn record_owned(
    lane_ref: Arc<str>,
    notification: ServerNotification,
    raw: Option<Arc<str>>,
    auth_failed: &mut HashMap<String, String>,
    at_ms: i64,
) -> Recorded {
    let Some(params) = raw else {
        return record_shared(lane_ref, &notification, None, auth_failed, at_ms);
    };
    // Only an item's event is made here (deltas are not stored one by one).
    let method: Cow<'static, str> = match &notification {
        ServerNotification::ItemStarted(_) => Cow::Borrowed(ITEM_STARTED),
        ServerNotification::ItemCompleted(_) => Cow::Borrowed(ITEM_COMPLETED),
        _ => Cow::Borrowed(""),
    };
    let item = |turn_id: String, item: ThreadItem, started: bool| {
        let mut fact = item_fact_owned(turn_id.clone(), item, at_ms);
        if started {
            keep_folded_text(&mut fact);
        }
        (turn_id, fact)
    };
    let (turn_id, fact) = match notification {
        ServerNotification::AgentMessageDelta(n) => {
            return Recorded {
                lane_ref,
                event: None,
                facts: smallvec![Fact::ItemDelta {
                    turn_id: Some(n.turn_id),
                    item_id: n.item_id,
                    kind: DELTA_KIND.into(),
                    delta: n.delta,
                    at_ms,
                }],
            };
        }
        ServerNotification::ItemStarted(n) => item(n.turn_id, n.item, true),
        ServerNotification::ItemCompleted(n) => item(n.turn_id, n.item, false),
        other => return record_shared(lane_ref, &other, Some(params), auth_failed, at_ms),
    };
    Recorded {
        lane_ref,
        event: Some(NewEvent {
            method,
            turn_id: Some(turn_id),
            at_ms,
            params,
        }),
        facts: smallvec![fact],
    }
}

/// The methods of the notifications whose events `record_owned` makes.
const ITEM_STARTED: &str = "item/started";
const ITEM_COMPLETED: &str = "item/completed";

/// The kind of the item an `item/agentMessage/delta` is folded into.
const DELTA_KIND: &str = "agent_message";

/// An item that starts empty must not wipe text folded from deltas.
fn keep_folded_text(fact: &mut Fact) {
    if let Fact::Item { text, .. } = fact {
        *text = text.take().filter(|t| !t.is_empty());
    }
}

/// The registry's record of one notification (see [`record`]), its texts copied.
fn record_shared(
    lane_ref: Arc<str>,
    notification: &ServerNotification,
    raw: Option<Arc<str>>,
    auth_failed: &mut HashMap<String, String>,
    at_ms: i64,
) -> Recorded {
    let params = match raw {
        Some(raw) => raw,
        None => notification.params().to_string().into(),
    };
    let mut event = Some(NewEvent {
        method: Cow::Owned(notification.method().to_owned()),
        turn_id: None,
        at_ms,
        params,
    });
    let mut turn = None;
    let facts = match notification {
        ServerNotification::TurnStarted(n) => {
            turn = Some(n.turn.id.clone());
            smallvec![Fact::TurnStarted {
                turn_id: n.turn.id.clone(),
                at_ms,
            }]
        }
        ServerNotification::TurnCompleted(n) => {
            turn = Some(n.turn.id.clone());
            let mut row = turn_row(&n.turn);
            if let Some(message) = auth_failed.remove(&n.turn.id) {
                row.status = TurnStatus::Failed;
                row.error = Some(message);
            }
            smallvec![Fact::TurnCompleted { turn: row }]
        }
        ServerNotification::ItemStarted(n) => {
            turn = Some(n.turn_id.clone());
            let mut fact = item_fact(&n.turn_id, &n.item, at_ms);
            keep_folded_text(&mut fact);
            smallvec![fact]
        }
        ServerNotification::ItemCompleted(n) => {
            turn = Some(n.turn_id.clone());
            smallvec![item_fact(&n.turn_id, &n.item, at_ms)]
        }
        ServerNotification::AgentMessageDelta(n) => {
            // Deltas are folded into their item, not stored one by one.
            event = None;
            smallvec![Fact::ItemDelta {
                turn_id: Some(n.turn_id.clone()),
                item_id: n.item_id.clone(),
                kind: DELTA_KIND.into(),
                delta: n.delta.clone(),
                at_ms,
            }]
        }
        ServerNotification::Error(n) => {
            turn = Some(n.turn_id.clone());
            let cause = provider_error::classify(&n.error);
            let message = provider_error::message(&n.error, cause);
            smallvec![
                Fact::Error {
                    turn_id: Some(n.turn_id.clone()),
                    message: message.clone(),
                    will_retry: n.will_retry,
                    cause: Some(cause.as_str().to_owned()),
                    at_ms,
                },
                Fact::Item {
                    turn_id: Some(n.turn_id.clone()),
                    item_id: format!("error-{}-{at_ms}", n.turn_id),
                    kind: "error".into(),
                    text: Some(message),
                    status: Some(if n.will_retry { "retrying" } else { "final" }.to_owned()),
                    at_ms,
                },
            ]
        }
        ServerNotification::ThreadStatusChanged(n) => match &n.status {
            ThreadStatus::Active(flags) if flags.contains(&ThreadActiveFlag::WaitingOnApproval) => {
                smallvec![Fact::Status(LaneStatus::WaitingApproval)]
            }
            ThreadStatus::Active(_) => smallvec![Fact::Status(LaneStatus::Busy)],
            ThreadStatus::SystemError => smallvec![Fact::Status(LaneStatus::Error)],
            // Idle follows the turn's own end, which decides between idle and error.
            ThreadStatus::Idle | ThreadStatus::NotLoaded => Facts::new(),
        },
        ServerNotification::ThreadTokenUsageUpdated(n) => {
            turn = Some(n.turn_id.clone());
            // As text: the registry stores it as it is, and a `Value` tree costs dozens of
            // allocations per update.
            let usage = serde_json::to_string(&n.token_usage).unwrap_or_else(|_| "null".to_owned());
            smallvec![Fact::TokenUsage(usage.into())]
        }
        ServerNotification::ThreadGoalUpdated(n) => smallvec![Fact::Goal(Some(goal_row(&n.goal)))],
        ServerNotification::ThreadGoalCleared(_) => smallvec![Fact::Goal(None)],
        ServerNotification::ThreadNameUpdated(n) => smallvec![Fact::Title(n.thread_name.clone())],
        ServerNotification::Other { method, .. }
            if method.to_ascii_lowercase().contains("delta") =>
        {
            event = None;
            Facts::new()
        }
        ServerNotification::ThreadArchived(_) => smallvec![Fact::Archived(true)],
        ServerNotification::ThreadUnarchived(_) => smallvec![Fact::Archived(false)],
        _ => Facts::new(),
    };
    if let Some(event) = &mut event {
        event.turn_id = turn;
    }
    Recorded {
        lane_ref,
        event,
        facts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Notifications of the kinds `record_owned` moves texts out of, and some it does not.
    fn notifications() -> Vec<(ServerNotification, Option<Arc<str>>)> {
        let item = |kind: &str, item: Value| {
            let params = json!({
                "threadId": "th", "turnId": "tu", "item": item,
                "startedAtMs": 1, "completedAtMs": 2,
            });
            let raw: Arc<str> = params.to_string().into();
            (
                ServerNotification::from_parts(kind.into(), params),
                Some(raw),
            )
        };
        let delta = json!({"threadId": "th", "turnId": "tu", "itemId": "i1", "delta": "hel"});
        vec![
            (
                ServerNotification::from_parts("item/agentMessage/delta".into(), delta.clone()),
                Some(delta.to_string().into()),
            ),
            (
                ServerNotification::from_parts("item/agentMessage/delta".into(), delta),
                None,
            ),
            item(
                "item/started",
                json!({"type": "agentMessage", "id": "i1", "text": ""}),
            ),
            item(
                "item/started",
                json!({"type": "agentMessage", "id": "i1", "text": "hel"}),
            ),
            item(
                "item/completed",
                json!({"type": "agentMessage", "id": "i1", "text": "hello"}),
            ),
            item(
                "item/completed",
                json!({"type": "userMessage", "id": "u1", "content": [{"type": "text", "text": "go"}]}),
            ),
            item(
                "item/completed",
                json!({"type": "brandNewKind", "id": "w1", "query": "q"}),
            ),
            (
                ServerNotification::from_parts(
                    "warning".into(),
                    json!({"threadId": "th", "message": "m"}),
                ),
                None,
            ),
        ]
    }

    #[test]
    fn item_kinds_are_snake_case_in_one_allocation() {
        for (kind, expected) in [
            ("commandExecution", "command"),
            ("agentMessage", "agent_message"),
            ("userMessage", "user_message"),
            ("plan", "plan"),
            ("aB", "a_b"),
            ("", ""),
        ] {
            let named = item_kind(kind);
            assert_eq!(named, expected);
            if let Cow::Owned(named) = named {
                assert_eq!(named.capacity(), expected.len(), "{kind}: sized once");
            }
        }
    }

    /// The static names of the commonest kinds are what the general rule gives, and they are
    /// not allocated.
    #[test]
    fn known_item_kinds_are_static_and_follow_the_rule() {
        for (wire, name) in KNOWN_KINDS {
            assert!(matches!(item_kind(wire), Cow::Borrowed(_)), "{wire}");
            assert_eq!(name, snake_case(wire), "{wire}");
        }
        assert!(matches!(item_kind("somethingNew"), Cow::Owned(_)));
    }

    /// Moving the texts out of a notification the pump owns records exactly what copying them
    /// from a shared one does.
    #[test]
    fn an_owned_notification_is_recorded_as_a_shared_one() {
        for (notification, raw) in notifications() {
            assert!(
                !matches!(notification, ServerNotification::Other { .. }),
                "{notification:?}"
            );
            let shared = record_shared(
                "lane".into(),
                &notification,
                raw.clone(),
                &mut HashMap::default(),
                7,
            );
            let owned = record_owned(
                "lane".into(),
                notification.clone(),
                raw,
                &mut HashMap::default(),
                7,
            );
            assert_eq!(owned, shared, "{notification:?}");
        }
    }

    /// A message's text and ids are moved out of a notification nobody else holds, not copied;
    /// one somebody else holds (a thread's subscriber) is left whole.
    #[test]
    fn an_item_text_is_moved_out_of_a_notification_the_pump_alone_holds() {
        let (notification, raw) = notifications().swap_remove(4);
        let ServerNotification::ItemCompleted(completed) = &notification else {
            panic!("not an item: {notification:?}");
        };
        let ThreadItem::AgentMessage(message) = &completed.item else {
            panic!("not a message: {completed:?}");
        };
        let (text, id) = (message.text.as_ptr(), message.id.as_ptr());
        let notification = Arc::new(notification);
        let held = Arc::clone(&notification);
        let copied = record(
            "lane".into(),
            notification,
            raw.clone(),
            &mut HashMap::default(),
        );
        let moved = record("lane".into(), held, raw, &mut HashMap::default());
        let texts = |recorded: &Recorded| match recorded.facts.as_slice() {
            [
                Fact::Item {
                    text: Some(text),
                    item_id,
                    ..
                },
            ] => (text.as_ptr(), item_id.as_ptr()),
            other => panic!("not one item: {other:?}"),
        };
        assert_ne!(
            texts(&copied),
            (text, id),
            "a shared notification is copied from"
        );
        assert_eq!(
            texts(&moved),
            (text, id),
            "the last holder's texts are moved"
        );
    }

    /// The idle flag (no lane busy, retrying or waiting) is counted again only after a batch
    /// holding one of these facts; a flood of output (items, deltas, token usage) holds none.
    #[test]
    fn only_turns_statuses_and_archiving_can_change_the_idle_flag() {
        let turn = TurnRow {
            turn_id: "t".into(),
            status: TurnStatus::Completed,
            error: None,
            started_at_ms: None,
            completed_at_ms: None,
            duration_ms: None,
        };
        for fact in [
            Fact::TurnStarted {
                turn_id: "t".into(),
                at_ms: 1,
            },
            Fact::TurnCompleted { turn },
            Fact::Status(LaneStatus::WaitingApproval),
            Fact::Status(LaneStatus::Busy),
            Fact::Archived(true),
        ] {
            assert!(changes_status(&fact), "{fact:?}");
        }
        for fact in [
            Fact::Item {
                turn_id: Some("t".into()),
                item_id: "i".into(),
                kind: "agent_message".into(),
                text: Some("hi".into()),
                status: None,
                at_ms: 1,
            },
            Fact::ItemDelta {
                turn_id: Some("t".into()),
                item_id: "i".into(),
                kind: "agent_message".into(),
                delta: "hi".into(),
                at_ms: 1,
            },
            Fact::Error {
                turn_id: Some("t".into()),
                message: "retrying".into(),
                will_retry: true,
                cause: None,
                at_ms: 1,
            },
            Fact::TokenUsage("null".into()),
            Fact::Goal(None),
            Fact::Title(Some("x".into())),
        ] {
            assert!(!changes_status(&fact), "{fact:?}");
        }
    }
}
