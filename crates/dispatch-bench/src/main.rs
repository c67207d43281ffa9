//! `dispatch-bench`: the benchmarks behind `cargo xtask bench`, in a crate of their own so that
//! the code generator (`cargo xtask gen`) builds from `dispatch-codegen` alone, even when a
//! generated file is broken.
//!
//! - `dispatch-bench [--runs N] [--only NAME[,NAME...]]`: build the release binaries and print
//!   the benchmark figures (see `bench.rs`); `cargo xtask bench` runs it in release mode.
//! - `dispatch-bench app-server`: not for people; the scripted fake Codex App Server
//!   (`fake-app-server`) that the ingest and `list` benchmarks point `DISPATCH_CODEX_BIN` at.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["app-server", ..] => fake_app_server::run(),
        rest => bench::run(&root(), rest),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dispatch-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root, two levels above this crate.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
