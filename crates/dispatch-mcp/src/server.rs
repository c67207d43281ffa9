//! The rmcp server handler.

use std::sync::Arc;

use dispatch_client::Runner;
use dispatch_contract::{DispatchError, Surface};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest,
    CustomResult, ErrorData, Implementation, JsonObject, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::descriptor::ToolSpec;
use crate::generated::tools::{TOOLS, TOOLSETS};
use crate::toolsets::Enabled;

/// What the server tells a client at `initialize`, in MCP's words (tools, not commands).
pub const INSTRUCTIONS: &str = "dispatch orchestrates Codex lanes (threads). Run \
dispatch_doctor first; dispatch_up starts the daemon. Writes report acceptance, not \
completion: follow work with dispatch_get and dispatch_watch, and never resend blindly. An \
error result's text is {\"error\": {code, message, hint}}; the hint names the tool to call.";

/// [`INSTRUCTIONS`] and the toolsets `enabled` serves (and the others, which the operator
/// can enable).
pub fn instructions(enabled: &Enabled) -> String {
    let served: Vec<&str> = enabled.toolsets().map(|set| set.name).collect();
    let others: Vec<&str> = TOOLSETS
        .iter()
        .filter(|set| !enabled.contains(set.name))
        .map(|set| set.name)
        .collect();
    let mut text = format!("{INSTRUCTIONS} Toolsets served: {}.", served.join(", "));
    if !others.is_empty() {
        text.push_str(&format!(
            " Not served (the operator enables them): {}.",
            others.join(", ")
        ));
    }
    text
}

/// The MCP server: the generated tools of the enabled toolsets, run through a [`Runner`].
pub struct DispatchMcp {
    runner: Arc<Runner>,
    enabled: Enabled,
    tools: Vec<Tool>,
}

impl DispatchMcp {
    /// A server running the tools of the `enabled` toolsets with `runner`.
    pub fn new(runner: Runner, enabled: Enabled) -> DispatchMcp {
        DispatchMcp {
            runner: Arc::new(runner),
            tools: enabled.tools().map(ToolSpec::descriptor).collect(),
            enabled,
        }
    }

    /// Runs `tool` if its toolset is served; otherwise answers which toolset to enable.
    async fn call(&self, tool: &'static ToolSpec, arguments: JsonObject) -> CallToolResult {
        if self.enabled.contains(tool.toolset) {
            self.run(tool, arguments).await
        } else {
            error_result(&self.not_served(tool))
        }
    }

    /// A known tool whose toolset this server does not serve: `invalid_input` naming the
    /// toolset, in an agent's words (no command line: the operator chooses the toolsets).
    fn not_served(&self, tool: &ToolSpec) -> DispatchError {
        let served: Vec<&str> = self.enabled.toolsets().map(|set| set.name).collect();
        DispatchError::invalid_input(format!(
            "`{}` is in the `{}` toolset, which this MCP server does not serve",
            tool.name, tool.toolset
        ))
        .with_hint(format!(
            "ask the operator to enable the `{}` toolset (or `all`) in this MCP server's toolsets, then call `{}` again; served now: {}",
            tool.toolset,
            tool.name,
            served.join(", ")
        ))
        .with_details(serde_json::json!({ "toolset": tool.toolset, "served": served }))
    }

    /// Runs the tool's operation with `arguments`: the input the operation takes, exactly as
    /// JSON-RPC takes it, without the CLI-only fields. Nothing here reads a file or standard
    /// input. Every hint made while it runs, here or in the daemon, is in MCP's words.
    async fn run(&self, tool: &'static ToolSpec, arguments: JsonObject) -> CallToolResult {
        Surface::Mcp
            .scope(async {
                let result = match refuse_cli_only(tool, &arguments) {
                    Err(err) => Err(err),
                    Ok(()) => {
                        self.runner
                            .run_text(tool.op, Value::Object(arguments))
                            .await
                    }
                };
                match result.and_then(|text| structured(tool, text)) {
                    Ok(output) => output,
                    Err(err) => error_result(&for_agents(tool, err)),
                }
            })
            .await
    }
}

/// A successful tool result: the output as `structuredContent`, and as its text the JSON the
/// daemon wrote (what `CallToolResult::structured` would encode again from the tree: the
/// same compact text, members in the same order).
fn structured(
    tool: &ToolSpec,
    text: Box<serde_json::value::RawValue>,
) -> Result<CallToolResult, DispatchError> {
    let value = serde_json::from_str::<Value>(text.get()).map_err(|err| {
        DispatchError::internal(format!("the answer to `{}` is not JSON: {err}", tool.name))
    })?;
    let mut result = CallToolResult::structured(Value::Null);
    result.content = vec![ContentBlock::text(Box::<str>::from(text).into_string())];
    result.structured_content = Some(value);
    Ok(result)
}

/// An input the contract refused (the validator's `details.problems`) gets a hint an agent
/// can follow: the tool's schema, not a shell command.
fn for_agents(tool: &ToolSpec, err: DispatchError) -> DispatchError {
    if err.details.get("problems").is_some() {
        let hint = format!(
            "the accepted arguments are in the inputSchema of `{}` (tools/list)",
            tool.name
        );
        err.with_hint(hint)
    } else {
        err
    }
}

/// An error as a tool result: `isError`, and the error JSON `{"error": body}` as its text.
/// It carries no `structuredContent`, which would have to conform to the tool's
/// `outputSchema` (the shape of a success); see contract/README.md.
fn error_result(err: &DispatchError) -> CallToolResult {
    let body = serde_json::json!({ "error": err.body_for(Surface::Mcp) });
    CallToolResult::error(vec![ContentBlock::text(body.to_string())])
}

fn tool(name: &str) -> Result<&'static ToolSpec, ErrorData> {
    TOOLS
        .iter()
        .find(|tool| tool.name == name)
        .ok_or_else(|| ErrorData::invalid_params(format!("no tool named `{name}`"), None))
}

/// The CLI-only inputs do not exist on MCP: the file inputs (`text_file`; the server never
/// reads a file on an agent's behalf) and the fields `cli_only_inputs` declares (`watch`'s
/// `stream`); nor does the caller's context (`caller`, from `CODEX_THREAD_ID`), which an
/// agent must not be able to set to another lane. The input schema already leaves them out;
/// this says what to do instead.
fn refuse_cli_only(tool: &ToolSpec, arguments: &JsonObject) -> Result<(), DispatchError> {
    let Some(field) = tool
        .cli_only_inputs
        .iter()
        .find(|field| arguments.contains_key(**field))
    else {
        return Ok(());
    };
    let details = serde_json::json!({ "field": field });
    let context = tool
        .op
        .context_fields()
        .find(|(context, _)| context == field);
    let err = match tool.op.file_inputs.iter().find(|(file, _)| file == field) {
        Some((_, text)) => DispatchError::invalid_input(format!(
            "`{field}` is not an argument of `{}`: MCP tools never read files",
            tool.name
        ))
        .with_hint(format!("put the content itself in `{text}`")),
        None if context.is_some() => DispatchError::invalid_input(format!(
            "`{field}` is not an argument of `{}`: it says who is calling, and this server \
             fills it from {} in its own environment",
            tool.name,
            context.map(|(_, var)| var).unwrap_or_default()
        ))
        .with_hint(format!(
            "leave it out; to name another lane use the tool's own arguments (the inputSchema \
             of `{}` in tools/list)",
            tool.name
        )),
        None => DispatchError::invalid_input(format!(
            "`{field}` is not an argument of `{}`: only the CLI offers it",
            tool.name
        ))
        .with_hint(format!(
            "leave it out; the inputSchema of `{}` (tools/list) lists the arguments",
            tool.name
        )),
    };
    Err(err.with_details(details))
}

impl ServerHandler for DispatchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("dispatch", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions(&self.enabled))
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
        let tool = tool(request.name.as_ref())?;
        let result = self.call(tool, request.arguments.unwrap_or_default()).await;
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
        let tool = tool(name)?;
        let result = match params.get("arguments") {
            None | Some(Value::Null) => self.call(tool, JsonObject::new()).await,
            Some(Value::Object(arguments)) => self.call(tool, arguments.clone()).await,
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

/// Serves the tools of the `enabled` toolsets on stdin/stdout until the client disconnects.
/// A client that disconnects before `initialize` (`dispatch mcp </dev/null`) is not an error.
pub async fn serve_stdio(runner: Runner, enabled: Enabled) -> Result<(), String> {
    let service = match DispatchMcp::new(runner, enabled)
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
