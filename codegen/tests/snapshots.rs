//! Snapshots of what the generators make of a small fixture contract
//! (`tests/fixtures/contract/`: a grouped daemon write that names its lane by a selector, with
//! a file input and a client default; a write whose lane is its request's; a bounded streaming
//! read; a client-side read), so a change to a generator shows up as a short reviewed diff.
//! The real contract's generated files are checked for freshness, not snapshotted: they are
//! committed, and reviewed as such.

use std::path::Path;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contract")
}

#[test]
fn the_generators_on_the_fixture_contract() {
    let files = dispatch_codegen::render_contract(&fixture()).expect("the fixture renders");
    assert_eq!(files.len(), 8, "a generated file was added or removed");
    for (path, contents) in files {
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        insta::assert_snapshot!(format!("fixture__{name}"), contents);
    }
}

/// `cargo xtask gen --check` as a test: the committed generated files are what the real
/// contract produces now.
#[test]
fn generated_files_are_fresh() {
    dispatch_codegen::assert_fresh(&dispatch_codegen::workspace_root());
}
