//! `cargo xtask`: the commands contributors run.
//!
//! - `cargo xtask gen [--check]`: project `contract/` into the generated Rust files; with
//!   `--check`, change nothing and fail naming every stale file.
//! - `cargo xtask bench [--runs N] [--only NAME[,NAME...]]`: build release binaries and print
//!   the benchmark figures (see `bench.rs`).
//! - `xtask app-server`: not for people; the scripted fake Codex App Server the ingest and
//!   `list` benchmarks point `DISPATCH_CODEX_BIN` at (see `fake_app_server.rs`).

mod bench;
mod fake_app_server;

use std::path::PathBuf;
use std::process::ExitCode;

use dispatch_codegen::{Mode, generate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["gen"] => run_gen(Mode::Write),
        ["gen", "--check"] => run_gen(Mode::Check),
        ["bench", rest @ ..] => bench::run(&root(), rest),
        ["app-server", ..] => fake_app_server::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask gen [--check] | cargo xtask bench [--runs N] [--only NAME[,NAME...]]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run_gen(mode: Mode) -> anyhow::Result<()> {
    let root = root();
    let report = generate(&root, mode)?;
    let rel = |p: &PathBuf| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    match mode {
        Mode::Write => {
            for path in &report.changed {
                println!("wrote {}", rel(path));
            }
            println!(
                "{} generated files, {} changed",
                report.changed.len() + report.unchanged.len(),
                report.changed.len()
            );
            Ok(())
        }
        Mode::Check if report.changed.is_empty() => {
            println!("{} generated files are up to date", report.unchanged.len());
            Ok(())
        }
        Mode::Check => {
            let stale: Vec<String> = report.changed.iter().map(rel).collect();
            anyhow::bail!(
                "{} not up to date; run `cargo xtask gen` and commit the result",
                stale.join(", ")
            )
        }
    }
}
