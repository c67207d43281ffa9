//! Launch packets, driven by the contract's `packet_inputs`: `new --packet DIR` reads the
//! directory's known files (`dispatch.toml`, `goal.md`, `prompt.md`, `developer.md`,
//! `base.md`, `output.schema.json`) into the `launch_packet` wire field, with each file's size
//! and SHA-256; other files are listed, never read. Only the CLI reads packets: the daemon
//! places the content as its own layer (`packet:DIR`), and MCP takes no packet.

use std::io::Read;
use std::path::Path;

use dispatch_contract::{DispatchError, Operation};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The files a packet may hold, and the packet field each fills.
const FILES: &[(&str, &str)] = &[
    ("dispatch.toml", "settings"),
    ("goal.md", "goal"),
    ("prompt.md", "text"),
    ("developer.md", "developer_instructions"),
    ("base.md", "base_instructions"),
    ("output.schema.json", "output_schema_json"),
];

/// The most one packet file may hold.
const MAX_FILE: u64 = 1024 * 1024;

/// Reads `op`'s packet inputs of `input` (the CLI's form, already validated) into their
/// packet fields.
pub fn read_packet_inputs(op: &Operation, input: Value) -> Result<Value, DispatchError> {
    let Value::Object(mut fields) = input else {
        return Ok(input);
    };
    for (dir_field, packet_field) in op.packet_inputs {
        let Some(dir) = fields.remove(*dir_field) else {
            continue;
        };
        let flag = format!("--{}", dir_field.replace('_', "-"));
        let Some(dir) = dir.as_str() else {
            return Err(DispatchError::invalid_input(format!(
                "`{flag}` must be a directory"
            )));
        };
        fields.insert(
            (*packet_field).to_owned(),
            read_packet(Path::new(dir), &flag)?,
        );
    }
    Ok(Value::Object(fields))
}

fn read_packet(dir: &Path, flag: &str) -> Result<Value, DispatchError> {
    let unreadable = |what: String| {
        DispatchError::invalid_input(format!("`{flag}`: {what}")).with_hint(
            "give a packet directory holding dispatch.toml, goal.md, prompt.md, developer.md, \
             base.md or output.schema.json",
        )
    };
    let dir = std::fs::canonicalize(dir)
        .map_err(|err| unreadable(format!("cannot read {}: {err}", dir.display())))?;
    let entries = std::fs::read_dir(&dir)
        .map_err(|err| unreadable(format!("cannot read {}: {err}", dir.display())))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut packet = Map::new();
    packet.insert("dir".to_owned(), json!(dir.display().to_string()));
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for name in names {
        let Some((_, field)) = FILES.iter().find(|(file, _)| *file == name) else {
            if ignored.len() < 64 {
                ignored.push(json!(name));
            }
            continue;
        };
        let path = dir.join(&name);
        let text = read_text(&path).map_err(unreadable)?;
        let sha: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        files.push(json!({
            "path": path.display().to_string(),
            "size": text.len(),
            "sha256": sha,
            "key": field,
        }));
        packet.insert((*field).to_owned(), json!(text));
    }
    if files.is_empty() {
        return Err(unreadable(format!(
            "{} holds none of the packet files",
            dir.display()
        )));
    }
    packet.insert("files".to_owned(), Value::Array(files));
    packet.insert("ignored".to_owned(), Value::Array(ignored));
    Ok(Value::Object(packet))
}

/// A regular file of at most [`MAX_FILE`] bytes of UTF-8, not followed through a link.
fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read {} as UTF-8 text: {err}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use dispatch_contract::operations;

    use super::*;

    #[test]
    fn a_packet_is_read_into_its_fields_and_unknown_files_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prompt.md"), "do it").expect("write");
        std::fs::write(dir.path().join("developer.md"), "be brief").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "secret").expect("write");
        let input = json!({ "name": "x", "packet": dir.path().display().to_string() });
        let read = read_packet_inputs(&operations::NEW, input).expect("read");
        let packet = &read["launch_packet"];
        assert!(read.get("packet").is_none(), "{read}");
        assert_eq!(packet["text"], "do it");
        assert_eq!(packet["developer_instructions"], "be brief");
        assert_eq!(packet["ignored"], json!(["notes.txt"]));
        assert_eq!(packet["files"].as_array().map(Vec::len), Some(2));
        assert!(!packet.to_string().contains("secret"), "{packet}");
        dispatch_contract::validate_input(&operations::NEW, &read).expect("a valid wire input");
    }

    #[test]
    fn a_missing_or_empty_packet_is_invalid_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        for input in [
            json!({ "name": "x", "packet": "/no/such/dir" }),
            json!({ "name": "x", "packet": dir.path().display().to_string() }),
        ] {
            let err = read_packet_inputs(&operations::NEW, input).expect_err("refused");
            assert_eq!(err.code, dispatch_contract::ErrorCode::InvalidInput);
            assert!(err.message.contains("`--packet`"), "{}", err.message);
        }
    }
}
