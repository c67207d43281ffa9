//! The one place where inputs are checked against the contract's JSON Schema. Every surface
//! (CLI, MCP, raw RPC) reaches an operation through [`validate_input`].

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{Value, json};

use crate::error::DispatchError;
use crate::generated::operations::OPERATIONS;
use crate::operation::Operation;

struct Validators {
    input: Validator,
    output: Validator,
}

fn compile(schema: &str, what: &str, op: &Operation) -> Validator {
    // The schemas are generated from the contract and compiled by the freshness and schema
    // tests, so a failure here is a build defect, not user input.
    let schema: Value = serde_json::from_str(schema)
        .unwrap_or_else(|err| panic!("{what} schema of `{}` is not JSON: {err}", op.id));
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|err| panic!("{what} schema of `{}` does not compile: {err}", op.id))
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
    cell.get_or_init(|| Validators {
        input: compile(op.input_schema, "input", op),
        output: compile(op.output_schema, "output", op),
    })
}

/// Checks `input` against `op`'s input schema. The error is `invalid_input`, naming every
/// offending field in its message and in `details.problems`.
pub fn validate_input(op: &Operation, input: &Value) -> Result<(), DispatchError> {
    let problems = problems(&validators(op).input, input);
    if problems.is_empty() {
        return Ok(());
    }
    let message = problems
        .iter()
        .map(|p| match p["field"].as_str() {
            Some(field) if !field.is_empty() => {
                format!("`{field}`: {}", p["problem"].as_str().unwrap_or_default())
            }
            _ => p["problem"].as_str().unwrap_or_default().to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(
        DispatchError::invalid_input(format!("invalid input for `{}`: {message}", op.title))
            .with_hint(format!(
                "`dispatch schema {}` prints the accepted input",
                op.cli_path.join(" ")
            ))
            .with_details(json!({ "problems": problems })),
    )
}

/// Checks an output against `op`'s output schema; a failure is a defect (`internal`).
pub fn validate_output(op: &Operation, output: &Value) -> Result<(), DispatchError> {
    let problems = problems(&validators(op).output, output);
    if problems.is_empty() {
        return Ok(());
    }
    Err(DispatchError::internal(format!(
        "the output of `{}` does not match its contract",
        op.title
    ))
    .with_details(json!({ "problems": problems })))
}

fn problems(validator: &Validator, value: &Value) -> Vec<Value> {
    validator
        .iter_errors(value)
        .map(|err| {
            let path = err.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            let field = match (field.is_empty(), additional_property(&err.to_string())) {
                (true, Some(name)) => name,
                _ => field,
            };
            json!({ "field": field, "problem": err.to_string() })
        })
        .collect()
}

/// The offending name in jsonschema's "Additional properties are not allowed ('x' was
/// unexpected)", so an unknown field is named like any other.
fn additional_property(message: &str) -> Option<String> {
    let start = message.find("('")? + 2;
    let end = message[start..].find('\'')? + start;
    Some(message[start..end].to_owned())
}
