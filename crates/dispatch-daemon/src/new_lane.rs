//! `new`: make an owned lane. Every check comes first (cwd, handle, the launch layers, model
//! settings, images, the worktree's plan; `plan_new`, which a dry run returns as the plan),
//! then the worktree (if asked for), the thread, the lane, its name, its first message and its
//! goal; a worktree whose thread could not be made is removed again, and a failure after the
//! thread exists says what was done. With an idempotency key, a retry returns the lane the first call
//! made and makes nothing new, also after a restart.

use std::collections::BTreeMap;

use codex_app_server::protocol::{
    AskForApproval, SandboxMode, ThreadGoalSetParams, ThreadSetNameParams, ThreadStartParams,
};
use dispatch_contract::types::{LaunchFile, LaunchPlan, NewInput, NewOutput, SubscribeInput};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{CreationRow, DeliveryMode, Fact, ImageRef, NewLane, Ownership};
use serde_json::{Value, json};

use crate::account;
use crate::convert::{self, goal_row};
use crate::deliver::DeliveryRequest;
use crate::errors::app_server_error;
use crate::images;
use crate::launch::{self, Launch, LaunchRequest};
use crate::launch_config::{Key, Layer, Setting};
use crate::models;
use crate::receipts;
use crate::service::Service;
use crate::worktree;

/// `err` from making the thread after the worktree was made: the worktree and its branch go
/// again, and the error says whether they did.
async fn undo_worktree(plan: &worktree::WorktreePlan, err: DispatchError) -> DispatchError {
    let undone = worktree::undo(plan).await;
    let what = match &undone {
        Ok(()) => format!(
            "; the worktree {} and branch {} made for it were removed again",
            plan.path.display(),
            plan.branch
        ),
        Err(left) => format!(
            "; the worktree made for it could not be removed: {left} (remove it with git \
             worktree remove and git branch -D)"
        ),
    };
    let details = json!({
        "worktree": plan.path.display().to_string(),
        "branch": plan.branch,
        "worktree_removed": undone.is_ok(),
    });
    DispatchError {
        message: format!("{}{what}", err.message),
        details,
        ..err
    }
}

/// `new`: every check first (cwd, handle, model settings), then the thread, the lane, its
/// name, its first message and its goal. A failure after the thread exists says what was
/// done (`details.lane_ref`, `details.thread_id`), so nothing is retried into a duplicate.
impl Handle<NewInput> for Service {
    async fn handle(&self, input: NewInput) -> Result<NewOutput, DispatchError> {
        if input.dry_run {
            // Makes nothing, so there is nothing for an idempotency key to bind.
            return self.make_lane(input, None).await;
        }
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
        let Some(lane) = &output.lane else {
            // A dry run made nothing.
            return Logged::nothing();
        };
        let title = lane.title.as_deref().unwrap_or("a lane");
        if output.repeated {
            return Logged::lane(
                &lane.ref_,
                format!("repeated idempotent new: {title} unchanged"),
            );
        }
        let first = if output.message_accepted == Some(true) {
            ", first message accepted"
        } else {
            ""
        };
        Logged::lane(&lane.ref_, format!("created {title}{first}"))
    }
}

/// What a `new` call resolved to: the effective settings (every layer applied) and what the
/// call would do. One function makes it ([`Service::plan_new`]); the dry run returns it and
/// the real run acts on it, so the two cannot disagree.
pub(crate) struct NewPlan {
    /// The layers, resolved, with their sources and the files read.
    pub launch: Launch,
    /// The lane's title (`title_prefix` applied).
    pub title: String,
    /// The directory Codex works in, as given.
    pub cwd: Option<String>,
    /// The handle, without `@`.
    pub handle: Option<String>,
    /// The model, as resolved.
    pub model: Option<String>,
    /// Effort and service tier, checked against the catalog.
    pub checked: models::Settings,
    /// The sandbox mode.
    pub sandbox: Option<SandboxMode>,
    /// The approval policy.
    pub approval_policy: Option<AskForApproval>,
    /// The permission profile (exclusive with the two above).
    pub permission_profile: Option<String>,
    /// Base instructions for `thread/start`.
    pub base_instructions: Option<String>,
    /// Developer instructions for `thread/start`.
    pub developer_instructions: Option<String>,
    /// The native goal.
    pub goal: Option<String>,
    /// The first message, unless `no_send`.
    pub text: Option<String>,
    /// The first turn's output schema.
    pub output_schema: Option<Value>,
    /// A thread Codex does not persist.
    pub ephemeral: bool,
    /// The git worktree the lane gets (the `worktree` key), every check done.
    pub worktree: Option<worktree::WorktreePlan>,
    /// The images the first message carries, checked.
    pub images: Vec<ImageRef>,
    /// The events the caller's lane subscribes to on the new lane (`subscribe`).
    pub subscribe: Vec<String>,
    /// The caller's lane, which subscribes.
    pub subscriber: Option<String>,
    /// What the call would skip or should know.
    pub warnings: Vec<String>,
}

impl NewPlan {
    /// The plan as `new --dry-run` returns it.
    fn to_output(&self) -> LaunchPlan {
        LaunchPlan {
            title: self.title.clone(),
            cwd: self.cwd.clone(),
            settings: self.launch.settings(),
            files: self
                .launch
                .files
                .iter()
                .cloned()
                .chain(self.images.iter().filter_map(|image| {
                    serde_json::from_value::<LaunchFile>(json!({
                        "path": image.path,
                        "size": image.size,
                        "sha256": image.sha256,
                        "key": "image",
                    }))
                    .ok()
                }))
                .collect(),
            sends_turn: self.text.is_some(),
            sets_goal: self.goal.is_some(),
            images: i64::try_from(self.images.len()).unwrap_or(i64::MAX),
            worktree: self
                .worktree
                .as_ref()
                .map(|plan| convert::worktree(plan.row())),
            ephemeral: self.ephemeral,
            warnings: self.warnings.clone(),
        }
    }
}

/// The caller's own arguments as the top launch layer (`flag`).
fn flag_layer(input: &NewInput) -> Result<Layer, DispatchError> {
    let mut values = BTreeMap::new();
    let mut set = |key: Key, value: Option<Value>| {
        if let Some(value) = value {
            values.insert(
                key,
                Setting {
                    value,
                    file: None,
                    at: "arguments".to_owned(),
                },
            );
        }
    };
    let text = |v: Option<String>| v.map(Value::String);
    set(
        Key::Model,
        text(input.model.as_ref().map(|m| m.to_string())),
    );
    set(
        Key::Effort,
        text(input.effort.as_ref().map(|m| m.to_string())),
    );
    set(
        Key::ServiceTier,
        text(input.service_tier.as_ref().map(|m| m.to_string())),
    );
    set(
        Key::Sandbox,
        input.sandbox.and_then(|s| serde_json::to_value(s).ok()),
    );
    set(
        Key::ApprovalPolicy,
        input
            .approval_policy
            .and_then(|p| serde_json::to_value(p).ok()),
    );
    set(
        Key::PermissionProfile,
        text(input.permission_profile.as_ref().map(|m| m.to_string())),
    );
    set(
        Key::BaseInstructions,
        text(input.base_instructions.as_ref().map(|m| m.to_string())),
    );
    set(
        Key::DeveloperInstructions,
        text(input.developer_instructions.as_ref().map(|m| m.to_string())),
    );
    set(Key::Goal, text(input.goal.as_ref().map(|m| m.to_string())));
    set(Key::Text, text(input.text.as_ref().map(|m| m.to_string())));
    let schema = match &input.output_schema_json {
        Some(json) => Some(launch::output_schema(json, "`output_schema_json`")?),
        None => None,
    };
    set(Key::OutputSchema, schema);
    // Any worktree argument asks for a worktree.
    let worktree = input.worktree
        || input.worktree_branch.is_some()
        || input.worktree_base.is_some()
        || input.worktree_path.is_some();
    set(Key::Worktree, worktree.then_some(Value::Bool(true)));
    if input.permission_profile.is_some() && input.sandbox.is_some() {
        return Err(DispatchError::invalid_input(
            "give `permission_profile` or `sandbox`, not both: a profile sets the sandbox",
        ));
    }
    if input.permission_profile.is_some() && input.approval_policy.is_some() {
        return Err(DispatchError::invalid_input(
            "give `permission_profile` or `approval_policy`, not both: a profile sets the \
             approvals",
        ));
    }
    Ok(Layer {
        source: "flag".to_owned(),
        values,
    })
}

impl Service {
    /// Resolves what `new` would do, running every check it runs before it creates anything:
    /// the cwd, the handle, the config layers and presets, the title, the model settings
    /// against the catalog, and the permission profile.
    pub(crate) async fn plan_new(&self, input: &NewInput) -> Result<NewPlan, DispatchError> {
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
        let launch = self.resolve_launch(LaunchRequest {
            cwd: cwd.as_deref(),
            presets: input.preset.iter().map(|p| p.to_string()).collect(),
            packet: input.launch_packet.as_ref(),
            flags: flag_layer(input)?,
        })?;
        let title = launch.title(&input.name, cwd.as_deref())?;
        // Settings from files were not checked against the contract's limits: Codex's.
        for (key, limit) in [(Key::Goal, 4000), (Key::Text, 1_048_576)] {
            if let Some(resolved) = launch.values.get(&key)
                && resolved.value.as_str().map_or(0, |t| t.chars().count()) > limit
            {
                return Err(DispatchError::invalid_input(format!(
                    "`{}` from {} is longer than {limit} characters (Codex's limit)",
                    key.name(),
                    resolved.source
                ))
                .with_hint("shorten it"));
            }
        }
        let (server, _) = self.server()?;
        let model = launch.text(Key::Model);
        let checked = models::check_settings(
            &server,
            self.registry(),
            model.as_deref(),
            launch.text(Key::Effort).as_deref(),
            launch.text(Key::ServiceTier).as_deref(),
        )
        .await?;
        let permission_profile = launch.text(Key::PermissionProfile);
        if let Some(profile) = &permission_profile {
            account::check_permission_profile(&server, cwd.as_deref(), profile).await?;
        }
        let parse = |key: Key| launch.values.get(&key).map(|r| r.value.clone());
        let sandbox = parse(Key::Sandbox).and_then(|v| serde_json::from_value(v).ok());
        let approval_policy =
            parse(Key::ApprovalPolicy).and_then(|v| serde_json::from_value(v).ok());
        let mut warnings = launch.warnings.clone();
        let mut subscribe = Vec::new();
        let mut subscriber = None;
        if let Some(setting) = launch.values.get(&Key::Subscribe) {
            // The caller's own lane hears about the new one; without one there is no
            // subscriber, which is worth a warning, not a refusal of the whole launch.
            match self
                .caller_lane(input.caller.as_ref(), || Hint::new("call it from a lane"))
                .await
            {
                Ok(lane) => {
                    subscriber = Some(lane.lane_ref);
                    subscribe = setting
                        .value
                        .as_array()
                        .map(|events| {
                            events
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                Err(err) => warnings.push(format!(
                    "`subscribe` (from {}) is skipped: {}",
                    setting.source, err.message
                )),
            }
        }
        warnings.extend(self.credential_warning(&server).await);
        let text = launch.text(Key::Text).filter(|_| !input.no_send);
        let images = self
            .check_images(&server, input, text.is_some(), model.as_deref())
            .await?;
        let worktree = match launch.flag(Key::Worktree) {
            true => Some(self.plan_worktree(input, cwd.as_deref()).await?),
            false => None,
        };
        if let Some(schema) = launch.values.get(&Key::OutputSchema)
            && text.is_none()
        {
            warnings.push(format!(
                "the output schema (from {}) applies to the first message's turn, and there is \
                 no first message: it is not sent",
                schema.source
            ));
        }
        Ok(NewPlan {
            title,
            cwd,
            handle,
            model,
            checked,
            sandbox,
            approval_policy,
            permission_profile,
            base_instructions: launch.text(Key::BaseInstructions),
            developer_instructions: launch.text(Key::DeveloperInstructions),
            goal: launch.text(Key::Goal),
            text,
            output_schema: parse(Key::OutputSchema),
            ephemeral: input.ephemeral,
            worktree,
            images,
            subscribe,
            subscriber,
            warnings,
            launch,
        })
    }

    /// Makes the lane `new` asks for; with an idempotency `key`, records what it made under
    /// it as it goes. A dry run returns the plan and makes nothing.
    async fn make_lane(
        &self,
        input: NewInput,
        key: Option<&str>,
    ) -> Result<NewOutput, DispatchError> {
        let plan = self.plan_new(&input).await?;
        if input.dry_run {
            return Ok(NewOutput {
                lane: None,
                plan: Some(plan.to_output()),
                message_accepted: None,
                goal_set: false,
                turn_id: None,
                receipt: None,
                repeated: false,
                warnings: Vec::new(),
            });
        }
        let (server, generation, _placing) = self.server_for_new()?;
        let mut warnings = plan.warnings.clone();
        // Act: the worktree, then the thread in it (the worktree goes again if that fails).
        let tree = plan.worktree.as_ref();
        if let Some(tree) = tree {
            worktree::create(tree).await?;
        }
        let thread_cwd = match tree {
            Some(tree) if tree.cwd.is_dir() => Some(tree.cwd.display().to_string()),
            Some(tree) => Some(tree.path.display().to_string()),
            None => plan.cwd.clone(),
        };
        let started = server
            .call(&ThreadStartParams {
                cwd: thread_cwd.clone(),
                model: plan.model.clone(),
                service_tier: plan.checked.service_tier.clone(),
                approval_policy: plan.approval_policy.clone(),
                sandbox: plan.sandbox,
                base_instructions: plan.base_instructions.clone(),
                developer_instructions: plan.developer_instructions.clone(),
                ephemeral: plan.ephemeral.then_some(true),
                // `permissions` on `thread/start` is experimental in 0.169.0; the stable way
                // to pick a profile is the `default_permissions` setting.
                config: plan.permission_profile.clone().map(|profile| {
                    serde_json::Map::from_iter([(
                        "default_permissions".to_owned(),
                        serde_json::Value::String(profile),
                    )])
                }),
                ..Default::default()
            })
            .await
            .map_err(app_server_error);
        let started = match (started, tree) {
            (Ok(started), _) => started,
            (Err(err), None) => return Err(err),
            (Err(err), Some(tree)) => return Err(undo_worktree(tree, err).await),
        };
        let thread_id = started.thread.id.clone();
        self.mark_loaded(generation, &thread_id);
        self.unload_idle_excess(&server, generation, &thread_id)
            .await;
        self.note_creation(key, Some(&thread_id), None, None).await;
        let name = plan.title.clone();
        let lane = self
            .registry()
            .create_lane(&NewLane {
                thread_id: thread_id.clone(),
                title: Some(name.clone()),
                handle: plan.handle.clone(),
                ownership: Ownership::Owned,
                cwd: Some(thread_cwd.unwrap_or_else(|| started.cwd.display().to_string())),
                model: plan.model.clone(),
            })
            .await
            .map_err(|err| {
                DispatchError::from(err)
                    .after(format_args!(
                        "Codex thread {thread_id} was created, but dispatch could not record \
                         its lane"
                    ))
                    .with_hint(
                        Hint::new(
                            "once the registry can be written, {0} adopts the thread \
                         (observe-only); do not create a lane again for the same work",
                        )
                        .run(&operations::ATTACH, json!({ "thread_id": thread_id })),
                    )
                    .with_details(json!({
                        "thread_id": thread_id,
                        "done": ["thread_created"],
                        "worktree": tree.map(|tree| tree.path.display().to_string()),
                    }))
            })?;
        self.note_creation(key, None, Some(&lane.lane_ref), None)
            .await;
        if let Some(tree) = tree
            && let Err(err) = self
                .registry()
                .set_worktree(&lane.lane_ref, Some(&tree.row()))
                .await
        {
            warnings.push(format!(
                "the lane works in worktree {} (branch {}), but the registry could not record \
                 it ({err}); remove it with git when the lane is done",
                tree.path.display(),
                tree.branch
            ));
        }
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
        if tree.is_some() {
            done.insert(0, "worktree_created");
        }
        let mut turn_id = None;
        let mut message_accepted = None;
        let mut receipt = None;
        if let Some(text) = &plan.text {
            let delivered = self
                .deliver(DeliveryRequest {
                    lane: lane.clone(),
                    mode: DeliveryMode::Send,
                    text: text.to_string(),
                    source: "new".to_owned(),
                    sender_ref: None,
                    idempotency: None,
                    effort: plan.checked.effort.clone(),
                    output_schema: plan.output_schema.clone(),
                    images: plan.images.clone(),
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
        if let Some(goal) = &plan.goal {
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
        if let Some(subscriber) = &plan.subscriber {
            for when in &plan.subscribe {
                let subscribed = match serde_json::from_value::<SubscribeInput>(json!({
                    "target": lane.lane_ref, "to": subscriber, "when": when,
                })) {
                    Ok(request) => self.handle(request).await.map(|_| ()),
                    Err(err) => Err(DispatchError::internal(err.to_string())),
                };
                if let Err(err) = subscribed {
                    warnings.push(format!(
                        "lane {subscriber} was not subscribed to `{when}` of the new lane: {}",
                        err.message
                    ));
                }
            }
        }
        let lane = match self.registry().lane(&lane.lane_ref).await {
            Ok(Some(fresh)) => fresh,
            _ => lane,
        };
        Ok(NewOutput {
            lane: Some(convert::lane(lane, &self.view())),
            plan: None,
            message_accepted,
            goal_set,
            turn_id,
            receipt,
            repeated: false,
            warnings,
        })
    }

    /// The images of the first message, checked (files, then the model), before anything is
    /// made; they need a message to go with.
    async fn check_images(
        &self,
        server: &codex_app_server::AppServer,
        input: &NewInput,
        sends: bool,
        model: Option<&str>,
    ) -> Result<Vec<ImageRef>, DispatchError> {
        if input.image.is_empty() {
            return Ok(Vec::new());
        }
        if !sends {
            return Err(DispatchError::invalid_input(
                "`image`: images go with the first message, and none is sent: give `text` \
                 (without `no_send`)",
            ));
        }
        let paths = input.image.iter().map(|p| p.to_string()).collect();
        let images = images::inspect_blocking(paths).await?;
        images::check_model_takes_images(server, self.registry(), model).await?;
        Ok(images)
    }

    /// The worktree `new` would make (the `worktree` setting is on), every check done.
    async fn plan_worktree(
        &self,
        input: &NewInput,
        cwd: Option<&str>,
    ) -> Result<worktree::WorktreePlan, DispatchError> {
        let Some(cwd) = cwd else {
            return Err(DispatchError::invalid_input(
                "`worktree` needs `cwd`: the directory in the repository to branch from",
            ));
        };
        let path = input
            .worktree_path
            .as_ref()
            .map(|p| std::path::PathBuf::from(p.as_str()));
        worktree::plan(&worktree::WorktreeRequest {
            cwd: std::path::Path::new(cwd),
            title: input.name.as_str(),
            branch: input.worktree_branch.as_deref().map(String::as_str),
            base: input.worktree_base.as_deref().map(String::as_str),
            path: path.as_deref(),
            root: self.worktrees_root(),
        })
        .await
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
            lane: Some(convert::lane(lane, &self.view())),
            plan: None,
        })
    }
}
