//! The trigger operations: `trigger add`, `trigger list`, `trigger rm`, `trigger pause` and
//! `trigger resume`. Every schedule is parsed here, at `add`, so a trigger that is stored always
//! has one that works; the scheduler (`triggers.rs`) hears of every change at once.

use dispatch_contract::types::{
    LaneRef, Trigger, TriggerAddInput, TriggerAddInputMode, TriggerAddInputOn, TriggerAddOutput,
    TriggerKind as ContractKind, TriggerListInput, TriggerListOutput, TriggerMode,
    TriggerPauseInput, TriggerPauseOutput, TriggerResumeInput, TriggerResumeOutput, TriggerRmInput,
    TriggerRmOutput,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{DeliveryMode, LaneRow, NewTrigger, TriggerKind, TriggerRow};
use serde_json::json;

use crate::convert::{now_ms, rfc3339};
use crate::schedule::{self, OnEvent, Schedule};
use crate::service::Service;

/// The contract's shape of a stored trigger.
pub fn shown(row: &TriggerRow) -> Trigger {
    let parsed = Schedule::of(row.kind, &row.spec, row.tz.as_deref());
    let (spec, schedule) = match &parsed {
        Ok(schedule) => (
            schedule.spec_shown(&row.spec),
            schedule.describe(&row.spec, row.tz.as_deref()),
        ),
        Err(why) => (row.spec.clone(), format!("broken: {why}")),
    };
    Trigger {
        id: row.id,
        name: row.name.clone(),
        lane: LaneRef {
            ref_: row.lane_ref.clone(),
            id: row.thread_id.clone(),
        },
        kind: match row.kind {
            TriggerKind::Every => ContractKind::Every,
            TriggerKind::Cron => ContractKind::Cron,
            TriggerKind::IdleFor => ContractKind::IdleFor,
            TriggerKind::On => ContractKind::On,
        },
        spec,
        tz: row.tz.clone(),
        schedule,
        text: row.text.clone(),
        mode: if row.mode == DeliveryMode::Queue {
            TriggerMode::Queue
        } else {
            TriggerMode::Send
        },
        paused: row.paused,
        fires: row.fires,
        next_fire_at: row.next_fire_at_ms.map(rfc3339),
        last_fired_at: row.last_fired_at_ms.map(rfc3339),
        last_outcome: row.last_outcome.clone(),
        last_ok: row.last_ok,
        last_receipt: row.last_receipt.clone(),
        created_at: rfc3339(row.created_at_ms),
    }
}

/// `lane_archived` for a trigger's lane.
fn archived(lane: &LaneRow) -> DispatchError {
    DispatchError::new(
        ErrorCode::LaneArchived,
        format!("lane {} is archived", lane.lane_ref),
    )
    .with_hint(
        Hint::new("{0} brings it back")
            .run(&operations::RESTORE, json!({ "target": lane.lane_ref })),
    )
    .with_details(json!({ "lane_ref": lane.lane_ref }))
}

/// The schedule of `trigger add`'s input: exactly one of the four kinds, parsed; with its
/// stored kind, spec and time zone.
fn schedule_of(
    input: &TriggerAddInput,
) -> Result<(Schedule, TriggerKind, String, Option<String>), DispatchError> {
    let given: Vec<&str> = [
        input.every.as_ref().map(|_| "every"),
        input.cron.as_ref().map(|_| "cron"),
        input.idle_for.as_ref().map(|_| "idle_for"),
        input.on.as_ref().map(|_| "on"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        let what = if given.is_empty() {
            "none was given".to_owned()
        } else {
            format!("{} were given", given.join(" and "))
        };
        return Err(DispatchError::invalid_input(format!(
            "a trigger needs exactly one of `every`, `cron`, `idle_for` and `on`; {what}"
        ))
        .with_hint(Hint::new("for instance {0}").run(
            &operations::TRIGGER_ADD,
            json!({
                "name": input.name.to_string(),
                "lane": input.lane.to_string(),
                "every": "10m",
                "text": "<text>",
            }),
        )));
    }
    if input.tz.is_some() && input.cron.is_none() {
        return Err(DispatchError::invalid_input(
            "`tz` applies to a cron schedule only; give `cron` with it, or leave `tz` out",
        ));
    }
    if let Some(every) = &input.every {
        let ms = schedule::parse_duration("every", every)?;
        return Ok((
            Schedule::Every(ms),
            TriggerKind::Every,
            ms.to_string(),
            None,
        ));
    }
    if let Some(idle) = &input.idle_for {
        let ms = schedule::parse_duration("idle_for", idle)?;
        return Ok((
            Schedule::IdleFor(ms),
            TriggerKind::IdleFor,
            ms.to_string(),
            None,
        ));
    }
    if let Some(expr) = &input.cron {
        let expr = expr.trim().to_owned();
        let cron = schedule::parse_cron(&expr)?;
        let tz_name = input.tz.as_ref().map(|tz| tz.trim().to_owned());
        let tz = schedule::time_zone(tz_name.as_deref())?;
        let schedule = Schedule::Cron {
            cron: Box::new(cron),
            tz,
        };
        if schedule.next_after(now_ms()).is_none() {
            return Err(DispatchError::invalid_input(format!(
                "`cron`: `{expr}` matches no time in the coming years"
            )));
        }
        return Ok((schedule, TriggerKind::Cron, expr, tz_name));
    }
    let event = match input.on {
        Some(TriggerAddInputOn::Approval) => OnEvent::Approval,
        _ => OnEvent::TurnCompleted,
    };
    if event == OnEvent::Approval && input.mode == TriggerAddInputMode::Send {
        return Err(DispatchError::invalid_input(
            "a lane that asks for an approval is running a turn, so `mode` `send` would always \
             fail there; use `queue` to deliver the message when the turn is over",
        )
        .with_hint(Hint::new("{0}").run(
            &operations::TRIGGER_ADD,
            json!({
                "name": input.name.to_string(),
                "lane": input.lane.to_string(),
                "on": "approval",
                "mode": "queue",
                "text": input.text.to_string(),
            }),
        )));
    }
    Ok((
        Schedule::On(event),
        TriggerKind::On,
        event.as_str().to_owned(),
        None,
    ))
}

impl Service {
    /// The trigger `selector` names: an id (all digits) or a name.
    async fn find_trigger(&self, selector: &str) -> Result<TriggerRow, DispatchError> {
        let found = match selector.parse::<i64>() {
            Ok(id) => self.registry().trigger(id).await?,
            Err(_) => self.registry().trigger_by_name(selector).await?,
        };
        found.ok_or_else(|| {
            DispatchError::new(
                ErrorCode::NotFound,
                format!("no trigger has the id or name `{selector}`"),
            )
            .with_hint(
                Hint::new("{0} shows the triggers").run(&operations::TRIGGER_LIST, json!({})),
            )
        })
    }
}

/// `trigger add`: the schedule is checked first, then the lane; nothing is stored unless all
/// of it is valid.
impl Handle<TriggerAddInput> for Service {
    async fn handle(&self, input: TriggerAddInput) -> Result<TriggerAddOutput, DispatchError> {
        let (schedule, kind, spec, tz) = schedule_of(&input)?;
        let lane = self.resolve(&input.lane).await?;
        if lane.archived {
            return Err(archived(&lane));
        }
        let name = input.name.to_string();
        let now = now_ms();
        let next_fire_at_ms = match &schedule {
            Schedule::IdleFor(ms) => crate::triggers::idle_due(&lane, *ms, now, None).map(|d| d.1),
            other => other.next_after(now),
        };
        let new = NewTrigger {
            name: name.clone(),
            lane_ref: lane.lane_ref.clone(),
            kind,
            spec,
            tz,
            text: input.text.to_string(),
            mode: match input.mode {
                TriggerAddInputMode::Send => DeliveryMode::Send,
                TriggerAddInputMode::Queue => DeliveryMode::Queue,
            },
            next_fire_at_ms,
        };
        let Some(row) = self.registry().add_trigger(&new).await? else {
            return Err(DispatchError::invalid_input(format!(
                "a trigger named `{name}` exists already"
            ))
            .with_hint(
                Hint::new("choose another name, or remove that one first ({0})")
                    .run(&operations::TRIGGER_RM, json!({ "trigger": name })),
            ));
        };
        self.triggers_changed();
        Ok(TriggerAddOutput {
            trigger: shown(&row),
        })
    }

    fn logged(output: &TriggerAddOutput) -> Logged {
        let trigger = &output.trigger;
        Logged::lane(
            &trigger.lane.ref_,
            format!(
                "trigger {} ({}) added: {}, {}",
                trigger.name, trigger.id, trigger.schedule, trigger.mode
            ),
        )
    }
}

/// `trigger list`.
impl Handle<TriggerListInput> for Service {
    async fn handle(&self, input: TriggerListInput) -> Result<TriggerListOutput, DispatchError> {
        let lane = match &input.lane {
            Some(selector) => Some(self.resolve(selector).await?.lane_ref),
            None => None,
        };
        let rows = self.registry().triggers(lane.as_deref()).await?;
        Ok(TriggerListOutput {
            triggers: rows.iter().map(shown).collect(),
        })
    }
}

/// `trigger rm`.
impl Handle<TriggerRmInput> for Service {
    async fn handle(&self, input: TriggerRmInput) -> Result<TriggerRmOutput, DispatchError> {
        let row = self.find_trigger(&input.trigger).await?;
        self.registry().remove_trigger(row.id).await?;
        self.triggers_changed();
        Ok(TriggerRmOutput {
            trigger: shown(&row),
            removed: true,
        })
    }

    fn logged(output: &TriggerRmOutput) -> Logged {
        Logged::lane(
            &output.trigger.lane.ref_,
            format!(
                "trigger {} ({}) removed",
                output.trigger.name, output.trigger.id
            ),
        )
    }
}

/// `trigger pause`.
impl Handle<TriggerPauseInput> for Service {
    async fn handle(&self, input: TriggerPauseInput) -> Result<TriggerPauseOutput, DispatchError> {
        let row = self.find_trigger(&input.trigger).await?;
        let row = self
            .registry()
            .set_trigger_paused(row.id, true, None)
            .await?
            .unwrap_or(row);
        self.triggers_changed();
        Ok(TriggerPauseOutput {
            trigger: shown(&row),
        })
    }

    fn logged(output: &TriggerPauseOutput) -> Logged {
        Logged::lane(
            &output.trigger.lane.ref_,
            format!(
                "trigger {} ({}) paused",
                output.trigger.name, output.trigger.id
            ),
        )
    }
}

/// `trigger resume`: the schedule starts again from now.
impl Handle<TriggerResumeInput> for Service {
    async fn handle(
        &self,
        input: TriggerResumeInput,
    ) -> Result<TriggerResumeOutput, DispatchError> {
        let row = self.find_trigger(&input.trigger).await?;
        if !row.paused {
            return Ok(TriggerResumeOutput {
                trigger: shown(&row),
            });
        }
        if let Some(lane) = self.registry().lane(&row.lane_ref).await?
            && lane.archived
        {
            return Err(archived(&lane));
        }
        let schedule = Schedule::of(row.kind, &row.spec, row.tz.as_deref())
            .map_err(|why| DispatchError::internal(format!("trigger {}: {why}", row.id)))?;
        let row = self
            .registry()
            .set_trigger_paused(row.id, false, schedule.next_after(now_ms()))
            .await?
            .unwrap_or(row);
        self.triggers_changed();
        Ok(TriggerResumeOutput {
            trigger: shown(&row),
        })
    }

    fn logged(output: &TriggerResumeOutput) -> Logged {
        Logged::lane(
            &output.trigger.lane.ref_,
            format!(
                "trigger {} ({}) resumed",
                output.trigger.name, output.trigger.id
            ),
        )
    }
}
