//! Per-lane git worktrees (`new` with `worktree`, `worktree remove`). [`plan`] runs every
//! check without side effects (the cwd is in a repository, the branch and the path are free,
//! the base names a commit) and says what would be made, so a dry run can show it;
//! [`create`] makes it (`git worktree add -b <branch> <path> <base>`); [`undo`] takes a
//! worktree and its branch away again when the lane could not be made; [`remove`] is
//! `worktree remove`. Git runs as an argument vector, never through a shell, with the
//! caller's `GIT_*` variables removed (a `GIT_DIR` or `GIT_WORK_TREE` in the daemon's
//! environment must not redirect it), no prompts, and a timeout. See ADR 0018.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dispatch_contract::{DispatchError, ErrorCode, Hint, operations};
use dispatch_registry::WorktreeRow;
use serde_json::json;
use tokio::process::Command;

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest slug taken from a title.
const SLUG_MAX: usize = 48;
/// The prefix of the branches dispatch names.
pub const BRANCH_PREFIX: &str = "dispatch/";

/// What `new` asks for.
#[derive(Debug, Clone)]
pub struct WorktreeRequest<'a> {
    /// The directory the lane would work in (absolute, existing).
    pub cwd: &'a Path,
    /// The lane's title; the slug comes from it.
    pub title: &'a str,
    /// The branch to create (default `dispatch/<slug>`).
    pub branch: Option<&'a str>,
    /// The commit to start at (default `HEAD`).
    pub base: Option<&'a str>,
    /// Where to put it (default `<root>/<repo>/<slug>`).
    pub path: Option<&'a Path>,
    /// Where worktrees go by default: `$DISPATCH_HOME/worktrees`.
    pub root: &'a Path,
}

/// The worktree `new` would make, every check done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreePlan {
    /// The worktree's directory (does not exist yet).
    pub path: PathBuf,
    /// The branch to create (does not exist yet).
    pub branch: String,
    /// The base as given (`HEAD` by default).
    pub base: String,
    /// The commit the base names.
    pub base_commit: String,
    /// The repository's root.
    pub repo: PathBuf,
    /// Where the lane works: the worktree, plus the cwd's place below the repository root.
    pub cwd: PathBuf,
}

impl WorktreePlan {
    /// The registry's record of it.
    pub fn row(&self) -> WorktreeRow {
        WorktreeRow {
            path: self.path.display().to_string(),
            branch: self.branch.clone(),
            repo: self.repo.display().to_string(),
        }
    }
}

/// What a git command did.
struct GitOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `git args...` in `dir` with a clean environment and a timeout.
async fn git(dir: &Path, args: &[&str]) -> Result<GitOutput, DispatchError> {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            command.env_remove(key);
        }
    }
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(GIT_TIMEOUT, command.output()).await {
        Err(_) => {
            return Err(DispatchError::internal(format!(
                "git {} did not finish within {} s",
                args.first().copied().unwrap_or_default(),
                GIT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(err)) => {
            return Err(
                DispatchError::invalid_input(format!("git could not be run: {err}"))
                    .with_hint("install git (and put it on the daemon's PATH) to use worktrees"),
            );
        }
        Ok(Ok(output)) => output,
    };
    Ok(GitOutput {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// A slug for branch and directory names: lower-case letters and digits, words joined by
/// `-`, at most [`SLUG_MAX`] characters; `lane` when nothing is left.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= SLUG_MAX {
            break;
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "lane".to_owned()
    } else {
        out
    }
}

fn refuse(message: String, hint: &str) -> DispatchError {
    DispatchError::invalid_input(message).with_hint(hint.to_owned())
}

/// Every check `new` makes before it creates a worktree, with no side effects.
pub async fn plan(request: &WorktreeRequest<'_>) -> Result<WorktreePlan, DispatchError> {
    let cwd = request.cwd;
    let top = git(cwd, &["rev-parse", "--show-toplevel"]).await?;
    if !top.ok || top.stdout.is_empty() {
        return Err(refuse(
            format!(
                "`worktree`: {} is not in a git repository (with a working tree)",
                cwd.display()
            ),
            "give a `cwd` inside a git repository, or leave out `worktree`",
        ));
    }
    let repo = PathBuf::from(&top.stdout);
    let name = slug(request.title);
    let branch = request
        .branch
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{BRANCH_PREFIX}{name}"));
    let valid = git(cwd, &["check-ref-format", "--branch", &branch]).await?;
    if !valid.ok || branch.starts_with('-') {
        return Err(refuse(
            format!("`worktree_branch`: `{branch}` is not a valid branch name"),
            "give a branch name git accepts, e.g. `dispatch/my-task`",
        ));
    }
    let exists = git(
        &repo,
        &[
            "show-ref",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .await?;
    if exists.ok {
        return Err(refuse(
            format!(
                "`worktree_branch`: branch `{branch}` already exists in {}",
                repo.display()
            ),
            "give another `worktree_branch` (or another lane name), or delete the branch first",
        ));
    }
    let base = request.base.unwrap_or("HEAD").to_owned();
    let commit = if base.starts_with('-') {
        None
    } else {
        let found = git(
            &repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{base}^{{commit}}"),
            ],
        )
        .await?;
        (found.ok && !found.stdout.is_empty()).then_some(found.stdout)
    };
    let Some(base_commit) = commit else {
        return Err(refuse(
            format!(
                "`worktree_base`: `{base}` names no commit in {}",
                repo.display()
            ),
            "give a branch, tag or commit of the repository (a repository without commits has no HEAD yet)",
        ));
    };
    let path = match request.path {
        Some(path) if !path.is_absolute() => {
            return Err(refuse(
                format!(
                    "`worktree_path`: {} is not an absolute path",
                    path.display()
                ),
                "give an absolute directory that does not exist yet",
            ));
        }
        Some(path) => path.to_path_buf(),
        None => {
            let repo_name = repo
                .file_name()
                .map(|n| slug(&n.to_string_lossy()))
                .unwrap_or_else(|| "repo".to_owned());
            request.root.join(repo_name).join(&name)
        }
    };
    if path.symlink_metadata().is_ok() {
        return Err(refuse(
            format!("`worktree_path`: {} already exists", path.display()),
            "give a `worktree_path` that does not exist yet (or another lane name), or move the directory away",
        ));
    }
    // The lane works at the same place below the root as the cwd is.
    let below = std::fs::canonicalize(cwd)
        .ok()
        .zip(std::fs::canonicalize(&repo).ok())
        .and_then(|(cwd, repo)| cwd.strip_prefix(&repo).ok().map(Path::to_path_buf))
        .unwrap_or_default();
    Ok(WorktreePlan {
        cwd: if below.as_os_str().is_empty() {
            path.clone()
        } else {
            path.join(below)
        },
        path,
        branch,
        base,
        base_commit,
        repo,
    })
}

/// Makes the planned worktree: `git worktree add -b <branch> <path> <commit>`.
pub async fn create(plan: &WorktreePlan) -> Result<(), DispatchError> {
    if let Some(parent) = plan.path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| {
            DispatchError::invalid_input(format!(
                "`worktree_path`: cannot create {}: {err}",
                parent.display()
            ))
        })?;
    }
    let path = plan.path.display().to_string();
    let added = git(
        &plan.repo,
        &[
            "worktree",
            "add",
            "-b",
            &plan.branch,
            "--",
            &path,
            &plan.base_commit,
        ],
    )
    .await?;
    if !added.ok {
        return Err(DispatchError::invalid_input(format!(
            "git worktree add failed: {}",
            added.stderr
        ))
        .with_details(json!({ "path": path, "branch": plan.branch })));
    }
    if !plan.cwd.is_dir() {
        // The cwd's place below the root is not in the base commit: the lane works at the root.
        tracing::info!(cwd = %plan.cwd.display(), "the worktree has no such subdirectory");
    }
    Ok(())
}

/// Takes away a worktree `new` made (and its branch) when the lane could not be made;
/// `Err` says what is left behind.
pub async fn undo(plan: &WorktreePlan) -> Result<(), String> {
    let path = plan.path.display().to_string();
    let mut left = Vec::new();
    match git(&plan.repo, &["worktree", "remove", "--force", "--", &path]).await {
        Ok(out) if out.ok => {}
        Ok(out) => left.push(format!("worktree {path} ({})", out.stderr)),
        Err(err) => left.push(format!("worktree {path} ({})", err.message)),
    }
    match git(&plan.repo, &["branch", "-D", "--", &plan.branch]).await {
        Ok(out) if out.ok => {}
        Ok(out) => left.push(format!("branch {} ({})", plan.branch, out.stderr)),
        Err(err) => left.push(format!("branch {} ({})", plan.branch, err.message)),
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(left.join("; "))
    }
}

/// Whether the worktree at `path` has uncommitted or untracked changes.
async fn dirty(path: &Path) -> Result<bool, DispatchError> {
    let status = git(path, &["status", "--porcelain", "--untracked-files=normal"]).await?;
    if !status.ok {
        return Err(DispatchError::invalid_input(format!(
            "git status failed in {}: {}",
            path.display(),
            status.stderr
        )));
    }
    Ok(!status.stdout.is_empty())
}

/// `worktree remove`: removes the lane's worktree (a dirty one only with `force`); the
/// branch stays. A worktree whose directory is already gone is pruned.
pub async fn remove(
    lane_ref: &str,
    worktree: &WorktreeRow,
    force: bool,
) -> Result<(), DispatchError> {
    let path = Path::new(&worktree.path);
    let repo = Path::new(&worktree.repo);
    if !path.exists() {
        let pruned = git(repo, &["worktree", "prune"]).await?;
        if !pruned.ok {
            return Err(DispatchError::invalid_input(format!(
                "git worktree prune failed in {}: {}",
                repo.display(),
                pruned.stderr
            )));
        }
        return Ok(());
    }
    if !force && dirty(path).await? {
        return Err(DispatchError::invalid_input(format!(
            "the worktree {} of lane {lane_ref} has uncommitted or untracked changes",
            worktree.path
        ))
        .with_hint(
            Hint::new("commit or move them first, or {0} discards them").run(
                &operations::WORKTREE_REMOVE,
                json!({ "lane": lane_ref, "force": true }),
            ),
        )
        .with_details(json!({ "lane_ref": lane_ref, "path": worktree.path })));
    }
    let mut args = vec!["worktree", "remove"];
    if force {
        // Twice: also a locked worktree.
        args.extend(["--force", "--force"]);
    }
    args.extend(["--", worktree.path.as_str()]);
    let removed = git(repo, &args).await?;
    if !removed.ok {
        return Err(DispatchError::new(
            ErrorCode::InvalidInput,
            format!("git worktree remove failed: {}", removed.stderr),
        )
        .with_details(json!({ "lane_ref": lane_ref, "path": worktree.path })));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_and_safe() {
        assert_eq!(slug("Fix the login bug!"), "fix-the-login-bug");
        assert_eq!(slug("  --Ünïcode ✓ title--  "), "n-code-title");
        assert_eq!(slug("✓✓✓"), "lane");
        assert!(slug(&"a".repeat(300)).len() <= SLUG_MAX);
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
    }
}
