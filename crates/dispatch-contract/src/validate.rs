//! The one place where inputs are checked against the contract's JSON Schema. Every surface
//! (CLI, MCP, raw RPC) reaches an operation through [`validate_input`].

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::{ValidationError, Validator, error::ValidationErrorKind};
use serde_json::{Value, json};

use crate::error::DispatchError;
use crate::generated::operations::{self, OPERATIONS};
use crate::hint::Hint;
use crate::operation::Operation;

struct Validators {
    input: Validator,
    input_schema: Value,
    cli_input: OnceLock<(Validator, Value)>,
    /// Compiled on first use: only tests check outputs, and a CLI call should not pay for it.
    output: OnceLock<Validator>,
}

fn compile(schema: &str, what: &str, op: &Operation) -> (Validator, Value) {
    // The schemas are generated from the contract and compiled by the freshness and schema
    // tests, so a failure here is a build defect, not user input.
    let schema: Value = serde_json::from_str(schema)
        .unwrap_or_else(|err| panic!("{what} schema of `{}` is not JSON: {err}", op.id));
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|err| panic!("{what} schema of `{}` does not compile: {err}", op.id));
    (validator, schema)
}

fn validators(op: &Operation) -> &'static Validators {
    static ALL: OnceLock<HashMap<&'static str, OnceLock<Validators>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        OPERATIONS
            .iter()
            .map(|op| (op.id, OnceLock::new()))
            .collect()
    });
    // Every `Operation` lives in OPERATIONS; an unknown id means a hand-made Operation.
    let cell = all
        .get(op.id)
        .unwrap_or_else(|| panic!("`{}` is not in the operation table", op.id));
    cell.get_or_init(|| {
        let (input, input_schema) = compile(op.input_schema, "input", op);
        Validators {
            input,
            input_schema,
            cli_input: OnceLock::new(),
            output: OnceLock::new(),
        }
    })
}

/// Checks `input` against `op`'s input schema: the input the operation takes on every
/// surface (MCP, JSON-RPC, and the CLI once it has read its file inputs). The error is
/// `invalid_input`, naming every offending field, what it expects, in its message and in
/// `details.problems`.
pub fn validate_input(op: &Operation, input: &Value) -> Result<(), DispatchError> {
    let v = validators(op);
    refuse(op, problems(&v.input, &v.input_schema, input))
}

/// Checks the CLI's form of an input (file inputs such as `text_file` still unread) against
/// `op`'s CLI input schema, so that a bad argument is refused before any file or standard
/// input is read.
pub fn validate_cli_input(op: &Operation, input: &Value) -> Result<(), DispatchError> {
    let v = validators(op);
    let (validator, schema) = v
        .cli_input
        .get_or_init(|| compile(op.cli_input_schema, "CLI input", op));
    refuse(op, problems(validator, schema, input))
}

fn refuse(op: &Operation, problems: Vec<Value>) -> Result<(), DispatchError> {
    if problems.is_empty() {
        return Ok(());
    }
    let message = problems
        .iter()
        .map(|p| match p["field"].as_str() {
            Some(field) if !field.is_empty() => {
                let expected = p["expected"]
                    .as_str()
                    .map(|e| format!(" (expected {e})"))
                    .unwrap_or_default();
                format!(
                    "`{field}`: {}{expected}",
                    p["problem"].as_str().unwrap_or_default()
                )
            }
            _ => p["problem"].as_str().unwrap_or_default().to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(
        DispatchError::invalid_input(format!("invalid input for `{}`: {message}", op.title))
            .with_hint(
                Hint::new("{0} prints the accepted input")
                    .run(&operations::SCHEMA, json!({ "op": op.id })),
            )
            .with_details(json!({ "problems": problems })),
    )
}

/// Checks an output against `op`'s output schema; a failure is a defect (`internal`).
pub fn validate_output(op: &Operation, output: &Value) -> Result<(), DispatchError> {
    let validator = validators(op)
        .output
        .get_or_init(|| compile(op.output_schema, "output", op).0);
    let problems = problems(validator, &Value::Null, output);
    if problems.is_empty() {
        return Ok(());
    }
    Err(DispatchError::internal(format!(
        "the output of `{}` does not match its contract",
        op.title
    ))
    .with_details(json!({ "problems": problems })))
}

/// Longest value a problem quotes; longer ones are masked, so an 11 MB message that fails
/// validation does not come back in the error.
const QUOTED_MAX: usize = 200;

fn problems(validator: &Validator, schema: &Value, value: &Value) -> Vec<Value> {
    validator
        .iter_errors(value)
        .map(|err| {
            let path = err.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            let field = match (field.is_empty(), additional_property(&err.to_string())) {
                (true, Some(name)) => name,
                _ => field,
            };
            let mut problem = json!({ "field": field, "problem": problem_text(&err) });
            if let Some(expected) = schema
                .pointer(&format!("/properties/{}", path.trim_start_matches('/')))
                .filter(|_| !path.is_empty())
                .and_then(|field_schema| expected(schema, field_schema))
            {
                problem["expected"] = Value::String(expected);
            }
            problem
        })
        .collect()
}

fn problem_text(err: &ValidationError<'_>) -> String {
    let text = err.instance().as_str();
    if matches!(err.kind(), ValidationErrorKind::Pattern { .. })
        && text.is_some_and(|t| t.contains('\0'))
    {
        return "contains a NUL character (U+0000), which no text field accepts".to_owned();
    }
    if text.is_some_and(|t| t.len() > QUOTED_MAX) || err.instance().to_string().len() > QUOTED_MAX {
        return err.masked().to_string();
    }
    err.to_string()
}

/// What a field of an input schema accepts, in words: `a number greater than 0 and at most
/// 600`, `one of `a`, `b``, `non-empty text`.
fn expected(root: &Value, schema: &Value) -> Option<String> {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => root.pointer(reference.strip_prefix('#')?)?,
        None => schema,
    };
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let options: Vec<String> = options.iter().map(|o| format!("`{}`", text(o))).collect();
        return Some(format!("one of {}", options.join(", ")));
    }
    let bounds = |words: &mut Vec<String>| {
        for (key, word) in [
            ("minimum", "at least"),
            ("exclusiveMinimum", "greater than"),
            ("maximum", "at most"),
            ("exclusiveMaximum", "less than"),
        ] {
            if let Some(limit) = schema.get(key) {
                words.push(format!("{word} {limit}"));
            }
        }
    };
    let mut words = Vec::new();
    let noun = match schema.get("type").and_then(Value::as_str)? {
        "number" => {
            bounds(&mut words);
            "a number"
        }
        "integer" => {
            bounds(&mut words);
            "an integer"
        }
        "boolean" => "true or false",
        "string" => {
            if let Some(max) = schema.get("maxLength") {
                words.push(format!("of at most {max} characters"));
            }
            if schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) > 0 {
                "non-empty text"
            } else {
                "text"
            }
        }
        _ => return None,
    };
    Some(if words.is_empty() {
        noun.to_owned()
    } else {
        format!("{noun} {}", words.join(" and "))
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The offending name in jsonschema's "Additional properties are not allowed ('x' was
/// unexpected)", so an unknown field is named like any other.
fn additional_property(message: &str) -> Option<String> {
    let start = message.find("('")? + 2;
    let end = message[start..].find('\'')? + start;
    Some(message[start..end].to_owned())
}
