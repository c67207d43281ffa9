//! Where cargo puts this workspace's builds, for the tools that build the release binaries
//! with `cargo build --release` run in the workspace root: `xtask` (`link-order`, `bench`) and
//! `dispatch-bench`, which includes this file (`#[path]`) so that both read the same place.

use std::path::{Path, PathBuf};

/// The target directory: `CARGO_TARGET_DIR` (a relative one taken from `root`, where the
/// builds run, as cargo itself would there), else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

/// The release directory of [`target_dir`].
pub fn release_dir(root: &Path) -> PathBuf {
    target_dir(root).join("release")
}
