//! Checks on what each front end shows: the surfaces an operation and its inputs are offered
//! on, the per-surface descriptions, the effects on Codex's work, and the error hints with
//! their suggested operations. Agent-facing text names tools and arguments, never shell flags
//! or command lines; CLI text never names an MCP tool.

use std::collections::BTreeSet;

use anyhow::{bail, ensure};
use serde_json::Value;

use crate::model::{Contract, Intent, Operation, Surface};

/// The words that mark a surface: what follows `dispatch ` in a CLI command line (the first
/// command word of every operation, and the CLI's own plumbing), the CLI's flags, and the
/// MCP tool names.
pub struct Vocabulary {
    commands: BTreeSet<String>,
    flags: BTreeSet<String>,
    tools: BTreeSet<String>,
}

impl Vocabulary {
    fn of(contract: &Contract) -> Vocabulary {
        let mut commands: BTreeSet<String> = contract
            .ops
            .iter()
            .filter_map(|op| op.meta.cli.path.first().cloned())
            .collect();
        commands.extend(["completion", "mcp", "help"].map(String::from));
        let mut flags: BTreeSet<String> =
            ["json", "help", "version"].map(|f| format!("--{f}")).into();
        for op in &contract.ops {
            flags.extend(
                input_fields(&op.input)
                    .iter()
                    .map(|f| format!("--{}", f.replace('_', "-"))),
            );
        }
        let tools = contract
            .ops
            .iter()
            .map(|op| format!("dispatch_{}", op.meta.id))
            .collect();
        Vocabulary {
            commands,
            flags,
            tools,
        }
    }
}

/// What in `text` belongs to another surface than `surface` (`None`: text every surface
/// shows): a flag of the dispatch CLI or a `dispatch <command>` line on MCP, an MCP tool name
/// on the CLI. Other programs' command lines (`codex login`) are fine anywhere.
pub fn foreign_words(text: &str, surface: Option<Surface>, words: &Vocabulary) -> Vec<String> {
    let word_at = |at: usize, ok: fn(char) -> bool| -> String {
        text[at..].chars().take_while(|c| ok(*c)).collect()
    };
    let mut found = Vec::new();
    if surface != Some(Surface::Cli) {
        for (at, _) in text.match_indices("--") {
            let flag = word_at(at, |c| c == '-' || c.is_ascii_alphanumeric());
            if words.flags.contains(&flag) {
                found.push(flag);
            }
        }
        for (at, _) in text.match_indices("dispatch ") {
            let word = word_at(at + "dispatch ".len(), |c| {
                c.is_ascii_lowercase() || c == '_'
            });
            if words.commands.contains(&word) {
                found.push(format!("dispatch {word}"));
            }
        }
    }
    if surface != Some(Surface::Mcp) {
        for (at, _) in text.match_indices("dispatch_") {
            let tool = word_at(at, |c| c.is_ascii_lowercase() || c == '_');
            if words.tools.contains(&tool) {
                found.push(tool);
            }
        }
    }
    found
}

fn text_ok(
    file: &str,
    what: &str,
    text: &str,
    surface: Option<Surface>,
    words: &Vocabulary,
) -> anyhow::Result<()> {
    let foreign = foreign_words(text, surface, words);
    let shown = match surface {
        None => "every surface".to_owned(),
        Some(s) => format!("the {} surface", s.name()),
    };
    ensure!(
        foreign.is_empty(),
        "{file}: {what} is shown on {shown} but names {}: write it surface-neutral and put CLI or MCP words in `x-dispatch.surface_descriptions` (hints: in `run`)",
        foreign.join(", ")
    );
    Ok(())
}

/// Fails with the first problem in the surfaces, texts and hints of `contract`.
pub fn check(contract: &Contract) -> anyhow::Result<()> {
    let words = Vocabulary::of(contract);
    check_toolsets(contract)?;
    for op in &contract.ops {
        let file = op.file.display().to_string();
        check_operation(op, &file, &words)?;
    }
    for error in &contract.errors {
        let what = format!("errors.json: the hint of `{}`", error.code);
        text_ok("contract/errors.json", &what, &error.hint, None, &words)?;
        for (i, run) in error.run.iter().enumerate() {
            ensure!(
                error.hint.contains(&format!("{{{i}}}")),
                "{what}: `run` entry {i} has no `{{{i}}}` in the text"
            );
            let Some(op) = contract.ops.iter().find(|op| op.meta.id == run.op) else {
                bail!("{what}: `run` names unknown operation `{}`", run.op);
            };
            let fields = input_fields(&op.input);
            let omitted = op.meta.mcp_omitted_inputs();
            for (arg, value) in &run.args {
                ensure!(
                    fields.contains(arg.as_str()),
                    "{what}: `{arg}` is not an input field of `{}`",
                    run.op
                );
                ensure!(
                    !op.meta.on(Surface::Mcp) || !omitted.contains(&arg.as_str()),
                    "{what}: `{arg}` of `{}` is CLI-only, so MCP cannot show the suggestion",
                    run.op
                );
                ensure!(
                    !matches!(value, Value::Object(_) | Value::Null),
                    "{what}: `{arg}` must be a string, number, boolean or array"
                );
            }
        }
        ensure!(
            !error.hint.contains(&format!("{{{}}}", error.run.len())),
            "{what}: `{{{}}}` has no `run` entry",
            error.run.len()
        );
    }
    Ok(())
}

/// The words `dispatch mcp --toolsets` takes besides the toolsets' names.
pub const TOOLSET_KEYWORDS: [&str; 2] = ["all", "default"];

/// `mcp.json` and every operation's `mcp_toolset`: each toolset has a name of lower-case
/// letters and `_` (not a keyword, not twice) and a description; at least one is a default;
/// every operation MCP offers names a known toolset, no CLI-only one names any, and no
/// toolset is empty.
fn check_toolsets(contract: &Contract) -> anyhow::Result<()> {
    let what = "contract/mcp.json";
    let mut names = BTreeSet::new();
    for set in &contract.toolsets {
        let name = set.name.as_str();
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{what}: toolset name `{name}` must be lower-case letters and `_`"
        );
        ensure!(
            !TOOLSET_KEYWORDS.contains(&name),
            "{what}: `{name}` cannot name a toolset: it already means a choice of toolsets"
        );
        ensure!(
            names.insert(name),
            "{what}: toolset `{name}` is listed twice"
        );
        ensure!(
            !set.description.trim().is_empty(),
            "{what}: toolset `{name}` needs a description"
        );
    }
    ensure!(
        contract.toolsets.iter().any(|set| set.default),
        "{what}: at least one toolset must be a default (`\"default\": true`)"
    );
    let mut used = BTreeSet::new();
    for op in &contract.ops {
        let file = op.file.display();
        match (&op.meta.mcp_toolset, op.meta.on(Surface::Mcp)) {
            (None, true) => bail!(
                "{file}: an operation MCP offers needs `mcp_toolset`, one of: {}",
                names.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            (Some(set), false) => bail!(
                "{file}: `mcp_toolset` is `{set}`, but MCP does not offer the operation (`surfaces`)"
            ),
            (Some(set), true) => {
                ensure!(
                    names.contains(set.as_str()),
                    "{file}: `mcp_toolset` names `{set}`, which {what} does not declare; the toolsets are: {}",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                );
                used.insert(set.as_str());
            }
            (None, false) => {}
        }
    }
    for name in &names {
        ensure!(
            used.contains(name),
            "{what}: toolset `{name}` has no operation (no `mcp_toolset` names it)"
        );
    }
    Ok(())
}

fn input_fields(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| props.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn check_operation(op: &Operation, file: &str, words: &Vocabulary) -> anyhow::Result<()> {
    let meta = &op.meta;
    ensure!(
        !meta.surfaces.is_empty(),
        "{file}: `surfaces` needs at least one of \"cli\" and \"mcp\""
    );
    ensure!(
        meta.surfaces.iter().collect::<BTreeSet<_>>().len() == meta.surfaces.len(),
        "{file}: `surfaces` lists a surface twice"
    );
    ensure!(
        meta.on(Surface::Cli),
        "{file}: every operation is a CLI command; `surfaces` must include \"cli\""
    );
    let wire = input_fields(&op.wire_input);
    for field in &meta.cli_only_inputs {
        ensure!(
            wire.contains(field.as_str()),
            "{file}: `cli_only_inputs` names `{field}`, which is not a field of the wire input (file inputs are CLI-only already)"
        );
        ensure!(
            meta.on(Surface::Mcp),
            "{file}: `cli_only_inputs` means nothing on an operation only the CLI offers"
        );
        let required = op
            .input
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|n| n == field.as_str()));
        ensure!(
            !required,
            "{file}: CLI-only input `{field}` cannot be required: MCP could not call the tool"
        );
    }
    for surface in meta.surface_descriptions.keys() {
        ensure!(
            meta.on(*surface),
            "{file}: `surface_descriptions` has text for `{}`, which does not offer the operation",
            surface.name()
        );
    }
    ensure!(
        meta.intent != Intent::Read || meta.model_work.is_empty(),
        "{file}: a read operation cannot start or end Codex's work (`model_work`)"
    );
    // The description of an operation only the CLI offers is CLI text.
    let neutral = (!meta.on(Surface::Mcp)).then_some(Surface::Cli);
    text_ok(file, "`description`", &op.description, neutral, words)?;
    for (surface, text) in &meta.surface_descriptions {
        text_ok(
            file,
            &format!("`surface_descriptions.{}`", surface.name()),
            text,
            Some(*surface),
            words,
        )?;
    }
    for surface in &meta.surfaces {
        text_ok(
            file,
            &format!("the {} description", surface.name()),
            op.description_for(*surface),
            Some(*surface),
            words,
        )?;
    }
    // Input field descriptions are the CLI's argument help and the MCP schema's text.
    if let Some(Value::Object(props)) = op.input.get("properties") {
        let omitted = meta.mcp_omitted_inputs();
        for (name, schema) in props {
            let text = schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let surface = (!meta.on(Surface::Mcp) || omitted.contains(&name.as_str()))
                .then_some(Surface::Cli);
            text_ok(
                file,
                &format!("the description of input `{name}`"),
                text,
                surface,
                words,
            )?;
        }
    }
    Ok(())
}
