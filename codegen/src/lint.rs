//! Checks on the contract itself, so a mistake in a contract file fails generation with a
//! clear message instead of producing a surface that drifts.

use std::collections::BTreeSet;

use anyhow::{bail, ensure};
use serde_json::Value;

use crate::gen_cli::fields;
use crate::model::{Contract, LaneField, Operation};

/// The first description in `schema` that holds a `{op:..}` or `{arg:..}` reference.
fn placeholder_in_schema(schema: &Value) -> Option<String> {
    match schema {
        Value::Object(map) => map.iter().find_map(|(key, value)| match value {
            Value::String(text)
                if key == "description" && (text.contains("{op:") || text.contains("{arg:")) =>
            {
                Some(text.clone())
            }
            other => placeholder_in_schema(other),
        }),
        Value::Array(items) => items.iter().find_map(placeholder_in_schema),
        _ => None,
    }
}

/// Fails with the first problem found in `contract`.
pub fn check(contract: &Contract) -> anyhow::Result<()> {
    let codes: BTreeSet<&str> = contract.errors.iter().map(|e| e.code.as_str()).collect();
    ensure!(
        codes.len() == contract.errors.len(),
        "errors.json: a code is listed twice"
    );
    for code in [
        "invalid_input",
        "internal",
        "daemon_unreachable",
        "daemon_stale",
    ] {
        ensure!(
            codes.contains(code),
            "errors.json: the required code `{code}` is missing"
        );
    }
    let rpc_codes: BTreeSet<i32> = contract.errors.iter().map(|e| e.jsonrpc_code).collect();
    ensure!(
        rpc_codes.len() == contract.errors.len(),
        "errors.json: a JSON-RPC code is used twice"
    );
    for e in &contract.errors {
        // The generated `ErrorCode::exit_code` is a `u8` that needs no fallback.
        ensure!(
            (1..=125).contains(&e.exit_code),
            "errors.json: `{}` has exit code {} outside 1..=125",
            e.code,
            e.exit_code
        );
    }
    let mut paths = BTreeSet::new();
    for op in &contract.ops {
        let id = &op.meta.id;
        let file = op.file.display();
        ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{file}: id `{id}` must be snake_case"
        );
        ensure!(
            op.file.file_stem().is_some_and(|s| s == id.as_str()),
            "{file}: the file must be named `{id}.json`"
        );
        ensure!(!op.meta.cli.path.is_empty(), "{file}: `cli.path` is empty");
        ensure!(
            !["completion", "mcp", "help"].contains(&op.meta.cli.path[0].as_str()),
            "{file}: `{}` is a command of the CLI itself",
            op.meta.cli.path[0]
        );
        let path = op.meta.cli.path.join(" ");
        ensure!(
            paths.insert(path.clone()),
            "{file}: command `{path}` is used twice"
        );
        for group in &op.meta.cli.path[..op.meta.cli.path.len() - 1] {
            ensure!(
                contract.groups.contains_key(group),
                "{file}: command group `{group}` needs a description in contract/cli.json"
            );
        }
        ensure!(
            op.input.get("type") == Some(&Value::String("object".into()))
                && op.input.get("additionalProperties") == Some(&Value::Bool(false)),
            "{file}: the input must be an object with `additionalProperties: false`"
        );
        if let Some(text) = placeholder_in_schema(&op.input).or(placeholder_in_schema(&op.output)) {
            bail!(
                "{file}: `{text}`: `{{op:..}}` and `{{arg:..}}` are rendered in the operation's \
                 `description` only; a field's description names things in plain words"
            );
        }
        let fields = fields(op);
        for field in &fields {
            ensure!(
                !field.help.is_empty(),
                "{file}: input field `{}` needs a description",
                field.name
            );
            ensure!(
                field.name != "json",
                "{file}: `json` is reserved for the CLI's output switch"
            );
        }
        let required = |name: &str| {
            op.input
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|n| n == name))
        };
        let property = |name: &str| op.input.pointer(&format!("/properties/{name}"));
        let is_string = |name: &str| {
            property(name).is_some_and(|s| resolve_ref(contract, s)["type"] == "string")
        };
        for (field, source) in &op.meta.client_defaults {
            ensure!(
                fields.iter().any(|f| f.name == field),
                "{file}: client default `{field}` is not an input field"
            );
            let env_var = source.strip_prefix(crate::model::ENV_SOURCE);
            ensure!(
                source == "current_dir" || env_var.is_some_and(is_env_var),
                "{file}: client default `{field}` must be `current_dir` or `env:<VAR>` (VAR in capitals, digits and `_`)"
            );
            if env_var.is_some() {
                ensure!(
                    is_string(field) && !required(field),
                    "{file}: `{field}` comes from the caller's environment, so it must be a string field that is not required"
                );
                ensure!(
                    !op.meta.cli.positionals.contains(field)
                        && !op.meta.cli_only_inputs.contains(field)
                        && !op.meta.file_inputs.contains_key(field)
                        && !op.meta.file_inputs.values().any(|into| into == field),
                    "{file}: `{field}` comes from the caller's environment, so it cannot be a positional, a CLI-only input or a file input"
                );
            }
        }
        for (from, into) in &op.meta.file_inputs {
            ensure!(
                from != into
                    && fields.iter().any(|f| f.name == from)
                    && fields.iter().any(|f| f.name == into),
                "{file}: file input `{from}` -> `{into}` must name two input fields"
            );
            ensure!(
                is_string(from) && is_string(into),
                "{file}: file input `{from}` -> `{into}`: both fields must be strings"
            );
            ensure!(
                !required(from) && !required(into),
                "{file}: file input `{from}` -> `{into}`: neither field may be required (each can come from the other)"
            );
            ensure!(
                !op.meta.file_inputs.contains_key(into),
                "{file}: file input `{from}` reads into `{into}`, itself a file input"
            );
        }
        for (from, into) in &op.meta.packet_inputs {
            let object = op
                .wire_input
                .pointer(&format!("/properties/{into}"))
                .map(|s| resolve_ref(contract, s))
                .is_some_and(|s| s["type"] == "object");
            ensure!(
                is_string(from) && !required(from) && object && !required(into),
                "{file}: packet input `{from}` -> `{into}` must name an optional string field and an optional object field of the wire input"
            );
        }
        if let Some(bound) = &op.meta.bounded_by {
            let schema = op.wire_input.pointer(&format!("/properties/{bound}"));
            ensure!(
                schema.is_some(),
                "{file}: `bounded_by` names `{bound}`, which is not a field of the wire input"
            );
            let schema = schema
                .map(|s| resolve_ref(contract, s))
                .unwrap_or(&Value::Null);
            ensure!(
                schema["type"] == "number" || schema["type"] == "integer",
                "{file}: `bounded_by` field `{bound}` must be a number or an integer (seconds)"
            );
            ensure!(
                schema["maximum"].is_number() && schema["default"].is_number(),
                "{file}: `bounded_by` field `{bound}` needs a numeric `maximum` and `default`"
            );
        }
        if let Some(Value::Object(props)) = op.input.get("properties") {
            for (name, schema) in props {
                ensure!(
                    refuses_nul(contract, schema),
                    "{file}: input field `{name}` takes free text: give it a `pattern` that refuses NUL characters, e.g. \"^[^\\\\x00]*$\""
                );
            }
        }
        check_lane_and_streaming(contract, op)?;
        for positional in &op.meta.cli.positionals {
            ensure!(
                fields.iter().any(|f| f.name == positional),
                "{file}: positional `{positional}` is not an input field"
            );
        }
        for example in &op.meta.examples {
            match (&example.output, &example.error) {
                (Some(_), None) => {}
                (None, Some(code)) => ensure!(
                    codes.contains(code.as_str()),
                    "{file}: example `{}` expects unknown error code `{code}`",
                    example.title
                ),
                _ => bail!(
                    "{file}: example `{}` needs exactly one of `output` and `error`",
                    example.title
                ),
            }
        }
    }
    let all: Vec<String> = contract
        .ops
        .iter()
        .map(|op| op.meta.cli.path.join(" "))
        .collect();
    for a in &all {
        for b in &all {
            ensure!(
                a == b || !b.starts_with(&format!("{a} ")),
                "command `{a}` cannot be both an operation and a group (of `{b}`)"
            );
        }
    }
    crate::lint_surfaces::check(contract)
}

/// `x-dispatch.lane_field` and `x-dispatch.streaming`: every operation that writes history
/// names its lane, and every field named exists with the type the generated code reads.
fn check_lane_and_streaming(contract: &Contract, op: &Operation) -> anyhow::Result<()> {
    let file = op.file.display();
    let input = |name: &str| {
        op.wire_input
            .pointer(&format!("/properties/{name}"))
            .map(|s| resolve_ref(contract, s))
    };
    let output = |name: &str| {
        op.output
            .pointer(&format!("/properties/{name}"))
            .map(|s| resolve_ref(contract, s))
    };
    let required = |schema: &Value, name: &str| {
        schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    match &op.meta.lane_field {
        None => ensure!(
            !op.meta.writes_history,
            "{file}: it writes history, so `x-dispatch.lane_field` must name the input field that names its lane (`{{\"selector\": \"lane\"}}`, `{{\"request\": \"request_id\"}}` or `{{\"created\": \"lane\"}}`)"
        ),
        Some(LaneField::Selector(name)) => ensure!(
            input(name).is_some_and(|s| s["type"] == "string") && required(&op.wire_input, name),
            "{file}: `lane_field` selector `{name}` must be a required string field of the wire input"
        ),
        Some(LaneField::Request(name)) => ensure!(
            input(name).is_some_and(
                |s| s["type"] == "integer" && s["minimum"].as_f64().is_some_and(|m| m >= 0.0)
            ) && required(&op.wire_input, name),
            "{file}: `lane_field` request `{name}` must be a required integer field of the wire input with a `minimum` of 0 or more"
        ),
        // A nullable object (`oneOf` the object and null) is null when nothing was made
        // (`new`'s dry run).
        Some(LaneField::Created(name)) => ensure!(
            output(name).is_some_and(|s| {
                let lane = |s: &Value| s["type"] == "object" && required(s, "ref");
                lane(s)
                    || s["oneOf"].as_array().is_some_and(|branches| {
                        branches.iter().any(|b| lane(resolve_ref(contract, b)))
                    })
            }) && required(&op.output, name),
            "{file}: `lane_field` created `{name}` must be a required output object with a `ref` (or null)"
        ),
    }
    for field in &op.meta.encoded_outputs {
        ensure!(
            output(field).is_some_and(|s| s["type"] == "array"
                && s["items"]
                    .get("$ref")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.contains("#/$defs/"))),
            "{file}: `encoded_outputs` names `{field}`, which must be an array output field whose `items` is a `$ref` to a shared definition"
        );
    }
    if let Some(stream) = &op.meta.streaming {
        let is = |schema: Option<&Value>, kind: &str| schema.is_some_and(|s| s["type"] == kind);
        ensure!(
            op.meta.bounded_by.is_some(),
            "{file}: a streaming operation needs `bounded_by`"
        );
        ensure!(
            is(input(&stream.switch), "boolean"),
            "{file}: `streaming.switch` `{}` must be a boolean input field",
            stream.switch
        );
        for field in [&stream.after, &stream.limit] {
            ensure!(
                is(input(field), "integer"),
                "{file}: `streaming` field `{field}` must be an integer input field"
            );
        }
        ensure!(
            input(&stream.limit).is_some_and(|s| s["default"].is_u64()),
            "{file}: `streaming.limit` `{}` needs an integer `default`",
            stream.limit
        );
        ensure!(
            is(output(&stream.events), "array"),
            "{file}: `streaming.events` `{}` must be an array output field",
            stream.events
        );
        ensure!(
            output(&stream.cursor).is_some() && is(output(&stream.ended), "string"),
            "{file}: `streaming.cursor` `{}` must be an output field and `streaming.ended` `{}` a string output field",
            stream.cursor,
            stream.ended
        );
    }
    Ok(())
}

/// `schema`, or the shared definition it refers to.
fn resolve_ref<'a>(contract: &'a Contract, schema: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| contract.defs.get(name))
        .unwrap_or(schema)
}

/// Whether an input field refuses strings with a NUL character: fields that are not free
/// text (numbers, booleans, enums) do by their type; a free-text string (or array of them)
/// needs a `pattern` that does not match one.
fn refuses_nul(contract: &Contract, schema: &Value) -> bool {
    let schema = resolve_ref(contract, schema);
    match schema.get("type").and_then(Value::as_str) {
        Some("string") if schema.get("enum").is_none() => {
            let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
                return false;
            };
            regress::Regex::new(pattern).is_ok_and(|re| {
                ["\0", "a\0b", "\0a"]
                    .iter()
                    .all(|probe| re.find(probe).is_none())
            })
        }
        Some("array") => schema
            .get("items")
            .is_none_or(|items| refuses_nul(contract, items)),
        _ => true,
    }
}

/// Whether `name` is an environment variable a client default may read: `CODEX_THREAD_ID`.
fn is_env_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}
