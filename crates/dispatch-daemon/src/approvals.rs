//! Approvals: server requests of the App Server are held (persisted by the event pump) until
//! an operator or agent answers with `respond`. dispatch never accepts on its own.

use codex_app_server::protocol::RequestId;
use codex_app_server::{ServerRequest, ServerRequestReply};
use dispatch_contract::types::{
    ApprovalRequest, RequestsInput, RequestsOutput, RespondInput, RespondInputDecision,
    RespondOutput,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{Fact, LaneStatus, RequestRow, RequestStatus};
use serde_json::{Value, json};
use smallvec::smallvec;

use crate::convert::{now_ms, rfc3339};
use crate::errors::app_server_error;
use crate::service::Service;
use dispatch_contract::types::LaneRef;

const COMMAND: &str = "item/commandExecution/requestApproval";
const FILE_CHANGE: &str = "item/fileChange/requestApproval";

fn kind(method: &str) -> &'static str {
    match method {
        COMMAND | "execCommandApproval" => "command",
        FILE_CHANGE | "applyPatchApproval" => "file_change",
        "item/permissions/requestApproval" => "permissions",
        "item/tool/requestUserInput" => "user_input",
        _ => "other",
    }
}

fn text(params: &Value, key: &str) -> Option<String> {
    params.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn describe(row: &RequestRow) -> String {
    let p = &row.params;
    match kind(&row.method) {
        "command" => text(p, "command").unwrap_or_else(|| "run a command".into()),
        "file_change" => text(p, "reason").unwrap_or_else(|| "change files".into()),
        _ => text(p, "reason").unwrap_or_else(|| row.method.clone()),
    }
}

fn decisions(row: &RequestRow) -> Vec<String> {
    match row
        .params
        .get("availableDecisions")
        .and_then(Value::as_array)
    {
        Some(list) => list
            .iter()
            .map(|d| {
                d.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| d.to_string())
            })
            .collect(),
        None if matches!(kind(&row.method), "command" | "file_change") => {
            ["accept", "acceptForSession", "decline", "cancel"]
                .map(String::from)
                .to_vec()
        }
        None => Vec::new(),
    }
}

impl Service {
    /// `[policy] approvals = "decline"`: answers `request` with a refusal at once and records
    /// it in the action log.
    pub async fn decline_by_policy(&self, row: RequestRow, request: &ServerRequest) {
        let Ok((server, _)) = self.server_of(&row.thread_id) else {
            return;
        };
        if let Err(err) = server.respond(
            &request.id,
            ServerRequestReply::decline(request, "declined by dispatch [policy] approvals"),
        ) {
            tracing::warn!(%err, "declining a request by policy");
            return;
        }
        let _ = self
            .registry()
            .finish_request(row.id, RequestStatus::Answered, Some("decline"), now_ms())
            .await;
        let action = dispatch_registry::NewAction {
            op: "respond".into(),
            lane: Some(row.lane_ref.clone()),
            outcome: dispatch_registry::Outcome::Ok,
            error_code: None,
            detail: Some(format!(
                "request {} ({}) declined by [policy] approvals",
                row.id, row.method
            )),
        };
        if let Err(err) = self.registry().record_action(&action).await {
            tracing::warn!(%err, "recording a declined request");
        }
    }
}

/// `requests`.
impl Handle<RequestsInput> for Service {
    async fn handle(&self, input: RequestsInput) -> Result<RequestsOutput, DispatchError> {
        let lane = match &input.lane {
            Some(selector) => Some(self.resolve(selector).await?),
            None => None,
        };
        let rows = self
            .registry()
            .pending_requests(lane.as_ref().map(|l| l.lane_ref.as_str()))
            .await?;
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            requests.push(ApprovalRequest {
                id: row.id,
                lane: LaneRef {
                    ref_: row.lane_ref.clone(),
                    id: row.thread_id.clone(),
                },
                turn_id: row.turn_id.clone(),
                item_id: row.item_id.clone(),
                kind: kind(&row.method).to_owned(),
                summary: describe(&row),
                cwd: text(&row.params, "cwd"),
                reason: text(&row.params, "reason"),
                available_decisions: decisions(&row),
                created_at: rfc3339(row.created_at_ms),
                method: row.method,
                params: crate::convert::params(row.params),
            });
        }
        Ok(RequestsOutput { requests })
    }
}

/// `respond`.
impl Handle<RespondInput> for Service {
    async fn handle(&self, input: RespondInput) -> Result<RespondOutput, DispatchError> {
        let not_found = || {
            DispatchError::new(
                ErrorCode::NotFound,
                format!("no pending request {}", input.request_id),
            )
            .with_hint(
                Hint::new("{0} lists the pending ones").run(&operations::REQUESTS, json!({})),
            )
        };
        let id = i64::try_from(input.request_id.get()).map_err(|_| not_found())?;
        let row = self.registry().request(id).await?.ok_or_else(not_found)?;
        if row.status != RequestStatus::Pending {
            return Err(not_found());
        }
        if !matches!(kind(&row.method), "command" | "file_change") {
            return Err(DispatchError::invalid_input(format!(
                "request {} is a `{}` request; dispatch answers command and file-change approvals",
                row.id, row.method
            )));
        }
        let decision = match input.decision {
            RespondInputDecision::Accept => "accept",
            RespondInputDecision::AcceptForSession => "acceptForSession",
            RespondInputDecision::Decline => "decline",
            RespondInputDecision::Cancel => "cancel",
        };
        let id: RequestId = serde_json::from_value(row.rpc_id.clone()).map_err(|err| {
            DispatchError::internal(format!("stored request id is unreadable: {err}"))
        })?;
        let (server, _) = self.server_of(&row.thread_id)?;
        server
            .respond(
                &id,
                ServerRequestReply::Result(json!({ "decision": decision })),
            )
            .map_err(app_server_error)?;
        self.registry()
            .finish_request(row.id, RequestStatus::Answered, Some(decision), now_ms())
            .await?;
        let still_waiting = !self
            .registry()
            .pending_requests(Some(&row.lane_ref))
            .await?
            .is_empty();
        if !still_waiting {
            self.registry()
                .record(&[dispatch_registry::Recorded {
                    lane_ref: row.lane_ref.as_str().into(),
                    event: None,
                    facts: smallvec![Fact::Status(LaneStatus::Busy)],
                }])
                .await?;
        }
        Ok(RespondOutput {
            request_id: row.id,
            decision: decision.to_owned(),
            lane: LaneRef {
                ref_: row.lane_ref,
                id: row.thread_id,
            },
        })
    }

    fn logged(output: &RespondOutput) -> Logged {
        Logged::lane(
            &output.lane.ref_,
            format!("request {} answered {}", output.request_id, output.decision),
        )
    }
}
