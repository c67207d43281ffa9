//! Delivering messages to lanes, at most once. Every message dispatch hands to a lane (a
//! `send` in any mode, a queued message, a subscription's or a trigger's turn) is recorded as
//! a delivery (its receipt) before the App Server is asked, carries the receipt id as its
//! `clientUserMessageId`, and moves `queued` → `submitting` → `accepted` (→ `completed` or
//! `failed` when its turn ends, see the registry's ingest). A crash while `submitting` leaves
//! it `ambiguous`: it is never sent again, and it is resolved only by finding the receipt id
//! in the thread. See ADR 0011.

use codex_app_server::AppServer;
use codex_app_server::protocol::{
    ThreadInjectItemsParams, ThreadItem, ThreadTurnsListParams, TurnInterruptParams, TurnItemsView,
    TurnSteerParams,
};
use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use dispatch_registry::{
    DeliveryMode, DeliveryRow, DeliveryState, Fact, ImageRef, LaneRow, NewDelivery, Recording,
    TurnStatus,
};
use serde_json::json;

use crate::convert::now_ms;
use crate::errors::app_server_error;
use crate::images;
use crate::service::Service;
use crate::turn_start::{MessageRecorded, TurnOptions, running_turn};

/// How long an interjection waits for the interrupted turn to end.
const INTERRUPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Turns read back per page when looking for a receipt in a thread.
const EVIDENCE_PAGE: u32 = 50;
/// How far before a receipt was recorded a turn may have started and still hold it.
const EVIDENCE_SLACK_MS: i64 = 60_000;

/// A message to deliver.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    /// The lane, resolved.
    pub lane: LaneRow,
    /// How it reaches the lane.
    pub mode: DeliveryMode,
    /// The message, as the lane will read it.
    pub text: String,
    /// Who asks: `send`, `new`, `subscription:<id>`, `trigger:<id>`.
    pub source: String,
    /// The sending lane of an attributed message.
    pub sender_ref: Option<String>,
    /// An idempotency key and the hash of the payload it binds.
    pub idempotency: Option<(String, String)>,
    /// The reasoning effort of a new turn.
    pub effort: Option<String>,
    /// The images it carries, checked ([`crate::images`]).
    pub images: Vec<ImageRef>,
    /// The JSON Schema a new turn's final answer must match (`new`'s first message).
    pub output_schema: Option<serde_json::Value>,
}

impl DeliveryRequest {
    /// How a turn this delivery starts is asked for.
    fn turn_options(&self) -> TurnOptions {
        TurnOptions {
            effort: self.effort.clone(),
            output_schema: self.output_schema.clone(),
        }
    }
}

/// What a delivery did.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The receipt, as it stands.
    pub receipt: DeliveryRow,
    /// Whether this call did nothing because the idempotency key had been used with the same
    /// message (the receipt is the first call's).
    pub repeated: bool,
    /// Whether the message went into a running turn.
    pub steered: bool,
    /// What went wrong after the side effects that happened.
    pub warnings: Vec<String>,
}

impl Delivered {
    fn fresh(receipt: DeliveryRow, steered: bool, warnings: Vec<String>) -> Delivered {
        Delivered {
            receipt,
            repeated: false,
            steered,
            warnings,
        }
    }
}

/// `lane_idle` for a mode that needs a running turn.
fn lane_idle(lane: &LaneRow, mode: DeliveryMode) -> DispatchError {
    DispatchError::new(
        ErrorCode::LaneIdle,
        format!(
            "lane {} runs no turn to {} the message into",
            lane.lane_ref,
            mode.as_str()
        ),
    )
    .with_details(json!({ "lane_ref": lane.lane_ref }))
}

/// `lane_busy` for a lane whose turn runs.
pub fn lane_busy(lane: &LaneRow, turn_id: &str) -> DispatchError {
    DispatchError::new(
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
    .with_details(json!({ "lane_ref": lane.lane_ref, "turn_id": turn_id }))
}

impl Service {
    /// Delivers `request` as its mode says, recording the receipt first.
    pub async fn deliver(&self, request: DeliveryRequest) -> Result<Delivered, DispatchError> {
        if request.mode == DeliveryMode::Context && !request.images.is_empty() {
            return Err(DispatchError::invalid_input(
                "`image`: images go with a turn; mode `context` starts none",
            ));
        }
        if request.lane.archived {
            return Err(DispatchError::new(
                ErrorCode::LaneArchived,
                format!("lane {} is archived", request.lane.lane_ref),
            )
            .with_hint(Hint::new("{0} brings it back").run(
                &operations::RESTORE,
                json!({ "target": request.lane.lane_ref }),
            )));
        }
        if request.mode == DeliveryMode::Queue {
            let receipt = match self.record(&request, DeliveryState::Queued).await? {
                Ok(receipt) => receipt,
                Err(repeated) => return Ok(repeated),
            };
            // A queued message to an idle lane starts at once.
            let mut warnings = Vec::new();
            if let Err(err) = self.pump_queue(&receipt.lane_ref).await {
                warnings.push(format!(
                    "the queue could not be delivered yet: {}",
                    err.message
                ));
            }
            let receipt = self
                .registry()
                .delivery(&receipt.id)
                .await?
                .unwrap_or(receipt);
            return Ok(Delivered::fresh(receipt, false, warnings));
        }
        let _writer = self.lane_lock(&request.lane.lane_ref).await;
        let lane = self
            .registry()
            .lane(&request.lane.lane_ref)
            .await?
            .unwrap_or_else(|| request.lane.clone());
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let running = running_turn(&lane);
        match request.mode {
            DeliveryMode::Send => {
                if let Some(turn_id) = &running {
                    return Err(lane_busy(&lane, turn_id));
                }
                if let Some(busy) = self.codex_running(&server, &lane).await {
                    return Err(busy);
                }
            }
            DeliveryMode::Steer | DeliveryMode::Interject if running.is_none() => {
                return Err(lane_idle(&lane, request.mode));
            }
            _ => {}
        }
        let receipt = match self.record(&request, DeliveryState::Submitting).await? {
            Ok(receipt) => receipt,
            Err(repeated) => return Ok(repeated),
        };
        match request.mode {
            DeliveryMode::Send | DeliveryMode::Queue => {
                self.submit_turn(&server, &lane, &receipt, request.turn_options())
                    .await
            }
            DeliveryMode::Steer => {
                let turn_id = running.unwrap_or_default();
                self.steer(&server, &lane, &receipt, &turn_id).await
            }
            DeliveryMode::Interject => {
                let turn_id = running.unwrap_or_default();
                self.interject(&server, &lane, &receipt, &turn_id, request.turn_options())
                    .await
            }
            DeliveryMode::Context => self.add_context(&server, &lane, &receipt).await,
        }
    }

    /// Records the receipt; `Err` carries what an earlier call with the same idempotency key
    /// and payload delivered.
    async fn record(
        &self,
        request: &DeliveryRequest,
        state: DeliveryState,
    ) -> Result<Result<DeliveryRow, Delivered>, DispatchError> {
        let id = dispatch_registry::receipt_id()
            .map_err(|err| DispatchError::internal(err.to_string()))?;
        let new = NewDelivery {
            id,
            lane_ref: request.lane.lane_ref.clone(),
            mode: request.mode,
            text: request.text.clone(),
            source: request.source.clone(),
            sender_ref: request.sender_ref.clone(),
            idempotency: request.idempotency.clone(),
            state,
            images: request.images.clone(),
        };
        match self.registry().record_delivery(&new).await? {
            Recording::New(receipt) => Ok(Ok(receipt)),
            Recording::Existing(receipt) => Ok(Err(Delivered {
                steered: receipt.mode == DeliveryMode::Steer,
                receipt,
                repeated: true,
                warnings: Vec::new(),
            })),
            Recording::Conflict(receipt) => Err(conflict(&receipt)),
        }
    }

    /// Moves the receipt on; a registry that cannot record it is a warning (the receipt is
    /// found again from the thread after a restart).
    async fn settle(
        &self,
        receipt: &DeliveryRow,
        state: DeliveryState,
        turn_id: Option<&str>,
        error: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> DeliveryRow {
        let from = [DeliveryState::Submitting, DeliveryState::Ambiguous];
        match self
            .registry()
            .set_delivery_state(&receipt.id, &from, state, turn_id, error)
            .await
        {
            Ok(_) => {}
            Err(err) => warnings.push(format!(
                "the registry could not record receipt {} as {} ({err})",
                receipt.id,
                state.as_str()
            )),
        }
        match self.registry().delivery(&receipt.id).await {
            Ok(Some(row)) => row,
            _ => DeliveryRow {
                state,
                turn_id: turn_id.map(str::to_owned).or(receipt.turn_id.clone()),
                error: error.map(str::to_owned),
                ..receipt.clone()
            },
        }
    }

    /// Starts a turn with the receipt's message (the caller holds the lane's lock and has
    /// checked it is idle).
    async fn submit_turn(
        &self,
        server: &AppServer,
        lane: &LaneRow,
        receipt: &DeliveryRow,
        turn: TurnOptions,
    ) -> Result<Delivered, DispatchError> {
        let mut warnings = Vec::new();
        let started = match self
            .start_turn(
                server,
                lane,
                images::turn_input(&receipt.text, &receipt.images),
                turn,
                &receipt.id,
            )
            .await
        {
            Ok(started) => started,
            Err(err) => {
                self.settle(
                    receipt,
                    DeliveryState::Failed,
                    None,
                    Some(&err.message),
                    &mut warnings,
                )
                .await;
                return Err(with_receipt(err, receipt));
            }
        };
        warnings.extend(started.warnings);
        match started.recorded {
            MessageRecorded::Yes | MessageRecorded::Unconfirmed => {
                let receipt = self
                    .settle(
                        receipt,
                        DeliveryState::Accepted,
                        Some(&started.turn_id),
                        None,
                        &mut warnings,
                    )
                    .await;
                Ok(Delivered::fresh(receipt, started.steered, warnings))
            }
            MessageRecorded::Lost(why) => {
                let message = format!(
                    "Codex accepted turn {} on lane {} but did not record the message: {why}",
                    started.turn_id, lane.lane_ref
                );
                self.settle(
                    receipt,
                    DeliveryState::Failed,
                    Some(&started.turn_id),
                    Some(&message),
                    &mut warnings,
                )
                .await;
                Err(with_receipt(
                    DispatchError::new(ErrorCode::AppServerError, message).with_hint(
                        Hint::new(
                            "the message is not in the thread: send it again ({0} shows what is)",
                        )
                        .run(&operations::TAIL, json!({ "lane": lane.lane_ref })),
                    ),
                    receipt,
                ))
            }
            MessageRecorded::Gone(why) => {
                let message = format!(
                    "Codex accepted turn {} on lane {} but {why}",
                    started.turn_id, lane.lane_ref
                );
                self.settle(
                    receipt,
                    DeliveryState::Ambiguous,
                    Some(&started.turn_id),
                    Some(&message),
                    &mut warnings,
                )
                .await;
                Err(with_receipt(
                    DispatchError::new(ErrorCode::AppServerUnavailable, message).with_hint(
                        Hint::new(
                            "do not resend blindly: {0} shows whether the message reached the \
                             thread",
                        )
                        .run(&operations::TAIL, json!({ "lane": lane.lane_ref })),
                    ),
                    receipt,
                ))
            }
        }
    }

    /// Adds the receipt's message to the running turn `turn_id`.
    async fn steer(
        &self,
        server: &AppServer,
        lane: &LaneRow,
        receipt: &DeliveryRow,
        turn_id: &str,
    ) -> Result<Delivered, DispatchError> {
        let mut warnings = Vec::new();
        let steered = server
            .call(&TurnSteerParams {
                thread_id: lane.thread_id.clone(),
                expected_turn_id: turn_id.to_owned(),
                input: images::turn_input(&receipt.text, &receipt.images),
                client_user_message_id: Some(receipt.id.clone()),
            })
            .await;
        match steered {
            Ok(answer) => {
                let receipt = self
                    .settle(
                        receipt,
                        DeliveryState::Accepted,
                        Some(&answer.turn_id),
                        None,
                        &mut warnings,
                    )
                    .await;
                Ok(Delivered::fresh(receipt, true, warnings))
            }
            Err(err) => {
                let err = app_server_error(err);
                self.settle(
                    receipt,
                    DeliveryState::Failed,
                    None,
                    Some(&err.message),
                    &mut warnings,
                )
                .await;
                Err(with_receipt(err, receipt))
            }
        }
    }

    /// Interrupts the running turn `turn_id`, waits for it to end, then starts a new turn with
    /// the receipt's message.
    async fn interject(
        &self,
        server: &AppServer,
        lane: &LaneRow,
        receipt: &DeliveryRow,
        turn_id: &str,
        turn: TurnOptions,
    ) -> Result<Delivered, DispatchError> {
        use codex_app_server::Event;
        use codex_app_server::protocol::ServerNotification;
        let mut events = server.subscribe_thread(&lane.thread_id);
        let interrupted = server
            .call(&TurnInterruptParams {
                thread_id: lane.thread_id.clone(),
                turn_id: turn_id.to_owned(),
            })
            .await;
        if let Err(err) = interrupted
            && !err
                .rpc_error()
                .is_some_and(|e| e.message.contains("no active turn"))
        {
            let err = app_server_error(err);
            let mut warnings = Vec::new();
            self.settle(
                receipt,
                DeliveryState::Failed,
                None,
                Some(&err.message),
                &mut warnings,
            )
            .await;
            return Err(with_receipt(err, receipt));
        }
        let ended = async {
            while let Some(event) = events.recv().await {
                if let Event::Notification(note) = event
                    && let ServerNotification::TurnCompleted(done) = note.as_ref()
                    && done.turn.id == turn_id
                {
                    return true;
                }
            }
            false
        };
        let ended = tokio::time::timeout(INTERRUPT_TIMEOUT, ended)
            .await
            .unwrap_or(false);
        // Nothing more is read from the thread: kept while the new turn starts, the subscription
        // would take a copy of the turn's output, and the pump could not move texts out of it
        // (as in `start_turn`).
        drop(events);
        if !ended
            && crate::turn_start::codex_running_turn(server, &lane.thread_id)
                .await
                .is_some()
        {
            let message = format!(
                "turn {turn_id} of lane {} did not end within {} s of its interruption; the \
                 message was not sent",
                lane.lane_ref,
                INTERRUPT_TIMEOUT.as_secs()
            );
            let mut warnings = Vec::new();
            self.settle(
                receipt,
                DeliveryState::Failed,
                None,
                Some(&message),
                &mut warnings,
            )
            .await;
            return Err(with_receipt(
                DispatchError::new(ErrorCode::LaneBusy, message),
                receipt,
            ));
        }
        self.submit_turn(server, lane, receipt, turn).await
    }

    /// Adds the receipt's message to the thread's history without starting a turn
    /// (`thread/inject_items`), and to the lane's items, since Codex does not show injected
    /// items in its turns.
    async fn add_context(
        &self,
        server: &AppServer,
        lane: &LaneRow,
        receipt: &DeliveryRow,
    ) -> Result<Delivered, DispatchError> {
        let mut warnings = Vec::new();
        let item = json!({
            "type": "message",
            "role": "user",
            "content": [{ "type": "input_text", "text": receipt.text }],
        });
        if let Err(err) = server
            .call(&ThreadInjectItemsParams {
                thread_id: lane.thread_id.clone(),
                items: vec![item],
            })
            .await
        {
            let err = app_server_error(err);
            self.settle(
                receipt,
                DeliveryState::Failed,
                None,
                Some(&err.message),
                &mut warnings,
            )
            .await;
            return Err(with_receipt(err, receipt));
        }
        let fact = Fact::Item {
            turn_id: None,
            item_id: receipt.id.clone(),
            kind: "context".into(),
            text: Some(receipt.text.clone()),
            status: Some("added".to_owned()),
            at_ms: now_ms(),
        };
        if let Err(err) = self.record_facts(&lane.lane_ref, vec![fact]).await {
            warnings.push(format!(
                "the context was added, but the registry could not record it ({})",
                err.message
            ));
        }
        let receipt = self
            .settle(receipt, DeliveryState::Completed, None, None, &mut warnings)
            .await;
        Ok(Delivered::fresh(receipt, false, warnings))
    }

    /// Delivers the lane's next queued message if the lane is idle (one per idle
    /// transition); does nothing when the queue is empty or held by an open delivery.
    pub async fn pump_queue(&self, lane_ref: &str) -> Result<(), DispatchError> {
        let _writer = self.lane_lock(lane_ref).await;
        let Some(lane) = self.registry().lane(lane_ref).await? else {
            return Ok(());
        };
        if lane.archived || running_turn(&lane).is_some() {
            return Ok(());
        }
        // Most idle transitions have nothing queued: the thread is then left as it is (not
        // resumed after an unload or a recycle, which would undo them).
        if !self.registry().has_claimable_queued(lane_ref).await? {
            return Ok(());
        }
        // Admitted before the message is claimed: a daemon that agreed to stop leaves it
        // queued for the next one rather than failing it in `start_turn`.
        let Ok(_work) = self.admit_model_work() else {
            return Ok(());
        };
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        if self.codex_running(&server, &lane).await.is_some() {
            return Ok(());
        }
        let Some(receipt) = self.registry().claim_queued(lane_ref).await? else {
            return Ok(());
        };
        match self
            .submit_turn(&server, &lane, &receipt, TurnOptions::default())
            .await
        {
            Ok(delivered) => {
                for warning in delivered.warnings {
                    tracing::warn!(lane = lane_ref, receipt = receipt.id, "{warning}");
                }
                Ok(())
            }
            Err(err) => {
                tracing::warn!(lane = lane_ref, receipt = receipt.id, err = %err.message, "delivering a queued message");
                Err(err)
            }
        }
    }

    /// Looks for an ambiguous receipt's message in its thread; when it is there (its
    /// `clientId` is the receipt id), the receipt becomes `accepted` with that turn (or
    /// `completed`/`failed` if the turn ended). Returns whether it was found.
    pub async fn find_delivery(&self, receipt: &DeliveryRow) -> Result<bool, DispatchError> {
        let Some(lane) = self.registry().lane(&receipt.lane_ref).await? else {
            return Ok(false);
        };
        let (server, _) = self.server_of(&lane.thread_id)?;
        self.registry().count_delivery_check(&receipt.id).await?;
        let mut cursor = None;
        loop {
            let page = server
                .call(&ThreadTurnsListParams {
                    thread_id: lane.thread_id.clone(),
                    cursor: cursor.take(),
                    limit: Some(EVIDENCE_PAGE),
                    items_view: Some(TurnItemsView::Full),
                    ..Default::default()
                })
                .await
                .map_err(app_server_error)?;
            for turn in &page.data {
                let holds = turn.items.iter().any(|item| {
                    matches!(item, ThreadItem::UserMessage(m)
                        if m.client_id.as_deref() == Some(receipt.id.as_str()))
                });
                if holds {
                    let state = match crate::ingest::turn_row(turn).status {
                        TurnStatus::InProgress => DeliveryState::Accepted,
                        TurnStatus::Completed => DeliveryState::Completed,
                        TurnStatus::Interrupted | TurnStatus::Failed => DeliveryState::Failed,
                    };
                    self.registry()
                        .set_delivery_state(
                            &receipt.id,
                            &[DeliveryState::Ambiguous, DeliveryState::Submitting],
                            state,
                            Some(&turn.id),
                            None,
                        )
                        .await?;
                    return Ok(true);
                }
            }
            let older = page
                .data
                .last()
                .and_then(|t| t.started_at)
                .is_some_and(|at| at * 1000 < receipt.created_at_ms - EVIDENCE_SLACK_MS);
            match page.next_cursor {
                Some(next) if !older => cursor = Some(next),
                _ => return Ok(false),
            }
        }
    }
}

/// `delivery_conflict`: the key belongs to another message.
pub fn conflict(receipt: &DeliveryRow) -> DispatchError {
    DispatchError::new(
        ErrorCode::DeliveryConflict,
        format!(
            "the idempotency key was used for another message (receipt {} to lane {})",
            receipt.id, receipt.lane_ref
        ),
    )
    .with_details(json!({ "receipt": receipt.id, "lane_ref": receipt.lane_ref }))
}

/// `err` with the receipt in its details, so the caller can follow it.
fn with_receipt(err: DispatchError, receipt: &DeliveryRow) -> DispatchError {
    let mut details = match err.details.clone() {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    details.insert("receipt".to_owned(), json!(receipt.id));
    details.insert("lane_ref".to_owned(), json!(receipt.lane_ref));
    err.with_details(serde_json::Value::Object(details))
}
