//! `cargo xtask`: the commands contributors run.
//!
//! - `cargo xtask gen [--check]`: project `contract/` into the generated Rust files; with
//!   `--check`, change nothing and fail naming every stale file.
//! - `cargo xtask bench [--runs N] [--only NAME[,NAME...]]`: runs the benchmarks, which live
//!   in their own crate (`crates/dispatch-bench`, run in release mode), so that this binary
//!   depends on `dispatch-codegen` alone and `cargo xtask gen` builds even when a generated
//!   file does not. After the benchmarks it prints how many of the link order's symbols the
//!   release binaries still define (see below).
//! - `cargo xtask link-order [--check] [--bin-dir DIR]`: regenerate (or check) the symbol
//!   ordering files of the release link (`crates/dispatch-cli/link-order/`, ADR 0023).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use dispatch_codegen::{Mode, generate};

mod link_order;
mod target_dir;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["gen"] => run_gen(Mode::Write),
        ["gen", "--check"] => run_gen(Mode::Check),
        ["bench", rest @ ..] => run_bench(rest),
        ["link-order", rest @ ..] => link_order::run(&root(), rest),
        _ => {
            eprintln!(
                "usage: cargo xtask gen [--check] | cargo xtask bench [--runs N] [--only NAME[,NAME...]] [--lanes N] | cargo xtask link-order [--check] [--bin-dir DIR]"
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

/// `cargo run --release -p dispatch-bench -- ARGS`, with this cargo and the caller's
/// `CARGO_TARGET_DIR`.
fn run_bench(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--release", "-p", "dispatch-bench", "--"])
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|err| anyhow::anyhow!("running cargo: {err}"))?;
    anyhow::ensure!(status.success(), "the benchmarks failed ({status})");
    print_link_order_coverage();
    Ok(())
}

/// One line per binary: how many of its link order's symbols the benchmarked release build
/// defines, so that a stale ordering file shows up where its effect is measured.
fn print_link_order_coverage() {
    let root = root();
    let bin_dir = std::env::var_os("DISPATCH_BENCH_BIN_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir::release_dir(&root));
    for binary in link_order::BINARIES {
        match link_order::coverage(&root, &bin_dir.join(binary), binary) {
            Ok((found, listed)) => {
                let stale = if link_order::stale_at(found, listed) {
                    " (stale: run `cargo xtask link-order`)"
                } else {
                    ""
                };
                println!("link order of {binary}: {found} of {listed} symbols found{stale}");
            }
            Err(err) => println!("link order of {binary}: not checked ({err:#})"),
        }
    }
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
