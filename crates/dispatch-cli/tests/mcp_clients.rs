//! Real MCP clients this project did not write, against `dispatch mcp` and a real daemon: the
//! MCP Inspector CLI (`--strict`) and the official Python SDK (`mcp`, in both protocol
//! eras). Each lists the tools, calls every read-only tool and the error cases, and must see
//! 0 errors: schemas that pass `--strict` with no warning, structured results that match each
//! tool's `outputSchema`, and errors as `isError` results carrying the error JSON as text.
//! Codex itself, with `[mcp_servers.dispatch]`, puts every tool in its model request. The
//! clients run `dispatch mcp --toolsets all`, so every read-only tool is there to call; the
//! budget of a Codex model request is measured with the default toolsets.
//!
//! `scripts/install-mcp-clients` installs the pinned clients into `target/mcp-clients/` (npm
//! and PyPI only; a present install returns at once).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use support::Home;

struct Clients {
    inspector: PathBuf,
    python: PathBuf,
}

fn clients() -> &'static Clients {
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new(root.join("scripts/install-mcp-clients"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/install-mcp-clients");
        assert!(out.status.success(), "scripts/install-mcp-clients failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let path = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("no {key}= line in {text}"))
        };
        Clients {
            inspector: path("INSPECTOR"),
            python: path("PYTHON"),
        }
    })
}

/// A daemon with one lane, so every read-only tool has something to read.
/// A daemon with one lane that took one message: the lane's ref (and, after a `/`, the
/// message's receipt) is what the read-only calls read.
fn home_with_a_lane() -> (Home, support::Stub, String, tempfile::TempDir) {
    let (home, stub) = Home::with_stub(responses_stub::Script::new().default_reply("ok"));
    let (lane, work) = home.new_lane("clients", &["--no-send"]);
    let thread = home.json(&["get", &lane]).ok_json()["lane"]["id"]
        .as_str()
        .expect("thread id")
        .to_owned();
    // Signed by the lane itself, so its inbox holds a message to read.
    let sent = home
        .json_with_env(
            &["send", &lane, "hello, clients", "--intro"],
            &[("CODEX_THREAD_ID", std::ffi::OsStr::new(&thread))],
        )
        .ok_json();
    let receipt = sent["receipt"].as_str().expect("a receipt").to_owned();
    let inbox = home.json(&["inbox", "list", "--lane", &lane]).ok_json();
    let message = inbox["messages"][0]["id"]
        .as_i64()
        .expect("an inbox message");
    (home, stub, format!("{lane}/{receipt}/{message}"), work)
}

/// The environment `dispatch mcp` needs: the test's layout and binaries.
fn server_env(home: &Home) -> Vec<(String, String)> {
    let cmd = home.command(&support::dispatch_bin());
    cmd.get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect()
}

/// Every read-only tool, with arguments that succeed on a daemon with `fixture`
/// (`<lane>/<receipt>/<inbox message>`, from [`home_with_a_lane`]).
fn read_only_calls(fixture: &str) -> Vec<(&'static str, Value)> {
    let mut parts = fixture.split('/');
    let lane = parts.next().unwrap_or_default();
    let receipt = parts.next().unwrap_or_default();
    let message: i64 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    vec![
        ("dispatch_config_show", json!({"cwd": "/"})),
        ("dispatch_delivery_get", json!({"receipt": receipt})),
        ("dispatch_daemon_log", json!({"limit": 5})),
        ("dispatch_daemon_status", json!({})),
        ("dispatch_doctor", json!({"no_app_server": true})),
        ("dispatch_get", json!({"lane": lane})),
        ("dispatch_goal_get", json!({"lane": lane})),
        ("dispatch_history", json!({"lane": lane, "view": "turns"})),
        ("dispatch_inbox_list", json!({"lane": lane, "state": "all"})),
        ("dispatch_inbox_read", json!({"id": message})),
        ("dispatch_list", json!({"all": true})),
        ("dispatch_models", json!({"no_refresh": true})),
        ("dispatch_permissions", json!({"cwd": "/"})),
        ("dispatch_requests", json!({"lane": lane})),
        ("dispatch_search", json!({"query": "clients"})),
        (
            "dispatch_subscriptions",
            json!({"target": lane, "all": true}),
        ),
        ("dispatch_tail", json!({"lane": lane, "limit": 5})),
        ("dispatch_trigger_list", json!({"lane": lane})),
        ("dispatch_usage", json!({})),
        (
            "dispatch_wait",
            json!({"lanes": [lane], "until": "idle", "timeout": 5}),
        ),
        ("dispatch_watch", json!({"lane": lane, "timeout": 0.2})),
    ]
}

/// Error cases, with the code each must carry.
fn error_calls(fixture: &str) -> Vec<(&'static str, Value, &'static str)> {
    let (lane, _) = fixture.split_once('/').unwrap_or((fixture, ""));
    vec![
        ("dispatch_get", json!({"lane": "zzzzzz"}), "not_found"),
        ("dispatch_get", json!({}), "invalid_input"),
        (
            "dispatch_daemon_log",
            json!({"limit": "ten"}),
            "invalid_input",
        ),
        (
            "dispatch_watch",
            json!({"lane": lane, "stream": true}),
            "invalid_input",
        ),
        (
            "dispatch_send",
            json!({"lane": lane, "text_file": "/etc/passwd"}),
            "invalid_input",
        ),
    ]
}

/// The read-only tools `tools/list` announces (by `readOnlyHint`).
fn announced_read_only(tools: &[Value]) -> BTreeSet<String> {
    tools
        .iter()
        .filter(|t| t["annotations"]["readOnlyHint"] == true || t["readOnlyHint"] == true)
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn assert_error(tool: &str, error: &Value, code: &str) {
    assert_eq!(error["code"], code, "{tool}: {error}");
    let hint = error["hint"].as_str().unwrap_or_default();
    assert!(!hint.is_empty(), "{tool}: a hint: {error}");
    let foreign = dispatch_contract::foreign_words(hint, dispatch_contract::Surface::Mcp);
    assert!(
        foreign.is_empty(),
        "{tool}: the hint names {foreign:?}: {hint}"
    );
}

struct Inspector<'a> {
    home: &'a Home,
    state: tempfile::TempDir,
}

impl Inspector<'_> {
    /// Runs the Inspector CLI against `dispatch mcp` with `args`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new("node");
        cmd.arg(&clients().inspector).arg("--cli");
        // Its own state (catalog, client config) stays in a private directory.
        cmd.env("HOME", self.state.path())
            .env("MCP_CATALOG_PATH", self.state.path().join("mcp.json"))
            .env(
                "MCP_CLIENT_CONFIG_PATH",
                self.state.path().join("client.json"),
            );
        for (key, value) in server_env(self.home) {
            cmd.arg("-e").arg(format!("{key}={value}"));
        }
        cmd.args(args)
            .arg("--")
            .arg(support::dispatch_bin())
            .args(["mcp", "--toolsets", "all"])
            .stdin(Stdio::null());
        let out = cmd.output().expect("run the MCP Inspector (node)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn the_mcp_inspector_finds_no_error_and_no_warning() {
    let (home, _stub, lane, _work) = home_with_a_lane();
    let inspector = Inspector {
        home: &home,
        state: tempfile::tempdir().expect("dir"),
    };

    let (code, stdout, stderr) =
        inspector.run(&["--method", "tools/list", "--strict", "--format", "json"]);
    assert_eq!(code, 0, "tools/list --strict failed:\n{stderr}\n{stdout}");
    assert!(
        !stderr.contains("Warning") && !stderr.contains("Error"),
        "`--strict` reports problems in the tool schemas:\n{stderr}"
    );
    let listed: Value = serde_json::from_str(&stdout).expect("tools/list as JSON");
    let listed = listed.get("result").unwrap_or(&listed);
    let tools = listed["tools"].as_array().expect("tools").clone();
    assert_eq!(tools.len(), dispatch_mcp::TOOLS.len(), "{stdout}");
    let planned: BTreeSet<String> = read_only_calls(&lane)
        .iter()
        .map(|(t, _)| (*t).to_owned())
        .collect();
    assert_eq!(
        planned,
        announced_read_only(&tools),
        "every read-only tool is called"
    );

    let call = |tool: &str, args: &Value| -> (i32, Value) {
        let (code, stdout, stderr) = inspector.run(&[
            "--method",
            "tools/call",
            "--tool-name",
            tool,
            "--tool-args-json",
            &args.to_string(),
            "--format",
            "json",
        ]);
        let answer: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("{tool}: not JSON ({err}):\n{stdout}\n{stderr}"));
        (code, answer.get("result").cloned().unwrap_or(answer))
    };
    for (tool, args) in read_only_calls(&lane) {
        let (code, result) = call(tool, &args);
        assert_eq!(code, 0, "{tool} {args}: {result}");
        assert_ne!(result["isError"], true, "{tool} {args}: {result}");
        assert!(result["structuredContent"].is_object(), "{tool}: {result}");
    }
    for (tool, args, expected) in error_calls(&lane) {
        let (code, result) = call(tool, &args);
        // The Inspector exits 5 when a tool answers `isError`, after printing the result.
        assert_eq!(code, 5, "{tool} {args}: {result}");
        assert_error(tool, &support::mcp_error_body(&result), expected);
    }
}

#[test]
fn the_python_sdk_in_both_protocol_eras_finds_no_error() {
    let (home, _stub, lane, _work) = home_with_a_lane();
    let mut calls: Vec<Value> = read_only_calls(&lane)
        .into_iter()
        .map(|(tool, arguments)| json!({"tool": tool, "arguments": arguments}))
        .collect();
    let errors = error_calls(&lane);
    calls.extend(
        errors
            .iter()
            .map(|(tool, arguments, _)| json!({"tool": tool, "arguments": arguments})),
    );
    let env: serde_json::Map<String, Value> = server_env(&home)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let plan = json!({
        "command": [support::dispatch_bin(), "mcp", "--toolsets", "all"],
        "env": env,
        "calls": calls,
    });
    let dir = tempfile::tempdir().expect("dir");
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).expect("write the plan");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_clients/python_sdk.py");
    let out = Command::new(&clients().python)
        .arg(&script)
        .arg(&plan_file)
        .stdin(Stdio::null())
        .output()
        .expect("run the Python SDK client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python SDK client failed:\n{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");

    for (era, expected_version) in [("legacy", "2025-"), ("auto", "2026-")] {
        let era_report = &report[era];
        assert!(
            era_report["version"]
                .as_str()
                .is_some_and(|v| v.starts_with(expected_version)),
            "{era}: {era_report}"
        );
        let tools = era_report["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), dispatch_mcp::TOOLS.len(), "{era}");
        let planned: BTreeSet<String> = read_only_calls(&lane)
            .iter()
            .map(|(t, _)| (*t).to_owned())
            .collect();
        assert_eq!(planned, announced_read_only(tools), "{era}");
        let results = era_report["calls"].as_array().expect("calls");
        let read_only = read_only_calls(&lane).len();
        for result in &results[..read_only] {
            assert!(result.get("exception").is_none(), "{era}: {result}");
            assert_eq!(result["is_error"], false, "{era}: {result}");
            assert_eq!(result["structured"], true, "{era}: {result}");
        }
        for (result, (tool, _, code)) in results[read_only..].iter().zip(&errors) {
            assert!(result.get("exception").is_none(), "{era}: {result}");
            assert_eq!(result["is_error"], true, "{era}: {result}");
            assert_eq!(
                result["structured"], false,
                "{era}: no structuredContent on errors: {result}"
            );
            assert_error(tool, &result["error"], code);
        }
    }
}

/// Runs `codex exec` once with `[mcp_servers.dispatch]` started as `dispatch ARGS...`:
/// dispatch's namespace in the first model request, and the bytes of all its tools.
fn codex_request_namespace(args: &[&str]) -> (Value, usize) {
    let stub = support::Stub::start(responses_stub::Script::new().default_reply("ok"));
    let home = Home::new();
    let config = responses_stub::CodexConfig {
        extra_toml: format!(
            "[mcp_servers.dispatch]\ncommand = {}\nargs = {}\nenv = {{ DISPATCH_HOME = {} }}\n",
            json!(support::dispatch_bin()),
            json!(args),
            json!(home.path()),
        ),
        ..responses_stub::CodexConfig::default()
    };
    home.use_model_provider_with(&stub.base_url(), &config);
    let work = tempfile::tempdir().expect("dir");
    let out = Command::new(support::codex_bin())
        .args(["exec", "--skip-git-repo-check", "-C"])
        .arg(work.path())
        .arg("say ok")
        .env("CODEX_HOME", home.codex_home())
        .stdin(Stdio::null())
        .output()
        .expect("run codex exec");
    assert!(
        out.status.success(),
        "codex exec failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stub.wait_for_requests(1);
    let request = &stub.requests()[0];
    let tools = request.body["tools"].as_array().expect("tools");
    let namespace = tools
        .iter()
        .find(|t| t["name"] == "mcp__dispatch")
        .expect("dispatch's namespace in the request")
        .clone();
    (namespace, tools.iter().map(|t| t.to_string().len()).sum())
}

fn namespace_tools(namespace: &Value) -> BTreeSet<String> {
    namespace["tools"]
        .as_array()
        .expect("its tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// Codex 0.169.0 with `[mcp_servers.dispatch]` and `args = ["mcp", "--toolsets", "all"]`
/// sends every dispatch tool with every model request, as one `mcp__dispatch` namespace.
#[test]
fn codex_sends_every_tool_in_its_model_request() {
    let (namespace, _) = codex_request_namespace(&["mcp", "--toolsets", "all"]);
    let expected: BTreeSet<String> = dispatch_mcp::TOOLS
        .iter()
        .map(|t| t.name.to_owned())
        .collect();
    assert_eq!(namespace_tools(&namespace), expected);
    println!(
        "Codex request, all toolsets: dispatch's namespace {} B",
        namespace.to_string().len()
    );
}

/// With the default toolsets (`args = ["mcp"]`), Codex sends exactly their tools, and what
/// dispatch costs per model request stays within the budget of `tools/list`
/// (tests/surfaces.rs); the benchmark `mcp-bytes` prints the figure per release.
#[test]
fn codex_request_with_the_default_toolsets_stays_within_budget() {
    let (namespace, all_tools) = codex_request_namespace(&["mcp"]);
    let expected: BTreeSet<String> = dispatch_mcp::Enabled::defaults()
        .tools()
        .map(|t| t.name.to_owned())
        .collect();
    assert_eq!(namespace_tools(&namespace), expected);
    let bytes = namespace.to_string().len();
    println!(
        "Codex request, default toolsets: dispatch's namespace {bytes} B of {all_tools} B of tools"
    );
    assert!(
        bytes <= 30_000,
        "dispatch costs {bytes} B per model request, above 30 KB"
    );
}
