//! The lane operations: `send`, `stop` and the goal operations, plus the read operations
//! answered from the registry (`get`, `list`, `tail`). `new` is in `new_lane.rs`.

use codex_app_server::protocol::{
    ThreadGoalClearParams, ThreadGoalGetParams, ThreadGoalSetParams, ThreadGoalStatus,
    TurnInterruptParams,
};
use dispatch_contract::types::DeliveryMode as Mode;
use dispatch_contract::types::{
    Compaction, GetInput, GetOutput, GoalClearInput, GoalClearOutput, GoalGetInput, GoalGetOutput,
    GoalSetInput, GoalSetInputStatus, GoalSetOutput, LaneCounts, LaneRef, SendInput, SendOutput,
    StopInput, StopOutput, TailInput, TailOutput,
};
use dispatch_contract::{DispatchError, Handle, Hint, Logged, operations};
use dispatch_registry::Fact;
use serde_json::json;

use crate::convert::{self, goal, goal_row};
use crate::deliver::{Delivered, DeliveryRequest};
use crate::errors::app_server_error;
use crate::images;
use crate::intro;
use crate::receipts;
use crate::service::Service;
use crate::turn_start::codex_running_turn;

/// `send`'s answer for a delivery.
fn sent(thread_id: &str, delivered: Delivered) -> SendOutput {
    let receipt = delivered.receipt;
    let accepted = matches!(
        receipt.state,
        dispatch_registry::DeliveryState::Accepted | dispatch_registry::DeliveryState::Completed
    ) || (receipt.state == dispatch_registry::DeliveryState::Failed
        && receipt.turn_id.is_some());
    SendOutput {
        lane: LaneRef {
            ref_: receipt.lane_ref.clone(),
            id: thread_id.to_owned(),
        },
        mode: receipts::mode(receipt.mode),
        state: receipts::state(receipt.state),
        turn_id: receipt.turn_id.clone(),
        steered: delivered.steered,
        message_accepted: accepted,
        repeated: delivered.repeated,
        warnings: delivered.warnings,
        sender: receipt.sender_ref.clone(),
        receipt: receipt.id,
    }
}

fn limit(n: std::num::NonZeroU64) -> u32 {
    u32::try_from(n.get()).unwrap_or(u32::MAX)
}

impl Service {
    /// The images of a `send`, checked (files, then the lane's model) before anything is
    /// recorded.
    async fn send_images(
        &self,
        input: &SendInput,
        lane: &dispatch_registry::LaneRow,
        mode: Mode,
    ) -> Result<Vec<dispatch_registry::ImageRef>, DispatchError> {
        if input.image.is_empty() {
            return Ok(Vec::new());
        }
        if mode == Mode::Context {
            return Err(DispatchError::invalid_input(
                "`image`: images go with a turn; mode `context` starts none",
            ));
        }
        let paths = input.image.iter().map(|p| p.to_string()).collect();
        let images = images::inspect_blocking(paths).await?;
        let server = self.app_server().server()?;
        images::check_model_takes_images(&server, self.registry(), lane.model.as_deref()).await?;
        Ok(images)
    }
}

/// `send`: under the lane's write lock, so the busy check and the turn start are one step.
impl Handle<SendInput> for Service {
    async fn handle(&self, input: SendInput) -> Result<SendOutput, DispatchError> {
        // The key binds the message as given (the selector as typed): a repeat is answered
        // before anything is resolved, also after a restart.
        let idempotency = input.idempotency_key.as_ref().map(|key| {
            let mut payload = json!({
                "lane": &*input.lane,
                "text": input.text.as_deref().map(|t| t.as_str()),
                "mode": input.mode.map(|m| m.to_string()),
                "steer": input.steer,
                "intro": input.intro,
            });
            if !input.image.is_empty() {
                payload["image"] = json!(&input.image);
            }
            (key.to_string(), receipts::payload_hash(&payload))
        });
        if let Some((key, hash)) = &idempotency
            && let Some((row, stored)) = self.registry().delivery_by_key(key).await?
        {
            if stored.as_deref() != Some(hash.as_str()) {
                return Err(crate::deliver::conflict(&row));
            }
            let thread_id = match self.registry().lane(&row.lane_ref).await? {
                Some(lane) => lane.thread_id,
                None => String::new(),
            };
            return Ok(sent(
                &thread_id,
                Delivered {
                    steered: row.mode == dispatch_registry::DeliveryMode::Steer,
                    receipt: row,
                    repeated: true,
                    warnings: Vec::new(),
                },
            ));
        }
        let sender = if input.intro {
            Some(
                self.caller_lane(input.caller.as_ref(), || {
                    Hint::new(
                        "`intro` signs the message with the caller's own lane: send from a \
                         lane's Codex session, or without `intro` ({0})",
                    )
                    .run(
                        &operations::SEND,
                        json!({ "lane": &*input.lane, "text": "<text>" }),
                    )
                })
                .await?,
            )
        } else {
            None
        };
        let lane = self.resolve(&input.lane).await?;
        let Some(mut text) = input.text.as_ref().map(|t| t.to_string()) else {
            return Err(
                DispatchError::invalid_input("`send` needs a message: `text` is missing")
                    .with_hint(Hint::new("give the message ({0})").run(
                        &operations::SEND,
                        json!({ "lane": lane.lane_ref, "text": "<text>" }),
                    )),
            );
        };
        let mode = match (input.steer, input.mode) {
            (true, None | Some(Mode::Steer)) => Mode::Steer,
            (true, Some(other)) => {
                return Err(DispatchError::invalid_input(format!(
                    "`steer` asks for mode `steer` but `mode` is `{other}`: give one of them"
                )));
            }
            (false, mode) => mode.unwrap_or(Mode::Send),
        };
        if let Some(sender) = &sender {
            text.push_str(&intro::footer(sender));
        }
        let images = self.send_images(&input, &lane, mode).await?;
        let mut delivered = self
            .deliver(DeliveryRequest {
                lane: lane.clone(),
                mode: receipts::registry_mode(mode),
                text,
                source: "send".to_owned(),
                sender_ref: sender.as_ref().map(|s| s.lane_ref.clone()),
                idempotency,
                effort: None,
                images,
                output_schema: None,
            })
            .await?;
        if let Some(sender) = &sender {
            // The message was handed over: a failure to leave its inbox copy is a warning.
            let message = intro::direct_message(sender, &lane, &delivered.receipt);
            if let Err(err) = self.registry().add_inbox_message(&message).await {
                delivered.warnings.push(format!(
                    "the inbox copy of the message was not stored: {err}"
                ));
            }
        }
        Ok(sent(&lane.thread_id, delivered))
    }

    fn logged(output: &SendOutput) -> Logged {
        let turn = output.turn_id.as_deref().unwrap_or("none yet");
        let detail = if output.repeated {
            format!(
                "repeated idempotent send: receipt {} unchanged",
                output.receipt
            )
        } else if output.steered {
            format!(
                "message steered into the running turn (receipt {})",
                output.receipt
            )
        } else {
            format!(
                "message {} ({}), turn {turn}, receipt {}",
                output.state, output.mode, output.receipt
            )
        };
        Logged::lane(&output.lane.ref_, detail)
    }
}

/// `stop`.
impl Handle<StopInput> for Service {
    async fn handle(&self, input: StopInput) -> Result<StopOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        let recorded = lane
            .latest_turn
            .as_ref()
            .filter(|t| t.status == dispatch_registry::TurnStatus::InProgress)
            .map(|t| t.turn_id.clone());
        // The registry may not know a running turn (one it could not record): Codex is asked.
        let running = match recorded {
            Some(turn_id) => Some(turn_id),
            None => codex_running_turn(&server, &lane.thread_id).await,
        };
        let Some(turn_id) = running else {
            return Ok(StopOutput {
                lane: convert::lane_ref(&lane),
                interrupted: false,
                turn_id: None,
            });
        };
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        match server
            .call(&TurnInterruptParams {
                thread_id: lane.thread_id.clone(),
                turn_id: turn_id.clone(),
            })
            .await
        {
            Ok(_) => Ok(StopOutput {
                lane: convert::lane_ref(&lane),
                interrupted: true,
                turn_id: Some(turn_id),
            }),
            // The turn ended between our look and the interrupt, or its end was never
            // reported: the lane is reconciled with what Codex knows.
            Err(err)
                if err
                    .rpc_error()
                    .is_some_and(|e| e.message.contains("no active turn")) =>
            {
                self.reconcile_one(&lane).await;
                Ok(StopOutput {
                    lane: convert::lane_ref(&lane),
                    interrupted: false,
                    turn_id: None,
                })
            }
            Err(err) => Err(app_server_error(err)),
        }
    }

    fn logged(output: &StopOutput) -> Logged {
        let detail = match (&output.turn_id, output.interrupted) {
            (Some(turn), true) => format!("interrupted turn {turn}"),
            _ => "nothing was running".to_owned(),
        };
        Logged::lane(&output.lane.ref_, detail)
    }
}

/// `get`.
impl Handle<GetInput> for Service {
    async fn handle(&self, input: GetInput) -> Result<GetOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let errors = self.registry().lane_errors(&lane.lane_ref, 20).await?;
        let counts = self.registry().counts(&lane.lane_ref).await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let token_usage = lane.token_usage.clone().and_then(|v| match v {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        });
        let lineage = self
            .registry()
            .lineage(&lane.lane_ref)
            .await?
            .unwrap_or_default();
        let compaction = (lineage.compact_requested_at_ms.is_some()
            || lineage.compacted_at_ms.is_some())
        .then(|| Compaction {
            requested_at: lineage.compact_requested_at_ms.map(convert::rfc3339),
            // A compaction that ended before the latest request is not this one's end.
            completed_at: lineage
                .compacted_at_ms
                .filter(|done| {
                    lineage
                        .compact_requested_at_ms
                        .is_none_or(|asked| *done >= asked)
                })
                .map(convert::rfc3339),
        });
        let lane_ref = |(ref_, id): (String, String)| LaneRef { ref_, id };
        let parent = self.registry().parent_lane(&lane.lane_ref).await?;
        let children = self.registry().child_lanes(&lane.lane_ref, 100).await?;
        Ok(GetOutput {
            compaction,
            parent: parent.map(lane_ref),
            children: children.into_iter().map(lane_ref).collect(),
            errors: errors.into_iter().map(convert::error).collect(),
            token_usage,
            counts: LaneCounts {
                turns: count(counts.turns),
                items: count(counts.items),
                events: count(counts.events),
                errors: count(counts.errors),
            },
            lane: convert::lane(lane, &self.view()),
        })
    }
}

/// `tail`.
impl Handle<TailInput> for Service {
    async fn handle(&self, input: TailInput) -> Result<TailOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let items = self
            .registry()
            .tail(&lane.lane_ref, limit(input.limit))
            .await?;
        Ok(TailOutput {
            lane: convert::lane_ref(&lane),
            items: items.into_iter().map(convert::item).collect(),
        })
    }
}

/// `goal set`.
impl Handle<GoalSetInput> for Service {
    async fn handle(&self, input: GoalSetInput) -> Result<GoalSetOutput, DispatchError> {
        if input.objective.is_none() && input.status.is_none() && input.token_budget.is_none() {
            return Err(DispatchError::invalid_input(
                "`goal set` needs something to set: `objective`, `status` or `token_budget`",
            ));
        }
        let lane = self.resolve(&input.lane).await?;
        // An active goal starts turns: it takes the lane's write lock like `send`.
        let _writer = self.lane_lock(&lane.lane_ref).await;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let set = server
            .call(&ThreadGoalSetParams {
                thread_id: lane.thread_id.clone(),
                objective: input.objective.as_ref().map(|o| o.to_string()),
                status: input.status.map(|s| match s {
                    GoalSetInputStatus::Active => ThreadGoalStatus::Active,
                    GoalSetInputStatus::Paused => ThreadGoalStatus::Paused,
                    GoalSetInputStatus::Complete => ThreadGoalStatus::Complete,
                }),
                token_budget: input
                    .token_budget
                    .map(|b| i64::try_from(b.get()).unwrap_or(i64::MAX)),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        let row = goal_row(&set.goal);
        self.record_facts(&lane.lane_ref, vec![Fact::Goal(Some(row.clone()))])
            .await?;
        Ok(GoalSetOutput {
            lane: convert::lane_ref(&lane),
            goal: Some(goal(row)),
        })
    }

    fn logged(output: &GoalSetOutput) -> Logged {
        let detail = output.goal.as_ref().map_or_else(
            || "goal: none".to_owned(),
            |g| format!("goal ({}): {}", g.status, g.objective),
        );
        Logged::lane(&output.lane.ref_, detail)
    }
}

/// `goal get`.
impl Handle<GoalGetInput> for Service {
    async fn handle(&self, input: GoalGetInput) -> Result<GoalGetOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let got = server
            .call(&ThreadGoalGetParams {
                thread_id: lane.thread_id.clone(),
            })
            .await
            .map_err(app_server_error)?;
        let row = got.goal.as_ref().map(goal_row);
        self.record_facts(&lane.lane_ref, vec![Fact::Goal(row.clone())])
            .await?;
        Ok(GoalGetOutput {
            lane: convert::lane_ref(&lane),
            goal: row.map(goal),
        })
    }
}

/// `goal clear`.
impl Handle<GoalClearInput> for Service {
    async fn handle(&self, input: GoalClearInput) -> Result<GoalClearOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let cleared = server
            .call(&ThreadGoalClearParams {
                thread_id: lane.thread_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        self.record_facts(&lane.lane_ref, vec![Fact::Goal(None)])
            .await?;
        Ok(GoalClearOutput {
            lane: convert::lane_ref(&lane),
            cleared: cleared.cleared,
        })
    }

    fn logged(output: &GoalClearOutput) -> Logged {
        let detail = if output.cleared {
            "goal cleared"
        } else {
            "no goal to clear"
        };
        Logged::lane(&output.lane.ref_, detail)
    }
}
