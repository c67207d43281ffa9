//! Server→client requests (approvals and the like) and the policy that answers them.
//!
//! Codex stalls a turn until its request is answered, so every server request gets
//! exactly one reply:
//!
//! 1. On arrival it is registered as *pending* in the client, published to subscribers
//!    as [`crate::Event::ServerRequest`], and handed to the one [`ServerRequestPolicy`]
//!    given at spawn.
//! 2. The policy's future resolves to [`PolicyDecision::Reply`] (sent at once) or
//!    [`PolicyDecision::Hold`]: the request then stays pending until someone calls
//!    [`crate::AppServer::respond`] — e.g. the daemon after persisting it and asking an
//!    operator. `respond` may also be called while the policy future is still running;
//!    the first answer wins and the policy future is cancelled.
//! 3. At shutdown (or when the last handle is dropped) every request still pending is
//!    answered with a JSON-RPC error ([`SHUTDOWN_ERROR_CODE`]) before stdin is closed.
//!    Nothing is ever accepted implicitly: the default policy is [`HoldPolicy`].

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::RpcError;
use crate::protocol::{
    CommandExecutionApprovalDecision, CommandExecutionRequestApprovalParams,
    FileChangeApprovalDecision, FileChangeRequestApprovalParams, RequestId, ServerMethod,
    thread_id_of,
};

/// `item/commandExecution/requestApproval`.
pub const COMMAND_EXECUTION_APPROVAL: &str =
    <CommandExecutionRequestApprovalParams as ServerMethod>::METHOD;
/// `item/fileChange/requestApproval`.
pub const FILE_CHANGE_APPROVAL: &str = <FileChangeRequestApprovalParams as ServerMethod>::METHOD;
/// The JSON-RPC error code sent for requests still pending when the client shuts down.
pub const SHUTDOWN_ERROR_CODE: i64 = -32000;
/// The JSON-RPC error code [`RefusePolicy`] sends for requests it cannot decline.
pub const REFUSED_ERROR_CODE: i64 = -32001;

/// A request from the App Server to this client, kept losslessly (raw params) so the
/// daemon can persist it; [`ServerRequest::kind`] interprets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRequest {
    /// The id to answer (in the server's id space, independent of ours).
    pub id: RequestId,
    /// The method, e.g. `item/commandExecution/requestApproval`.
    pub method: String,
    /// The params as received (`Null` when absent).
    pub params: Value,
}

/// A typed view of a [`ServerRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum ServerRequestKind {
    /// `item/commandExecution/requestApproval`.
    CommandExecutionApproval(CommandExecutionRequestApprovalParams),
    /// `item/fileChange/requestApproval`.
    FileChangeApproval(FileChangeRequestApprovalParams),
    /// Anything else (or params that did not match the pinned schema).
    Other,
}

impl ServerRequest {
    /// The thread it is about (`threadId` in the params), if any.
    pub fn thread_id(&self) -> Option<&str> {
        thread_id_of(&self.params)
    }

    /// Interpret the params.
    pub fn kind(&self) -> ServerRequestKind {
        match self.method.as_str() {
            COMMAND_EXECUTION_APPROVAL => serde_json::from_value(self.params.clone())
                .map(ServerRequestKind::CommandExecutionApproval)
                .unwrap_or(ServerRequestKind::Other),
            FILE_CHANGE_APPROVAL => serde_json::from_value(self.params.clone())
                .map(ServerRequestKind::FileChangeApproval)
                .unwrap_or(ServerRequestKind::Other),
            _ => ServerRequestKind::Other,
        }
    }
}

/// The answer to a server request: a JSON-RPC `result` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServerRequestReply {
    /// Success with this result.
    Result(Value),
    /// Failure with this error.
    Error(RpcError),
}

impl ServerRequestReply {
    /// `{"decision": D}` for `item/commandExecution/requestApproval`.
    pub fn command_execution(decision: CommandExecutionApprovalDecision) -> Self {
        Self::Result(json!({ "decision": decision }))
    }

    /// `{"decision": D}` for `item/fileChange/requestApproval`.
    pub fn file_change(decision: FileChangeApprovalDecision) -> Self {
        Self::Result(json!({ "decision": decision }))
    }

    /// A JSON-RPC error.
    pub fn error(code: i64, message: impl Into<String>) -> Self {
        Self::Error(RpcError {
            code,
            message: message.into(),
            data: None,
        })
    }

    /// Decline `request` where the protocol has a decline (approvals: the item ends
    /// `declined` and the turn goes on), else answer with an error carrying `message`.
    pub fn decline(request: &ServerRequest, message: impl Into<String>) -> Self {
        match request.method.as_str() {
            COMMAND_EXECUTION_APPROVAL => {
                Self::command_execution(CommandExecutionApprovalDecision::Decline)
            }
            FILE_CHANGE_APPROVAL => Self::file_change(FileChangeApprovalDecision::Decline),
            _ => Self::error(REFUSED_ERROR_CODE, message),
        }
    }
}

/// What a policy decided.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyDecision {
    /// Send this reply now.
    Reply(ServerRequestReply),
    /// Keep the request pending; it will be answered through
    /// [`crate::AppServer::respond`] (or with an error at shutdown).
    Hold,
}

/// The future a policy returns.
pub type PolicyFuture = Pin<Box<dyn Future<Output = PolicyDecision> + Send + 'static>>;

/// The one hook every server request goes through.
///
/// `decide` is called on the reader's task and must not block; do slow work inside the
/// returned future (it runs on its own task and never delays other messages). Closures
/// `Fn(ServerRequest) -> impl Future<Output = PolicyDecision>` implement it.
pub trait ServerRequestPolicy: Send + Sync + 'static {
    /// Decide what to do with `request`.
    fn decide(&self, request: ServerRequest) -> PolicyFuture;
}

impl<F, Fut> ServerRequestPolicy for F
where
    F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = PolicyDecision> + Send + 'static,
{
    fn decide(&self, request: ServerRequest) -> PolicyFuture {
        Box::pin(self(request))
    }
}

/// The default policy: hold everything for [`crate::AppServer::respond`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldPolicy;

impl ServerRequestPolicy for HoldPolicy {
    fn decide(&self, _request: ServerRequest) -> PolicyFuture {
        Box::pin(std::future::ready(PolicyDecision::Hold))
    }
}

/// Decline every approval and answer every other request with an error: for
/// unattended runs that must never stall and never accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefusePolicy;

impl ServerRequestPolicy for RefusePolicy {
    fn decide(&self, request: ServerRequest) -> PolicyFuture {
        let reply = ServerRequestReply::decline(
            &request,
            format!(
                "dispatch refuses `{}` under its current policy",
                request.method
            ),
        );
        Box::pin(std::future::ready(PolicyDecision::Reply(reply)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_the_wire_shape() {
        assert_eq!(
            COMMAND_EXECUTION_APPROVAL,
            "item/commandExecution/requestApproval"
        );
        assert_eq!(FILE_CHANGE_APPROVAL, "item/fileChange/requestApproval");
        assert_eq!(
            ServerRequestReply::command_execution(CommandExecutionApprovalDecision::Accept),
            ServerRequestReply::Result(json!({"decision": "accept"}))
        );
        let other = ServerRequest {
            id: RequestId::Integer(1),
            method: "item/tool/requestUserInput".into(),
            params: json!({"threadId": "t"}),
        };
        assert!(matches!(
            ServerRequestReply::decline(&other, "no"),
            ServerRequestReply::Error(RpcError {
                code: REFUSED_ERROR_CODE,
                ..
            })
        ));
        assert_eq!(other.thread_id(), Some("t"));
        assert_eq!(other.kind(), ServerRequestKind::Other);
    }

    #[tokio::test]
    async fn closures_are_policies() {
        let policy = |_req: ServerRequest| async { PolicyDecision::Hold };
        let req = ServerRequest {
            id: RequestId::Integer(0),
            method: COMMAND_EXECUTION_APPROVAL.into(),
            params: Value::Null,
        };
        assert_eq!(policy.decide(req.clone()).await, PolicyDecision::Hold);
        assert!(matches!(
            RefusePolicy.decide(req).await,
            PolicyDecision::Reply(ServerRequestReply::Result(_))
        ));
    }
}
