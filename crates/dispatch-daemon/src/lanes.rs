//! The lane operations: `new`, `send`, `stop` and the goal operations, plus the read
//! operations answered from the registry (`get`, `list`, `tail`).

use codex_app_server::protocol::{
    AskForApproval, SandboxMode, ThreadGoalClearParams, ThreadGoalGetParams, ThreadGoalSetParams,
    ThreadSetNameParams, ThreadStartParams, TurnInterruptParams,
};
use dispatch_contract::types::{
    GetInput, GetOutput, GoalClearInput, GoalClearOutput, GoalGetInput, GoalGetOutput,
    GoalSetInput, GoalSetOutput, LaneCounts, ListInput, ListOutput, NewInput,
    NewInputApprovalPolicy, NewInputSandbox, NewOutput, SendInput, SendOutput, StopInput,
    StopOutput, TailInput, TailOutput,
};
use dispatch_contract::{DispatchError, Handle, Hint, Logged, operations};
use dispatch_registry::{DeliveryMode, Fact, LaneFilter, NewLane, Ownership};
use serde_json::json;

use crate::convert::{self, goal, goal_row};
use crate::deliver::DeliveryRequest;
use crate::errors::app_server_error;
use crate::models;
use crate::service::Service;
use crate::turn_start::codex_running_turn;

fn limit(n: std::num::NonZeroU64) -> u32 {
    u32::try_from(n.get()).unwrap_or(u32::MAX)
}

/// `new`: every check first (cwd, handle, model settings), then the thread, the lane, its
/// name, its first message and its goal. A failure after the thread exists says what was
/// done (`details.lane_ref`, `details.thread_id`), so nothing is retried into a duplicate.
impl Handle<NewInput> for Service {
    async fn handle(&self, input: NewInput) -> Result<NewOutput, DispatchError> {
        let cwd = input.cwd.as_ref().map(|c| c.to_string());
        if let Some(dir) = &cwd {
            let path = std::path::Path::new(dir);
            if !path.is_absolute() || !path.is_dir() {
                return Err(DispatchError::invalid_input(format!(
                    "`cwd`: {dir} is not an existing directory (an absolute path)"
                )));
            }
        }
        let handle = input
            .handle
            .as_ref()
            .map(|h| h.trim_start_matches('@').to_owned());
        if let Some(handle) = &handle {
            self.registry().check_handle_free(handle, None).await?;
        }
        let (server, generation) = self.server()?;
        let settings = models::check_settings(
            &server,
            self.registry(),
            input.model.as_deref().map(String::as_str),
            input.effort.as_deref().map(String::as_str),
            input.service_tier.as_deref().map(String::as_str),
        )
        .await?;
        let mut warnings: Vec<String> =
            self.credential_warning(&server).await.into_iter().collect();

        let started = server
            .call(&ThreadStartParams {
                cwd: cwd.clone(),
                model: input.model.as_ref().map(|m| m.to_string()),
                service_tier: settings.service_tier.clone(),
                approval_policy: input.approval_policy.map(|p| match p {
                    NewInputApprovalPolicy::Untrusted => AskForApproval::Untrusted,
                    NewInputApprovalPolicy::OnRequest => AskForApproval::OnRequest,
                    NewInputApprovalPolicy::Never => AskForApproval::Never,
                }),
                sandbox: input.sandbox.map(|s| match s {
                    NewInputSandbox::ReadOnly => SandboxMode::ReadOnly,
                    NewInputSandbox::WorkspaceWrite => SandboxMode::WorkspaceWrite,
                    NewInputSandbox::DangerFullAccess => SandboxMode::DangerFullAccess,
                }),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        let thread_id = started.thread.id.clone();
        self.mark_loaded(generation, &thread_id);
        let name = input.name.to_string();
        let lane = self
            .registry()
            .create_lane(&NewLane {
                thread_id: thread_id.clone(),
                title: Some(name.clone()),
                handle,
                ownership: Ownership::Owned,
                cwd: Some(cwd.unwrap_or_else(|| started.cwd.display().to_string())),
                model: input.model.as_ref().map(|m| m.to_string()),
            })
            .await
            .map_err(|err| {
                let err = DispatchError::from(err);
                DispatchError::new(
                    err.code,
                    format!(
                        "Codex thread {thread_id} was created, but dispatch could not record \
                         its lane: {}",
                        err.message
                    ),
                )
                .with_hint(
                    Hint::new(
                        "once the registry can be written, {0} adopts the thread \
                         (observe-only); do not create a lane again for the same work",
                    )
                    .run(&operations::ATTACH, json!({ "thread_id": thread_id })),
                )
                .with_details(json!({ "thread_id": thread_id, "done": ["thread_created"] }))
            })?;
        // From here on the lane exists: a failure names it.
        let partial = |done: &[&str], err: DispatchError, what: &str| {
            DispatchError::new(
                err.code,
                format!(
                    "lane {} was created, but {what}: {}",
                    lane.lane_ref, err.message
                ),
            )
            .with_hint(
                Hint::new(
                    "the lane exists: {0} shows it; continue from what failed instead of \
                     creating it again",
                )
                .run(&operations::GET, json!({ "lane": lane.lane_ref })),
            )
            .with_details(json!({
                "lane_ref": lane.lane_ref,
                "thread_id": thread_id,
                "done": done,
            }))
        };
        if let Err(err) = server
            .call(&ThreadSetNameParams {
                thread_id: thread_id.clone(),
                name,
            })
            .await
        {
            warnings.push(
                Hint::new(format!(
                    "the Codex thread could not be named ({}); {{0}} tries again",
                    app_server_error(err).message,
                ))
                .run(
                    &operations::RENAME,
                    json!({ "target": lane.lane_ref, "title": "<title>" }),
                )
                .to_string(),
            );
        }

        let mut done = vec!["thread_created", "lane_recorded"];
        let mut turn_id = None;
        let mut message_accepted = None;
        if let Some(text) = input.text.as_ref().filter(|_| !input.no_send) {
            let delivered = self
                .deliver(DeliveryRequest {
                    lane: lane.clone(),
                    mode: DeliveryMode::Send,
                    text: text.to_string(),
                    source: "new".to_owned(),
                    sender_ref: None,
                    idempotency: None,
                    effort: settings.effort.clone(),
                })
                .await
                .map_err(|err| partial(&done, err, "its first message was not accepted"))?;
            warnings.extend(delivered.warnings);
            turn_id = delivered.receipt.turn_id;
            message_accepted = Some(true);
            done.push("message_accepted");
        }
        let mut goal_set = false;
        if let Some(goal) = &input.goal {
            let set = server
                .call(&ThreadGoalSetParams {
                    thread_id: thread_id.clone(),
                    objective: Some(goal.to_string()),
                    ..Default::default()
                })
                .await
                .map_err(|err| partial(&done, app_server_error(err), "its goal was not set"))?;
            if let Err(err) = self
                .record_facts(&lane.lane_ref, vec![Fact::Goal(Some(goal_row(&set.goal)))])
                .await
            {
                warnings.push(format!(
                    "the goal was set, but the registry could not record it ({})",
                    err.message
                ));
            }
            goal_set = true;
        }
        let lane = match self.registry().lane(&lane.lane_ref).await {
            Ok(Some(fresh)) => fresh,
            _ => lane,
        };
        Ok(NewOutput {
            lane: convert::lane(lane, &self.view()),
            message_accepted,
            goal_set,
            turn_id,
            warnings,
        })
    }

    fn logged(output: &NewOutput) -> Logged {
        let title = output.lane.title.as_deref().unwrap_or("a lane");
        let first = if output.message_accepted == Some(true) {
            ", first message accepted"
        } else {
            ""
        };
        Logged::lane(&output.lane.ref_, format!("created {title}{first}"))
    }
}

/// `send`: under the lane's write lock, so the busy check and the turn start are one step.
impl Handle<SendInput> for Service {
    async fn handle(&self, input: SendInput) -> Result<SendOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let Some(text) = input.text.as_ref().map(|t| t.to_string()) else {
            return Err(
                DispatchError::invalid_input("`send` needs a message: `text` is missing")
                    .with_hint(Hint::new("give the message ({0})").run(
                        &operations::SEND,
                        json!({ "lane": lane.lane_ref, "text": "<text>" }),
                    )),
            );
        };
        let mode = if input.steer {
            DeliveryMode::Steer
        } else {
            DeliveryMode::Send
        };
        let delivered = self
            .deliver(DeliveryRequest {
                lane: lane.clone(),
                mode,
                text,
                source: "send".to_owned(),
                sender_ref: None,
                idempotency: None,
                effort: None,
            })
            .await?;
        Ok(SendOutput {
            lane: convert::lane_ref(&lane),
            turn_id: delivered.receipt.turn_id.unwrap_or_default(),
            steered: delivered.steered,
            message_accepted: true,
            warnings: delivered.warnings,
        })
    }

    fn logged(output: &SendOutput) -> Logged {
        let detail = if output.steered {
            "message steered into the running turn".to_owned()
        } else {
            format!("message accepted, turn {}", output.turn_id)
        };
        Logged::lane(&output.lane.ref_, detail)
    }
}

/// `stop`.
impl Handle<StopInput> for Service {
    async fn handle(&self, input: StopInput) -> Result<StopOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let (server, generation) = self.server()?;
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
        Ok(GetOutput {
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

/// `list`.
impl Handle<ListInput> for Service {
    async fn handle(&self, input: ListInput) -> Result<ListOutput, DispatchError> {
        let filter = LaneFilter {
            status: input.status.map(convert::registry_status),
            include_archived: input.all,
            limit: limit(input.limit),
        };
        let lanes = self.registry().list_lanes(&filter).await?;
        let view = self.view();
        Ok(ListOutput {
            lanes: lanes.into_iter().map(|l| convert::lane(l, &view)).collect(),
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
        let lane = self.resolve(&input.lane).await?;
        // An active goal starts turns: it takes the lane's write lock like `send`.
        let _writer = self.lane_lock(&lane.lane_ref).await;
        let (server, generation) = self.server()?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let set = server
            .call(&ThreadGoalSetParams {
                thread_id: lane.thread_id.clone(),
                objective: Some(input.objective.to_string()),
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
        let objective = output.goal.as_ref().map_or("", |g| g.objective.as_str());
        Logged::lane(&output.lane.ref_, format!("goal: {objective}"))
    }
}

/// `goal get`.
impl Handle<GoalGetInput> for Service {
    async fn handle(&self, input: GoalGetInput) -> Result<GoalGetOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let (server, generation) = self.server()?;
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
        let (server, generation) = self.server()?;
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
