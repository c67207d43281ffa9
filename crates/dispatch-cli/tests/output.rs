//! How the CLI reports: human output escapes control characters from users and models while
//! `--json` stays exact, a closed pipe ends a command quietly, `dispatch mcp` with no client
//! exits 0, and a human `watch` ends with the cursor to continue from.

mod support;

use std::process::Stdio;

use dispatch_contract::OPERATIONS;
use serde_json::{Map, Value, json};
use support::{Home, Run};

/// A string with a terminal escape, a newline, a carriage return, a C1 control and a bidi
/// override in it.
const POISON: &str = "P\u{1b}[31mred\nFAKE\rline\u{9b}2J\u{202e}x";

/// An instance of `schema` (a bundled schema, refs into its `$defs`) whose every free string
/// is [`POISON`].
fn instance(root: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or(&Value::Null);
        return instance(root, target);
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options.first().cloned().unwrap_or(Value::Null);
    }
    // A nullable reference (`anyOf: [{$ref}, {type: null}]`): the non-null alternative, so
    // the typed output decodes and its renderer, not the JSON fallback, shows it.
    if let Some(options) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
        && let Some(option) = options.iter().find(|o| o["type"] != "null")
    {
        return instance(root, option);
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        Value::String(kind) => kind.as_str(),
        _ => "string",
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                object.insert(name.clone(), instance(root, property));
            }
            Value::Object(object)
        }
        "array" => json!([instance(root, &schema["items"])]),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!(POISON),
    }
}

/// Whether `value` holds [`POISON`] anywhere.
fn holds_poison(value: &Value) -> bool {
    match value {
        Value::String(text) => text == POISON,
        Value::Array(items) => items.iter().any(holds_poison),
        Value::Object(fields) => fields.values().any(holds_poison),
        _ => false,
    }
}

fn assert_terminal_safe(what: &str, text: &str) {
    for bad in ['\u{1b}', '\r', '\u{9b}', '\u{202e}'] {
        assert!(
            !text.contains(bad),
            "{what}: {bad:?} reached the terminal:\n{text}"
        );
    }
    assert!(
        !text.lines().any(|line| line.starts_with("FAKE")),
        "{what}: a newline in a value started a line of its own:\n{text}"
    );
}

#[test]
fn every_renderer_escapes_control_characters() {
    for op in OPERATIONS {
        let schema: Value = serde_json::from_str(op.output_schema).expect("schema");
        let output = instance(&schema, &schema);
        let text = dispatch_cli::render::human(op, &output).expect("rendered");
        assert_terminal_safe(op.id, &text);
        // An output with no free string (only numbers and enums) has nothing to escape.
        if !holds_poison(&output) {
            continue;
        }
        assert!(
            text.contains("P\\u{1b}[31mred\\nFAKE") || text.contains("P\\u001b[31mred\\nFAKE"),
            "{}: the value is shown, escaped:\n{text}",
            op.id
        );
    }
    let event = instance(
        &Value::Null,
        &json!({"type": "object", "properties": {
            "at": {"type": "string"}, "method": {"type": "string"}, "summary": {"type": "string"}
        }}),
    );
    assert_terminal_safe("watch event", &dispatch_cli::render::watch_event(&event));
    let end = json!({"ended": "timeout", "events": 3, "cursor": 42});
    assert_eq!(
        dispatch_cli::render::watch_end(&end),
        "watch ended (timeout) after 3 events at cursor 42; continue with --after 42"
    );
}

/// With `--json` the exit status is read from the answer's text, decoding it only where the
/// output can change it: it must be the status the decoded output gives, for every operation.
#[test]
fn the_exit_status_from_json_text_is_the_one_the_typed_output_gives() {
    use dispatch_cli::generated::cli::exit_status;
    use dispatch_cli::render::exit_code;
    use std::process::ExitCode;
    for op in OPERATIONS {
        let schema: Value = serde_json::from_str(op.output_schema).expect("schema");
        let output = instance(&schema, &schema);
        let text = output.to_string();
        assert_eq!(
            exit_status(op, &text),
            exit_code(op, &output),
            "{}: {text}",
            op.id
        );
    }
    // `doctor` exits 1 when a check fails: the one output that changes the exit status.
    let doctor = OPERATIONS
        .iter()
        .find(|op| op.id == "doctor")
        .expect("doctor");
    let schema: Value = serde_json::from_str(doctor.output_schema).expect("schema");
    for (status, exit) in [
        ("fail", ExitCode::FAILURE),
        ("warn", ExitCode::SUCCESS),
        ("ok", ExitCode::SUCCESS),
    ] {
        let mut output = instance(&schema, &schema);
        output["status"] = json!(status);
        assert_eq!(exit_status(doctor, &output.to_string()), exit, "{status}");
        assert_eq!(exit_code(doctor, &output), exit, "{status}");
    }
    // Text that is not the operation's output exits as it shows: with success.
    assert_eq!(exit_status(doctor, "{\"status\": 3}"), ExitCode::SUCCESS);
}

/// `--json` prints the daemon's answer as the daemon wrote it: the same text (members in the
/// daemon's order, nothing re-encoded) on one line when stdout is not a terminal; and a closed
/// stdout ends it quietly with success.
#[test]
fn json_output_is_the_daemons_answer_as_it_wrote_it() {
    let home = Home::new();
    home.up();
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    for name in ["one", "two \u{e9}\"quoted\"", "three"] {
        home.json(&["new", "--name", name, "--cwd", &cwd, "--no-send"])
            .ok_json();
    }
    let printed = home.json(&["list", "--limit", "1000"]);
    assert_eq!(printed.code, 0, "{printed:?}");
    let socket = home.path().join("dispatchd.sock");
    let answered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let client = dispatch_rpc::DaemonClient::connect(&socket)
                .await
                .expect("connect");
            let list = OPERATIONS.iter().find(|op| op.id == "list").expect("list");
            client
                .call_text(list, json!({"limit": 1000}))
                .await
                .expect("list")
        });
    assert_eq!(printed.stdout, format!("{}\n", answered.get()));
    assert_eq!(printed.json()["lanes"].as_array().map(Vec::len), Some(3));
    // The members in the daemon's order, which is the generated types' (by name), as before.
    let first = &printed.json()["lanes"][0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("a lane")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    // MCP: the tool result's text is that same text, and its structured content the same
    // object, as `CallToolResult::structured` made them from the tree.
    let mut mcp = home.mcp();
    mcp.initialize();
    let result = mcp.call("dispatch_list", json!({"limit": 1000}));
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_eq!(result["content"][0]["text"], json!(answered.get()));
    assert_eq!(
        result["content"][0]["text"],
        json!(result["structuredContent"].to_string())
    );
    assert_eq!(result["structuredContent"], printed.json());
    for args in [
        &["list", "--limit", "1000", "--json"][..],
        &["daemon", "status", "--json"],
    ] {
        let run = with_closed_stdout(&home, args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert_eq!(run.stderr, "", "{args:?}: no panic, no message");
    }
}

#[test]
fn tail_keeps_the_lines_of_a_message_indented() {
    let text = dispatch_cli::render::block("first\nsecond\u{1b}[2J", "    ");
    assert_eq!(text, "first\n    second\\u{1b}[2J");
}

#[test]
fn control_characters_are_refused_in_titles_and_escaped_in_human_output() {
    let home = Home::new();
    home.up();
    let work = tempfile::tempdir().expect("cwd");
    let cwd = work.path().display().to_string();
    // A title is a label on one line: escapes and newlines are refused before anything is made.
    let refused = home.json(&["new", "--name", "\u{1b}[31mred\ntitle", "--cwd", &cwd]);
    assert_eq!(refused.code, 2, "{refused:?}");
    refused.error("invalid_input");
    // Text that may hold them (a message, what the model said) is exact in JSON and escaped
    // for a terminal.
    let text = "\u{1b}[31mred message";
    let (lane, _work) = home.new_lane("poisoned", &["--text", text]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let json = loop {
        let json = home.json(&["tail", &lane]).ok_json();
        if json["items"].as_array().is_some_and(|i| !i.is_empty())
            || std::time::Instant::now() > deadline
        {
            break json;
        }
    };
    assert_eq!(json["items"][0]["text"], text, "JSON is exact: {json}");
    let run = home.run(&["tail", &lane]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('\u{1b}'), "{run:?}");
    assert!(run.stdout.contains("\\u{1b}[31mred message"), "{run:?}");
    // An error that quotes what the user typed escapes it too.
    let run = home.run(&["get", "\u{1b}]0;owned\u{7}"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(!run.stderr.contains('\u{1b}'), "{run:?}");
    assert!(run.stderr.contains("hint: "), "{run:?}");
}

/// Runs `dispatch args...` with stdout a pipe nobody reads any more (`| head -0`).
fn with_closed_stdout(home: &Home, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = home
        .command(&support::dispatch_bin())
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run dispatch");
    output.into()
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let home = Home::new();
    let cases: [(&[&str], i32); 6] = [
        (&["schema", "up", "--json"], 0),
        (&["schema", "up"], 0),
        (&["completion", "bash"], 0),
        (&["--help"], 0),
        // The error goes to the closed stdout with --json.
        (&["get", "zzzzzz", "--json"], 8),
        (&["watch", "zzzzzz", "--timeout", "0", "--json"], 2),
    ];
    for (args, code) in cases {
        let run = with_closed_stdout(&home, args);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert_eq!(run.stderr, "", "{args:?}: no panic, no message");
    }
    // Without --json the error goes to stderr; closed too, the exit status stays.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = home
        .command(&support::dispatch_bin())
        .args(["get", "zzzzzz"])
        .stdout(Stdio::null())
        .stderr(writer)
        .output()
        .expect("run dispatch");
    assert_eq!(output.status.code(), Some(8), "{output:?}");
}

#[test]
fn mcp_with_stdin_closed_before_initialize_exits_zero() {
    let home = Home::new();
    let run = home.run(&["mcp"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
}

#[test]
fn human_watch_ends_with_the_cursor_to_continue_from() {
    let home = Home::new();
    home.up();
    let (lane, _work) = home.new_lane("cursor", &["--no-send"]);
    let run = home.run(&["watch", &lane, "--timeout", "0.5"]);
    assert_eq!(run.code, 0, "{run:?}");
    let last = run.stdout.lines().last().unwrap_or_default();
    let cursor = last
        .rsplit_once("--after ")
        .map(|(_, c)| c.trim().to_owned())
        .unwrap_or_else(|| panic!("no cursor in {last:?}"));
    assert!(cursor.parse::<u64>().is_ok(), "{last:?}");
    let json = home.json(&["watch", &lane, "--timeout", "0.5"]);
    let summary: Value =
        serde_json::from_str(json.stdout.lines().last().unwrap_or_default()).expect("summary");
    assert_eq!(
        summary["cursor"].to_string(),
        cursor,
        "human and JSON agree"
    );
    let again = home.run(&["watch", &lane, "--after", &cursor, "--timeout", "0.5"]);
    assert_eq!(again.code, 0, "{again:?}");
}
