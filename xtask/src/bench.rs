//! Benchmarks (see `cargo xtask bench`).
use std::path::Path;
/// Runs the benchmarks.
pub fn run(_root: &Path, _args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
