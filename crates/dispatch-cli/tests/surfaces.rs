//! The three surfaces agree: for every operation the MCP input schema and the schema the
//! daemon validates RPC params against accept the same fields, and the CLI accepts those plus
//! its own file inputs (`--text-file`), which exist nowhere else; the MCP `tools/list` answer
//! and the RPC method list are snapshotted.

mod support;

use std::collections::BTreeSet;

use dispatch_contract::{OPERATIONS, Operation, RunsIn};
use serde_json::Value;

fn schema_fields(schema: &str) -> BTreeSet<String> {
    let schema: Value = serde_json::from_str(schema).expect("schema JSON");
    schema["properties"]
        .as_object()
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

fn cli_fields(op: &Operation) -> BTreeSet<String> {
    let mut cmd = dispatch_cli::root::command();
    for word in op.cli_path {
        cmd = cmd
            .find_subcommand(word)
            .unwrap_or_else(|| panic!("no CLI command for `{}`", op.title))
            .clone();
    }
    cmd.get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .filter(|id| !["json", "help", "version"].contains(&id.as_str()))
        .collect()
}

#[test]
fn cli_mcp_and_rpc_accept_the_same_fields() {
    let tools = dispatch_mcp::tools();
    assert_eq!(tools.len(), OPERATIONS.len(), "one MCP tool per operation");
    for op in OPERATIONS {
        let contract = schema_fields(op.input_schema);
        let cli_only: BTreeSet<String> = op
            .file_inputs
            .iter()
            .map(|(f, _)| (*f).to_owned())
            .collect();
        assert!(
            contract.is_disjoint(&cli_only),
            "the file inputs of `{}` are CLI-only",
            op.title
        );
        assert_eq!(
            schema_fields(op.cli_input_schema),
            &contract | &cli_only,
            "CLI input schema of `{}`",
            op.title
        );
        assert_eq!(
            cli_fields(op),
            &contract | &cli_only,
            "CLI flags of `{}`",
            op.title
        );
        let tool = tools
            .iter()
            .find(|t| t.name == format!("dispatch_{}", op.id))
            .unwrap_or_else(|| panic!("no MCP tool for `{}`", op.id));
        let mcp: BTreeSet<String> = tool.input_schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(mcp, contract, "MCP input schema of `{}`", op.title);
        assert_eq!(
            dispatch_rpc::METHODS.contains(&op.id),
            op.runs_in == RunsIn::Daemon,
            "RPC method of `{}`",
            op.id
        );
    }
}

#[test]
fn rpc_method_list_matches_its_snapshot() {
    insta::assert_json_snapshot!(dispatch_rpc::METHODS);
}

#[test]
fn mcp_tools_list_works_without_a_daemon_and_matches_its_snapshot() {
    let home = support::Home::new();
    let mut mcp = home.mcp();
    let init = mcp.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "dispatch");
    let listed = mcp.request("tools/list", serde_json::json!({}));
    let tools = &listed["result"]["tools"];
    assert_eq!(tools.as_array().map(Vec::len), Some(OPERATIONS.len()));
    assert!(
        !home.file("dispatchd.sock").exists(),
        "tools/list must not start a daemon"
    );
    insta::assert_json_snapshot!("mcp_tools_list", tools);
}

#[test]
fn mcp_errors_are_tool_results_with_the_contract_error() {
    let home = support::Home::new();
    let mut mcp = home.mcp();
    mcp.initialize();
    let result = mcp.call("dispatch_daemon_status", serde_json::json!({}));
    assert_eq!(result["isError"], true);
    assert_eq!(
        result["structuredContent"]["error"]["code"],
        "daemon_unreachable"
    );
    let result = mcp.call("dispatch_daemon_log", serde_json::json!({"limit": "ten"}));
    assert_eq!(
        result["structuredContent"]["error"]["code"],
        "invalid_input"
    );
    assert!(
        result["structuredContent"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "the message names the field: {result}"
    );
    let result = mcp.call(
        "dispatch_schema",
        serde_json::json!({"op": "up", "extra": 1}),
    );
    assert_eq!(
        result["structuredContent"]["error"]["code"],
        "invalid_input"
    );
}
