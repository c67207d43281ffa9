//! Git repositories for the worktree tests of `dispatch-cli` and `dispatch-daemon`: one
//! source file that both test trees include (`#[path]`), since test code cannot be shared
//! between crates otherwise.

use std::path::{Path, PathBuf};

/// Runs git in `dir` as a fixed user, asserting success; returns its standard output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository `app` in `dir` with one commit (a `README` and `src/main.rs`), by its
/// canonical path.
pub fn repo(dir: &Path) -> PathBuf {
    let repo = dir.join("app");
    std::fs::create_dir_all(repo.join("src")).expect("mkdir");
    std::fs::write(repo.join("README"), "app\n").expect("write");
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    std::fs::canonicalize(repo).expect("canonical")
}
