//! Input preparation that only the calling process can do, driven by the contract's
//! `client_defaults`, on every surface: the caller's current directory as `new`'s `cwd`, and
//! the caller's context from its environment (`CODEX_THREAD_ID` as `caller`: who is calling,
//! which `self` means).
//!
//! Reading files and standard input (`file_inputs`, `-`) is not here: it is the CLI's alone
//! (`dispatch_cli::input`), so an MCP call can never make this process read a file.

use dispatch_contract::{ClientDefault, DispatchError, Operation};
use serde_json::Value;

/// Fills `op`'s client defaults that `input` (already validated) omits. A context field whose
/// variable is unset or empty stays absent: the operation says what it needed it for.
pub fn apply_client_defaults(op: &Operation, input: Value) -> Result<Value, DispatchError> {
    apply_with(op, input, |var| std::env::var(var).ok())
}

/// [`apply_client_defaults`] with the environment read through `env`.
fn apply_with(
    op: &Operation,
    input: Value,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
    for (field, source) in op.client_defaults {
        if fields.contains_key(*field) {
            continue;
        }
        match source {
            ClientDefault::CurrentDir => {
                let dir = std::env::current_dir().map_err(|err| {
                    DispatchError::invalid_input(format!("`{field}`: no current directory: {err}"))
                        .with_hint(format!("pass `{field}` explicitly"))
                })?;
                fields.insert(
                    (*field).to_owned(),
                    Value::String(dir.display().to_string()),
                );
            }
            ClientDefault::Env(var) => {
                if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                    fields.insert((*field).to_owned(), Value::String(value));
                }
            }
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
    fn the_caller_comes_from_the_environment() {
        let env = |var: &str| (var == "CODEX_THREAD_ID").then(|| "thread-1".to_owned());
        let input =
            apply_with(&operations::SUBSCRIBE, json!({"target": "a"}), env).expect("prepared");
        assert_eq!(input["caller"], "thread-1");
        let unset =
            apply_with(&operations::SUBSCRIBE, json!({"target": "a"}), |_| None).expect("prepared");
        assert!(unset.get("caller").is_none(), "{unset}");
        let empty = apply_with(&operations::SUBSCRIBE, json!({"target": "a"}), |_| {
            Some(String::new())
        })
        .expect("prepared");
        assert!(
            empty.get("caller").is_none(),
            "an empty variable is no caller: {empty}"
        );
    }

    #[test]
    fn file_inputs_and_dash_are_left_alone() {
        let input = json!({"lane": "a", "text": "-"});
        let prepared = apply_client_defaults(&operations::SEND, input.clone()).expect("prepared");
        assert_eq!(prepared, input, "`-` is a literal message outside the CLI");
    }
}
