//! Projects the authored contract (`contract/`) into Rust: the types (typify), the operation
//! table with per-operation contract hashes and `Request::lane` accessors, the `Dispatch` and
//! `ClientOps` traits, the error codes, the clap command tree with the dispatch to each
//! output's rendering, the MCP tool descriptors and the jsonrpsee registration.
//!
//! `cargo xtask gen` calls [`generate`] in [`Mode::Write`]; `cargo xtask gen --check` and the
//! freshness tests call it in [`Mode::Check`], which fails naming every stale file.

mod emit;
mod gen_cli;
mod gen_codex;
mod gen_contract;
mod gen_hints;
mod gen_mcp;
mod gen_rpc;
mod gen_types;
mod lint;
mod lint_surfaces;
pub mod model;
mod resolve;

use std::path::{Path, PathBuf};

pub use emit::Mode;
pub use lint::check;
pub use model::Contract;

/// The files `generate` writes, relative to the workspace root.
pub mod outputs {
    /// Rust types of every operation's input and output, and of the shared definitions.
    pub const TYPES: &str = "crates/dispatch-contract/src/generated/types.rs";
    /// The operation table and the request markers.
    pub const OPERATIONS: &str = "crates/dispatch-contract/src/generated/operations.rs";
    /// The `Dispatch` and `ClientOps` traits.
    pub const API: &str = "crates/dispatch-contract/src/generated/api.rs";
    /// Stable error codes.
    pub const ERRORS: &str = "crates/dispatch-contract/src/generated/errors.rs";
    /// The jsonrpsee registration.
    pub const RPC: &str = "crates/dispatch-rpc/src/generated/rpc.rs";
    /// The clap command tree and the dispatch to each output's `Render` impl.
    pub const CLI: &str = "crates/dispatch-cli/src/generated/cli.rs";
    /// MCP tool descriptors.
    pub const MCP: &str = "crates/dispatch-mcp/src/generated/tools.rs";
    /// The structured default hint of every error code.
    pub const HINTS: &str = "crates/dispatch-contract/src/generated/hints.rs";
    /// Serde types and method bindings of the pinned Codex App Server protocol.
    pub const CODEX_PROTOCOL: &str = "crates/codex-app-server/src/generated/protocol.rs";
}

/// What a generation run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files that were rewritten ([`Mode::Write`]) or are stale ([`Mode::Check`]).
    pub changed: Vec<PathBuf>,
    /// Files that were already up to date.
    pub unchanged: Vec<PathBuf>,
}

/// Loads `contract/` under `root`, lints it, and renders every generated file: pairs of the
/// path relative to `root` and the file's full text.
pub fn render(root: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut files = render_contract(&root.join("contract"))?;
    let codex = outputs::CODEX_PROTOCOL;
    files.push((codex, emit::format(codex, &gen_codex::generate(root)?)?));
    Ok(files)
}

/// Loads the operation contract in `dir` (`ops/`, `defs/`, `errors.json`, `cli.json`), lints
/// it, and renders the files generated from it (every output but the Codex protocol types).
/// The codegen tests run it on small fixture contracts.
pub fn render_contract(dir: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let contract = Contract::load(dir)?;
    lint::check(&contract)?;
    let files = [
        (outputs::TYPES, gen_types::generate(&contract)?),
        (outputs::OPERATIONS, gen_contract::operations(&contract)),
        (outputs::API, gen_contract::api(&contract)),
        (outputs::ERRORS, gen_contract::errors(&contract)),
        (outputs::RPC, gen_rpc::generate(&contract)),
        (outputs::CLI, gen_cli::generate(&contract)),
        (outputs::MCP, gen_mcp::generate(&contract)),
        (outputs::HINTS, gen_hints::generate(&contract)),
    ];
    files
        .into_iter()
        .map(|(rel, tokens)| Ok((rel, emit::format(rel, &tokens)?)))
        .collect()
}

/// Renders every generated file and writes (or, in check mode, compares) it under `root`.
pub fn generate(root: &Path, mode: Mode) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (rel, contents) in render(root)? {
        let path = root.join(rel);
        if emit::ensure_file(&path, &contents, mode)? {
            report.changed.push(path);
        } else {
            report.unchanged.push(path);
        }
    }
    Ok(report)
}

/// Runs [`generate`] in check mode and fails with the stale files named and the fix.
///
/// Used by each generated crate's freshness test, so plain `cargo test` catches drift.
pub fn assert_fresh(root: &Path) {
    match generate(root, Mode::Check) {
        Ok(report) if report.changed.is_empty() => {}
        Ok(report) => {
            let names: Vec<String> = report
                .changed
                .iter()
                .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
                .collect();
            panic!(
                "generated files are not up to date: {}\nrun `cargo xtask gen` and commit the result",
                names.join(", ")
            );
        }
        Err(err) => panic!("contract generation failed: {err:#}"),
    }
}

/// The workspace root, for tests running inside one of its crates.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
