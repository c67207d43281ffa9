//! What the MCP surface costs an agent: the bytes of the `tools/list` answer (with the
//! default toolsets, which `dispatch mcp` serves unless told otherwise, and with all of
//! them), and the bytes of dispatch's tools (default toolsets) in the request Codex sends
//! the model with every turn.
//!
//! The Codex figure is measured, not computed: the real, pinned Codex runs `codex exec` with
//! `[mcp_servers.dispatch]` (this `dispatch mcp`) and the bench's Responses stub as its model
//! provider; the stub records the request, whose `tools` hold dispatch's tools as one
//! `{"type": "namespace", "name": "mcp__dispatch", ...}` entry (Codex 0.169.0: the server's
//! instructions as its description, each tool's name, description and input schema, which
//! Codex trims of `pattern` and `minLength`, no output schema). Bytes are of compact JSON.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use super::Row;
use super::env::{AppServer, Bins, Env, exec};

/// The namespace Codex puts an MCP server's tools in.
const NAMESPACE: &str = "mcp__dispatch";

/// The bytes of the `tools/list` answer of `dispatch mcp --toolsets TOOLSETS` (`default` or
/// `all`).
pub fn tools_list_row(bins: &Bins, toolsets: &str) -> anyhow::Result<Row> {
    let env = Env::new(bins, AppServer::Real, None, &[])?;
    let (bytes, tools) = tools_list_bytes(env.cmd(&["mcp", "--toolsets", toolsets]))?;
    let row = Row::value(
        &format!("MCP tools/list answer ({toolsets} toolsets)"),
        format!("{bytes} B"),
    );
    Ok(if toolsets == "default" {
        row.target("≤ 20 KB (a test fails above 30 KB)".into())
            .note(format!("{tools} tools; was 57.6 KB (issue 11)"))
    } else {
        row.target("none: served on request".into())
            .note(format!("{tools} tools, every MCP operation"))
    })
}

/// The bytes of dispatch's namespace in the request Codex sends the model.
pub fn codex_request_row(bins: &Bins) -> anyhow::Result<Row> {
    let env = Env::new(bins, AppServer::Real, None, &[])?;
    let (namespace, all_tools) = codex_request_bytes(bins, &env)?;
    Ok(Row::value(
        "Codex model request: dispatch's tools (default toolsets)",
        format!("{namespace} B"),
    )
    .target(format!("~{} tokens", namespace / 4))
    .note(format!(
        "namespace {NAMESPACE} of {all_tools} B of tools; was 18.9 of 38.6 KB"
    )))
}

/// Spawns `dispatch mcp`, initializes, lists the tools: the answer's bytes (one JSON line,
/// without its newline) and the number of tools.
pub fn tools_list_bytes(mut cmd: Command) -> anyhow::Result<(usize, usize)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning dispatch mcp")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut talk = || -> anyhow::Result<String> {
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
            writeln!(stdin, "{init}")?;
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            writeln!(
                stdin,
                r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
            )?;
            writeln!(
                stdin,
                r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{}}}}"#
            )?;
            loop {
                line.clear();
                ensure!(
                    stdout.read_line(&mut line)? > 0,
                    "dispatch mcp closed before answering"
                );
                if line.contains(r#""id":2"#) {
                    return Ok(line.trim_end().to_owned());
                }
            }
        };
        let _ = tx.send(talk());
    });
    let answer = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("dispatch mcp did not answer within 30 s")));
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer?;
    let parsed: Value = serde_json::from_str(&answer).context("tools/list answer")?;
    let tools = parsed["result"]["tools"].as_array().map_or(0, Vec::len);
    ensure!(tools > 0, "tools/list lists no tools: {answer}");
    Ok((answer.len(), tools))
}

/// Runs one `codex exec` turn with dispatch as an MCP server and the stub as the model:
/// (bytes of dispatch's namespace, bytes of every tool) in the request the stub recorded.
fn codex_request_bytes(bins: &Bins, env: &Env) -> anyhow::Result<(usize, usize)> {
    // The stub serves from the runtime's worker threads while `codex exec` runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let script = responses_stub::Script::new().default_reply("ok");
    let stub = runtime.block_on(responses_stub::ResponsesStub::start(script))?;
    let config = responses_stub::CodexConfig {
        extra_toml: format!(
            "[mcp_servers.dispatch]\ncommand = {}\nargs = [\"mcp\"]\nenv = {{ DISPATCH_HOME = {} }}\n",
            toml_string(&bins.dispatch.display().to_string()),
            toml_string(&env.home().display().to_string()),
        ),
        ..responses_stub::CodexConfig::default()
    };
    responses_stub::write_codex_config(&env.codex_home(), &stub.base_url(), &config)?;
    let mut cmd = Command::new(&bins.codex);
    cmd.args(["exec", "--skip-git-repo-check", "-C"])
        .arg(env.work())
        .arg("say ok")
        .env("CODEX_HOME", env.codex_home())
        .stdin(Stdio::null());
    let out = exec(cmd, Duration::from_secs(120)).context("codex exec")?;
    super::env::check("codex exec", &out)?;
    let requests = stub.requests();
    let request = requests.first().context("Codex sent the stub no request")?;
    let tools = request.body["tools"]
        .as_array()
        .context("the request has no `tools`")?;
    let bytes = |v: &Value| v.to_string().len();
    let namespace = tools
        .iter()
        .find(|t| t["name"] == NAMESPACE)
        .with_context(|| format!("no `{NAMESPACE}` in the request's tools"))?;
    let count = namespace["tools"].as_array().map_or(0, Vec::len);
    ensure!(count > 0, "Codex listed none of dispatch's tools");
    let _guard = runtime.enter();
    drop(stub);
    Ok((bytes(namespace), tools.iter().map(bytes).sum()))
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
