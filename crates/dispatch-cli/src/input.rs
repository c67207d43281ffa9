//! The CLI's file inputs, driven by the contract's `file_inputs`: `--text-file PATH` is read
//! into `text`, and `-` (as the file or as the text itself) reads standard input. Only the CLI
//! does this: the file fields are not part of the input other surfaces accept, and `-` is a
//! literal message on MCP and JSON-RPC.
//!
//! Local paths the daemon is given (`image`, `worktree_path`: inputs only the CLI offers) are
//! made absolute against the caller's current directory here, and images are checked
//! (format, size, count) before the daemon is asked, which checks them again.

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

fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
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
        DispatchError::invalid_input(format!("`{}`: cannot read {from}: {err}", flag(field)))
            .with_hint("give a readable UTF-8 text file, or `-` to read standard input")
    })
}

/// Input fields that name local paths for the daemon (CLI-only on every operation that has
/// them): a relative path is made absolute against the current directory.
const LOCAL_PATH_FIELDS: [&str; 2] = ["image", "worktree_path"];

/// Makes the local paths of `input` absolute and checks its images.
pub fn resolve_local_paths(input: Value) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
    for field in LOCAL_PATH_FIELDS {
        let Some(value) = fields.get_mut(field) else {
            continue;
        };
        match value {
            Value::String(path) => *path = absolute(field, path)?,
            Value::Array(paths) => {
                for path in paths.iter_mut() {
                    if let Value::String(p) = path {
                        *p = absolute(field, p)?;
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Array(paths)) = fields.get("image") {
        let paths: Vec<String> = paths
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        dispatch_daemon::images::inspect(&paths).map_err(|mut err| {
            err.message = err.message.replacen("`image`", "`--image`", 1);
            err
        })?;
    }
    Ok(Value::Object(fields))
}

fn absolute(field: &str, path: &str) -> Result<String, DispatchError> {
    let path = std::path::Path::new(path);
    if path.is_absolute() {
        return Ok(path.display().to_string());
    }
    let dir = std::env::current_dir().map_err(|err| {
        DispatchError::invalid_input(format!(
            "`{}`: no current directory to resolve {} against: {err}",
            flag(field),
            path.display()
        ))
    })?;
    Ok(dir.join(path).display().to_string())
}

/// Reads `op`'s file inputs of `input` (the CLI's form, already validated) into their text
/// fields; the result is the input the operation takes.
pub fn read_file_inputs(
    op: &Operation,
    input: Value,
    stdin: &mut dyn Stdin,
) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
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
        (Some(_), _) if fields.contains_key(text_field) => {
            Err(DispatchError::invalid_input(format!(
                "give either `{}` or `{}`, not both",
                text_field.to_uppercase(),
                flag(file_field)
            )))
        }
        (Some(Value::String(source)), _) => {
            let text = read_source(file_field, &source, stdin)?;
            fields.insert(text_field.to_owned(), Value::String(text));
            Ok(())
        }
        (Some(_), _) => Err(DispatchError::invalid_input(format!(
            "`{}` must be a path",
            flag(file_field)
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
    use dispatch_contract::{ErrorCode, operations};
    use serde_json::json;

    use super::*;

    struct Fixed(&'static str);

    impl Stdin for Fixed {
        fn read_all(&mut self) -> std::io::Result<String> {
            Ok(self.0.to_owned())
        }
    }

    #[test]
    fn text_comes_from_a_file_or_standard_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("msg.txt");
        std::fs::write(&path, "from a file").expect("write");
        let input = json!({"lane": "a", "text_file": path.display().to_string()});
        let prepared = read_file_inputs(&operations::SEND, input, &mut Fixed("")).expect("read");
        assert_eq!(prepared, json!({"lane": "a", "text": "from a file"}));

        let piped = read_file_inputs(
            &operations::SEND,
            json!({"lane": "a", "text_file": "-"}),
            &mut Fixed("piped"),
        )
        .expect("read");
        assert_eq!(piped["text"], "piped");
        let dash = read_file_inputs(
            &operations::SEND,
            json!({"lane": "a", "text": "-"}),
            &mut Fixed("dash"),
        )
        .expect("read");
        assert_eq!(dash["text"], "dash");

        let both = read_file_inputs(
            &operations::SEND,
            json!({"lane": "a", "text": "x", "text_file": "-"}),
            &mut Fixed(""),
        );
        assert_eq!(both.expect_err("refused").code, ErrorCode::InvalidInput);
        let missing = read_file_inputs(
            &operations::SEND,
            json!({"lane": "a", "text_file": "/no/such/file"}),
            &mut Fixed(""),
        );
        assert!(
            missing
                .expect_err("refused")
                .message
                .contains("--text-file")
        );
    }
}
