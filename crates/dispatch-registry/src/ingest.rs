//! [`Registry::record`]: applying a batch of notifications in one transaction, fast.
//!
//! A batch costs a fixed handful of statements, however many notifications it holds:
//!
//! 1. the batch is folded in memory: events and errors are collected, all changes to one item
//!    become a single upsert (deltas concatenated), and each lane's state changes are listed
//!    in order;
//! 2. inside a write transaction, the lanes (and the turns the batch mentions) are read once;
//! 3. the lane facts are applied in memory, in order, to those rows;
//! 4. everything is written back with multi-row statements (see [`crate::bulk`]).

use std::collections::hash_map::Entry;
use std::sync::Arc;

use sqlx::error::BoxDynError;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Connection, SqliteConnection};

use crate::actions::now_ms;
use crate::bulk::{Bulk, Columns};
use crate::events::{Fact, NewEvent, Recorded};
use crate::lanes::{LaneRow, LaneStatus, RetryRow, TurnRow, TurnStatus, parse_lanes, select_lanes};
use crate::{Registry, RegistryError};

/// std's map with foldhash, seeded per map, cheaper than SipHash on the short keys a batch is
/// folded by (ADR 0020, "Ingest, sixth round").
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What [`Registry::record`] is doing, for error messages.
const CONTEXT: &str = "recording lane events";

/// A batch, folded.
#[derive(Debug, Default)]
struct Plan<'a> {
    /// Distinct lanes in first-seen order, with their state changes.
    lanes: Vec<LanePlan<'a>>,
    /// Index into `lanes` by ref.
    lane_index: HashMap<&'a str, usize>,
    /// Events to store, in order, with their lane.
    events: Vec<(&'a Arc<str>, &'a NewEvent)>,
    /// One folded change per item, in first-seen order.
    items: Vec<ItemChange<'a>>,
    /// Index into `items` by `(lane, turn, item)`.
    item_index: HashMap<(&'a str, &'a str, &'a str), usize>,
    /// Errors to store, in order.
    errors: Vec<ErrorChange<'a>>,
    /// The `(lane, turn)` pairs that turn facts mention.
    turns: Vec<(&'a str, &'a str)>,
}

/// One lane's state changes, in order.
#[derive(Debug)]
struct LanePlan<'a> {
    /// The lane's ref as the records share it (bound without a copy).
    lane_ref: &'a Arc<str>,
    /// The facts that change the lane's row or turns.
    facts: Vec<&'a Fact>,
    /// The latest `at_ms` seen for the lane in this batch.
    max_at_ms: Option<i64>,
}

/// What happens to an item's text.
#[derive(Debug)]
enum TextChange<'a> {
    /// Left as it is.
    Keep,
    /// Deltas appended to the stored text.
    Append(String),
    /// Replaced (and possibly appended to afterwards).
    Replace(std::borrow::Cow<'a, str>),
}

/// All changes to one item in a batch.
#[derive(Debug)]
struct ItemChange<'a> {
    lane_ref: &'a Arc<str>,
    item_id: &'a str,
    /// The turn, `""` for none (part of the item's identity).
    turn_id: &'a str,
    kind: &'a str,
    text: TextChange<'a>,
    status: Option<&'a str>,
    /// When the item was first seen in this batch.
    at_ms: i64,
}

impl ItemChange<'_> {
    fn text(&self) -> Option<&str> {
        match &self.text {
            TextChange::Keep => None,
            TextChange::Append(text) => Some(text),
            TextChange::Replace(text) => Some(text),
        }
    }
}

/// An error to store.
#[derive(Debug)]
struct ErrorChange<'a> {
    lane_ref: &'a str,
    turn_id: Option<&'a str>,
    message: &'a str,
    will_retry: bool,
    cause: Option<&'a str>,
    at_ms: i64,
}

impl<'a> Plan<'a> {
    /// Folds a batch.
    fn build(batch: &'a [Recorded]) -> Plan<'a> {
        let mut plan = Plan {
            events: Vec::with_capacity(batch.len()),
            ..Plan::default()
        };
        for recorded in batch {
            let lane = plan.lane(&recorded.lane_ref);
            if let Some(event) = &recorded.event {
                plan.events.push((&recorded.lane_ref, event));
                plan.lanes[lane].seen(event.at_ms);
            }
            for fact in &recorded.facts {
                plan.fact(lane, fact);
            }
        }
        plan.turns.sort_unstable();
        plan.turns.dedup();
        plan
    }

    /// The index of the lane's plan, created if new.
    fn lane(&mut self, lane_ref: &'a Arc<str>) -> usize {
        match self.lane_index.entry(lane_ref.as_ref()) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                self.lanes.push(LanePlan {
                    lane_ref,
                    facts: Vec::new(),
                    max_at_ms: None,
                });
                *entry.insert(self.lanes.len() - 1)
            }
        }
    }

    /// Folds one fact about lane number `lane`.
    fn fact(&mut self, lane: usize, fact: &'a Fact) {
        let shared_ref = self.lanes[lane].lane_ref;
        let lane_ref: &'a str = shared_ref;
        match fact {
            Fact::TurnStarted { turn_id, at_ms } => {
                self.turns.push((lane_ref, turn_id));
                self.lanes[lane].facts.push(fact);
                self.lanes[lane].seen(*at_ms);
            }
            Fact::TurnCompleted { turn } => {
                self.turns.push((lane_ref, &turn.turn_id));
                self.lanes[lane].facts.push(fact);
                for at_ms in [turn.started_at_ms, turn.completed_at_ms]
                    .into_iter()
                    .flatten()
                {
                    self.lanes[lane].seen(at_ms);
                }
            }
            Fact::Item {
                turn_id,
                item_id,
                kind,
                text,
                status,
                at_ms,
            } => {
                let change = self.item(
                    shared_ref,
                    turn_id.as_deref(),
                    item_id,
                    kind.as_ref(),
                    *at_ms,
                );
                if status.is_some() {
                    change.status = status.as_deref();
                }
                if let Some(text) = text {
                    change.text = TextChange::Replace(text.as_str().into());
                }
                self.lanes[lane].seen(*at_ms);
                self.lanes[lane].facts.push(fact);
            }
            Fact::ItemDelta {
                turn_id,
                item_id,
                kind,
                delta,
                at_ms,
            } => {
                let change = self.item(
                    shared_ref,
                    turn_id.as_deref(),
                    item_id,
                    kind.as_ref(),
                    *at_ms,
                );
                match &mut change.text {
                    TextChange::Keep => change.text = TextChange::Append(delta.clone()),
                    TextChange::Append(text) => text.push_str(delta),
                    TextChange::Replace(text) => text.to_mut().push_str(delta),
                }
                self.lanes[lane].seen(*at_ms);
                self.lanes[lane].facts.push(fact);
            }
            Fact::Error {
                turn_id,
                message,
                will_retry,
                cause,
                at_ms,
            } => {
                self.errors.push(ErrorChange {
                    lane_ref,
                    turn_id: turn_id.as_deref(),
                    message,
                    will_retry: *will_retry,
                    cause: cause.as_deref(),
                    at_ms: *at_ms,
                });
                self.lanes[lane].seen(*at_ms);
                self.lanes[lane].facts.push(fact);
            }
            Fact::Status(_)
            | Fact::Archived(_)
            | Fact::Goal(_)
            | Fact::Title(_)
            | Fact::TokenUsage(_) => self.lanes[lane].facts.push(fact),
        }
    }

    /// The folded change of an item, created if new; its kind is the latest seen.
    fn item(
        &mut self,
        lane_ref: &'a Arc<str>,
        turn_id: Option<&'a str>,
        item_id: &'a str,
        kind: &'a str,
        at_ms: i64,
    ) -> &mut ItemChange<'a> {
        let turn_id = turn_id.unwrap_or("");
        let index = match self.item_index.entry((lane_ref.as_ref(), turn_id, item_id)) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                self.items.push(ItemChange {
                    lane_ref,
                    item_id,
                    turn_id,
                    kind,
                    text: TextChange::Keep,
                    status: None,
                    at_ms,
                });
                *entry.insert(self.items.len() - 1)
            }
        };
        let change = &mut self.items[index];
        change.kind = kind;
        change
    }
}

impl LanePlan<'_> {
    fn seen(&mut self, at_ms: i64) {
        self.max_at_ms = Some(self.max_at_ms.map_or(at_ms, |max| max.max(at_ms)));
    }
}

/// A lane's row as the batch changes it.
#[derive(Debug)]
struct LaneState {
    row: LaneRow,
    /// The status underneath the archived flag; never [`LaneStatus::Archived`].
    live: LaneStatus,
    /// Whether a fact set the title. Titles are written apart from the other columns, so that
    /// triggers on title updates (search indexing) fire only when a title was set.
    title_set: bool,
    /// The token usage a fact set, as JSON text: bound as it is, instead of `row.token_usage`
    /// (which `apply` leaves as it was read).
    token_usage: Option<Arc<str>>,
    /// The transitions the batch caused, in order (stored as `lane_events`).
    transitions: Vec<Transition>,
}

/// A transition of a lane that orchestration acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transition {
    kind: &'static str,
    turn_id: Option<String>,
    status: Option<TurnStatus>,
    error: Option<String>,
    at_ms: i64,
}

impl LaneState {
    /// Applies one lane fact (see [`Fact`] for the rules).
    fn apply(&mut self, fact: &Fact, turns: &mut HashMap<(String, String), TurnRow>) {
        match fact {
            Fact::TurnStarted { turn_id, at_ms } => {
                let lane_ref = self.row.lane_ref.clone();
                let new_turn = !self.is_latest(turn_id)
                    && !turns.contains_key(&(lane_ref.clone(), turn_id.clone()));
                let turn = turns
                    .entry((lane_ref, turn_id.clone()))
                    .and_modify(|turn| turn.started_at_ms = turn.started_at_ms.or(Some(*at_ms)))
                    .or_insert_with(|| TurnRow {
                        turn_id: turn_id.clone(),
                        status: TurnStatus::InProgress,
                        error: None,
                        started_at_ms: Some(*at_ms),
                        completed_at_ms: None,
                        duration_ms: None,
                    });
                self.promote(turn);
                if new_turn && self.is_latest(turn_id) {
                    self.row.retry = None;
                    self.row.error_cause = None;
                    self.transitions.push(Transition {
                        kind: "turn_started",
                        turn_id: Some(turn_id.clone()),
                        status: None,
                        error: None,
                        at_ms: *at_ms,
                    });
                }
            }
            Fact::TurnCompleted { turn: new } => {
                let lane_ref = self.row.lane_ref.clone();
                let was_running = turns
                    .get(&(lane_ref.clone(), new.turn_id.clone()))
                    .is_some_and(|turn| turn.status == TurnStatus::InProgress);
                if was_running && new.status != TurnStatus::InProgress {
                    self.transitions.push(Transition {
                        kind: "turn_ended",
                        turn_id: Some(new.turn_id.clone()),
                        status: Some(new.status),
                        error: new.error.clone(),
                        at_ms: new.completed_at_ms.unwrap_or_else(now_ms),
                    });
                }
                let turn = match turns.entry((lane_ref, new.turn_id.clone())) {
                    Entry::Occupied(entry) => {
                        let turn = entry.into_mut();
                        turn.status = new.status;
                        turn.error = new.error.clone().or(turn.error.take());
                        turn.started_at_ms = new.started_at_ms.or(turn.started_at_ms);
                        turn.completed_at_ms = new.completed_at_ms.or(turn.completed_at_ms);
                        turn.duration_ms = new
                            .duration_ms
                            .or(elapsed(turn.started_at_ms, turn.completed_at_ms))
                            .or(turn.duration_ms);
                        turn
                    }
                    Entry::Vacant(entry) => {
                        let mut turn = new.clone();
                        turn.duration_ms = turn
                            .duration_ms
                            .or(elapsed(turn.started_at_ms, turn.completed_at_ms));
                        entry.insert(turn)
                    }
                };
                self.promote(turn);
                if self.is_latest(&new.turn_id) && new.status != TurnStatus::InProgress {
                    self.row.retry = None;
                    if new.status == TurnStatus::Completed {
                        self.row.error_cause = None;
                    }
                }
            }
            Fact::Error {
                turn_id,
                message,
                will_retry,
                cause,
                at_ms,
            } => {
                let running = self
                    .row
                    .latest_turn
                    .as_ref()
                    .filter(|turn| turn.status == TurnStatus::InProgress)
                    .is_some_and(|turn| turn_id.as_ref().is_none_or(|id| *id == turn.turn_id));
                if *will_retry && running {
                    let attempts = self.row.retry.as_ref().map_or(0, |retry| retry.attempts);
                    self.row.retry = Some(RetryRow {
                        attempts: attempts + 1,
                        error: Some(message.clone()),
                        at_ms: Some(*at_ms),
                    });
                } else if !*will_retry {
                    self.row.retry = None;
                }
                if running || !*will_retry {
                    self.row.error_cause = cause.clone();
                }
            }
            // Output of the running turn: whatever Codex was retrying went through.
            Fact::Item { turn_id, kind, .. } | Fact::ItemDelta { turn_id, kind, .. }
                if kind != "error"
                    && kind != "user_message"
                    && turn_id.as_deref().is_some_and(|id| self.is_latest(id)) =>
            {
                self.row.retry = None;
            }
            Fact::Status(LaneStatus::Archived) => self.row.archived = true,
            Fact::Status(LaneStatus::Retrying) => self.live = LaneStatus::Busy,
            Fact::Status(LaneStatus::WaitingApproval) => {
                if self.live != LaneStatus::WaitingApproval {
                    self.transitions.push(Transition {
                        kind: "approval",
                        turn_id: self.row.latest_turn.as_ref().map(|t| t.turn_id.clone()),
                        status: None,
                        error: None,
                        at_ms: now_ms(),
                    });
                }
                self.live = LaneStatus::WaitingApproval;
            }
            Fact::Status(status) => self.live = *status,
            Fact::Archived(archived) => self.row.archived = *archived,
            Fact::Goal(goal) => self.row.goal = goal.clone(),
            Fact::Title(title) => {
                self.row.title = title.clone();
                self.title_set = true;
            }
            Fact::TokenUsage(usage) => {
                debug_assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(usage).is_ok(),
                    "token usage is not JSON: {usage}"
                );
                self.token_usage = Some(Arc::clone(usage));
            }
            Fact::Item { .. } | Fact::ItemDelta { .. } => {}
        }
    }

    /// Whether `turn_id` is the lane's latest turn.
    fn is_latest(&self, turn_id: &str) -> bool {
        self.row
            .latest_turn
            .as_ref()
            .is_some_and(|turn| turn.turn_id == turn_id)
    }

    /// Makes `turn` the latest turn and derives the live status from it, unless a newer turn
    /// already is the latest: a turn becomes the latest if the lane has none, it already is
    /// the latest, it is in progress, or the latest is finished and did not start after it.
    fn promote(&mut self, turn: &TurnRow) {
        let same = self
            .row
            .latest_turn
            .as_ref()
            .is_some_and(|latest| latest.turn_id == turn.turn_id);
        let wins = match &self.row.latest_turn {
            None => true,
            Some(_) if same || turn.status == TurnStatus::InProgress => true,
            Some(latest) => {
                latest.status != TurnStatus::InProgress
                    && match (latest.started_at_ms, turn.started_at_ms) {
                        (Some(latest), Some(this)) => latest <= this,
                        _ => true,
                    }
            }
        };
        if !wins {
            return;
        }
        // A refreshed state of the running turn does not end a wait for an approval.
        let keep_waiting = same
            && turn.status == TurnStatus::InProgress
            && self.live == LaneStatus::WaitingApproval;
        if !keep_waiting {
            self.live = turn.status.lane_status();
        }
        self.row.latest_turn = Some(turn.clone());
    }
}

/// `completed - started`, when both are known.
fn elapsed(started: Option<i64>, completed: Option<i64>) -> Option<i64> {
    Some(completed? - started?)
}

/// Stores events; a chunk of one lane's turn binds the lane and the turn once.
static INSERT_EVENTS: Bulk = Bulk::sharing(
    "INSERT INTO events (method, lane_ref, turn_id, at_ms, params)",
    5,
    &EVENT_SHARED,
    ") WHERE column1 IS NOT NULL",
);

/// The columns of [`INSERT_EVENTS`] a chunk may bind once: the lane and the turn.
const EVENT_SHARED: [usize; 2] = [1, 2];

/// The columns of the item statements a chunk may bind once: the lane, the turn and the kind.
const ITEM_SHARED: [usize; 3] = [1, 2, 3];

/// Upserts items whose text is replaced.
static REPLACE_ITEMS: Bulk = Bulk::sharing(
    "INSERT INTO items (item_id, lane_ref, turn_id, kind, text, status, at_ms)",
    7,
    &ITEM_SHARED,
    ") WHERE column1 IS NOT NULL \
     ON CONFLICT (lane_ref, turn_id, item_id) DO UPDATE SET \
       kind = excluded.kind, \
       text = excluded.text, \
       status = COALESCE(excluded.status, items.status)",
);

/// Upserts items whose text is appended to.
static APPEND_ITEMS: Bulk = Bulk::sharing(
    "INSERT INTO items (item_id, lane_ref, turn_id, kind, text, status, at_ms)",
    7,
    &ITEM_SHARED,
    ") WHERE column1 IS NOT NULL \
     ON CONFLICT (lane_ref, turn_id, item_id) DO UPDATE SET \
       kind = excluded.kind, \
       text = COALESCE(items.text, '') || excluded.text, \
       status = COALESCE(excluded.status, items.status)",
);

/// Upserts items whose text is left alone (the text column is not even assigned, so triggers
/// on text updates do not fire).
static KEEP_ITEMS: Bulk = Bulk::sharing(
    "INSERT INTO items (item_id, lane_ref, turn_id, kind, text, status, at_ms)",
    7,
    &ITEM_SHARED,
    ") WHERE column1 IS NOT NULL \
     ON CONFLICT (lane_ref, turn_id, item_id) DO UPDATE SET \
       kind = excluded.kind, \
       status = COALESCE(excluded.status, items.status)",
);

/// Stores errors.
static INSERT_ERRORS: Bulk = Bulk::new(
    "INSERT INTO lane_errors (lane_ref, turn_id, message, will_retry, cause, at_ms) \
     SELECT * FROM (VALUES",
    6,
    ") WHERE column1 IS NOT NULL",
);

/// Writes turns in full.
static UPSERT_TURNS: Bulk = Bulk::new(
    "INSERT INTO turns (lane_ref, turn_id, status, error, started_at_ms, completed_at_ms, \
       duration_ms) SELECT * FROM (VALUES",
    7,
    ") WHERE column1 IS NOT NULL \
     ON CONFLICT (lane_ref, turn_id) DO UPDATE SET \
       status = excluded.status, error = excluded.error, \
       started_at_ms = excluded.started_at_ms, completed_at_ms = excluded.completed_at_ms, \
       duration_ms = excluded.duration_ms",
);

/// Stores lane transitions for orchestration to act on.
static INSERT_LANE_EVENTS: Bulk = Bulk::new(
    "INSERT INTO lane_events (lane_ref, kind, turn_id, status, at_ms) SELECT * FROM (VALUES",
    5,
    ") WHERE column1 IS NOT NULL",
);

/// Ends the deliveries (receipts) whose turn ended: `completed`, else `failed` with why.
static END_DELIVERIES: Bulk = Bulk::new(
    "WITH e (lane, turn, status, error, at) AS (VALUES",
    5,
    ") UPDATE deliveries SET \
       state = CASE e.status WHEN 'completed' THEN 'completed' ELSE 'failed' END, \
       error = CASE e.status WHEN 'completed' THEN NULL \
         ELSE COALESCE(e.error, 'the turn was ' || e.status) END, \
       updated_at_ms = e.at \
     FROM e WHERE deliveries.lane_ref = e.lane AND deliveries.turn_id = e.turn \
       AND deliveries.state = 'accepted'",
);

/// Writes the derived columns of lanes, all but the title.
static UPDATE_LANES: Bulk = Bulk::new(
    "WITH p (r, status, archived, goal_objective, goal_status, goal_token_budget, \
       goal_tokens_used, token_usage, latest_turn_id, latest_turn_status, latest_turn_error, \
       latest_turn_started_at_ms, latest_turn_completed_at_ms, latest_turn_duration_ms, \
       updated_at_ms, retry_attempts, retry_error, retry_at_ms, error_cause) AS (VALUES",
    19,
    ") UPDATE lanes SET status = p.status, archived = p.archived, \
       goal_objective = p.goal_objective, goal_status = p.goal_status, \
       goal_token_budget = p.goal_token_budget, goal_tokens_used = p.goal_tokens_used, \
       token_usage = p.token_usage, latest_turn_id = p.latest_turn_id, \
       latest_turn_status = p.latest_turn_status, latest_turn_error = p.latest_turn_error, \
       latest_turn_started_at_ms = p.latest_turn_started_at_ms, \
       latest_turn_completed_at_ms = p.latest_turn_completed_at_ms, \
       latest_turn_duration_ms = p.latest_turn_duration_ms, updated_at_ms = p.updated_at_ms, \
       retry_attempts = p.retry_attempts, retry_error = p.retry_error, \
       retry_at_ms = p.retry_at_ms, error_cause = p.error_cause \
     FROM p WHERE lanes.ref = p.r",
);

impl Registry {
    /// Applies a batch of notifications in one transaction: stores the events (skipping
    /// `None`), applies the facts in order, and moves each lane's `updated_at_ms` forward to
    /// the latest `at_ms` seen for it.
    ///
    /// Every lane must exist; otherwise nothing is written and the error is
    /// [`RegistryError::LaneNotFound`]. A batch costs a handful of statements whatever its
    /// size, so batch whatever has arrived since the last call: throughput grows with the
    /// batch size (see `benches/ingest.rs`).
    pub async fn record(&self, batch: &[Recorded]) -> Result<(), RegistryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let plan = Plan::build(batch);
        let mut writer = self.writer().await?;
        let result = match writer.conn() {
            Some(conn) => self.apply(conn, &plan).await,
            None => Err(RegistryError::db(
                self.path(),
                CONTEXT,
                sqlx::Error::PoolClosed,
            )),
        };
        if let Err(err) = &result
            && !matches!(err, RegistryError::LaneNotFound { .. })
        {
            // The transaction rolls back when dropped; after a database failure a fresh
            // connection also rules out any state the failure may have left behind.
            writer.discard();
        }
        result
    }

    /// Runs a folded batch in one transaction on `conn`.
    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        plan: &Plan<'_>,
    ) -> Result<(), RegistryError> {
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(RegistryError::db_with(self.path(), CONTEXT))?;
        let mut lanes = self.load_lanes(&mut tx, plan).await?;
        let mut turns = self.load_turns(&mut tx, plan).await?;
        for (lane, state) in plan.lanes.iter().zip(&mut lanes) {
            for fact in &lane.facts {
                state.apply(fact, &mut turns);
            }
            if let Some(at_ms) = lane.max_at_ms {
                state.row.updated_at_ms = state.row.updated_at_ms.max(at_ms);
            }
        }
        self.write(&mut tx, plan, &lanes, &turns).await?;
        tx.commit()
            .await
            .map_err(RegistryError::db_with(self.path(), CONTEXT))
    }

    /// Reads the plan's lanes, in the plan's order; fails with [`RegistryError::LaneNotFound`]
    /// if one does not exist.
    async fn load_lanes(
        &self,
        conn: &mut SqliteConnection,
        plan: &Plan<'_>,
    ) -> Result<Vec<LaneState>, RegistryError> {
        let refs: Vec<&str> = plan
            .lanes
            .iter()
            .map(|lane| lane.lane_ref.as_ref())
            .collect();
        let text: String = sqlx::query_scalar(select_lanes!(
            "WHERE ref IN (SELECT value FROM json_each(?))"
        ))
        .bind(json_text(self, &refs)?)
        .fetch_one(&mut *conn)
        .await
        .map_err(RegistryError::db_with(self.path(), CONTEXT))?;
        let records = parse_lanes(self, &text)?;
        let mut found: HashMap<String, LaneState> =
            HashMap::with_capacity_and_hasher(records.len(), Default::default());
        for record in records {
            let (row, live) = record.into_state(self)?;
            found.insert(
                row.lane_ref.clone(),
                LaneState {
                    row,
                    live,
                    title_set: false,
                    token_usage: None,
                    transitions: Vec::new(),
                },
            );
        }
        refs.iter()
            .map(|lane_ref| {
                found
                    .remove(*lane_ref)
                    .ok_or_else(|| RegistryError::lane_not_found(self.path(), lane_ref))
            })
            .collect()
    }

    /// Reads the stored turns that the plan's turn facts mention.
    async fn load_turns(
        &self,
        conn: &mut SqliteConnection,
        plan: &Plan<'_>,
    ) -> Result<HashMap<(String, String), TurnRow>, RegistryError> {
        if plan.turns.is_empty() {
            return Ok(HashMap::default());
        }
        type TurnRecord = (
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let records: Vec<TurnRecord> = sqlx::query_as(
            "SELECT lane_ref, turn_id, status, error, started_at_ms, completed_at_ms, duration_ms \
             FROM turns WHERE (lane_ref, turn_id) IN \
               (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
        )
        .bind(json_text(self, &plan.turns)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(RegistryError::db_with(self.path(), CONTEXT))?;
        records
            .into_iter()
            .map(
                |(lane_ref, turn_id, status, error, started, completed, duration)| {
                    let status = TurnStatus::parse(&status).ok_or_else(|| {
                        RegistryError::corrupt(
                            self.path(),
                            format!(
                                "turn {turn_id} of lane {lane_ref} has unknown status {status:?}"
                            ),
                        )
                    })?;
                    let turn = TurnRow {
                        turn_id: turn_id.clone(),
                        status,
                        error,
                        started_at_ms: started,
                        completed_at_ms: completed,
                        duration_ms: duration,
                    };
                    Ok(((lane_ref, turn_id), turn))
                },
            )
            .collect()
    }

    /// Writes events, items, errors, turns and lanes.
    async fn write<'a>(
        &self,
        conn: &mut SqliteConnection,
        plan: &Plan<'a>,
        lanes: &[LaneState],
        turns: &HashMap<(String, String), TurnRow>,
    ) -> Result<(), RegistryError> {
        let path = self.path();
        let mut shared = Shared::default();
        INSERT_EVENTS
            .run_sharing(
                conn,
                &plan.events,
                same_turn,
                bind_event_shared,
                |args, row, columns| bind_event(args, row, columns, &mut shared),
                path,
                "storing events",
            )
            .await?;

        let mut replaced = Vec::new();
        let mut appended = Vec::new();
        let mut kept = Vec::new();
        for item in &plan.items {
            match item.text {
                TextChange::Replace(_) => replaced.push(item),
                TextChange::Append(_) => appended.push(item),
                TextChange::Keep => kept.push(item),
            }
        }
        let mut bind = |args: &mut SqliteArguments, item: &&ItemChange<'a>, columns| {
            bind_item(args, item, columns, &mut shared)
        };
        for (statement, items, context) in [
            (&REPLACE_ITEMS, &replaced, "storing items"),
            (&APPEND_ITEMS, &appended, "storing item deltas"),
            (&KEEP_ITEMS, &kept, "storing items"),
        ] {
            statement
                .run_sharing(
                    conn,
                    items,
                    same_item_kind,
                    bind_item_shared,
                    &mut bind,
                    path,
                    context,
                )
                .await?;
        }

        INSERT_ERRORS
            .run(conn, &plan.errors, bind_error, path, "storing lane errors")
            .await?;

        let touched: Vec<(&str, &TurnRow)> = plan
            .turns
            .iter()
            .filter_map(|&(lane_ref, turn_id)| {
                turns
                    .get(&(lane_ref.to_owned(), turn_id.to_owned()))
                    .map(|turn| (lane_ref, turn))
            })
            .collect();
        UPSERT_TURNS
            .run(conn, &touched, bind_turn, path, "storing turns")
            .await?;

        UPDATE_LANES
            .run(conn, lanes, bind_lane, path, "updating lanes")
            .await?;
        let transitions: Vec<(&str, &Transition)> = lanes
            .iter()
            .flat_map(|state| {
                state
                    .transitions
                    .iter()
                    .map(|t| (state.row.lane_ref.as_str(), t))
            })
            .collect();
        INSERT_LANE_EVENTS
            .run(
                conn,
                &transitions,
                bind_transition,
                path,
                "storing lane events",
            )
            .await?;
        let ended: Vec<&(&str, &Transition)> = transitions
            .iter()
            .filter(|(_, t)| t.kind == "turn_ended")
            .collect();
        END_DELIVERIES
            .run(conn, &ended, bind_ended, path, "ending deliveries")
            .await?;
        for state in lanes.iter().filter(|state| state.title_set) {
            sqlx::query("UPDATE lanes SET title = ?1 WHERE ref = ?2 AND title IS NOT ?1")
                .bind(state.row.title.as_deref())
                .bind(state.row.lane_ref.as_str())
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(path, "setting a lane title"))?;
        }
        Ok(())
    }
}

/// One shared copy of each short text a batch binds on many rows (methods, turn ids, item
/// kinds; lane refs come shared already). sqlx copies every borrowed `&str` it binds into a
/// new allocation, which for a flood was a large part of the cost of storing it; a shared
/// `Arc<str>` is bound without copying, so each distinct text is copied once per batch
/// instead of once per row.
///
/// The last few texts asked for are compared before the map is hashed: a row binds a method,
/// a turn id and a kind, and the next row mostly the same ones.
#[derive(Default)]
struct Shared<'a> {
    texts: HashMap<&'a str, Arc<str>>,
    recent: [Option<(&'a str, Arc<str>)>; 4],
    next: usize,
}

impl<'a> Shared<'a> {
    fn get(&mut self, text: &'a str) -> Arc<str> {
        for (seen, shared) in self.recent.iter().flatten() {
            if *seen == text {
                return Arc::clone(shared);
            }
        }
        let shared = Arc::clone(self.texts.entry(text).or_insert_with(|| Arc::from(text)));
        self.recent[self.next] = Some((text, Arc::clone(&shared)));
        self.next = (self.next + 1) % self.recent.len();
        shared
    }
}

/// Whether two events belong to the same lane and turn (a chunk of them binds those once).
fn same_turn(a: &(&Arc<str>, &NewEvent), b: &(&Arc<str>, &NewEvent)) -> bool {
    a.0 == b.0 && a.1.turn_id == b.1.turn_id
}

/// Binds an event's lane and turn, for a chunk of events that share them.
fn bind_event_shared(
    args: &mut SqliteArguments,
    row: &(&Arc<str>, &NewEvent),
) -> Result<(), BoxDynError> {
    let (lane_ref, event) = *row;
    args.add(Arc::clone(lane_ref))?;
    args.add(event.turn_id.as_deref().map(Arc::<str>::from))
}

/// Binds an event in [`INSERT_EVENTS`]'s column order: the method, then (unless the chunk
/// shares them) the lane and the turn, then the time and the params.
fn bind_event<'a>(
    args: &mut SqliteArguments,
    row: &(&'a Arc<str>, &'a NewEvent),
    columns: Columns,
    shared: &mut Shared<'a>,
) -> Result<(), BoxDynError> {
    let (lane_ref, event) = *row;
    args.add(shared.get(&event.method))?;
    if columns == Columns::All {
        args.add(Arc::clone(lane_ref))?;
        args.add(event.turn_id.as_deref().map(|turn| shared.get(turn)))?;
    }
    args.add(event.at_ms)?;
    // The params as received, bound without a copy.
    args.add(Arc::clone(&event.params))
}

/// Whether two items belong to the same lane and turn and are of the same kind (a chunk of
/// them binds those once).
fn same_item_kind(a: &&ItemChange<'_>, b: &&ItemChange<'_>) -> bool {
    a.lane_ref == b.lane_ref && a.turn_id == b.turn_id && a.kind == b.kind
}

/// Binds an item's lane, turn and kind, for a chunk of items that share them.
fn bind_item_shared(args: &mut SqliteArguments, item: &&ItemChange<'_>) -> Result<(), BoxDynError> {
    args.add(Arc::clone(item.lane_ref))?;
    args.add(Arc::<str>::from(item.turn_id))?;
    args.add(Arc::<str>::from(item.kind))
}

/// Binds an item in the item statements' column order: its id, then (unless the chunk shares
/// them) the lane, the turn and the kind, then the text, the status and the time.
fn bind_item<'a>(
    args: &mut SqliteArguments,
    item: &&ItemChange<'a>,
    columns: Columns,
    shared: &mut Shared<'a>,
) -> Result<(), BoxDynError> {
    args.add(item.item_id)?;
    if columns == Columns::All {
        args.add(Arc::clone(item.lane_ref))?;
        args.add(shared.get(item.turn_id))?;
        args.add(shared.get(item.kind))?;
    }
    args.add(item.text())?;
    args.add(item.status)?;
    args.add(item.at_ms)
}

fn bind_error(args: &mut SqliteArguments, error: &ErrorChange<'_>) -> Result<(), BoxDynError> {
    args.add(error.lane_ref)?;
    args.add(error.turn_id)?;
    args.add(error.message)?;
    args.add(error.will_retry)?;
    args.add(error.cause)?;
    args.add(error.at_ms)
}

fn bind_turn(args: &mut SqliteArguments, row: &(&str, &TurnRow)) -> Result<(), BoxDynError> {
    let (lane_ref, turn) = row;
    args.add(*lane_ref)?;
    args.add(turn.turn_id.as_str())?;
    args.add(turn.status.as_str())?;
    args.add(turn.error.as_deref())?;
    args.add(turn.started_at_ms)?;
    args.add(turn.completed_at_ms)?;
    args.add(turn.duration_ms)
}

fn bind_lane(args: &mut SqliteArguments, state: &LaneState) -> Result<(), BoxDynError> {
    let row = &state.row;
    let goal = row.goal.as_ref();
    let turn = row.latest_turn.as_ref();
    args.add(row.lane_ref.as_str())?;
    args.add(state.live.as_str())?;
    args.add(row.archived)?;
    args.add(goal.map(|goal| goal.objective.as_str()))?;
    args.add(goal.map(|goal| goal.status.as_str()))?;
    args.add(goal.and_then(|goal| goal.token_budget))?;
    args.add(goal.and_then(|goal| goal.tokens_used))?;
    match &state.token_usage {
        Some(usage) => args.add(Arc::clone(usage))?,
        None => args.add(row.token_usage.as_ref().map(ToString::to_string))?,
    }
    args.add(turn.map(|turn| turn.turn_id.as_str()))?;
    args.add(turn.map(|turn| turn.status.as_str()))?;
    args.add(turn.and_then(|turn| turn.error.as_deref()))?;
    args.add(turn.and_then(|turn| turn.started_at_ms))?;
    args.add(turn.and_then(|turn| turn.completed_at_ms))?;
    args.add(turn.and_then(|turn| turn.duration_ms))?;
    args.add(row.updated_at_ms)?;
    let retry = row.retry.as_ref();
    args.add(retry.map_or(0, |retry| retry.attempts))?;
    args.add(retry.and_then(|retry| retry.error.as_deref()))?;
    args.add(retry.and_then(|retry| retry.at_ms))?;
    args.add(row.error_cause.as_deref())
}

fn bind_transition(
    args: &mut SqliteArguments,
    row: &(&str, &Transition),
) -> Result<(), BoxDynError> {
    let (lane_ref, transition) = row;
    args.add(*lane_ref)?;
    args.add(transition.kind)?;
    args.add(transition.turn_id.as_deref())?;
    args.add(transition.status.map(TurnStatus::as_str))?;
    args.add(transition.at_ms)
}

fn bind_ended(args: &mut SqliteArguments, row: &&(&str, &Transition)) -> Result<(), BoxDynError> {
    let (lane_ref, transition) = row;
    args.add(*lane_ref)?;
    args.add(transition.turn_id.as_deref())?;
    args.add(transition.status.map(TurnStatus::as_str))?;
    args.add(transition.error.as_deref())?;
    args.add(transition.at_ms)
}

/// Serialises a list for `json_each`. Serialising strings cannot fail; should it ever, the
/// error says so rather than panicking.
fn json_text<T: serde::Serialize + ?Sized>(
    registry: &Registry,
    rows: &T,
) -> Result<String, RegistryError> {
    serde_json::to_string(rows).map_err(|err| {
        RegistryError::io(
            registry.path(),
            std::io::Error::other(format!("serialising a list of keys: {err}")),
        )
    })
}
