//! The inbox operations (`inbox list`, `inbox read`, `inbox ack`), answered from the
//! registry, and the `approval_request` message a lane's approval request leaves for the
//! operator.
//!
//! Messages are written by orchestration (subscription updates), by triggers and by
//! `hold_request` (approval requests, addressed to the operator: the lane that asks cannot
//! answer itself); each is stored once per origin, and stays until acknowledged. An approval
//! request's message is acknowledged by the registry when the request is answered, withdrawn
//! or resolved elsewhere.

use dispatch_contract::types::{
    InboxAckInput, InboxAckOutput, InboxEntry, InboxKind, InboxListInput, InboxListInputState,
    InboxListOutput, InboxMessage, InboxReadInput, InboxReadOutput, InboxState,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{InboxFilter, InboxRow, NewInboxMessage, RequestRow, approval_origin};
use serde_json::{Value, json};

use crate::convert::{rfc3339, wire_name};
use crate::service::Service;

fn kind(kind: &str) -> InboxKind {
    match kind {
        "direct_message" => InboxKind::DirectMessage,
        "trigger_result" => InboxKind::TriggerResult,
        "approval_request" => InboxKind::ApprovalRequest,
        _ => InboxKind::SubscriptionUpdate,
    }
}

fn state(state: &str) -> InboxState {
    if state == "acked" {
        InboxState::Acked
    } else {
        InboxState::Pending
    }
}

fn entry(row: InboxRow) -> InboxEntry {
    InboxEntry {
        id: row.id,
        to: row.lane_ref,
        kind: kind(&row.kind),
        subject: row.subject,
        about: row.about_ref,
        turn_id: row.turn_id,
        state: state(&row.state),
        created_at: rfc3339(row.created_at_ms),
    }
}

fn message(row: InboxRow) -> InboxMessage {
    InboxMessage {
        id: row.id,
        to: row.lane_ref,
        kind: kind(&row.kind),
        subject: row.subject,
        body: row.body,
        about: row.about_ref,
        turn_id: row.turn_id,
        data: row.data.unwrap_or(Value::Null),
        state: state(&row.state),
        created_at: rfc3339(row.created_at_ms),
        acked_at: row.acked_at_ms.map(rfc3339),
    }
}

/// `not_found` for message `id`.
fn no_message(id: i64) -> DispatchError {
    DispatchError::new(ErrorCode::NotFound, format!("no inbox message {id}")).with_hint(
        Hint::new("{0} lists the messages, acknowledged ones too")
            .run(&operations::INBOX_LIST, json!({ "state": "all" })),
    )
}

fn id_i64(id: std::num::NonZeroU64) -> i64 {
    i64::try_from(id.get()).unwrap_or(i64::MAX)
}

/// `inbox list`.
impl Handle<InboxListInput> for Service {
    async fn handle(&self, input: InboxListInput) -> Result<InboxListOutput, DispatchError> {
        let lane_ref = match &input.lane {
            Some(selector) => Some(
                self.resolve_or_self(selector, input.caller.as_ref(), || {
                    Hint::new("name the lane ({0}), or leave it out for every message")
                        .run(&operations::INBOX_LIST, json!({ "lane": "<lane>" }))
                })
                .await?
                .lane_ref,
            ),
            None => None,
        };
        let filter = InboxFilter {
            lane_ref,
            state: match input.state {
                InboxListInputState::Pending => Some("pending".to_owned()),
                InboxListInputState::Acked => Some("acked".to_owned()),
                InboxListInputState::All => None,
            },
            kind: input.kind.map(|k| wire_name(&k)),
            limit: u32::try_from(input.limit.get()).unwrap_or(u32::MAX),
        };
        let rows = self.registry().inbox(&filter).await?;
        Ok(InboxListOutput {
            messages: rows.into_iter().map(entry).collect(),
        })
    }
}

/// `inbox read`: the message in full; reading does not acknowledge it.
impl Handle<InboxReadInput> for Service {
    async fn handle(&self, input: InboxReadInput) -> Result<InboxReadOutput, DispatchError> {
        let id = id_i64(input.id);
        let row = self
            .registry()
            .inbox_message(id)
            .await?
            .ok_or_else(|| no_message(id))?;
        Ok(InboxReadOutput {
            message: message(row),
        })
    }
}

/// `inbox ack`: one message, or every pending one (of a lane).
impl Handle<InboxAckInput> for Service {
    async fn handle(&self, input: InboxAckInput) -> Result<InboxAckOutput, DispatchError> {
        let mut lane = None;
        let ids = match (input.id, input.all) {
            (Some(_), true) => {
                return Err(DispatchError::invalid_input(
                    "give a message id or `all`, not both",
                ));
            }
            (None, false) => {
                return Err(DispatchError::invalid_input(
                    "say which messages to acknowledge: a message id, or `all`",
                )
                .with_hint(
                    Hint::new("{0} lists the pending messages with their ids")
                        .run(&operations::INBOX_LIST, json!({})),
                ));
            }
            (Some(id), false) => {
                if input.lane.is_some() {
                    return Err(DispatchError::invalid_input(
                        "`lane` goes with `all`; a message id names one message already",
                    ));
                }
                let id = id_i64(id);
                if self.registry().inbox_message(id).await?.is_none() {
                    return Err(no_message(id));
                }
                self.registry().ack_inbox(Some(id), None).await?
            }
            (None, true) => {
                let lane_ref = match &input.lane {
                    Some(selector) => Some(
                        self.resolve_or_self(selector, input.caller.as_ref(), || {
                            Hint::new("name the lane ({0}), or leave it out for every message").run(
                                &operations::INBOX_ACK,
                                json!({ "all": true, "lane": "<lane>" }),
                            )
                        })
                        .await?
                        .lane_ref,
                    ),
                    None => None,
                };
                let ids = self.registry().ack_inbox(None, lane_ref.as_deref()).await?;
                lane = lane_ref;
                ids
            }
        };
        Ok(InboxAckOutput {
            acknowledged: i64::try_from(ids.len()).unwrap_or(i64::MAX),
            ids,
            lane,
        })
    }

    fn logged(output: &InboxAckOutput) -> Logged {
        let detail = match output.ids.as_slice() {
            [] => "no pending message to acknowledge".to_owned(),
            [id] => format!("inbox message {id} acknowledged"),
            ids => format!("{} inbox messages acknowledged", ids.len()),
        };
        match &output.lane {
            Some(lane) => Logged::lane(lane.clone(), detail),
            None => Logged::detail(detail),
        }
    }
}

/// What an approval request asks, in words: `run \`cargo test\``, or the App Server method.
pub fn asks(request: &RequestRow) -> String {
    let params = &request.params;
    if let Some(command) = params.get("command").and_then(Value::as_str) {
        return format!("run `{command}`");
    }
    if request.method.contains("fileChange") {
        return "change files".to_owned();
    }
    if request.method.contains("permissions") {
        return "be granted permissions".to_owned();
    }
    if request.method.contains("requestUserInput") || request.method.contains("elicitation") {
        return "be given an answer".to_owned();
    }
    format!("go ahead with `{}`", request.method)
}

impl Service {
    /// Leaves the operator an `approval_request` message about `request` (once: its origin is
    /// the request), saying what the lane asks and how to answer.
    pub async fn announce_request(&self, request: &RequestRow) {
        let lane = self.registry().lane(&request.lane_ref).await.ok().flatten();
        let title = lane
            .as_ref()
            .and_then(|l| l.title.clone())
            .unwrap_or_else(|| "untitled".to_owned());
        let what = asks(request);
        let message = NewInboxMessage {
            lane_ref: None,
            kind: "approval_request".to_owned(),
            subject: format!(
                "lane {} ({title}) asks to {what} (request {})",
                request.lane_ref, request.id
            ),
            // Stored, so read on any surface later: it names the operation, not a command.
            body: format!(
                "Lane {} ({title}) waits for an answer: it asks to {what}.\nAnswer request {} \
                 with `respond`: accept, accept_for_session, decline, or cancel (which also \
                 interrupts the turn).",
                request.lane_ref, request.id
            ),
            about_ref: Some(request.lane_ref.clone()),
            turn_id: request.turn_id.clone(),
            data: Some(json!({
                "request_id": request.id,
                "method": request.method,
                "item_id": request.item_id,
            })),
            origin: Some(approval_origin(request.id)),
        };
        if let Err(err) = self.registry().add_inbox_message(&message).await {
            tracing::warn!(%err, request = request.id, "storing an approval request's inbox message");
        }
    }
}
