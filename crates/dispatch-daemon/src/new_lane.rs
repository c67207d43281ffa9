//! `new`: make an owned lane. Every check comes first (cwd, handle, model settings), then the
//! thread, the lane, its name, its first message and its goal; a failure after the thread
//! exists says what was done. With an idempotency key, a retry returns the lane the first call
//! made and makes nothing new, also after a restart.

use codex_app_server::protocol::{
    AskForApproval, SandboxMode, ThreadGoalSetParams, ThreadSetNameParams, ThreadStartParams,
};
use dispatch_contract::types::{NewInput, NewInputApprovalPolicy, NewInputSandbox, NewOutput};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{CreationRow, DeliveryMode, Fact, NewLane, Ownership};
use serde_json::json;

use crate::account;
use crate::convert::{self, goal_row};
use crate::deliver::DeliveryRequest;
use crate::errors::app_server_error;
use crate::models;
use crate::receipts;
use crate::service::Service;

/// `new`: every check first (cwd, handle, model settings), then the thread, the lane, its
/// name, its first message and its goal. A failure after the thread exists says what was
/// done (`details.lane_ref`, `details.thread_id`), so nothing is retried into a duplicate.
impl Handle<NewInput> for Service {
    async fn handle(&self, input: NewInput) -> Result<NewOutput, DispatchError> {
        let Some(key) = input.idempotency_key.as_ref().map(|k| k.to_string()) else {
            return self.make_lane(input, None).await;
        };
        // The key binds the settings as given (the caller's cwd included).
        let mut payload = serde_json::to_value(&input).unwrap_or_default();
        if let Some(fields) = payload.as_object_mut() {
            fields.remove("idempotency_key");
        }
        let hash = receipts::payload_hash(&payload);
        if let Some(made) = self.registry().begin_creation(&key, &hash).await? {
            return self.made_before(made, &hash).await;
        }
        let made = self.make_lane(input, Some(&key)).await;
        if made.is_err() {
            // Nothing was created when no thread was: the key may be used again.
            if let Err(err) = self.registry().forget_creation(&key).await {
                tracing::warn!(%err, "forgetting an unfinished creation");
            }
        }
        made
    }

    fn logged(output: &NewOutput) -> Logged {
        let title = output.lane.title.as_deref().unwrap_or("a lane");
        if output.repeated {
            return Logged::lane(
                &output.lane.ref_,
                format!("repeated idempotent new: {title} unchanged"),
            );
        }
        let first = if output.message_accepted == Some(true) {
            ", first message accepted"
        } else {
            ""
        };
        Logged::lane(&output.lane.ref_, format!("created {title}{first}"))
    }
}

impl Service {
    /// Makes the lane `new` asks for; with an idempotency `key`, records what it made under
    /// it as it goes.
    async fn make_lane(
        &self,
        input: NewInput,
        key: Option<&str>,
    ) -> Result<NewOutput, DispatchError> {
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
        let (server, generation, _placing) = self.server_for_new()?;
        let settings = models::check_settings(
            &server,
            self.registry(),
            input.model.as_deref().map(String::as_str),
            input.effort.as_deref().map(String::as_str),
            input.service_tier.as_deref().map(String::as_str),
        )
        .await?;
        let permission_profile = input.permission_profile.as_ref().map(|p| p.to_string());
        if let Some(profile) = &permission_profile {
            if input.sandbox.is_some() {
                return Err(DispatchError::invalid_input(
                    "give `permission_profile` or `sandbox`, not both: a profile sets the sandbox",
                ));
            }
            account::check_permission_profile(&server, cwd.as_deref(), profile).await?;
        }
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
                // `permissions` on `thread/start` is experimental in 0.169.0; the stable way
                // to pick a profile is the `default_permissions` setting.
                config: permission_profile.map(|profile| {
                    serde_json::Map::from_iter([(
                        "default_permissions".to_owned(),
                        serde_json::Value::String(profile),
                    )])
                }),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        let thread_id = started.thread.id.clone();
        self.mark_loaded(generation, &thread_id);
        self.unload_idle_excess(&server, generation, &thread_id)
            .await;
        self.note_creation(key, Some(&thread_id), None, None).await;
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
        self.note_creation(key, None, Some(&lane.lane_ref), None)
            .await;
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
        let mut receipt = None;
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
            self.note_creation(key, None, None, Some(&delivered.receipt.id))
                .await;
            receipt = Some(delivered.receipt.id);
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
            receipt,
            repeated: false,
            warnings,
        })
    }

    /// Records under the idempotency key what was made so far; a registry that cannot is
    /// logged (the key then only protects what it already recorded).
    async fn note_creation(
        &self,
        key: Option<&str>,
        thread_id: Option<&str>,
        lane_ref: Option<&str>,
        receipt: Option<&str>,
    ) {
        let Some(key) = key else { return };
        if let Err(err) = self
            .registry()
            .note_creation(key, thread_id, lane_ref, receipt)
            .await
        {
            tracing::warn!(%err, "recording what `new` made under its idempotency key");
        }
    }

    /// The answer to a `new` whose idempotency key was used before: the first call's lane
    /// (nothing is made), `delivery_conflict` for other settings, or an error when the first
    /// call stopped before its lane was recorded.
    async fn made_before(&self, made: CreationRow, hash: &str) -> Result<NewOutput, DispatchError> {
        if made.payload_hash != hash {
            return Err(DispatchError::new(
                ErrorCode::DeliveryConflict,
                "the idempotency key was used for a `new` with other settings",
            )
            .with_details(json!({ "lane_ref": made.lane_ref, "thread_id": made.thread_id })));
        }
        let lane = match &made.lane_ref {
            Some(lane_ref) => self.registry().lane(lane_ref).await?,
            None => None,
        };
        let Some(lane) = lane else {
            let thread = made.thread_id.as_deref().unwrap_or("unknown");
            return Err(DispatchError::new(
                ErrorCode::DeliveryConflict,
                format!(
                    "an earlier `new` with this idempotency key stopped before its lane was \
                     recorded (Codex thread {thread}); it is not made again"
                ),
            )
            .with_hint(
                Hint::new("{0} adopts the thread if it exists; a new key makes another lane")
                    .run(&operations::ATTACH, json!({ "thread_id": thread })),
            )
            .with_details(json!({ "thread_id": made.thread_id })));
        };
        let first = match &made.receipt {
            Some(id) => self.registry().delivery(id).await?,
            None => None,
        };
        Ok(NewOutput {
            goal_set: lane.goal.is_some(),
            message_accepted: first.as_ref().map(|d| d.turn_id.is_some()),
            turn_id: first.as_ref().and_then(|d| d.turn_id.clone()),
            receipt: made.receipt,
            repeated: true,
            warnings: Vec::new(),
            lane: convert::lane(lane, &self.view()),
        })
    }
}
