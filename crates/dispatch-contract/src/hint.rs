//! Hints as data: a surface-neutral text whose `{0}`, `{1}`, ... stand for suggested
//! operations with their arguments, rendered by each front end in its own words. The CLI
//! shows `` `dispatch list --all` ``, MCP shows `` `dispatch_list` with {"all":true} ``.
//!
//! Which front end a hint is rendered for is the [`Surface`] of the call being served:
//! [`Surface::scope`] sets it for a future (`dispatch mcp` around every tool call, the
//! daemon around every request from an MCP client), and [`Surface::current`] reads it; the
//! CLI is the default.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use serde_json::{Map, Value};

use crate::operation::Operation;

/// A front end of dispatch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// The `dispatch` command line (and raw JSON-RPC callers, who read the same words).
    #[default]
    Cli,
    /// The MCP tools of `dispatch mcp`.
    Mcp,
}

tokio::task_local! {
    static SURFACE: Surface;
}

impl Surface {
    /// The surface of the call being served; [`Surface::Cli`] outside any scope.
    pub fn current() -> Surface {
        SURFACE.try_with(|s| *s).unwrap_or_default()
    }

    /// Runs `future` with this surface as [`Surface::current`].
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        SURFACE.scope(self, future).await
    }

    /// As written in the contract and on the wire: `cli`, `mcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Mcp => "mcp",
        }
    }
}

/// How to recover from an error or what to do about a lane: text plus suggested operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    text: Cow<'static, str>,
    run: Vec<Suggestion>,
}

/// An operation a hint suggests, with (part of) its input. String values in angle brackets
/// (`<request-id>`) are placeholders for the reader to fill.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// The operation.
    pub op: &'static Operation,
    /// Its arguments, in the order they are shown.
    pub args: Map<String, Value>,
}

impl PartialEq for Suggestion {
    fn eq(&self, other: &Self) -> bool {
        self.op.id == other.op.id && self.args == other.args
    }
}

impl Hint {
    /// A hint with `text`; `{0}`, `{1}`, ... in it stand for the suggestions added with
    /// [`Hint::run`], in order.
    pub fn new(text: impl Into<Cow<'static, str>>) -> Hint {
        Hint {
            text: text.into(),
            run: Vec::new(),
        }
    }

    /// Adds the suggestion to run `op` with `args` (a JSON object; anything else counts as
    /// no arguments).
    pub fn run(mut self, op: &'static Operation, args: Value) -> Hint {
        let args = match args {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.run.push(Suggestion { op, args });
        self
    }

    /// The surface-neutral text, `{n}` placeholders included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The suggested operations.
    pub fn suggestions(&self) -> &[Suggestion] {
        &self.run
    }

    /// The hint in the words of `surface`.
    pub fn render(&self, surface: Surface) -> String {
        let mut out = self.text.to_string();
        for (i, suggestion) in self.run.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), &suggestion.render(surface));
        }
        out
    }
}

impl fmt::Display for Hint {
    /// The hint in the words of [`Surface::current`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Surface::current()))
    }
}

impl From<&'static str> for Hint {
    fn from(text: &'static str) -> Hint {
        Hint::new(text)
    }
}

impl From<String> for Hint {
    fn from(text: String) -> Hint {
        Hint::new(text)
    }
}

impl Suggestion {
    /// The suggestion in the words of `surface`, in backticks.
    pub fn render(&self, surface: Surface) -> String {
        match surface {
            Surface::Cli => format!("`{}`", self.command_line()),
            Surface::Mcp if self.op.on(Surface::Mcp) => {
                if self.args.is_empty() {
                    format!("`dispatch_{}`", self.op.id)
                } else {
                    let args = Value::Object(self.args.clone());
                    format!("`dispatch_{}` with {args}", self.op.id)
                }
            }
            // An agent cannot run it: it names what the operator would run, without flags.
            Surface::Mcp => format!(
                "`{}` (an operator's CLI command, not an MCP tool)",
                self.op.cli_path.join(" ")
            ),
        }
    }

    /// The CLI command line: `dispatch <words> <positionals> --flag value ...`.
    pub fn command_line(&self) -> String {
        let mut words: Vec<String> = vec!["dispatch".to_owned()];
        words.extend(self.op.cli_path.iter().map(|w| (*w).to_owned()));
        for positional in self.op.positionals {
            if let Some(value) = self.args.get(*positional) {
                words.extend(cli_values(value));
            }
        }
        for (name, value) in &self.args {
            if self.op.positionals.contains(&name.as_str()) {
                continue;
            }
            let flag = format!("--{}", name.replace('_', "-"));
            match value {
                Value::Bool(true) => words.push(flag),
                Value::Bool(false) | Value::Null => {}
                Value::Array(items) => {
                    for item in items {
                        words.push(flag.clone());
                        words.extend(cli_values(item));
                    }
                }
                other => {
                    words.push(flag);
                    words.extend(cli_values(other));
                }
            }
        }
        words.join(" ")
    }
}

/// A value as a shell word: bare when it is safe (or a `<placeholder>` or `...`), single
/// quoted otherwise.
fn cli_values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(cli_values).collect(),
        Value::String(s) => vec![shell_word(s)],
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn shell_word(s: &str) -> String {
    let placeholder = s.starts_with('<') && s.ends_with('>') && !s.contains(char::is_whitespace);
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%_+=:,./-".contains(c));
    if placeholder || bare || s == "..." {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Words of `text` that belong to another surface than `surface`: on MCP a flag of the
/// dispatch CLI (`--all`) or a `dispatch <command>` line; on the CLI the name of an MCP tool
/// (`dispatch_get`). Other programs' command lines (`codex login`) are fine anywhere. The
/// tests of every surface use it on what they show.
pub fn foreign_words(text: &str, surface: Surface) -> Vec<String> {
    let ops = crate::generated::operations::OPERATIONS;
    let mut found = Vec::new();
    match surface {
        Surface::Mcp => {
            let mut flags: Vec<String> = ["json", "help", "version"]
                .iter()
                .map(|f| format!("--{f}"))
                .collect();
            for op in ops {
                let schema: Value = serde_json::from_str(op.cli_input_schema).unwrap_or_default();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    flags.extend(
                        props
                            .keys()
                            .map(|name| format!("--{}", name.replace('_', "-"))),
                    );
                }
            }
            for (at, _) in text.match_indices("--") {
                let word: String = text[at..]
                    .chars()
                    .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
                    .collect();
                if flags.contains(&word) {
                    found.push(word);
                }
            }
            let commands: Vec<&str> = ops
                .iter()
                .filter_map(|op| op.cli_path.first().copied())
                .chain(["completion", "mcp", "help"])
                .collect();
            for (at, _) in text.match_indices("dispatch ") {
                let word: String = text[at + "dispatch ".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if commands.contains(&word.as_str()) {
                    found.push(format!("dispatch {word}"));
                }
            }
        }
        Surface::Cli => {
            for (at, _) in text.match_indices("dispatch_") {
                let word: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if ops.iter().any(|op| word == format!("dispatch_{}", op.id)) {
                    found.push(word);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::generated::errors::ErrorCode;
    use crate::generated::operations as ops;

    fn busy(lane: &str) -> Hint {
        Hint::new("wait for it ({0}), add to it ({1}) or end it ({2})")
            .run(&ops::WATCH, json!({"lane": lane, "until": "turn-end"}))
            .run(
                &ops::SEND,
                json!({"lane": lane, "text": "<text>", "steer": true}),
            )
            .run(&ops::STOP, json!({"lane": lane}))
    }

    #[test]
    fn the_cli_shows_command_lines_with_positionals_and_flags() {
        assert_eq!(
            busy("0k7M4a").render(Surface::Cli),
            "wait for it (`dispatch watch 0k7M4a --until turn-end`), add to it \
             (`dispatch send 0k7M4a <text> --steer`) or end it (`dispatch stop 0k7M4a`)"
        );
    }

    #[test]
    fn mcp_shows_tools_with_their_arguments() {
        assert_eq!(
            busy("0k7M4a").render(Surface::Mcp),
            "wait for it (`dispatch_watch` with {\"lane\":\"0k7M4a\",\"until\":\"turn-end\"}), \
             add to it (`dispatch_send` with {\"lane\":\"0k7M4a\",\"text\":\"<text>\",\"steer\":true}) \
             or end it (`dispatch_stop` with {\"lane\":\"0k7M4a\"})"
        );
    }

    #[test]
    fn an_operation_only_the_cli_offers_is_named_without_flags_on_mcp() {
        let hint = Hint::new("run {0}").run(&ops::REGISTRY_MIGRATE, json!({"allow_running": true}));
        assert_eq!(
            hint.render(Surface::Cli),
            "run `dispatch registry migrate --allow-running`"
        );
        let mcp = hint.render(Surface::Mcp);
        assert!(foreign_words(&mcp, Surface::Mcp).is_empty(), "{mcp}");
        assert!(mcp.contains("`registry migrate`"), "{mcp}");
    }

    #[test]
    fn values_that_are_not_shell_words_are_quoted() {
        let hint = Hint::new("{0}").run(&ops::NEW, json!({"name": "it's docs", "no_send": false}));
        assert_eq!(
            hint.render(Surface::Cli),
            "`dispatch new --name 'it'\\''s docs'`"
        );
    }

    #[test]
    fn every_default_hint_speaks_each_surfaces_words() {
        for code in ErrorCode::ALL {
            let hint = code.hint();
            for surface in [Surface::Cli, Surface::Mcp] {
                let text = hint.render(surface);
                assert!(
                    foreign_words(&text, surface).is_empty(),
                    "`{}` on {surface:?}: {text}",
                    code.as_str()
                );
                assert!(!text.contains("{0}"), "{text}");
            }
        }
    }

    #[test]
    fn the_scope_sets_the_surface() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(Surface::current(), Surface::Cli);
        let inside = rt.block_on(Surface::Mcp.scope(async { Surface::current() }));
        assert_eq!(inside, Surface::Mcp);
    }
}
