//! Triggers: a message delivered to a lane on a schedule (`every`, `cron`), after the lane has
//! been idle for a while (`idle_for`), or when something happens to it (`on`).
//!
//! A fire is durable from the moment it is decided: it is *claimed* in one transaction that
//! moves the trigger's due time on (compare and set, so a due time is claimed once) and writes
//! a `trigger_fires` row, or, for `on` triggers, in the transaction that handles the lane
//! event (see `lane_events.rs`). It is *finished* in one transaction that removes that row and
//! records the outcome (the trigger's counters, an action-log row and, for a failure, a
//! `trigger_result` inbox message). A fire found claimed and unfinished after a crash is
//! finished at start; its delivery's idempotency key says whether the message was handed over
//! already, so no fire is lost and none is delivered twice.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::actions::now_ms;
use crate::deliveries::DeliveryMode;
use crate::lane_events::{NewInboxMessage, insert_inbox};
use crate::{Registry, RegistryError};

/// What makes a trigger fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// At a fixed interval (spec: milliseconds).
    Every,
    /// On a cron schedule (spec: the expression; `tz` its time zone).
    Cron,
    /// Once per idle period of the lane, after it has been idle this long (spec: milliseconds).
    IdleFor,
    /// When the lane's turn completes or it asks for an approval (spec: `turn_completed` or
    /// `approval`).
    On,
}

impl TriggerKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Every => "every",
            TriggerKind::Cron => "cron",
            TriggerKind::IdleFor => "idle_for",
            TriggerKind::On => "on",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "every" => TriggerKind::Every,
            "cron" => TriggerKind::Cron,
            "idle_for" => TriggerKind::IdleFor,
            "on" => TriggerKind::On,
            _ => return None,
        })
    }
}

/// A trigger to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrigger {
    /// Its unique name.
    pub name: String,
    /// The lane its message goes to (and, for `on`, whose events it hears).
    pub lane_ref: String,
    /// What makes it fire.
    pub kind: TriggerKind,
    /// The kind's parameter, see [`TriggerKind`].
    pub spec: String,
    /// A cron trigger's IANA time zone; `None`: the daemon's local time zone.
    pub tz: Option<String>,
    /// The message.
    pub text: String,
    /// [`DeliveryMode::Send`] or [`DeliveryMode::Queue`].
    pub mode: DeliveryMode,
    /// Its first due time, when it has one.
    pub next_fire_at_ms: Option<i64>,
}

/// A stored trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRow {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The lane.
    pub lane_ref: String,
    /// The lane's Codex thread id.
    pub thread_id: String,
    /// What makes it fire.
    pub kind: TriggerKind,
    /// The kind's parameter.
    pub spec: String,
    /// A cron trigger's time zone.
    pub tz: Option<String>,
    /// The message.
    pub text: String,
    /// How the message reaches the lane.
    pub mode: DeliveryMode,
    /// Whether it is paused.
    pub paused: bool,
    /// The next due time (Unix epoch milliseconds).
    pub next_fire_at_ms: Option<i64>,
    /// When it last fired.
    pub last_fired_at_ms: Option<i64>,
    /// What the last fire did, in words.
    pub last_outcome: Option<String>,
    /// Whether the last fire delivered its message.
    pub last_ok: Option<bool>,
    /// The receipt of the last fire's delivery.
    pub last_receipt: Option<String>,
    /// How many fires finished.
    pub fires: i64,
    /// When it was added.
    pub created_at_ms: i64,
}

/// One fire of a trigger: claimed, not yet finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerFire {
    /// The trigger.
    pub trigger_id: i64,
    /// What it is for, unique per trigger: `at:<ms>` (a due time), `idle:<ms>` (an idle
    /// period, by its start) or `event:<id>` (a lane event).
    pub due_key: String,
    /// When it was due.
    pub due_at_ms: i64,
    /// How many due times it stands for (missed ones coalesced into it).
    pub coalesced: i64,
    /// When it was claimed.
    pub claimed_at_ms: i64,
}

/// What must hold for a fire to be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimIf {
    /// The trigger is due at this time (an `every` or `cron` trigger): its due time moves on
    /// to `next`.
    DueAt {
        /// The due time being claimed.
        due_at_ms: i64,
        /// The due time after it.
        next: Option<i64>,
    },
    /// The lane has been idle since this time and the trigger has not fired since (an
    /// `idle_for` trigger).
    IdleSince(i64),
}

/// A fire to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireClaim {
    /// The trigger.
    pub trigger_id: i64,
    /// The condition that makes the claim valid.
    pub condition: ClaimIf,
    /// What it is for (see [`TriggerFire::due_key`]).
    pub due_key: String,
    /// When it was due.
    pub due_at_ms: i64,
    /// How many due times it stands for.
    pub coalesced: i64,
}

/// How a fire ended, recorded by [`Registry::finish_trigger_fire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireOutcome {
    /// The trigger.
    pub trigger_id: i64,
    /// The fire.
    pub due_key: String,
    /// The trigger's lane (for the action log).
    pub lane_ref: String,
    /// Whether the message was delivered (or queued).
    pub ok: bool,
    /// What happened, in words.
    pub outcome: String,
    /// The delivery's receipt, if one was made.
    pub receipt: Option<String>,
    /// The error code of a failure.
    pub error_code: Option<String>,
    /// Pause the trigger (its lane cannot take messages any more).
    pub pause: bool,
    /// The action log's detail line.
    pub detail: String,
    /// A message for the inbox (a failure's `trigger_result`).
    pub inbox: Option<NewInboxMessage>,
}

/// A `triggers` row joined with its lane's thread id.
#[derive(sqlx::FromRow)]
struct TriggerRecord {
    id: i64,
    name: String,
    lane_ref: String,
    thread_id: String,
    kind: String,
    spec: String,
    tz: Option<String>,
    text: String,
    mode: String,
    paused: bool,
    next_fire_at_ms: Option<i64>,
    last_fired_at_ms: Option<i64>,
    last_outcome: Option<String>,
    last_ok: Option<bool>,
    last_receipt: Option<String>,
    fires: i64,
    created_at_ms: i64,
}

const SELECT: &str = "SELECT t.id, t.name, t.lane_ref, l.thread_id, t.kind, t.spec, t.tz, \
                      t.text, t.mode, t.paused, t.next_fire_at_ms, t.last_fired_at_ms, \
                      t.last_outcome, t.last_ok, t.last_receipt, t.fires, t.created_at_ms \
                      FROM triggers t JOIN lanes l ON l.ref = t.lane_ref";

type FireRecord = (i64, String, i64, i64, i64);

fn fire(record: FireRecord) -> TriggerFire {
    let (trigger_id, due_key, due_at_ms, coalesced, claimed_at_ms) = record;
    TriggerFire {
        trigger_id,
        due_key,
        due_at_ms,
        coalesced,
        claimed_at_ms,
    }
}

impl Registry {
    fn trigger_row(&self, record: TriggerRecord) -> Result<TriggerRow, RegistryError> {
        let TriggerRecord {
            id,
            name,
            lane_ref,
            thread_id,
            kind,
            spec,
            tz,
            text,
            mode,
            paused,
            next_fire_at_ms,
            last_fired_at_ms,
            last_outcome,
            last_ok,
            last_receipt,
            fires,
            created_at_ms,
        } = record;
        let corrupt = |what: String| RegistryError::corrupt(self.path(), what);
        Ok(TriggerRow {
            kind: TriggerKind::parse(&kind)
                .ok_or_else(|| corrupt(format!("trigger {id} has unknown kind {kind:?}")))?,
            mode: DeliveryMode::parse(&mode)
                .ok_or_else(|| corrupt(format!("trigger {id} has unknown mode {mode:?}")))?,
            id,
            name,
            lane_ref,
            thread_id,
            spec,
            tz,
            text,
            paused,
            next_fire_at_ms,
            last_fired_at_ms,
            last_outcome,
            last_ok,
            last_receipt,
            fires,
            created_at_ms,
        })
    }

    async fn triggers_where(
        &self,
        condition: &str,
        bind: Option<&str>,
        context: &'static str,
    ) -> Result<Vec<TriggerRow>, RegistryError> {
        let records: Vec<TriggerRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE {condition} ORDER BY t.id"
        )))
        .bind(bind)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), context))?;
        records.into_iter().map(|r| self.trigger_row(r)).collect()
    }

    /// Stores a trigger; `None` (and nothing stored) when its name is taken.
    pub async fn add_trigger(&self, new: &NewTrigger) -> Result<Option<TriggerRow>, RegistryError> {
        let context = "storing a trigger";
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO triggers (name, lane_ref, kind, spec, tz, text, mode, next_fire_at_ms, \
             created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.lane_ref)
        .bind(new.kind.as_str())
        .bind(&new.spec)
        .bind(&new.tz)
        .bind(&new.text)
        .bind(new.mode.as_str())
        .bind(new.next_fire_at_ms)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), context))?;
        match id {
            Some(id) => self.trigger(id).await,
            None => Ok(None),
        }
    }

    /// Every trigger, or those of one lane; oldest first.
    pub async fn triggers(&self, lane_ref: Option<&str>) -> Result<Vec<TriggerRow>, RegistryError> {
        self.triggers_where(
            "(?1 IS NULL OR t.lane_ref = ?1)",
            lane_ref,
            "reading triggers",
        )
        .await
    }

    /// The `on` triggers of `lane_ref` that are not paused.
    pub async fn triggers_on(&self, lane_ref: &str) -> Result<Vec<TriggerRow>, RegistryError> {
        self.triggers_where(
            "t.lane_ref = ?1 AND t.kind = 'on' AND t.paused = 0",
            Some(lane_ref),
            "reading a lane's triggers",
        )
        .await
    }

    /// The trigger `id`.
    pub async fn trigger(&self, id: i64) -> Result<Option<TriggerRow>, RegistryError> {
        let record: Option<TriggerRecord> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE t.id = ?")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(RegistryError::db_with(self.path(), "reading a trigger"))?;
        record.map(|r| self.trigger_row(r)).transpose()
    }

    /// The trigger named `name`.
    pub async fn trigger_by_name(&self, name: &str) -> Result<Option<TriggerRow>, RegistryError> {
        let found = self
            .triggers_where("t.name = ?1", Some(name), "reading a trigger")
            .await?;
        Ok(found.into_iter().next())
    }

    /// Removes trigger `id` (and its unfinished fires); returns whether it existed.
    pub async fn remove_trigger(&self, id: i64) -> Result<bool, RegistryError> {
        let done = sqlx::query("DELETE FROM triggers WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "removing a trigger"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Pauses or resumes trigger `id`, with its next due time; returns it as it is now.
    pub async fn set_trigger_paused(
        &self,
        id: i64,
        paused: bool,
        next_fire_at_ms: Option<i64>,
    ) -> Result<Option<TriggerRow>, RegistryError> {
        sqlx::query("UPDATE triggers SET paused = ?, next_fire_at_ms = ? WHERE id = ?")
            .bind(paused)
            .bind(next_fire_at_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "pausing or resuming a trigger",
            ))?;
        self.trigger(id).await
    }

    /// Sets the next due time of an active trigger (an `idle_for` trigger whose lane moved);
    /// returns whether it changed.
    pub async fn set_trigger_next(
        &self,
        id: i64,
        next_fire_at_ms: Option<i64>,
    ) -> Result<bool, RegistryError> {
        let done = sqlx::query(
            "UPDATE triggers SET next_fire_at_ms = ?1 WHERE id = ?2 AND paused = 0 \
             AND next_fire_at_ms IS NOT ?1",
        )
        .bind(next_fire_at_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "scheduling a trigger"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the fires whose condition holds, in one transaction: each moves its trigger on
    /// and is stored as unfinished. Returns the fires claimed (the others changed meanwhile:
    /// paused, removed, rescheduled, or already fired).
    pub async fn claim_trigger_fires(
        &self,
        claims: &[FireClaim],
    ) -> Result<Vec<TriggerFire>, RegistryError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let context = "claiming trigger fires";
        self.write_tx(context, async |conn| {
            let now = now_ms();
            let mut claimed = Vec::new();
            for claim in claims {
                let moved = match claim.condition {
                    ClaimIf::DueAt { due_at_ms, next } => sqlx::query(
                        "UPDATE triggers SET next_fire_at_ms = ?, last_fired_at_ms = ? \
                         WHERE id = ? AND paused = 0 AND next_fire_at_ms = ?",
                    )
                    .bind(next)
                    .bind(now)
                    .bind(claim.trigger_id)
                    .bind(due_at_ms),
                    ClaimIf::IdleSince(since) => sqlx::query(
                        "UPDATE triggers SET next_fire_at_ms = NULL, last_fired_at_ms = ? \
                         WHERE id = ? AND paused = 0 AND kind = 'idle_for' \
                           AND (last_fired_at_ms IS NULL OR last_fired_at_ms < ?)",
                    )
                    .bind(now)
                    .bind(claim.trigger_id)
                    .bind(since),
                }
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(self.path(), context))?;
                if moved.rows_affected() == 0 {
                    continue;
                }
                let fire = TriggerFire {
                    trigger_id: claim.trigger_id,
                    due_key: claim.due_key.clone(),
                    due_at_ms: claim.due_at_ms,
                    coalesced: claim.coalesced.max(1),
                    claimed_at_ms: now,
                };
                if insert_fire(conn, &fire)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?
                {
                    claimed.push(fire);
                }
            }
            Ok(claimed)
        })
        .await
    }

    /// The fires claimed and not finished (after a crash: those to finish now), oldest first.
    pub async fn pending_trigger_fires(&self) -> Result<Vec<TriggerFire>, RegistryError> {
        let records: Vec<FireRecord> = sqlx::query_as(
            "SELECT trigger_id, due_key, due_at_ms, coalesced, created_at_ms FROM trigger_fires \
             ORDER BY created_at_ms, trigger_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading unfinished trigger fires",
        ))?;
        Ok(records.into_iter().map(fire).collect())
    }

    /// Records how a fire ended, in one transaction: the fire is no longer unfinished, the
    /// trigger counts it (and is paused if asked), the action log says what happened, and a
    /// failure's inbox message is stored. `Ok(false)` (nothing written) when the fire was
    /// finished already.
    pub async fn finish_trigger_fire(&self, outcome: &FireOutcome) -> Result<bool, RegistryError> {
        let context = "recording a trigger fire";
        self.write_tx(context, async |conn| {
            let removed =
                sqlx::query("DELETE FROM trigger_fires WHERE trigger_id = ? AND due_key = ?")
                    .bind(outcome.trigger_id)
                    .bind(&outcome.due_key)
                    .execute(&mut *conn)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
            if removed.rows_affected() == 0 {
                return Ok(false);
            }
            let now = now_ms();
            sqlx::query(
                "UPDATE triggers SET fires = fires + 1, last_outcome = ?, last_ok = ?, \
                 last_receipt = ?, paused = CASE WHEN ? THEN 1 ELSE paused END, \
                 next_fire_at_ms = CASE WHEN ? THEN NULL ELSE next_fire_at_ms END \
                 WHERE id = ?",
            )
            .bind(&outcome.outcome)
            .bind(outcome.ok)
            .bind(&outcome.receipt)
            .bind(outcome.pause)
            .bind(outcome.pause)
            .bind(outcome.trigger_id)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            sqlx::query(
                "INSERT INTO action_log (at_ms, op, lane, outcome, error_code, detail) \
                 VALUES (?, 'trigger_fire', ?, ?, ?, ?)",
            )
            .bind(now)
            .bind(&outcome.lane_ref)
            .bind(if outcome.ok { "ok" } else { "error" })
            .bind(&outcome.error_code)
            .bind(&outcome.detail)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(self.path(), context))?;
            if let Some(message) = &outcome.inbox {
                insert_inbox(&mut *conn, message, now)
                    .await
                    .map_err(RegistryError::db_with(self.path(), context))?;
            }
            Ok(true)
        })
        .await
    }

    /// The receipt id of the delivery recorded under idempotency key `key`, if any.
    pub async fn delivery_id_by_key(&self, key: &str) -> Result<Option<String>, RegistryError> {
        sqlx::query_scalar("SELECT id FROM deliveries WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "reading a delivery"))
    }

    /// How many triggers there are (paused ones included).
    pub async fn trigger_count(&self) -> Result<i64, RegistryError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM triggers")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "counting triggers"))
    }
}

/// Stores an unfinished fire; `false` when that fire exists already.
pub(crate) async fn insert_fire(
    conn: &mut SqliteConnection,
    fire: &TriggerFire,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO trigger_fires (trigger_id, due_key, due_at_ms, coalesced, created_at_ms) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (trigger_id, due_key) DO NOTHING",
    )
    .bind(fire.trigger_id)
    .bind(&fire.due_key)
    .bind(fire.due_at_ms)
    .bind(fire.coalesced)
    .bind(fire.claimed_at_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
