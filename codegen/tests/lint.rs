//! The lint rules on `x-dispatch.file_inputs`, `client_defaults`, `bounded_by`, `lane_field`,
//! `streaming` and free-text fields, each shown failing on a copy of the real contract with one mistake in it;
//! and the `x-dispatch` keys of `contract/README.md` against the ones the loader accepts.

use std::path::Path;

use dispatch_codegen::{Contract, check, workspace_root};
use serde_json::{Value, json};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The lint's answer for the real contract with `op`'s file changed by `edit`.
fn lint_with(op: &str, edit: impl FnOnce(&mut Value)) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let contract = dir.path().join("contract");
    copy_dir(&workspace_root().join("contract"), &contract);
    let file = contract.join("ops").join(format!("{op}.json"));
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    edit(&mut doc);
    std::fs::write(&file, doc.to_string()).expect("write");
    let loaded = Contract::load(&contract).map_err(|e| format!("{e:#}"))?;
    check(&loaded).map_err(|e| format!("{e:#}"))
}

fn assert_refused(result: Result<(), String>, words: &str) {
    match result {
        Ok(()) => panic!("the lint accepted it; expected an error with `{words}`"),
        Err(message) => assert!(message.contains(words), "{message}"),
    }
}

#[test]
fn the_real_contract_passes() {
    lint_with("watch", |_| {}).expect("the contract lints clean");
}

#[test]
fn bounded_by_names_a_numeric_field_with_a_maximum_and_a_default() {
    assert_refused(
        lint_with("watch", |d| d["x-dispatch"]["bounded_by"] = json!("nope")),
        "`bounded_by` names `nope`",
    );
    assert_refused(
        lint_with("watch", |d| d["x-dispatch"]["bounded_by"] = json!("until")),
        "must be a number or an integer",
    );
    assert_refused(
        lint_with("watch", |d| {
            let timeout = &mut d["$defs"]["input"]["properties"]["timeout"];
            timeout.as_object_mut().expect("object").remove("maximum");
        }),
        "numeric `maximum` and `default`",
    );
}

#[test]
fn file_inputs_name_two_optional_string_fields() {
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]["file_inputs"] = json!({"text_file": "nope"});
        }),
        "must name two input fields",
    );
    assert_refused(
        lint_with("send", |d| {
            d["$defs"]["input"]["required"] = json!(["lane", "text"])
        }),
        "neither field may be required",
    );
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]["file_inputs"] = json!({"text_file": "steer"});
        }),
        "both fields must be strings",
    );
}

#[test]
fn client_defaults_come_from_the_current_directory_or_the_environment() {
    assert_refused(
        lint_with("subscribe", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"caller": "home_dir"});
        }),
        "must be `current_dir` or `env:<VAR>`",
    );
    assert_refused(
        lint_with("subscribe", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"caller": "env:codex thread"});
        }),
        "must be `current_dir` or `env:<VAR>`",
    );
    assert_refused(
        lint_with("subscribe", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"nobody": "env:CODEX_THREAD_ID"});
        }),
        "client default `nobody` is not an input field",
    );
    // The caller's context is no argument: not required, not a positional, not CLI-only.
    assert_refused(
        lint_with("inbox_list", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"limit": "env:CODEX_THREAD_ID"});
        }),
        "must be a string field that is not required",
    );
    assert_refused(
        lint_with("inbox_list", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"lane": "env:CODEX_THREAD_ID"});
            d["$defs"]["input"]["required"] = json!(["lane"]);
        }),
        "must be a string field that is not required",
    );
    assert_refused(
        lint_with("inbox_list", |d| {
            d["x-dispatch"]["client_defaults"] = json!({"lane": "env:CODEX_THREAD_ID"});
            d["x-dispatch"]["cli"]["positionals"] = json!(["lane"]);
        }),
        "cannot be a positional, a CLI-only input or a file input",
    );
    assert_refused(
        lint_with("subscribe", |d| {
            d["x-dispatch"]["cli_only_inputs"] = json!(["caller"]);
        }),
        "cannot be a positional, a CLI-only input or a file input",
    );
    assert_refused(
        lint_with("subscribe", |d| {
            let text = d["description"].as_str().unwrap_or_default().to_owned();
            d["description"] = json!(format!("{text} Pass `{{arg:caller}}`."));
        }),
        "`{arg:caller}` is filled from the caller's environment, not an argument",
    );
}

#[test]
fn free_text_fields_refuse_nul() {
    assert_refused(
        lint_with("search", |d| {
            let query = &mut d["$defs"]["input"]["properties"]["query"];
            query.as_object_mut().expect("object").remove("pattern");
        }),
        "input field `query` takes free text",
    );
    assert_refused(
        lint_with("search", |d| {
            d["$defs"]["input"]["properties"]["query"]["pattern"] = json!("^.*$");
        }),
        "input field `query` takes free text",
    );
}

#[test]
fn operations_that_write_history_name_their_lane() {
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]
                .as_object_mut()
                .expect("object")
                .remove("lane_field");
        }),
        "it writes history, so `x-dispatch.lane_field` must name",
    );
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]["lane_field"] = json!({"selector": "steer"})
        }),
        "must be a required string field",
    );
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]["lane_field"] = json!({"selector": "nope"})
        }),
        "must be a required string field",
    );
    assert_refused(
        lint_with("respond", |d| {
            d["x-dispatch"]["lane_field"] = json!({"request": "decision"})
        }),
        "must be a required integer field",
    );
    assert_refused(
        lint_with("new", |d| {
            d["x-dispatch"]["lane_field"] = json!({"created": "warnings"})
        }),
        "must be a required output object with a `ref`",
    );
    // An unknown kind is refused when the file is loaded.
    assert_refused(
        lint_with("send", |d| {
            d["x-dispatch"]["lane_field"] = json!({"thread": "lane"})
        }),
        "bad `x-dispatch`",
    );
}

#[test]
fn streaming_names_fields_of_the_right_types() {
    assert_refused(
        lint_with("watch", |d| {
            d["x-dispatch"]["streaming"]["switch"] = json!("until")
        }),
        "`streaming.switch` `until` must be a boolean input field",
    );
    assert_refused(
        lint_with("watch", |d| {
            d["x-dispatch"]["streaming"]["events"] = json!("cursor")
        }),
        "`streaming.events` `cursor` must be an array output field",
    );
    assert_refused(
        lint_with("watch", |d| {
            d["x-dispatch"]
                .as_object_mut()
                .expect("object")
                .remove("bounded_by");
        }),
        "a streaming operation needs `bounded_by`",
    );
}

/// The `x-dispatch` table of `contract/README.md` documents exactly the keys the loader
/// accepts: a key added to the loader without a line there (or a line left for a key that is
/// gone) fails here.
#[test]
fn the_readme_documents_every_x_dispatch_key() {
    let readme = std::fs::read_to_string(workspace_root().join("contract/README.md"))
        .expect("contract/README.md");
    let section = readme
        .split("### `x-dispatch`")
        .nth(1)
        .and_then(|rest| rest.split("\n#").next())
        .expect("an `x-dispatch` section");
    let documented: std::collections::BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    let accepted: std::collections::BTreeSet<String> = dispatch_codegen::model::x_dispatch_keys()
        .into_iter()
        .collect();
    assert!(accepted.contains("cli.path"), "{accepted:?}");
    assert_eq!(
        documented, accepted,
        "contract/README.md's `x-dispatch` table and the loader disagree"
    );
}

#[test]
fn references_are_written_only_in_an_operations_description() {
    assert_refused(
        lint_with("send", |d| {
            d["$defs"]["input"]["properties"]["steer"]["description"] =
                json!("The same as `{arg:mode}` `steer`.");
        }),
        "rendered in the operation's `description` only",
    );
    assert_refused(
        lint_with("send", |d| {
            d["$defs"]["output"]["properties"]["receipt"]["description"] =
                json!("`{op:delivery_get}` follows it.");
        }),
        "rendered in the operation's `description` only",
    );
}

#[test]
fn encoded_outputs_name_arrays_of_a_shared_definition() {
    lint_with("list", |_| {}).expect("`list`'s lanes are encoded outputs");
    assert_refused(
        lint_with("list", |d| {
            d["x-dispatch"]["encoded_outputs"] = json!(["nope"]);
        }),
        "`encoded_outputs` names `nope`",
    );
    assert_refused(
        lint_with("list", |d| {
            d["x-dispatch"]["encoded_outputs"] = json!(["next_cursor"]);
        }),
        "`encoded_outputs` names `next_cursor`",
    );
    assert_refused(
        lint_with("list", |d| {
            d["x-dispatch"]["encoded_outputs"] = json!(["threads"]);
        }),
        "`encoded_outputs` names `threads`",
    );
}
