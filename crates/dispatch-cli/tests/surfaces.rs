//! The three surfaces agree: the MCP input schema is the schema the daemon validates RPC
//! params against without the CLI-only fields, and the CLI accepts those plus its own file
//! inputs (`--text-file`), which exist nowhere else; the caller's context (`caller`, from
//! `CODEX_THREAD_ID`) is an argument of neither; operations only the CLI offers have no
//! MCP tool. Each surface speaks its own words (commands and flags on the CLI, tools and
//! arguments on MCP), the tool list of the default toolsets stays small, the toolsets choose
//! the tools served, and the MCP `tools/list` answer (every toolset) and the RPC
//! method list are snapshotted.

mod support;

use std::collections::BTreeSet;

use dispatch_contract::{ErrorCode, Intent, OPERATIONS, Operation, RunsIn, Surface, foreign_words};
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
    assert_eq!(
        tools.len(),
        OPERATIONS.iter().filter(|op| op.on(Surface::Mcp)).count(),
        "one MCP tool per operation the MCP surface offers"
    );
    for op in OPERATIONS {
        let contract = schema_fields(op.input_schema);
        let cli_only: BTreeSet<String> = op
            .file_inputs
            .iter()
            .chain(op.packet_inputs)
            .map(|(f, _)| (*f).to_owned())
            .collect();
        // A packet field is filled from its directory on the CLI: no flag of its own.
        let packets: BTreeSet<String> = op
            .packet_inputs
            .iter()
            .map(|(_, into)| (*into).to_owned())
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
        // The caller's context (`CODEX_THREAD_ID` as `caller`) is filled by the calling
        // process on every surface and offered as an argument on none.
        let context: BTreeSet<String> = op
            .context_fields()
            .map(|(field, _)| field.to_owned())
            .collect();
        assert!(
            context.is_subset(&contract),
            "the context fields of `{}` are on the wire",
            op.title
        );
        assert_eq!(
            cli_fields(op),
            &(&(&contract | &cli_only) - &context) - &packets,
            "CLI flags of `{}`",
            op.title
        );
        let tool = tools
            .iter()
            .find(|t| t.name == format!("dispatch_{}", op.id));
        assert_eq!(
            tool.is_some(),
            op.on(Surface::Mcp),
            "an MCP tool exists for `{}` exactly when its contract offers it there",
            op.id
        );
        if let Some(tool) = tool {
            let spec = dispatch_mcp::TOOLS
                .iter()
                .find(|t| t.op.id == op.id)
                .expect("a tool spec");
            let mcp: BTreeSet<String> = tool.input_schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let omitted: BTreeSet<String> = spec
                .cli_only_inputs
                .iter()
                .map(|f| (*f).to_owned())
                .collect();
            assert!(
                context.is_subset(&omitted),
                "the MCP tool of `{}` refuses the caller's context",
                op.title
            );
            assert_eq!(
                mcp,
                &contract - &omitted,
                "MCP input schema of `{}`: the wire input without the CLI-only fields",
                op.title
            );
        }
        assert_eq!(
            dispatch_rpc::METHODS.contains(&op.id),
            op.runs_in == RunsIn::Daemon,
            "RPC method of `{}`",
            op.id
        );
    }
}

/// Every `description` string anywhere in `schema`.
fn descriptions(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("description", Value::String(text)) => out.push(text.clone()),
                    _ => descriptions(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| descriptions(item, out)),
        _ => {}
    }
}

/// What an agent reads (tool descriptions, schema texts, the server's instructions, every
/// default error hint as MCP renders it) names tools and arguments: no flag of the CLI, no
/// `dispatch <command>` line, and only tools that exist. What a CLI user reads (every help
/// text, every default error hint as the CLI renders it) names no MCP tool.
#[test]
fn each_surface_speaks_its_own_words() {
    let tools = dispatch_mcp::tools();
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let mut mcp_texts = vec![
        dispatch_mcp::INSTRUCTIONS.to_owned(),
        dispatch_mcp::instructions(&dispatch_mcp::Enabled::defaults()),
        dispatch_mcp::instructions(&dispatch_mcp::Enabled::all()),
    ];
    for tool in &tools {
        mcp_texts.extend(tool.description.as_deref().map(str::to_owned));
        mcp_texts.extend(tool.title.clone());
        descriptions(&Value::Object((*tool.input_schema).clone()), &mut mcp_texts);
        if let Some(output) = &tool.output_schema {
            descriptions(&Value::Object((**output).clone()), &mut mcp_texts);
        }
    }
    for code in ErrorCode::ALL {
        mcp_texts.push(code.hint().render(Surface::Mcp));
    }
    for text in &mcp_texts {
        let foreign = foreign_words(text, Surface::Mcp);
        assert!(foreign.is_empty(), "MCP text names {foreign:?}: {text}");
        for (at, _) in text.match_indices("dispatch_") {
            let tool: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                names.contains(&tool),
                "MCP text names no tool `{tool}`: {text}"
            );
        }
    }

    let mut cli_texts = Vec::new();
    fn help(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(cmd.get_about().map(ToString::to_string));
        out.extend(cmd.get_long_about().map(ToString::to_string));
        for arg in cmd.get_arguments() {
            out.extend(arg.get_help().map(ToString::to_string));
        }
        for sub in cmd.get_subcommands() {
            help(sub, out);
        }
    }
    help(&dispatch_cli::root::command(), &mut cli_texts);
    for code in ErrorCode::ALL {
        cli_texts.push(code.hint().render(Surface::Cli));
    }
    assert!(cli_texts.len() > 60, "only {} CLI texts", cli_texts.len());
    for text in &cli_texts {
        let foreign = foreign_words(text, Surface::Cli);
        assert!(foreign.is_empty(), "CLI text names {foreign:?}: {text}");
    }
}

/// The annotations follow the rule in contract/README.md, read as MCP defines them: a hint
/// left out means its default (`readOnlyHint` false, `destructiveHint` true,
/// `idempotentHint` false, `openWorldHint` true), and only differing hints are sent.
#[test]
fn mcp_annotations_follow_the_contract_rule() {
    for tool in dispatch_mcp::tools() {
        let mut a = tool.annotations.clone().expect("annotations");
        assert_ne!(
            a.read_only_hint,
            Some(false),
            "{}: a default sent",
            tool.name
        );
        assert_ne!(
            a.destructive_hint,
            Some(true),
            "{}: a default sent",
            tool.name
        );
        assert_ne!(
            a.idempotent_hint,
            Some(false),
            "{}: a default sent",
            tool.name
        );
        assert_ne!(
            a.open_world_hint,
            Some(true),
            "{}: a default sent",
            tool.name
        );
        let read_only = a.read_only_hint.unwrap_or(false);
        a.read_only_hint = Some(read_only);
        a.open_world_hint = Some(a.open_world_hint.unwrap_or(true));
        if !read_only {
            a.destructive_hint = Some(a.destructive_hint.unwrap_or(true));
            a.idempotent_hint = Some(a.idempotent_hint.unwrap_or(false));
        }
        let op = dispatch_mcp::TOOLS
            .iter()
            .find(|t| t.name == tool.name)
            .expect("spec")
            .op;
        assert_eq!(
            a.read_only_hint,
            Some(op.intent == Intent::Read),
            "{}",
            op.id
        );
        if op.intent == Intent::Read {
            assert_eq!(a.destructive_hint, None, "{}", op.id);
            assert_eq!(a.idempotent_hint, None, "{}", op.id);
        } else {
            assert_eq!(a.idempotent_hint, Some(op.idempotent), "{}", op.id);
        }
        let acts = [
            "new",
            "send",
            "goal_set",
            "respond",
            "trigger_add",
            "review",
            "compact",
        ]
        .contains(&op.id);
        assert_eq!(
            a.open_world_hint,
            Some(acts),
            "openWorldHint of `{}`",
            op.id
        );
        let ends = ["stop", "respond"].contains(&op.id) || op.intent == Intent::Destroy;
        if op.intent != Intent::Read {
            assert_eq!(
                a.destructive_hint,
                Some(ends),
                "destructiveHint of `{}`",
                op.id
            );
        }
    }
}

/// The `tools/list` answer of `dispatch mcp ARGS...`, and its size in bytes.
fn tools_list(home: &support::Home, args: &[&str]) -> (Vec<Value>, usize) {
    let mut mcp = home.mcp_with(args, &[]);
    mcp.initialize();
    let listed = mcp.request("tools/list", serde_json::json!({}));
    let tools = listed["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no tools: {listed}"));
    (tools, listed.to_string().len())
}

fn names(tools: &[Value]) -> BTreeSet<String> {
    tools
        .iter()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

/// Agents pay for the tool list with every model request: `tools/list` with the default
/// toolsets stays small (this fails above 30 KB); the figure for every toolset is printed.
#[test]
fn mcp_tools_list_stays_small() {
    let home = support::Home::new();
    let (_, bytes) = tools_list(&home, &[]);
    let (_, all) = tools_list(&home, &["--toolsets", "all"]);
    println!("tools/list: {bytes} bytes with the default toolsets, {all} with all");
    assert!(bytes <= 30_000, "tools/list is {bytes} bytes, above 30 KB");
}

/// `--toolsets all` lists exactly every MCP operation; the default lists exactly the tools of
/// the default toolsets; a list serves the union of what it names.
#[test]
fn mcp_toolsets_choose_the_tools_listed() {
    let home = support::Home::new();
    let every: BTreeSet<String> = dispatch_mcp::TOOL_OPERATIONS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let mcp_ops: BTreeSet<String> = dispatch_contract::OPERATIONS
        .iter()
        .filter(|op| op.on(Surface::Mcp))
        .map(|op| format!("dispatch_{}", op.id))
        .collect();
    assert_eq!(every, mcp_ops);
    let in_sets = |sets: &[&str]| -> BTreeSet<String> {
        dispatch_mcp::TOOLS
            .iter()
            .filter(|tool| sets.contains(&tool.toolset))
            .map(|tool| tool.name.to_owned())
            .collect()
    };
    let defaults: Vec<&str> = dispatch_mcp::TOOLSETS
        .iter()
        .filter(|set| set.default)
        .map(|set| set.name)
        .collect();
    assert_eq!(names(&tools_list(&home, &["--toolsets", "all"]).0), every);
    let default_tools = names(&tools_list(&home, &[]).0);
    assert_eq!(default_tools, in_sets(&defaults));
    assert!(default_tools.contains("dispatch_send") && !default_tools.contains("dispatch_fork"));
    assert_eq!(
        names(&tools_list(&home, &["--toolsets", "default"]).0),
        default_tools
    );
    assert_eq!(
        names(&tools_list(&home, &["--toolsets", "threads,account"]).0),
        in_sets(&["threads", "account"])
    );
    assert_eq!(
        names(&tools_list(&home, &["--toolsets", "threads", "--toolsets", "default"]).0),
        in_sets(&[defaults.as_slice(), &["threads"]].concat())
    );
    // `[mcp] toolsets` in config.toml chooses when the flag does not; the flag wins.
    home.write_config("[mcp]\ntoolsets = [\"threads\"]\n");
    assert_eq!(names(&tools_list(&home, &[]).0), in_sets(&["threads"]));
    assert_eq!(
        names(&tools_list(&home, &["--toolsets", "lanes"]).0),
        in_sets(&["lanes"])
    );
}

/// An unknown toolset (on the command line or in config.toml) refuses to start, with exit 2
/// and the valid names; nothing is served.
#[test]
fn mcp_refuses_an_unknown_toolset_at_start() {
    let home = support::Home::new();
    let valid: Vec<&str> = dispatch_mcp::TOOLSETS.iter().map(|set| set.name).collect();
    for args in [
        vec!["mcp", "--toolsets", "lanes,thread"],
        vec!["mcp", "--toolsets", ""],
    ] {
        let run = home.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        for name in &valid {
            assert!(
                run.stderr.contains(name),
                "{args:?} names `{name}`: {}",
                run.stderr
            );
        }
    }
    let run = home.run(&["mcp", "--toolsets", "thread", "--json"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.json()["error"]["code"], "invalid_input");
    assert_eq!(run.json()["error"]["details"]["toolset"], "thread");
    home.write_config("[mcp]\ntoolsets = [\"everything\"]\n");
    let run = home.run(&["mcp"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`everything`"), "{}", run.stderr);
    assert!(!home.file("dispatchd.sock").exists(), "nothing was started");
}

/// A call to a known tool whose toolset is not served is an `invalid_input` result whose
/// hint names the toolset to enable, in an agent's words; nothing runs.
#[test]
fn mcp_call_to_a_tool_outside_the_served_toolsets_names_its_toolset() {
    let home = support::Home::new();
    let mut mcp = home.mcp();
    let init = mcp.initialize();
    let instructions = init["result"]["instructions"].as_str().unwrap_or_default();
    assert!(instructions.contains("threads"), "{instructions}");
    let result = mcp.call(
        "dispatch_fork",
        serde_json::json!({"lane": "zzzzzz", "name": "x"}),
    );
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "invalid_input", "{result}");
    assert_eq!(body["details"]["toolset"], "threads", "{body}");
    let hint = body["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("`threads` toolset"), "{hint}");
    let foreign = foreign_words(hint, Surface::Mcp);
    assert!(foreign.is_empty(), "{foreign:?}: {hint}");
    assert!(!hint.contains("--"), "no shell flags for agents: {hint}");
    assert!(!home.file("dispatchd.sock").exists(), "nothing was started");
    // Served, the same call reaches the operation (and its own answer).
    let mut all = home.mcp_all();
    all.initialize();
    let result = all.call("dispatch_fork", serde_json::json!({"lane": "zzzzzz"}));
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "invalid_input", "{result}");
    assert!(body["details"]["toolset"].is_null(), "{body}");
}

/// Fields only the CLI offers are refused on MCP, naming the field, before anything runs.
#[test]
fn mcp_refuses_the_cli_only_inputs() {
    let home = support::Home::new();
    let mut mcp = home.mcp();
    mcp.initialize();
    let result = mcp.call(
        "dispatch_watch",
        serde_json::json!({"lane": "zzzzzz", "stream": true}),
    );
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "invalid_input", "{result}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`stream`")),
        "{body}"
    );
    assert!(!home.file("dispatchd.sock").exists(), "nothing was started");
    for tool in [
        "dispatch_assets",
        "dispatch_down",
        "dispatch_schema",
        "dispatch_registry_migrate",
    ] {
        let answer = mcp.request(
            "tools/call",
            serde_json::json!({"name": tool, "arguments": {}}),
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no tool named")),
            "{tool} is CLI-only: {answer}"
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
    let mut mcp = home.mcp_all();
    let init = mcp.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "dispatch");
    let listed = mcp.request("tools/list", serde_json::json!({}));
    let tools = &listed["result"]["tools"];
    assert_eq!(
        tools.as_array().map(Vec::len),
        Some(dispatch_mcp::TOOLS.len())
    );
    assert!(
        !home.file("dispatchd.sock").exists(),
        "tools/list must not start a daemon"
    );
    insta::assert_json_snapshot!("mcp_tools_list", tools);
}

#[test]
fn mcp_errors_are_tool_results_with_the_contract_error() {
    let home = support::Home::new();
    let mut mcp = home.mcp_all();
    mcp.initialize();
    let result = mcp.call("dispatch_daemon_status", serde_json::json!({}));
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "daemon_unreachable");
    assert_eq!(
        body["hint"],
        "start it with `dispatch_up`; `dispatch_doctor` diagnoses stale sockets and pidfiles"
    );
    let result = mcp.call("dispatch_daemon_log", serde_json::json!({"limit": "ten"}));
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "invalid_input");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "the message names the field: {result}"
    );
    let result = mcp.call(
        "dispatch_get",
        serde_json::json!({"lane": "zzzzzz", "extra": 1}),
    );
    assert_eq!(support::mcp_error_body(&result)["code"], "invalid_input");
}

/// A hint the daemon writes is rendered for the surface that asked: the CLI gets command
/// lines, MCP gets tools with their arguments.
#[test]
fn the_daemon_renders_hints_for_the_surface_that_asked() {
    let home = support::Home::new();
    home.up();
    let cli = home.json(&["get", "zzzzzz"]);
    let cli = cli.error("not_found");
    assert!(
        cli["hint"]
            .as_str()
            .is_some_and(|h| h.contains("`dispatch list --all`")),
        "{cli}"
    );
    let mut mcp = home.mcp();
    mcp.initialize();
    let result = mcp.call("dispatch_get", serde_json::json!({"lane": "zzzzzz"}));
    let body = support::mcp_error_body(&result);
    assert_eq!(body["code"], "not_found", "{result}");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains(r#"`dispatch_list` with {"all":true}"#)),
        "{body}"
    );
}
