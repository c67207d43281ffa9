//! Snapshots of every generated file, rendered from the contract in memory: a change to the
//! contract or the generators shows up as a reviewed snapshot diff.

#[test]
fn every_generated_file_matches_its_snapshot() {
    let root = dispatch_codegen::workspace_root();
    let files = dispatch_codegen::render(&root).expect("the contract renders");
    assert_eq!(files.len(), 9, "a generated file was added or removed");
    for (path, contents) in files {
        let name = path.replace('/', "__");
        insta::assert_snapshot!(name, contents);
    }
}

/// `cargo xtask gen --check` as a test: the committed generated files are what the contract
/// produces now.
#[test]
fn generated_files_are_fresh() {
    dispatch_codegen::assert_fresh(&dispatch_codegen::workspace_root());
}
