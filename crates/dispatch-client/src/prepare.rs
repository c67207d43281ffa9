//! Input preparation that only the calling process can do, driven by the contract's
//! `client_defaults` (e.g. the caller's current directory as `cwd`), on every surface.
//!
//! Reading files and standard input (`file_inputs`, `-`) is not here: it is the CLI's alone
//! (`dispatch_cli::input`), so an MCP call can never make this process read a file.

use dispatch_contract::{DispatchError, Operation};
use serde_json::Value;

/// Fills `op`'s client defaults that `input` (already validated) omits.
pub fn apply_client_defaults(op: &Operation, input: Value) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
    for (field, source) in op.client_defaults {
        if !fields.contains_key(*field) && *source == "current_dir" {
            let dir = std::env::current_dir().map_err(|err| {
                DispatchError::invalid_input(format!("`{field}`: no current directory: {err}"))
                    .with_hint(format!("pass `{field}` explicitly"))
            })?;
            fields.insert(
                (*field).to_owned(),
                Value::String(dir.display().to_string()),
            );
        }
    }
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use dispatch_contract::operations;
    use serde_json::json;

    use super::*;

    #[test]
    fn cwd_defaults_to_the_callers_directory() {
        let input =
            apply_client_defaults(&operations::NEW, json!({"name": "x"})).expect("prepared");
        let cwd = std::env::current_dir().expect("cwd").display().to_string();
        assert_eq!(input["cwd"], cwd);
        let given = apply_client_defaults(&operations::NEW, json!({"name": "x", "cwd": "/srv"}))
            .expect("prepared");
        assert_eq!(given["cwd"], "/srv");
    }

    #[test]
    fn file_inputs_and_dash_are_left_alone() {
        let input = json!({"lane": "a", "text": "-"});
        let prepared = apply_client_defaults(&operations::SEND, input.clone()).expect("prepared");
        assert_eq!(prepared, input, "`-` is a literal message outside the CLI");
    }
}
