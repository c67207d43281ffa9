//! Starting a turn so that what dispatch reports is true: Codex is asked whether the lane runs
//! a turn before one starts, acceptance is reported only once the thread holds the message,
//! and what fails after that is a warning, never an error that would invite a resend.

use codex_app_server::protocol::{
    GetAccountParams, ThreadItem, ThreadReadParams, ThreadStatus, ThreadTurnsListParams,
    TurnItemsView, TurnStartParams, UserInput,
};
use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use dispatch_registry::{Fact, LaneRow, LaneStatus};
use serde_json::json;

use crate::convert::now_ms;
use crate::errors::app_server_error;
use crate::service::Service;

/// How a new turn is asked for, beyond its message.
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnOptions {
    /// The reasoning effort.
    pub effort: Option<String>,
    /// The JSON Schema the turn's final answer must match.
    pub output_schema: Option<serde_json::Value>,
}

/// The turn Codex is running on `thread_id`, if its thread is active.
pub(crate) async fn codex_running_turn(
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
pub(crate) const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether Codex recorded the message of a turn it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageRecorded {
    /// The turn's user message is in the thread.
    Yes,
    /// It is not, and will not be: the turn ended before recording it.
    Lost(&'static str),
    /// The App Server went away before saying: whether it is in the thread is unknown.
    Gone(&'static str),
    /// No word either way within [`RECORD_TIMEOUT`].
    Unconfirmed,
}

/// Waits for the user message of `turn_id` (carrying `client_id`) to be recorded. When the
/// turn ends without the event stream having shown the message (a subscriber that fell
/// behind misses events), Codex is asked whether the turn holds it.
async fn message_recorded(
    server: &codex_app_server::AppServer,
    thread_id: &str,
    events: &mut codex_app_server::Subscription,
    turn_id: &str,
    client_id: &str,
) -> MessageRecorded {
    use codex_app_server::Event;
    use codex_app_server::protocol::ServerNotification;
    let wait = async {
        while let Some(event) = events.recv().await {
            let Event::Notification(notification) = event else {
                continue;
            };
            match notification.as_ref() {
                ServerNotification::ItemCompleted(done)
                    if done.turn_id == turn_id && is_the_message(&done.item, client_id) =>
                {
                    return MessageRecorded::Yes;
                }
                ServerNotification::TurnCompleted(done) if done.turn.id == turn_id => {
                    return turn_holds_message(server, thread_id, turn_id, client_id).await;
                }
                _ => {}
            }
        }
        MessageRecorded::Gone("the App Server went away before it confirmed the message")
    };
    tokio::time::timeout(RECORD_TIMEOUT, wait)
        .await
        .unwrap_or(MessageRecorded::Unconfirmed)
}

/// Whether ended turn `turn_id` holds the user message carrying `client_id`, as Codex says
/// (`thread/turns/list` with the turns' items; the turn is among the newest).
async fn turn_holds_message(
    server: &codex_app_server::AppServer,
    thread_id: &str,
    turn_id: &str,
    client_id: &str,
) -> MessageRecorded {
    let Ok(turns) = server
        .call(&ThreadTurnsListParams {
            thread_id: thread_id.to_owned(),
            limit: Some(5),
            items_view: Some(TurnItemsView::Full),
            ..Default::default()
        })
        .await
    else {
        return MessageRecorded::Unconfirmed;
    };
    let Some(turn) = turns.data.iter().find(|turn| turn.id == turn_id) else {
        return MessageRecorded::Unconfirmed;
    };
    if turn
        .items
        .iter()
        .any(|item| is_the_message(item, client_id))
    {
        MessageRecorded::Yes
    } else {
        MessageRecorded::Lost("the turn ended before the message was recorded")
    }
}

/// Whether `item` is the user message carrying `client_id` (or one without a client id).
fn is_the_message(item: &ThreadItem, client_id: &str) -> bool {
    matches!(item, ThreadItem::UserMessage(message)
        if message.client_id.as_deref().is_none_or(|id| id == client_id))
}

/// A turn `start_turn` started (or steered into).
pub(crate) struct StartedTurn {
    /// The turn.
    pub turn_id: String,
    /// Whether Codex added the message to a turn it was already running.
    pub steered: bool,
    /// Whether Codex recorded the message.
    pub recorded: MessageRecorded,
    /// What went wrong after the turn started.
    pub warnings: Vec<String>,
}

/// The lane's running turn, if its state says one runs.
pub(crate) fn running_turn(lane: &LaneRow) -> Option<String> {
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

impl Service {
    /// Starts a turn with `text` on `lane` (whose write lock the caller holds), admitted as
    /// model work (`daemon_stopping` once the daemon agreed to stop, before anything is sent), with
    /// `client_id` as the user message's `clientUserMessageId`, waits until Codex has recorded
    /// the message in the thread, and records the turn as started, so the lane is busy for
    /// the next caller even before `turn/started` is stored.
    ///
    /// `turn/start` answers before Codex records the message: an App Server that goes away
    /// in between (its daemon was killed) loses it. The answer says what became of the
    /// message ([`StartedTurn::recorded`]); an error means `turn/start` itself failed. A
    /// registry failure after the turn started is a warning, never an error that would
    /// invite a resend.
    pub(crate) async fn start_turn(
        &self,
        server: &codex_app_server::AppServer,
        lane: &LaneRow,
        input: Vec<UserInput>,
        turn: TurnOptions,
        client_id: &str,
    ) -> Result<StartedTurn, DispatchError> {
        // Held until the started turn is recorded (and the idle flag counted it): until then
        // the flag cannot see this turn, and the daemon must not look idle.
        let _work = self.admit_model_work()?;
        let asked_at_s = now_ms() / 1000;
        let mut events = server.subscribe_thread(&lane.thread_id);
        let turn = server
            .call(&TurnStartParams {
                thread_id: lane.thread_id.clone(),
                input,
                effort: turn.effort,
                output_schema: turn.output_schema,
                client_user_message_id: Some(client_id.to_owned()),
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
        let recorded =
            message_recorded(server, &lane.thread_id, &mut events, &turn.id, client_id).await;
        // Not held while the started turn is written (which waits for the event pump's
        // batches): the reader would copy the turn's flood into it for nothing meanwhile.
        drop(events);
        if let MessageRecorded::Unconfirmed = recorded {
            // A warning is read like a hint: in the words of the surface that asked.
            warnings.push(
                Hint::new(format!(
                    "Codex accepted turn {} but did not confirm within {} s that it recorded \
                     the message; {{0}} shows whether it did before you send it again",
                    turn.id,
                    RECORD_TIMEOUT.as_secs(),
                ))
                .run(&operations::TAIL, json!({ "lane": lane.lane_ref }))
                .to_string(),
            );
        }
        if !matches!(
            recorded,
            MessageRecorded::Lost(_) | MessageRecorded::Gone(_)
        ) {
            let started = Fact::TurnStarted {
                turn_id: turn.id.clone(),
                at_ms: now_ms(),
            };
            if let Err(err) = self.record_facts(&lane.lane_ref, vec![started]).await {
                tracing::error!(lane = lane.lane_ref, turn = turn.id, err = %err.message, "recording a started turn");
                warnings.push(format!(
                    "turn {} started, but the registry could not record it ({}); the lane \
                     shows it once the registry can be written",
                    turn.id, err.message
                ));
            }
        }
        Ok(StartedTurn {
            turn_id: turn.id,
            steered,
            recorded,
            warnings,
        })
    }

    /// `lane_busy` when Codex says the lane's thread is running a turn the registry does not
    /// know about (the lane is reconciled); `None` when it is idle or cannot tell.
    pub(crate) async fn codex_running(
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
    pub(crate) async fn credential_warning(
        &self,
        server: &codex_app_server::AppServer,
    ) -> Option<String> {
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
}
