//! The lane operations that talk to the App Server: `new`, `send`, `stop` and the goal
//! operations, plus the read operations answered from the registry (`get`, `list`, `tail`).

use codex_app_server::protocol::{
    AskForApproval, GetAccountParams, SandboxMode, ThreadGoalClearParams, ThreadGoalGetParams,
    ThreadGoalSetParams, ThreadReadParams, ThreadResumeParams, ThreadSetNameParams,
    ThreadStartParams, ThreadStatus, ThreadTurnsListParams, TurnInterruptParams, TurnStartParams,
    TurnSteerParams, UserInput,
};
use dispatch_contract::types::{
    GetInput, GetOutput, GoalClearInput, GoalClearOutput, GoalGetInput, GoalGetOutput,
    GoalSetInput, GoalSetOutput, LaneCounts, ListInput, ListOutput, NewInput,
    NewInputApprovalPolicy, NewInputSandbox, NewOutput, SendInput, SendOutput, StopInput,
    StopOutput, TailInput, TailOutput,
};
use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use dispatch_registry::{
    Fact, LaneFilter, LaneRow, LaneStatus, NewLane, Ownership, Recorded, Resolution,
};
use serde_json::json;

use crate::convert::{self, goal, goal_row, now_ms};
use crate::errors::app_server_error;
use crate::models;
use crate::service::Service;

fn text_input(text: &str) -> Vec<UserInput> {
    vec![UserInput::text(text)]
}

/// The turn Codex is running on `thread_id`, if its thread is active.
async fn codex_running_turn(
    server: &codex_app_server::AppServer,
    thread_id: &str,
) -> Option<String> {
    let read = server
        .call(&ThreadReadParams {
            thread_id: thread_id.to_owned(),
            include_turns: Some(false),
        })
        .await
        .ok()?;
    if !matches!(read.thread.status, ThreadStatus::Active(_)) {
        return None;
    }
    let turns = server
        .call(&ThreadTurnsListParams {
            thread_id: thread_id.to_owned(),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .ok()?;
    turns
        .data
        .into_iter()
        .find(|turn| turn.status == codex_app_server::protocol::TurnStatus::InProgress)
        .map(|turn| turn.id)
}

/// How long `send` waits for Codex to record a message it accepted.
const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether Codex recorded the message of a turn it accepted.
enum MessageRecorded {
    /// The turn's user message is in the thread.
    Yes,
    /// It is not, and will not be: the turn ended first or the App Server went away.
    Lost(&'static str),
    /// No word either way within [`RECORD_TIMEOUT`].
    Unconfirmed,
}

/// Waits for the user message of `turn_id` (carrying `client_id`) to be recorded.
async fn message_recorded(
    events: &mut codex_app_server::Subscription,
    turn_id: &str,
    client_id: &str,
) -> MessageRecorded {
    use codex_app_server::Event;
    use codex_app_server::protocol::{ServerNotification, ThreadItem};
    let wait = async {
        while let Some(event) = events.recv().await {
            let Event::Notification(notification) = event else {
                continue;
            };
            match notification.as_ref() {
                ServerNotification::ItemCompleted(done) if done.turn_id == turn_id => {
                    if let ThreadItem::UserMessage(message) = &done.item
                        && message
                            .client_id
                            .as_deref()
                            .is_none_or(|id| id == client_id)
                    {
                        return MessageRecorded::Yes;
                    }
                }
                ServerNotification::TurnCompleted(done) if done.turn.id == turn_id => {
                    return MessageRecorded::Lost("the turn ended before the message was recorded");
                }
                _ => {}
            }
        }
        MessageRecorded::Lost("the App Server went away before it recorded the message")
    };
    tokio::time::timeout(RECORD_TIMEOUT, wait)
        .await
        .unwrap_or(MessageRecorded::Unconfirmed)
}

/// A fresh id for a message dispatch sends (`clientUserMessageId`): positive evidence, found in
/// the thread, that this message arrived.
fn client_message_id(lane_ref: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SENT: AtomicU64 = AtomicU64::new(0);
    format!(
        "dispatch-{lane_ref}-{}-{}-{}",
        std::process::id(),
        now_ms(),
        SENT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A turn `start_turn` started (or steered into).
struct StartedTurn {
    turn_id: String,
    steered: bool,
    warnings: Vec<String>,
}

/// The lane's running turn, if its state says one runs.
fn running_turn(lane: &LaneRow) -> Option<String> {
    let running = matches!(
        lane.status,
        LaneStatus::Busy | LaneStatus::Retrying | LaneStatus::WaitingApproval
    );
    lane.latest_turn
        .as_ref()
        .filter(|_| running)
        .filter(|turn| turn.status == dispatch_registry::TurnStatus::InProgress)
        .map(|turn| turn.turn_id.clone())
}

fn limit(n: std::num::NonZeroU64) -> u32 {
    u32::try_from(n.get()).unwrap_or(u32::MAX)
}

impl Service {
    /// The lane `selector` names: `not_found` or `ambiguous_selector` otherwise.
    pub async fn resolve(&self, selector: &str) -> Result<LaneRow, DispatchError> {
        match self.registry().resolve(selector).await? {
            Resolution::Found(lane) => Ok(lane),
            Resolution::NotFound => Err(DispatchError::new(
                ErrorCode::NotFound,
                format!("no lane matches `{selector}`"),
            )),
            Resolution::Ambiguous(candidates) => {
                let listed: Vec<String> = candidates
                    .iter()
                    .map(|c| {
                        format!(
                            "{} ({}{})",
                            c.lane_ref,
                            c.title.as_deref().unwrap_or("untitled"),
                            c.handle
                                .as_deref()
                                .map(|h| format!(", @{h}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                Err(DispatchError::new(
                    ErrorCode::AmbiguousSelector,
                    format!(
                        "`{selector}` matches {} lanes: {}",
                        candidates.len(),
                        listed.join(", ")
                    ),
                )
                .with_details(json!({
                    "candidates": candidates.iter().map(|c| json!({
                        "ref": c.lane_ref, "id": c.thread_id, "title": c.title, "handle": c.handle
                    })).collect::<Vec<_>>()
                })))
            }
        }
    }

    /// Makes sure the current App Server has `thread_id` loaded (after a daemon or App Server
    /// restart it is not), resuming it when needed.
    async fn ensure_loaded(
        &self,
        server: &codex_app_server::AppServer,
        generation: u64,
        thread_id: &str,
    ) -> Result<(), DispatchError> {
        if self.is_loaded(generation, thread_id) {
            return Ok(());
        }
        server
            .call(&ThreadResumeParams {
                thread_id: thread_id.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        self.mark_loaded(generation, thread_id);
        Ok(())
    }

    fn server(&self) -> Result<(codex_app_server::AppServer, u64), DispatchError> {
        self.app_server().current().ok_or_else(|| {
            self.app_server().server().err().unwrap_or_else(|| {
                DispatchError::new(
                    ErrorCode::AppServerUnavailable,
                    "the App Server is restarting",
                )
            })
        })
    }

    async fn record_facts(&self, lane_ref: &str, facts: Vec<Fact>) -> Result<(), DispatchError> {
        self.registry()
            .record(&[Recorded {
                lane_ref: lane_ref.to_owned(),
                event: None,
                facts,
            }])
            .await?;
        self.events_stored().await;
        Ok(())
    }

    /// Starts a turn with `text` on `lane` (whose write lock the caller holds), waits until
    /// Codex has recorded the message in the thread, and records the turn as started before
    /// returning, so the lane is busy for the next caller even before `turn/started` is
    /// stored.
    ///
    /// `turn/start` answers before Codex records the message: an App Server that goes away
    /// in between (its daemon was killed) loses it. So acceptance is reported only once the
    /// thread holds the message (`item/completed` of the turn's user message); a message lost
    /// that way is an error that says so. A registry failure after that is a warning in the
    /// answer, never an error that would invite a resend.
    async fn start_turn(
        &self,
        server: &codex_app_server::AppServer,
        lane: &LaneRow,
        text: &str,
        effort: Option<String>,
    ) -> Result<StartedTurn, DispatchError> {
        let asked_at_s = now_ms() / 1000;
        let client_id = client_message_id(&lane.lane_ref);
        let mut events = server.subscribe_thread(&lane.thread_id);
        let turn = server
            .call(&TurnStartParams {
                thread_id: lane.thread_id.clone(),
                input: text_input(text),
                effort,
                client_user_message_id: Some(client_id.clone()),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?
            .turn;
        let mut warnings = Vec::new();
        // `turn/start` on a thread whose turn runs (one Codex started by itself, for a goal)
        // steers that turn and answers with it; a turn that started well before the call
        // cannot be the one this call started.
        let steered = turn.started_at.is_some_and(|at| at < asked_at_s - 2);
        if steered {
            warnings.push(format!(
                "Codex was already running turn {} on this lane (one it started itself) and \
                 added the message to it",
                turn.id
            ));
        }
        match message_recorded(&mut events, &turn.id, &client_id).await {
            MessageRecorded::Yes => {}
            MessageRecorded::Lost(why) => {
                return Err(DispatchError::new(
                    ErrorCode::AppServerUnavailable,
                    format!(
                        "Codex accepted turn {} on lane {} but did not record the message: {why}",
                        turn.id, lane.lane_ref
                    ),
                )
                .with_hint(
                    Hint::new(
                        "the message is not in the thread; {0} shows what is, then send it again",
                    )
                    .run(&operations::TAIL, json!({ "lane": lane.lane_ref })),
                )
                .with_details(json!({
                    "lane_ref": lane.lane_ref,
                    "turn_id": turn.id,
                    "client_message_id": client_id,
                    "recorded": false,
                })));
            }
            // A warning is read like a hint: in the words of the surface that asked.
            MessageRecorded::Unconfirmed => warnings.push(
                Hint::new(format!(
                    "Codex accepted turn {} but did not confirm within {} s that it recorded \
                     the message; {{0}} shows whether it did before you send it again",
                    turn.id,
                    RECORD_TIMEOUT.as_secs(),
                ))
                .run(&operations::TAIL, json!({ "lane": lane.lane_ref }))
                .to_string(),
            ),
        }
        let started = Fact::TurnStarted {
            turn_id: turn.id.clone(),
            at_ms: now_ms(),
        };
        if let Err(err) = self.record_facts(&lane.lane_ref, vec![started]).await {
            tracing::error!(lane = lane.lane_ref, turn = turn.id, err = %err.message, "recording a started turn");
            warnings.push(format!(
                "turn {} started, but the registry could not record it ({}); the lane shows it \
                 once the registry can be written",
                turn.id, err.message
            ));
        }
        Ok(StartedTurn {
            turn_id: turn.id,
            steered,
            warnings,
        })
    }

    /// `lane_busy` when Codex says the lane's thread is running a turn the registry does not
    /// know about (the lane is reconciled); `None` when it is idle or cannot tell.
    async fn codex_running(
        &self,
        server: &codex_app_server::AppServer,
        lane: &LaneRow,
    ) -> Option<DispatchError> {
        let read = server
            .call(&ThreadReadParams {
                thread_id: lane.thread_id.clone(),
                include_turns: Some(false),
            })
            .await;
        match read {
            Ok(read) if matches!(read.thread.status, ThreadStatus::Active(_)) => {
                self.reconcile_one(lane).await;
                Some(
                    DispatchError::new(
                        ErrorCode::LaneBusy,
                        format!("lane {} is running a turn (Codex says so)", lane.lane_ref),
                    )
                    .with_hint(
                        Hint::new("wait for it ({0}) or end it ({1})")
                            .run(
                                &operations::WATCH,
                                json!({ "lane": lane.lane_ref, "until": "turn-end" }),
                            )
                            .run(&operations::STOP, json!({ "lane": lane.lane_ref })),
                    )
                    .with_details(json!({ "lane_ref": lane.lane_ref })),
                )
            }
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(lane = lane.lane_ref, %err, "reading the thread's status");
                None
            }
        }
    }

    /// A warning when Codex has no credentials for a provider that needs them.
    async fn credential_warning(&self, server: &codex_app_server::AppServer) -> Option<String> {
        match server
            .call(&GetAccountParams {
                refresh_token: Some(false),
            })
            .await
        {
            Ok(account) if account.requires_openai_auth && account.account.is_none() => Some(
                "Codex has no credentials for its model provider, which needs them: turns will \
                 fail until you run `codex login`"
                    .to_owned(),
            ),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(%err, "reading the Codex account");
                None
            }
        }
    }

    /// `new`: every check first (cwd, handle, model settings), then the thread, the lane, its
    /// name, its first message and its goal. A failure after the thread exists says what was
    /// done (`details.lane_ref`, `details.thread_id`), so nothing is retried into a duplicate.
    pub async fn lane_new(&self, input: NewInput) -> Result<NewOutput, DispatchError> {
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
            let turn = self
                .start_turn(&server, &lane, text, settings.effort.clone())
                .await
                .map_err(|err| partial(&done, err, "its first message was not accepted"))?;
            warnings.extend(turn.warnings);
            turn_id = Some(turn.turn_id);
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

    /// `send`: under the lane's write lock, so the busy check and the turn start are one step.
    pub async fn lane_send(&self, input: SendInput) -> Result<SendOutput, DispatchError> {
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
        if lane.archived {
            return Err(DispatchError::new(
                ErrorCode::LaneArchived,
                format!("lane {} is archived", lane.lane_ref),
            )
            .with_hint(
                Hint::new("{0} brings it back")
                    .run(&operations::RESTORE, json!({ "target": lane.lane_ref })),
            ));
        }
        let _writer = self.lane_lock(&lane.lane_ref).await;
        // What another writer did while this one waited for the lock counts.
        let lane = self.registry().lane(&lane.lane_ref).await?.unwrap_or(lane);
        let (server, generation) = self.server()?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        if let Some(turn_id) = running_turn(&lane) {
            if !input.steer {
                return Err(DispatchError::new(
                    ErrorCode::LaneBusy,
                    format!("lane {} is running turn {turn_id}", lane.lane_ref),
                )
                .with_hint(
                    Hint::new("wait for it ({0}), add to it ({1}), or end it ({2})")
                        .run(
                            &operations::WATCH,
                            json!({ "lane": lane.lane_ref, "until": "turn-end" }),
                        )
                        .run(
                            &operations::SEND,
                            json!({ "lane": lane.lane_ref, "text": "<text>", "steer": true }),
                        )
                        .run(&operations::STOP, json!({ "lane": lane.lane_ref })),
                )
                .with_details(json!({ "lane_ref": lane.lane_ref, "turn_id": turn_id })));
            }
            server
                .call(&TurnSteerParams {
                    thread_id: lane.thread_id.clone(),
                    expected_turn_id: turn_id.clone(),
                    input: text_input(&text),
                    ..Default::default()
                })
                .await
                .map_err(app_server_error)?;
            return Ok(SendOutput {
                lane: convert::lane_ref(&lane),
                turn_id,
                steered: true,
                message_accepted: true,
                warnings: Vec::new(),
            });
        }
        // The registry says idle; Codex has the last word (a turn it started for a goal, a
        // start the registry could not record).
        if let Some(busy) = self.codex_running(&server, &lane).await {
            return Err(busy);
        }
        let turn = self.start_turn(&server, &lane, &text, None).await?;
        Ok(SendOutput {
            lane: convert::lane_ref(&lane),
            turn_id: turn.turn_id,
            steered: turn.steered,
            message_accepted: true,
            warnings: turn.warnings,
        })
    }

    /// `stop`.
    pub async fn lane_stop(&self, input: StopInput) -> Result<StopOutput, DispatchError> {
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

    /// `get`.
    pub async fn lane_get(&self, input: GetInput) -> Result<GetOutput, DispatchError> {
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

    /// `list`.
    pub async fn lane_list(&self, input: ListInput) -> Result<ListOutput, DispatchError> {
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

    /// `tail`.
    pub async fn lane_tail(&self, input: TailInput) -> Result<TailOutput, DispatchError> {
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

    /// `goal set`.
    pub async fn goal_set(&self, input: GoalSetInput) -> Result<GoalSetOutput, DispatchError> {
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

    /// `goal get`.
    pub async fn goal_get(&self, input: GoalGetInput) -> Result<GoalGetOutput, DispatchError> {
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

    /// `goal clear`.
    pub async fn goal_clear(
        &self,
        input: GoalClearInput,
    ) -> Result<GoalClearOutput, DispatchError> {
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
}
