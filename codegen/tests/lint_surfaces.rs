//! The lint rules on what each surface shows (`surfaces`, `cli_only_inputs`,
//! `surface_descriptions`, `model_work`, `{op:..}` references, error hints and their `run`),
//! each shown failing on a copy of the real contract with one mistake in it.

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

/// The loader's and the lint's answer for the real contract with `file` (relative to
/// `contract/`) changed by `edit`.
fn lint_with(file: &str, edit: impl FnOnce(&mut Value)) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let contract = dir.path().join("contract");
    copy_dir(&workspace_root().join("contract"), &contract);
    let path = contract.join(file);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut doc);
    std::fs::write(&path, doc.to_string()).expect("write");
    let loaded = Contract::load(&contract).map_err(|e| format!("{e:#}"))?;
    check(&loaded).map_err(|e| format!("{e:#}"))
}

fn assert_refused(result: Result<(), String>, words: &str) {
    match result {
        Ok(()) => panic!("the lint accepted it; expected an error with `{words}`"),
        Err(message) => assert!(message.contains(words), "{message}"),
    }
}

fn error_entry<'a>(doc: &'a mut Value, code: &str) -> &'a mut Value {
    doc["codes"]
        .as_array_mut()
        .expect("codes")
        .iter_mut()
        .find(|e| e["code"] == code)
        .expect("the code exists")
}

#[test]
fn shared_text_names_no_cli_flag_command_or_mcp_tool() {
    assert_refused(
        lint_with("ops/list.json", |d| {
            d["description"] = json!("List lanes; pass --all for archived ones.");
        }),
        "names --all",
    );
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["description"] = json!("One lane; `dispatch list` shows them all.");
        }),
        "names dispatch list",
    );
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["description"] = json!("One lane; `dispatch_list` shows them all.");
        }),
        "names dispatch_list",
    );
    assert_refused(
        lint_with("ops/send.json", |d| {
            d["$defs"]["input"]["properties"]["steer"]["description"] =
                json!("Like --steer on the command line.");
        }),
        "the description of input `steer`",
    );
}

#[test]
fn each_surface_addition_speaks_its_surface() {
    assert_refused(
        lint_with("ops/watch.json", |d| {
            d["x-dispatch"]["surface_descriptions"]["mcp"] = json!("Like `dispatch watch --json`.");
        }),
        "surface_descriptions.mcp",
    );
    assert_refused(
        lint_with("ops/watch.json", |d| {
            d["x-dispatch"]["surface_descriptions"]["cli"] = json!("Same as `dispatch_watch`.");
        }),
        "surface_descriptions.cli",
    );
    // A CLI-only operation's own text may name its flags.
    lint_with("ops/assets.json", |d| {
        d["description"] = json!("With --out DIR, writes them.");
    })
    .expect("CLI-only text may name flags");
}

#[test]
fn references_name_operations_and_fields_the_surface_offers() {
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["description"] = json!("See {op:nope}.")
        }),
        "`{op:nope}` names no operation",
    );
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["description"] = json!("See {op:assets}.")
        }),
        "not offered on the mcp surface",
    );
    assert_refused(
        lint_with("ops/watch.json", |d| {
            d["description"] = json!("See {arg:stream}.")
        }),
        "`{arg:stream}` is CLI-only",
    );
    assert_refused(
        lint_with("ops/get.json", |d| d["description"] = json!("See {nope}.")),
        "write `{op:<id>}` or `{arg:<field>}`",
    );
}

#[test]
fn surfaces_and_cli_only_inputs_are_consistent() {
    assert_refused(
        lint_with("ops/daemon_log.json", |d| {
            d["x-dispatch"]["surfaces"] = json!(["mcp"])
        }),
        "must include \"cli\"",
    );
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["x-dispatch"]["surfaces"] = json!(["cli", "web"])
        }),
        "bad `x-dispatch`",
    );
    assert_refused(
        lint_with("ops/watch.json", |d| {
            d["x-dispatch"]["cli_only_inputs"] = json!(["nope"]);
        }),
        "`cli_only_inputs` names `nope`",
    );
    assert_refused(
        lint_with("ops/watch.json", |d| {
            d["x-dispatch"]["cli_only_inputs"] = json!(["lane"]);
        }),
        "cannot be required",
    );
    assert_refused(
        lint_with("ops/get.json", |d| {
            d["x-dispatch"]["model_work"] = json!(["starts"])
        }),
        "a read operation cannot start or end",
    );
}

#[test]
fn error_hints_are_neutral_and_their_suggestions_exist() {
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "not_found")["hint"] = json!("`dispatch list --all` shows them");
        }),
        "the hint of `not_found`",
    );
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "not_found")["run"] = json!([{ "op": "nope" }]);
        }),
        "unknown operation `nope`",
    );
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "not_found")["run"] =
                json!([{ "op": "list", "args": { "every": true } }]);
        }),
        "`every` is not an input field of `list`",
    );
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "not_found")["run"] =
                json!([{ "op": "watch", "args": { "lane": "x", "stream": true } }]);
        }),
        "`stream` of `watch` is CLI-only",
    );
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "not_found")["hint"] = json!("{0} and {1}");
        }),
        "`{1}` has no `run` entry",
    );
    assert_refused(
        lint_with("errors.json", |d| {
            error_entry(d, "lane_archived")["hint"] = json!("it is archived");
        }),
        "`run` entry 0 has no `{0}`",
    );
}

#[test]
fn every_mcp_operation_names_a_declared_toolset_and_only_those() {
    assert_refused(
        lint_with("ops/fork.json", |d| {
            d["x-dispatch"]
                .as_object_mut()
                .expect("object")
                .remove("mcp_toolset");
        }),
        "needs `mcp_toolset`, one of: account, lanes",
    );
    assert_refused(
        lint_with("ops/fork.json", |d| {
            d["x-dispatch"]["mcp_toolset"] = json!("nope")
        }),
        "`mcp_toolset` names `nope`, which contract/mcp.json does not declare",
    );
    assert_refused(
        lint_with("ops/down.json", |d| {
            d["x-dispatch"]["mcp_toolset"] = json!("lanes")
        }),
        "but MCP does not offer the operation",
    );
    assert_refused(
        lint_with("mcp.json", |d| {
            d["toolsets"]
                .as_array_mut()
                .expect("toolsets")
                .push(json!({"name": "spare", "default": false, "description": "Nothing yet"}));
        }),
        "toolset `spare` has no operation",
    );
    assert_refused(
        lint_with("mcp.json", |d| d["toolsets"][1]["name"] = json!("lanes")),
        "toolset `lanes` is listed twice",
    );
    assert_refused(
        lint_with("mcp.json", |d| d["toolsets"][0]["name"] = json!("all")),
        "`all` cannot name a toolset",
    );
    assert_refused(
        lint_with("mcp.json", |d| {
            for set in d["toolsets"].as_array_mut().expect("toolsets") {
                set["default"] = json!(false);
            }
        }),
        "at least one toolset must be a default",
    );
    assert_refused(
        lint_with("mcp.json", |d| d["toolsets"][0]["size"] = json!(1)),
        "unknown field `size`",
    );
}
