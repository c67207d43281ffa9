//! The docs cannot drift from the contract: every `dispatch ...` command line quoted in the
//! README, AGENTS.md, the operator guide, the ADRs about lanes and the skills parses with the
//! real CLI's parser; every MCP tool name quoted there exists; and the guide's examples of
//! real output (an MCP session, an error) are run and compared.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

/// The documents whose commands and tool names are checked, relative to the repository.
const DOCS: &[&str] = &[
    "README.md",
    "AGENTS.md",
    "docs/usage/README.md",
    "docs/adrs/0006-acceptance-vs-completion.md",
    "docs/adrs/0007-attached-lane-write-lock.md",
    "docs/development/adding-an-operation.md",
    "skills/dispatch/SKILL.md",
    "skills/dm/SKILL.md",
];

/// `dispatch_...` words in the docs that are not MCP tools: crate names and a doctor check.
const NOT_TOOLS: &[&str] = &[
    "dispatch_cli",
    "dispatch_client",
    "dispatch_codegen",
    "dispatch_contract",
    "dispatch_daemon",
    "dispatch_home",
    "dispatch_mcp",
    "dispatch_on_path",
    "dispatch_registry",
    "dispatch_rpc",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

/// A piece of code in a Markdown document.
#[derive(Debug)]
enum Snippet {
    /// A fenced block: its info string, its first line's number, its text, and the HTML
    /// comment right above it (`<!-- ... -->`), if any.
    Block {
        lang: String,
        line: usize,
        text: String,
        marker: Option<String>,
    },
    /// An inline code span and its line number.
    Inline { line: usize, text: String },
}

/// The fenced blocks and inline code spans of `markdown`.
fn snippets(markdown: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut prose: Vec<(usize, &str)> = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut last_marker: Option<String> = None;
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        if let Some(fence) = fence {
            inline_spans(&prose, &mut out);
            prose.clear();
            let lang = trimmed.trim_start_matches(fence).trim().to_owned();
            let mut text = String::new();
            for (_, body) in lines.by_ref() {
                if body.trim_start().starts_with(fence) {
                    break;
                }
                text.push_str(body);
                text.push('\n');
            }
            out.push(Snippet::Block {
                lang,
                line: index + 2,
                text,
                marker: last_marker.take(),
            });
            continue;
        }
        if !trimmed.is_empty() {
            last_marker = trimmed
                .strip_prefix("<!--")
                .and_then(|m| m.strip_suffix("-->"))
                .map(|m| m.trim().to_owned());
        }
        prose.push((index + 1, line));
    }
    inline_spans(&prose, &mut out);
    out
}

/// The inline code spans of prose lines, CommonMark style: a run of N backticks opens a span
/// that the next run of exactly N backticks closes; line breaks inside become spaces.
fn inline_spans(prose: &[(usize, &str)], out: &mut Vec<Snippet>) {
    let mut text = String::new();
    let mut starts = Vec::new();
    for (number, line) in prose {
        starts.push((text.len(), *number));
        text.push_str(line);
        text.push('\n');
    }
    let line_at = |offset: usize| {
        starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map_or(0, |(_, n)| *n)
    };
    let bytes = text.as_bytes();
    let run = |at: usize| bytes[at..].iter().take_while(|b| **b == b'`').count();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open = run(i);
        let mut j = i + open;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let n = run(j);
                if n == open {
                    close = Some(j);
                    break;
                }
                j += n;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                let span = text[i + open..end].replace('\n', " ");
                out.push(Snippet::Inline {
                    line: line_at(i),
                    text: span.trim().to_owned(),
                });
                i = end + open;
            }
            None => i += open,
        }
    }
}

/// A sample value for a placeholder such as `<ref>` or `<request-id>`.
fn sample(name: &str) -> &'static str {
    match name {
        n if n.contains("thread") => "019a4c1e-7f3b-7c2a-9d41-5be0c7f1a2d3",
        n if n == "id" || n.ends_with("-id") => "7",
        "command" | "op" => "list",
        "shell" => "bash",
        _ => "0k7M4a",
    }
}

/// Replaces every `<name>` placeholder in `token` with a sample value.
fn fill(token: &str) -> String {
    let mut out = String::new();
    let mut rest = token;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start + 1..].find('>') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            break;
        }
        out.push_str(&rest[..start]);
        out.push_str(sample(name));
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The `dispatch` command lines in one shell line: segments between `|`, `&&`, `||` and `;`
/// whose first word (after `VAR=value` assignments) is `dispatch`, without redirections
/// (`> FILE`). `None` when the line does not split like a shell line.
fn command_lines(line: &str) -> Option<Vec<Vec<String>>> {
    let tokens = shlex::split(line)?;
    let mut segments = vec![Vec::new()];
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        match token.as_str() {
            "|" | "||" | "&&" | ";" => segments.push(Vec::new()),
            ">" | ">>" | "<" | "2>" | "2>>" => {
                tokens.next(); // the file
            }
            t if t.ends_with(';') => {
                if let Some(last) = segments.last_mut() {
                    last.push(t.trim_end_matches(';').to_owned());
                }
                segments.push(Vec::new());
            }
            _ => {
                if let Some(last) = segments.last_mut() {
                    last.push(token);
                }
            }
        }
    }
    Some(
        segments
            .into_iter()
            .map(|s| {
                s.into_iter()
                    .skip_while(|t| {
                        t.split_once('=').is_some_and(|(k, _)| {
                            !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|s| s.first().is_some_and(|t| t == "dispatch"))
            .collect(),
    )
}

/// The arguments clap sees: placeholders filled, `a|b` alternatives reduced to the first,
/// redirections dropped.
fn arguments(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .skip(1)
        .filter(|t| !(t.starts_with('>') || t.starts_with("2>")))
        .map(|t| {
            let is_choice = t.contains('|')
                && t.split('|').all(|w| {
                    !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-')
                });
            let t = if is_choice {
                t.split('|').next().unwrap_or_default()
            } else {
                t.as_str()
            };
            fill(t)
        })
        .collect()
}

/// Whether `args` only names a command (`dispatch goal set`), as prose does when it mentions
/// a command without its arguments.
fn names_a_command(args: &[String]) -> bool {
    let mut cmd = dispatch_cli::root::command();
    for word in args {
        match cmd.find_subcommand(word) {
            Some(sub) => cmd = sub.clone(),
            None => return false,
        }
    }
    !args.is_empty()
}

/// Checks one quoted command line; `Err` says why clap refuses it.
fn check_command(tokens: &[String], inline: bool) -> Result<(), String> {
    let args = arguments(tokens);
    if inline && names_a_command(&args) {
        return Ok(());
    }
    let argv = std::iter::once("dispatch".to_owned()).chain(args);
    match dispatch_cli::root::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(err)
            if matches!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(err.render().to_string()),
    }
}

/// Languages whose blocks are data, not shell.
const DATA: &[&str] = &["json", "toml", "rust", "yaml"];

/// Every quoted command of `doc`: (line, text, inline?).
fn quoted_commands(doc: &str) -> Vec<(usize, String, Vec<String>, bool)> {
    let mut found = Vec::new();
    for snippet in snippets(&read(doc)) {
        match snippet {
            Snippet::Block {
                lang, line, text, ..
            } if !DATA.contains(&lang.as_str()) => {
                let joined = text.replace("\\\n", " ");
                for (offset, raw) in joined.lines().enumerate() {
                    let shell = raw.trim_start().trim_start_matches("$ ");
                    match command_lines(shell) {
                        Some(commands) => found.extend(
                            commands
                                .into_iter()
                                .map(|c| (line + offset, shell.to_owned(), c, false)),
                        ),
                        None if shell.starts_with("dispatch ") => {
                            found.push((line + offset, shell.to_owned(), Vec::new(), false));
                        }
                        None => {}
                    }
                }
            }
            Snippet::Inline { line, text } if text.starts_with("dispatch ") => {
                match command_lines(&text) {
                    Some(commands) => {
                        found.extend(commands.into_iter().map(|c| (line, text.clone(), c, true)))
                    }
                    None => found.push((line, text.clone(), Vec::new(), true)),
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn the_extraction_finds_blocks_spans_and_commands() {
    let markdown = "Run `dispatch get <ref>` or ``dispatch `x` ``.\n\n<!-- m -->\n```sh\ndispatch up   # start\nDISPATCH_HOME=/x dispatch down && dispatch list | head\n```\n";
    let found = snippets(markdown);
    assert!(matches!(&found[0], Snippet::Inline { text, line: 1 } if text == "dispatch get <ref>"));
    assert!(matches!(&found[1], Snippet::Inline { text, .. } if text == "dispatch `x`"));
    assert!(
        matches!(&found[2], Snippet::Block { lang, marker, line: 5, .. } if lang == "sh" && marker.as_deref() == Some("m"))
    );
    let commands = command_lines("DISPATCH_HOME=/x dispatch down && dispatch list | head")
        .expect("shell words");
    assert_eq!(
        commands,
        vec![vec!["dispatch", "down"], vec!["dispatch", "list"]]
    );
    assert_eq!(
        arguments(&[
            "dispatch".into(),
            "respond".into(),
            "<request-id>".into(),
            "accept|decline".into()
        ]),
        vec!["respond", "7", "accept"]
    );
    assert!(check_command(&["dispatch".into(), "get".into()], true).is_ok());
    assert!(check_command(&["dispatch".into(), "get".into()], false).is_err());
    assert!(check_command(&["dispatch".into(), "gett".into()], true).is_err());
    assert!(check_command(&["dispatch".into(), "list".into(), "--nope".into()], false).is_err());
}

#[test]
fn every_quoted_command_parses_with_the_real_cli() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in DOCS {
        let commands = quoted_commands(doc);
        assert!(
            !commands.is_empty() || doc.starts_with("docs/adrs/"),
            "{doc} quotes no dispatch command: is the extraction broken?"
        );
        for (line, text, tokens, inline) in commands {
            checked += 1;
            let verdict = if tokens.is_empty() {
                Err("does not split into shell words".into())
            } else {
                check_command(&tokens, inline)
            };
            if let Err(why) = verdict {
                problems.push(format!("{doc}:{line}: `{text}`: {}", why.trim()));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} commands found: is the extraction broken?"
    );
    assert!(
        problems.is_empty(),
        "quoted commands the CLI refuses (fix the doc, or the CLI if the doc is right):\n{}",
        problems.join("\n")
    );
}

/// The `dispatch_...` words of `text` that look like MCP tool names.
fn tool_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(found) = text[from..].find("dispatch_") {
        let start = from + found;
        let mut end = start + "dispatch_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        from = end;
        let glued = start > 0 && (word(bytes[start - 1]) || bytes[start - 1] == b'-');
        let name = text[start..end].trim_end_matches('_');
        if glued || name == "dispatch" || text[end..].starts_with("::") || NOT_TOOLS.contains(&name)
        {
            continue;
        }
        names.insert(name.to_owned());
    }
    names
}

#[test]
fn every_quoted_mcp_tool_exists_and_the_skill_names_them_all() {
    let tools: BTreeSet<String> = dispatch_mcp::tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let mut unknown = Vec::new();
    let mut quoted = 0;
    for doc in DOCS {
        for name in tool_names(&read(doc)) {
            quoted += 1;
            if !tools.contains(&name) {
                unknown.push(format!("{doc}: {name}"));
            }
        }
    }
    assert!(quoted > 30, "only {quoted} tool names found");
    assert!(
        unknown.is_empty(),
        "no such MCP tool:\n{}",
        unknown.join("\n")
    );
    let skill = tool_names(&read("skills/dispatch/SKILL.md"));
    let missing: Vec<&String> = tools.difference(&skill).collect();
    assert!(
        missing.is_empty(),
        "skills/dispatch/SKILL.md (section \"Commands and MCP tools\") does not name {missing:?}"
    );
}

/// The fenced block of the operator guide under `<!-- marker -->`.
fn guide_block(marker: &str) -> String {
    snippets(&read("docs/usage/README.md"))
        .into_iter()
        .find_map(|s| match s {
            Snippet::Block {
                marker: Some(m),
                text,
                ..
            } if m == marker => Some(text),
            _ => None,
        })
        .unwrap_or_else(|| panic!("docs/usage/README.md has no block marked `{marker}`"))
}

/// `expected` is contained in `actual`: objects by their keys, arrays item by item.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| contains(av, ev))
        }
        _ => actual == expected,
    }
}

#[test]
fn the_guide_mcp_session_is_what_dispatch_mcp_answers() {
    let requests = guide_block("mcp-example: requests");
    let home = support::Home::new();
    let mut child = home
        .command(&support::dispatch_bin())
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dispatch mcp");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ids = Vec::new();
    for line in requests.lines().filter(|l| !l.trim().is_empty()) {
        let message: Value = serde_json::from_str(line).expect("each request line is JSON");
        if let Some(id) = message.get("id") {
            ids.push(id.clone());
        }
        writeln!(stdin, "{line}").expect("write to dispatch mcp");
    }
    stdin.flush().expect("flush");
    let mut answers = serde_json::Map::new();
    while answers.len() < ids.len() {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("read dispatch mcp");
        assert!(
            read > 0,
            "dispatch mcp closed its stdout; answers so far: {answers:?}"
        );
        let message: Value = serde_json::from_str(&line).expect("a JSON line");
        if let Some(id) = message.get("id").filter(|id| ids.contains(id)) {
            answers.insert(id.to_string(), message);
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(answers["1"]["result"]["serverInfo"]["name"], "dispatch");
    let tools = answers["2"]["result"]["tools"].as_array().expect("tools");
    // The session starts `dispatch mcp` as a client does: the default toolsets.
    assert_eq!(
        tools.len(),
        dispatch_mcp::Enabled::defaults().tools().count()
    );
    let documented: Value =
        serde_json::from_str(&guide_block("mcp-example: tool dispatch_send")).expect("JSON");
    let actual = tools
        .iter()
        .find(|t| t["name"] == documented["name"])
        .expect("the documented tool is listed");
    assert!(
        contains(actual, &documented),
        "the guide's tool entry is not what tools/list answers:\nguide: {documented:#}\nactual: {actual:#}"
    );
    let documented: Value =
        serde_json::from_str(&guide_block("mcp-example: call 3")).expect("JSON");
    // The guide shows an error result's text (the error JSON) parsed.
    let mut actual = answers["3"]["result"].clone();
    if let Some(items) = actual["content"].as_array_mut() {
        for item in items {
            if let Some(parsed) = item["text"]
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
            {
                item["text"] = parsed;
            }
        }
    }
    let actual = &actual;
    assert!(
        contains(actual, &documented),
        "the guide's tool result is not what tools/call answers:\nguide: {documented:#}\nactual: {actual:#}"
    );
}

#[test]
fn the_guide_error_example_is_what_the_cli_prints() {
    let block = guide_block("output-example: no-daemon");
    let (command, output) = block
        .split_once('\n')
        .expect("a command line, then its output");
    let tokens = command_lines(command.trim_start_matches("$ "))
        .and_then(|mut c| c.pop())
        .expect("a dispatch command");
    let args: Vec<String> = arguments(&tokens);
    let home = support::Home::new();
    let run = home.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 8, "the guide says the exit status is 8: {run:?}");
    let mut documented: Value = serde_json::from_str(output).expect("the output is JSON");
    let message = documented["error"]
        .as_object_mut()
        .and_then(|e| e.remove("message"))
        .expect("a message");
    let actual = run.json();
    assert!(
        contains(&actual, &documented),
        "guide: {documented:#}\nactual: {actual:#}"
    );
    // The message names the socket, whose path differs on every machine.
    let prefix = message
        .as_str()
        .and_then(|m| m.split(" at ").next())
        .expect("message text");
    assert!(
        actual["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(prefix)),
        "{actual:#}"
    );
    assert_eq!(actual["error"]["code"], "daemon_unreachable");
}

/// The guide's table of exit statuses lists every error code with the status the contract
/// gives it, so a new code cannot be left out of it.
#[test]
fn the_guide_lists_every_error_code_with_its_exit_status() {
    let guide = read("docs/usage/README.md");
    let rows: Vec<(u8, &str)> = guide
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| ")?;
            let (status, codes) = rest.split_once(" | ")?;
            Some((status.trim().parse().ok()?, codes))
        })
        .collect();
    let mut missing = Vec::new();
    for code in dispatch_contract::ErrorCode::ALL {
        let quoted = format!("`{}`", code.as_str());
        let listed = rows
            .iter()
            .any(|(status, codes)| *status == code.exit_code() && codes.contains(&quoted));
        if !listed {
            missing.push(format!("{} (exit {})", code.as_str(), code.exit_code()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/usage/README.md's exit table lacks: {missing:?}"
    );
}
