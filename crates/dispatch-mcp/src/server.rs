//! The rmcp server handler.

use std::sync::Arc;

use dispatch_client::Runner;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::generated::tools::{TOOL_OPERATIONS, tools};

const INSTRUCTIONS: &str = "dispatch orchestrates Codex lanes (threads). Run dispatch_doctor \
first; dispatch_up starts the daemon. Writes report acceptance, not completion: follow work \
with dispatch_get and dispatch_watch, and never resend blindly. Errors carry {code, message, \
hint}.";

/// The MCP server: the generated tools, run through a [`Runner`].
pub struct DispatchMcp {
    runner: Arc<Runner>,
    tools: Vec<Tool>,
}

impl DispatchMcp {
    /// A server running operations with `runner`.
    pub fn new(runner: Runner) -> DispatchMcp {
        DispatchMcp {
            runner: Arc::new(runner),
            tools: tools(),
        }
    }
}

impl ServerHandler for DispatchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("dispatch", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((_, op)) = TOOL_OPERATIONS
            .iter()
            .find(|(name, _)| *name == request.name.as_ref())
        else {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{}`", request.name),
                None,
            ));
        };
        let input = Value::Object(request.arguments.unwrap_or_default());
        let result = match self.runner.run(op, input).await {
            Ok(output) => CallToolResult::structured(output),
            Err(err) => {
                CallToolResult::structured_error(serde_json::json!({ "error": err.body() }))
            }
        };
        Ok(CallToolResponse::Complete(result))
    }
}

/// Serves MCP on stdin/stdout until the client disconnects.
pub async fn serve_stdio(runner: Runner) -> Result<(), String> {
    let service = DispatchMcp::new(runner)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|err| format!("MCP initialisation failed: {err}"))?;
    service
        .waiting()
        .await
        .map(|_| ())
        .map_err(|err| format!("MCP server stopped: {err}"))
}
