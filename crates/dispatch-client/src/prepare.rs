//! Input preparation that only the calling process can do, driven by the contract:
//! `client_defaults` (e.g. the caller's current directory as `cwd`) and `file_inputs` (e.g.
//! `text_file` read into `text`, `-` meaning standard input).

use std::io::Read;

use dispatch_contract::{DispatchError, Operation};
use serde_json::{Map, Value};

/// Where `-` reads from; standard input outside tests.
pub trait Stdin {
    /// The whole of standard input.
    fn read_all(&mut self) -> std::io::Result<String>;
}

/// The process's standard input.
pub struct ProcessStdin;

impl Stdin for ProcessStdin {
    fn read_all(&mut self) -> std::io::Result<String> {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    }
}

fn read_source(field: &str, source: &str, stdin: &mut dyn Stdin) -> Result<String, DispatchError> {
    let read = if source == "-" {
        stdin.read_all()
    } else {
        std::fs::read_to_string(source)
    };
    read.map_err(|err| {
        let from = if source == "-" {
            "standard input".to_owned()
        } else {
            source.to_owned()
        };
        DispatchError::invalid_input(format!("`{field}`: cannot read {from}: {err}"))
    })
}

/// Applies `op`'s client defaults and file inputs to `input` (already validated).
pub fn prepare(
    op: &Operation,
    input: Value,
    stdin: &mut dyn Stdin,
) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
    for (field, source) in op.client_defaults {
        if !fields.contains_key(*field) && *source == "current_dir" {
            let dir = std::env::current_dir().map_err(|err| {
                DispatchError::invalid_input(format!("`{field}`: no current directory: {err}"))
                    .with_hint(format!("pass --{} explicitly", field.replace('_', "-")))
            })?;
            fields.insert(
                (*field).to_owned(),
                Value::String(dir.display().to_string()),
            );
        }
    }
    for (file_field, text_field) in op.file_inputs {
        read_file_input(&mut fields, file_field, text_field, stdin)?;
    }
    Ok(Value::Object(fields))
}

fn read_file_input(
    fields: &mut Map<String, Value>,
    file_field: &str,
    text_field: &str,
    stdin: &mut dyn Stdin,
) -> Result<(), DispatchError> {
    let file = fields.remove(file_field);
    let text_is_stdin = fields.get(text_field).and_then(Value::as_str) == Some("-");
    match (file, text_is_stdin) {
        (Some(_), _) if fields.contains_key(text_field) => Err(DispatchError::invalid_input(
            format!("give either `{text_field}` or `{file_field}`, not both"),
        )),
        (Some(Value::String(source)), _) => {
            let text = read_source(file_field, &source, stdin)?;
            fields.insert(text_field.to_owned(), Value::String(text));
            Ok(())
        }
        (Some(_), _) => Err(DispatchError::invalid_input(format!(
            "`{file_field}` must be a path"
        ))),
        (None, true) => {
            let text = read_source(text_field, "-", stdin)?;
            fields.insert(text_field.to_owned(), Value::String(text));
            Ok(())
        }
        (None, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use dispatch_contract::operations;
    use serde_json::json;

    use super::*;

    struct Fixed(&'static str);

    impl Stdin for Fixed {
        fn read_all(&mut self) -> std::io::Result<String> {
            Ok(self.0.to_owned())
        }
    }

    #[test]
    fn cwd_defaults_to_the_callers_directory() {
        let input =
            prepare(&operations::NEW, json!({"name": "x"}), &mut Fixed("")).expect("prepared");
        let cwd = std::env::current_dir().expect("cwd").display().to_string();
        assert_eq!(input["cwd"], cwd);
        let given = prepare(
            &operations::NEW,
            json!({"name": "x", "cwd": "/srv"}),
            &mut Fixed(""),
        )
        .expect("prepared");
        assert_eq!(given["cwd"], "/srv");
    }

    #[test]
    fn text_comes_from_a_file_or_standard_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("msg.txt");
        std::fs::write(&path, "from a file").expect("write");
        let input = json!({"lane": "a", "text_file": path.display().to_string()});
        let prepared = prepare(&operations::SEND, input, &mut Fixed("")).expect("prepared");
        assert_eq!(prepared, json!({"lane": "a", "text": "from a file"}));

        let piped = prepare(
            &operations::SEND,
            json!({"lane": "a", "text_file": "-"}),
            &mut Fixed("piped"),
        )
        .expect("prepared");
        assert_eq!(piped["text"], "piped");
        let dash = prepare(
            &operations::SEND,
            json!({"lane": "a", "text": "-"}),
            &mut Fixed("dash"),
        )
        .expect("prepared");
        assert_eq!(dash["text"], "dash");

        let both = prepare(
            &operations::SEND,
            json!({"lane": "a", "text": "x", "text_file": "-"}),
            &mut Fixed(""),
        );
        assert_eq!(
            both.expect_err("refused").code,
            dispatch_contract::ErrorCode::InvalidInput
        );
        let missing = prepare(
            &operations::SEND,
            json!({"lane": "a", "text_file": "/no/such/file"}),
            &mut Fixed(""),
        );
        assert!(missing.expect_err("refused").message.contains("text_file"));
    }
}
