//! The rmcp server handler.

use std::sync::Arc;

use dispatch_client::Runner;
use dispatch_contract::{DispatchError, Operation};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CustomRequest, CustomResult,
    ErrorData, Implementation, JsonObject, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, ServerInitializeError};
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

    /// Runs the tool's operation with `arguments`: the input the operation takes, exactly as
    /// JSON-RPC takes it. Nothing here reads a file or standard input.
    async fn run(&self, op: &'static Operation, arguments: JsonObject) -> CallToolResult {
        let result = match refuse_cli_only(op, &arguments) {
            Err(err) => Err(err),
            Ok(()) => self.runner.run(op, Value::Object(arguments)).await,
        };
        match result {
            Ok(output) => CallToolResult::structured(output),
            Err(err) => error_result(&for_agents(op, err)),
        }
    }
}

/// An input the contract refused (the validator's `details.problems`) gets a hint an agent
/// can follow: the tool's schema, not a shell command.
fn for_agents(op: &Operation, err: DispatchError) -> DispatchError {
    if err.details.get("problems").is_some() {
        let hint = format!(
            "the accepted arguments are in the inputSchema of `dispatch_{}` (tools/list), or call `dispatch_schema` with {{\"op\": \"{}\"}}",
            op.id, op.id
        );
        err.with_hint(hint)
    } else {
        err
    }
}

fn error_result(err: &DispatchError) -> CallToolResult {
    CallToolResult::structured_error(serde_json::json!({ "error": err.body() }))
}

fn operation(name: &str) -> Result<&'static Operation, ErrorData> {
    TOOL_OPERATIONS
        .iter()
        .find(|(tool, _)| *tool == name)
        .map(|(_, op)| *op)
        .ok_or_else(|| ErrorData::invalid_params(format!("no tool named `{name}`"), None))
}

/// The CLI's file inputs (`text_file`) do not exist on MCP: the server never reads a file on
/// an agent's behalf. The input schema already leaves them out; this says what to do instead.
fn refuse_cli_only(op: &Operation, arguments: &JsonObject) -> Result<(), DispatchError> {
    match op
        .file_inputs
        .iter()
        .find(|(file, _)| arguments.contains_key(*file))
    {
        Some((file, text)) => Err(DispatchError::invalid_input(format!(
            "`{file}` is not an argument of `dispatch_{}`: MCP tools never read files",
            op.id
        ))
        .with_hint(format!("put the content itself in `{text}`"))
        .with_details(serde_json::json!({ "field": file }))),
        None => Ok(()),
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
        let op = operation(request.name.as_ref())?;
        let result = self.run(op, request.arguments.unwrap_or_default()).await;
        Ok(CallToolResponse::Complete(result))
    }

    /// A `tools/call` whose params rmcp could not read (its `arguments` not an object) lands
    /// here: `null` means no arguments, anything else is refused naming `arguments`.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        if request.method != "tools/call" {
            return Err(ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                format!("no method `{}`", request.method),
                None,
            ));
        }
        let params = request.params.unwrap_or(Value::Null);
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(ErrorData::invalid_params(
                "`tools/call` needs params {\"name\": <tool>, \"arguments\": {..}}",
                None,
            ));
        };
        let op = operation(name)?;
        let result = match params.get("arguments") {
            None | Some(Value::Null) => self.run(op, JsonObject::new()).await,
            Some(Value::Object(arguments)) => self.run(op, arguments.clone()).await,
            Some(other) => error_result(
                &DispatchError::invalid_input(format!(
                    "`arguments` must be an object, not {}",
                    json_kind(other)
                ))
                .with_hint(format!(
                    "call `{name}` with \"arguments\": {{..}} holding the tool's input (or omit it for none)"
                )),
            ),
        };
        let mut result = serde_json::to_value(result)
            .map_err(|err| ErrorData::internal_error(format!("encoding a result: {err}"), None))?;
        // As rmcp answers a `tools/call` it routed itself: an absent `resultType` means
        // `complete` to every protocol version, and older clients do not know the field.
        if let Value::Object(fields) = &mut result
            && fields.get("resultType").and_then(Value::as_str) == Some("complete")
        {
            fields.remove("resultType");
        }
        Ok(CustomResult(result))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serves MCP on stdin/stdout until the client disconnects. A client that disconnects
/// before `initialize` (`dispatch mcp </dev/null`) is not an error.
pub async fn serve_stdio(runner: Runner) -> Result<(), String> {
    let service = match DispatchMcp::new(runner)
        .serve(rmcp::transport::stdio())
        .await
    {
        Ok(service) => service,
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(err) => return Err(format!("MCP initialisation failed: {err}")),
    };
    service
        .waiting()
        .await
        .map(|_| ())
        .map_err(|err| format!("MCP server stopped: {err}"))
}
