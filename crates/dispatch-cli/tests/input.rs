//! How every surface takes input: file inputs and `-` exist on the CLI only, out-of-range
//! bounds and NUL characters are refused alike by the CLI, MCP and raw JSON-RPC, MCP
//! `arguments` must be an object, a non-UTF-8 argument is named, and a call runs as long as
//! its own bound allows.

mod support;

use std::time::{Duration, Instant};

use dispatch_contract::{DispatchError, Operation, operations};
use serde_json::{Value, json};
use support::Home;

/// An MCP error result's body, asserted to be `code`.
fn mcp_error(result: &Value, code: &str) -> Value {
    let body = support::mcp_error_body(result);
    assert_eq!(body["code"], code, "{result}");
    body
}

/// Calls `op` over the daemon's socket as a hand-made JSON-RPC client would: no client-side
/// validation, no contract hash.
fn raw_rpc(home: &Home, op: &Operation, input: Value) -> Result<Value, DispatchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = dispatch_rpc::DaemonClient::connect(&home.file("dispatchd.sock")).await?;
        client.call_json_unchecked(op, input).await
    })
}

#[test]
fn file_inputs_and_stdin_exist_on_the_cli_only() {
    let home = Home::new();
    let mut mcp = home.mcp();
    mcp.initialize();
    let listed = mcp.request("tools/list", json!({}));
    let tools = listed["result"]["tools"].as_array().expect("tools").clone();
    for tool in &tools {
        let props = &tool["inputSchema"]["properties"];
        for (field, schema) in props.as_object().into_iter().flatten() {
            assert!(
                !field.ends_with("_file"),
                "{} offers the file input `{field}`",
                tool["name"]
            );
            let described = schema["description"].as_str().unwrap_or_default();
            assert!(
                !described.contains("standard input"),
                "{}.{field} mentions standard input: {described}",
                tool["name"]
            );
        }
    }
    let send = tools
        .iter()
        .find(|t| t["name"] == "dispatch_send")
        .expect("dispatch_send");
    assert!(send["inputSchema"]["properties"]["text"].is_object());

    // Refused before anything happens: no daemon is started, no file is read.
    for source in ["/etc/passwd", "-"] {
        let result = mcp.call(
            "dispatch_send",
            json!({"lane": "zzzzzz", "text_file": source}),
        );
        let body = mcp_error(&result, "invalid_input");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("text_file")),
            "{body}"
        );
        assert!(
            body["hint"].as_str().is_some_and(|h| h.contains("`text`")),
            "{body}"
        );
    }
    assert!(!home.file("dispatchd.sock").exists(), "nothing was started");

    // `-` is a message like any other on MCP: the call goes on to the daemon (unreachable
    // here) instead of reading the server's own stdin, which stays open and would hang it.
    let started = Instant::now();
    let result = mcp.call("dispatch_send", json!({"lane": "zzzzzz", "text": "-"}));
    mcp_error(&result, "daemon_unreachable");
    assert!(started.elapsed() < Duration::from_secs(30));

    // The CLI still reads both.
    let missing = home.json(&["send", "zzzzzz", "--text-file", "/no/such/file"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    let body = missing.error("invalid_input");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("--text-file")),
        "{body}"
    );
}

#[test]
fn a_dash_sent_over_mcp_arrives_as_a_literal_message() {
    let (home, stub) = Home::with_stub(responses_stub::Script::new().default_reply("ok"));
    let (lane, _work) = home.new_lane("dash", &["--no-send"]);
    let mut mcp = home.mcp();
    mcp.initialize();
    let sent = mcp.call("dispatch_send", json!({"lane": lane, "text": "-"}));
    assert_eq!(sent["isError"], false, "{sent}");
    assert_eq!(
        sent["structuredContent"]["message_accepted"], true,
        "{sent}"
    );
    stub.wait_for_requests(1);
    let asked = serde_json::to_string(&stub.requests()[0].body).expect("request JSON");
    assert!(
        asked.contains(r#""text":"-""#),
        "the model got the literal `-`: {asked}"
    );
}

#[test]
fn out_of_range_timeouts_are_refused_alike_on_every_surface() {
    let home = Home::new();
    home.up();
    let (lane, _work) = home.new_lane("bounds", &["--no-send"]);
    let check = |surface: &str, body: &Value| {
        assert_eq!(body["code"], "invalid_input", "{surface}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`timeout`") && message.contains("greater than 0 and at most 600"),
            "{surface}: the message names the field and its bounds: {message}"
        );
        assert!(
            body["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{surface}: {body}"
        );
    };
    for value in ["0", "601", "NaN", "-1", "inf", "1e9"] {
        let cli = home.json(&["watch", &lane, "--timeout", value]);
        assert_eq!(cli.code, 2, "CLI --timeout {value}: {cli:?}");
        check(&format!("CLI --timeout {value}"), &cli.json()["error"]);
        let human = home.run(&["watch", &lane, "--timeout", value]);
        assert_eq!(human.code, 2, "{human:?}");
        assert!(human.stderr.contains("at most 600"), "{human:?}");
    }
    let values = [
        json!(0),
        json!(601),
        json!(-1),
        json!("NaN"),
        json!("inf"),
        json!(1e9),
    ];
    let mut mcp = home.mcp();
    mcp.initialize();
    for value in &values {
        let input = json!({"lane": lane, "timeout": value});
        let result = mcp.call("dispatch_watch", input.clone());
        check(
            &format!("MCP {value}"),
            &mcp_error(&result, "invalid_input"),
        );
        let err = raw_rpc(&home, &operations::WATCH, input).expect_err("refused");
        check(&format!("JSON-RPC {value}"), &err.body());
    }
}

#[test]
fn a_watch_longer_than_thirty_seconds_survives_on_an_idle_lane() {
    let home = Home::new();
    home.up();
    let (lane, _work) = home.new_lane("quiet", &["--no-send"]);
    let started = Instant::now();
    let watched = home.json(&["watch", &lane, "--timeout", "36"]);
    let took = started.elapsed();
    assert_eq!(watched.code, 0, "{watched:?}");
    let summary: Value = serde_json::from_str(watched.stdout.lines().last().unwrap_or_default())
        .expect("a summary line");
    assert_eq!(summary["ended"], "timeout", "{watched:?}");
    assert!(took >= Duration::from_secs(36), "returned after {took:?}");
}

#[test]
fn nul_characters_are_invalid_input_on_every_surface() {
    let home = Home::new();
    home.up();
    let mut mcp = home.mcp();
    mcp.initialize();
    let nul = "a\u{0}b";
    let cases = [
        (&operations::SEARCH, json!({"query": nul})),
        (&operations::GET, json!({"lane": nul})),
        (&operations::NEW, json!({"name": nul, "no_send": true})),
        (&operations::SEND, json!({"lane": "zzzzzz", "text": nul})),
    ];
    for (op, input) in cases {
        let result = mcp.call(&format!("dispatch_{}", op.id), input.clone());
        let body = mcp_error(&result, "invalid_input");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("NUL")),
            "MCP {}: {body}",
            op.id
        );
        let hint = body["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains(&format!("`dispatch_{}`", op.id))
                && dispatch_contract::foreign_words(hint, dispatch_contract::Surface::Mcp)
                    .is_empty(),
            "MCP {}: a hint for agents: {body}",
            op.id
        );
        let err = raw_rpc(&home, op, input).expect_err("refused");
        assert_eq!(
            err.code.as_str(),
            "invalid_input",
            "JSON-RPC {}: {err:?}",
            op.id
        );
        assert!(err.message.contains("NUL"), "JSON-RPC {}: {err:?}", op.id);
    }
    // A command line cannot hold a NUL; a message file can.
    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("msg.txt");
    std::fs::write(&file, "a\0b").expect("write");
    let sent = home.json(&["send", "zzzzzz", "--text-file", &file.display().to_string()]);
    assert_eq!(sent.code, 2, "{sent:?}");
    let body = sent.error("invalid_input");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("NUL")),
        "{body}"
    );
    assert!(
        body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{body}"
    );
}

#[test]
fn mcp_arguments_must_be_an_object_and_null_means_none() {
    let home = Home::new();
    let mut mcp = home.mcp();
    mcp.initialize();
    for (arguments, kind) in [
        (json!("zzzzzz"), "a string"),
        (json!(["zzzzzz"]), "an array"),
        (json!(7), "a number"),
    ] {
        let answer = mcp.request(
            "tools/call",
            json!({"name": "dispatch_get", "arguments": arguments}),
        );
        let body = mcp_error(&answer["result"], "invalid_input");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`arguments`") && message.contains("object") && message.contains(kind),
            "{answer}"
        );
        assert!(
            body["hint"]
                .as_str()
                .is_some_and(|h| h.contains("dispatch_get")),
            "{answer}"
        );
    }
    // null and absent are no arguments: `dispatch_get` then names its missing `lane`.
    for params in [
        json!({"name": "dispatch_get", "arguments": null}),
        json!({"name": "dispatch_get"}),
    ] {
        let answer = mcp.request("tools/call", params);
        let body = mcp_error(&answer["result"], "invalid_input");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("lane")),
            "{answer}"
        );
    }
    let answer = mcp.request(
        "tools/call",
        json!({"name": "dispatch_doctor", "arguments": null}),
    );
    assert!(
        answer["result"]["structuredContent"]["checks"].is_array(),
        "{answer}"
    );
}

#[test]
fn an_argument_that_is_not_utf8_is_invalid_input_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let home = Home::new();
    let bad = std::ffi::OsStr::from_bytes(b"ab\xffcd");
    for json in [true, false] {
        let mut cmd = home.command(&support::dispatch_bin());
        cmd.args(["new", "--name"]).arg(bad).args(["--no-send"]);
        if json {
            cmd.arg("--json");
        }
        let run: support::Run = cmd.output().expect("run dispatch").into();
        assert_eq!(run.code, 2, "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        if json {
            let body = run.error("invalid_input");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("argument 3")
                    && message.contains("--name")
                    && message.contains(r"ab\xffcd"),
                "{body}"
            );
            assert!(
                body["hint"].as_str().is_some_and(|h| h.contains("UTF-8")),
                "{body}"
            );
        } else {
            assert!(run.stderr.starts_with("dispatch: argument 3"), "{run:?}");
            assert!(run.stderr.contains("hint: "), "{run:?}");
        }
    }
    let mut cmd = home.command(&support::dispatch_bin());
    cmd.arg("get").arg(bad).arg("--json");
    let run: support::Run = cmd.output().expect("run dispatch").into();
    assert_eq!(run.code, 2, "{run:?}");
    run.error("invalid_input");
    // The daemon binary's own arguments too: a usage error, not a panic.
    let mut cmd = home.command(&support::dispatchd_bin());
    cmd.arg(bad);
    let run: support::Run = cmd.output().expect("run dispatchd").into();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.starts_with("dispatchd: unexpected arguments"),
        "{run:?}"
    );
}
