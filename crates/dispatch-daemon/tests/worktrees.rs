//! Per-lane git worktrees and images against the scripted fake App Server (real git, real
//! files): `new` with `worktree` makes the worktree and branch and runs the lane there (at
//! the cwd's place below the repository root), `get` shows it, `archive` leaves it, and
//! `worktree remove` removes a clean one and refuses a dirty one without `force`; a cwd in no
//! repository, an existing branch, an existing path or a bad base is refused with nothing
//! made (no thread, no lane, no worktree); a thread that cannot be made takes the worktree
//! and branch away again. Images are refused for a model whose catalog entry lacks `image`
//! and reach `turn/start` as `localImage` inputs for one that has it, recorded by path, size
//! and SHA-256. The binary is its own fake App Server (see `harness`).

mod harness;

use std::path::Path;
use std::process::ExitCode;

use dispatch_contract::ErrorCode;
use dispatch_contract::types::{
    ArchiveInput, DeliveryGetInput, GetInput, NewInput, NewOutput, SendInput, WorktreeRemoveInput,
};
use dispatch_registry::LaneFilter;
use fake_app_server::Script;
use harness::{Daemon, expect_error};
use libtest_mimic::Arguments;
use serde_json::{Value, json};

/// A valid 1×1 PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\xda\x63\x64\x60\xf8\x5f\x0f\x00\x02\x87\x01\x80\xeb\x47\xba\x92\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

fn main() -> ExitCode {
    if let Some(code) = harness::serve_fake_if_asked() {
        return code;
    }
    let tests = vec![
        harness::trial("a_worktree_lane_runs_in_its_worktree_until_removed", |d| {
            Box::pin(a_worktree_lane_runs_in_its_worktree_until_removed(d))
        }),
        harness::trial("a_dirty_worktree_is_removed_only_with_force", |d| {
            Box::pin(a_dirty_worktree_is_removed_only_with_force(d))
        }),
        harness::trial("worktree_refusals_leave_nothing_behind", |d| {
            Box::pin(worktree_refusals_leave_nothing_behind(d))
        }),
        harness::trial_with(
            "a_failed_thread_takes_its_worktree_away",
            || Script {
                fail_thread_start: true,
                ..Script::default()
            },
            |d| Box::pin(a_failed_thread_takes_its_worktree_away(d)),
        ),
        harness::trial(
            "a_dry_run_plans_the_worktree_and_images_and_makes_nothing",
            |d| Box::pin(a_dry_run_plans_the_worktree_and_images_and_makes_nothing(d)),
        ),
        harness::trial("images_go_only_to_models_that_take_them", |d| {
            Box::pin(images_go_only_to_models_that_take_them(d))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

#[path = "../../test-support/git.rs"]
mod git_repo;
use git_repo::{git, repo};

fn worktree_count(repo: &Path) -> usize {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

fn branch_exists(repo: &Path, branch: &str) -> bool {
    !git(repo, &["branch", "--list", branch]).trim().is_empty()
}

async fn lane_count(d: &Daemon) -> usize {
    d.service
        .registry()
        .list_lanes(&LaneFilter {
            include_archived: true,
            ..LaneFilter::default()
        })
        .await
        .expect("lanes")
        .len()
}

fn never_asked(d: &Daemon, method: &str) {
    let asked = d.requests();
    assert!(
        !asked.iter().any(|m| m == method),
        "{method} was called: {asked:?}"
    );
}

async fn get(d: &Daemon, lane: &str) -> Value {
    let got = d
        .call::<GetInput>(json!({ "lane": lane }))
        .await
        .expect("get");
    serde_json::to_value(got).expect("json")
}

async fn a_worktree_lane_runs_in_its_worktree_until_removed(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let made: NewOutput = d
        .call::<NewInput>(json!({
            "name": "Fix the login bug",
            "cwd": repo.join("src").display().to_string(),
            "worktree": true,
            "no_send": true,
        }))
        .await
        .expect("new with a worktree");
    let expected = d.service.worktrees_root().join("app/fix-the-login-bug");
    let tree = made
        .lane
        .as_ref()
        .expect("a lane")
        .worktree
        .clone()
        .expect("the lane has a worktree");
    assert_eq!(tree.path, expected.display().to_string());
    assert_eq!(tree.branch, "dispatch/fix-the-login-bug");
    assert_eq!(tree.repo, repo.display().to_string());
    assert!(
        expected.join("src/main.rs").is_file(),
        "the worktree is checked out"
    );
    assert!(branch_exists(&repo, "dispatch/fix-the-login-bug"));
    assert_eq!(worktree_count(&repo), 2);
    // The lane works at the cwd's place in the worktree, and Codex was told so.
    assert_eq!(
        made.lane.as_ref().expect("a lane").cwd.as_deref(),
        Some(expected.join("src").display().to_string().as_str())
    );

    let shown = get(d, &made.lane.as_ref().expect("a lane").ref_).await;
    assert_eq!(
        shown["lane"]["worktree"]["branch"],
        "dispatch/fix-the-login-bug"
    );
    d.call::<ArchiveInput>(json!({ "target": made.lane.as_ref().expect("a lane").ref_ }))
        .await
        .expect("archive");
    assert!(expected.is_dir(), "archive leaves the worktree");
    let shown = get(d, &made.lane.as_ref().expect("a lane").ref_).await;
    assert_eq!(shown["lane"]["worktree"]["path"], tree.path);

    let removed = d
        .call::<WorktreeRemoveInput>(json!({ "lane": made.lane.as_ref().expect("a lane").ref_ }))
        .await
        .expect("a clean worktree is removed");
    assert!(!removed.forced);
    assert!(!expected.exists(), "the directory is gone");
    assert!(
        branch_exists(&repo, "dispatch/fix-the-login-bug"),
        "the branch stays"
    );
    assert_eq!(worktree_count(&repo), 1);
    let shown = get(d, &made.lane.as_ref().expect("a lane").ref_).await;
    assert_eq!(shown["lane"]["worktree"], Value::Null);
    expect_error(
        d.call::<WorktreeRemoveInput>(json!({ "lane": made.lane.as_ref().expect("a lane").ref_ }))
            .await,
        ErrorCode::InvalidInput,
    );
}

async fn a_dirty_worktree_is_removed_only_with_force(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let custom = dir.path().join("trees/mine");
    let made: NewOutput = d
        .call::<NewInput>(json!({
            "name": "dirty work",
            "cwd": repo.display().to_string(),
            "worktree_branch": "feature/dirty",
            "worktree_path": custom.display().to_string(),
            "no_send": true,
        }))
        .await
        .expect("new with a custom worktree");
    assert_eq!(
        made.lane.as_ref().expect("a lane").cwd.as_deref(),
        Some(custom.display().to_string().as_str())
    );
    std::fs::write(custom.join("scratch.txt"), "untracked").expect("write");
    let err = expect_error(
        d.call::<WorktreeRemoveInput>(json!({ "lane": made.lane.as_ref().expect("a lane").ref_ }))
            .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains("uncommitted or untracked"),
        "{}",
        err.message
    );
    let hint = err.hint.render(dispatch_contract::Surface::Cli);
    assert!(
        hint.contains("dispatch worktree remove") && hint.contains("--force"),
        "{hint}"
    );
    let hint = err.hint.render(dispatch_contract::Surface::Mcp);
    assert!(
        hint.contains("dispatch_worktree_remove") && hint.contains("force"),
        "{hint}"
    );
    assert!(custom.join("scratch.txt").is_file(), "nothing was lost");
    let removed = d
        .call::<WorktreeRemoveInput>(
            json!({ "lane": made.lane.as_ref().expect("a lane").ref_, "force": true }),
        )
        .await
        .expect("forced");
    assert!(removed.forced);
    assert!(!custom.exists());
    assert!(branch_exists(&repo, "feature/dirty"));
}

async fn worktree_refusals_leave_nothing_behind(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let outside = dir.path().join("plain");
    std::fs::create_dir_all(&outside).expect("mkdir");
    git(&repo, &["branch", "dispatch/taken"]);
    let occupied = dir.path().join("occupied");
    std::fs::create_dir_all(&occupied).expect("mkdir");
    let cwd = repo.display().to_string();
    let cases = [
        (
            json!({ "name": "x", "cwd": outside.display().to_string(), "worktree": true }),
            "not in a git repository",
        ),
        (
            json!({ "name": "taken", "cwd": cwd, "worktree": true }),
            "already exists",
        ),
        (
            json!({ "name": "x", "cwd": cwd, "worktree_path": occupied.display().to_string() }),
            "already exists",
        ),
        (
            json!({ "name": "x", "cwd": cwd, "worktree_base": "no-such-branch" }),
            "names no commit",
        ),
        (
            json!({ "name": "x", "cwd": cwd, "worktree_branch": "bad..name" }),
            "not a valid branch name",
        ),
    ];
    for (input, says) in cases {
        let err = expect_error(
            d.call::<NewInput>(input.clone()).await,
            ErrorCode::InvalidInput,
        );
        assert!(err.message.contains(says), "{input}: {}", err.message);
    }
    never_asked(d, "thread/start");
    assert_eq!(lane_count(d).await, 0, "no lane was recorded");
    assert_eq!(worktree_count(&repo), 1, "no worktree was made");
    assert!(!d.service.worktrees_root().join("app").exists());
    assert!(!branch_exists(&repo, "dispatch/x"));
}

async fn a_failed_thread_takes_its_worktree_away(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let err = expect_error(
        d.call::<NewInput>(json!({
            "name": "doomed",
            "cwd": repo.display().to_string(),
            "worktree": true,
            "no_send": true,
        }))
        .await,
        ErrorCode::AppServerError,
    );
    assert!(err.message.contains("removed again"), "{}", err.message);
    assert_eq!(err.details["worktree_removed"], true);
    assert_eq!(worktree_count(&repo), 1);
    assert!(!branch_exists(&repo, "dispatch/doomed"));
    assert!(!d.service.worktrees_root().join("app/doomed").exists());
    assert_eq!(lane_count(d).await, 0);
}

/// `new --dry-run` with a worktree and an image: the plan names the worktree's path, branch
/// and repository and lists the image with its size and SHA-256, and nothing is made (no
/// worktree, no branch, no thread, no lane).
async fn a_dry_run_plans_the_worktree_and_images_and_makes_nothing(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let png = dir.path().join("shot.png");
    std::fs::write(&png, PNG).expect("write");
    let planned: NewOutput = d
        .call::<NewInput>(json!({
            "name": "Plan only",
            "cwd": repo.display().to_string(),
            "model": fake_app_server::VISION_MODEL,
            "text": "look",
            "image": [png.display().to_string()],
            "worktree": true,
            "dry_run": true,
        }))
        .await
        .expect("a dry run");
    assert!(planned.lane.is_none(), "a dry run makes no lane");
    let plan = planned.plan.expect("a dry run returns its plan");
    let tree = plan.worktree.expect("the plan names the worktree");
    let expected = d.service.worktrees_root().join("app/plan-only");
    assert_eq!(tree.path, expected.display().to_string());
    assert_eq!(tree.branch, "dispatch/plan-only");
    assert_eq!(tree.repo, repo.display().to_string());
    assert_eq!(plan.images, 1);
    let image = plan
        .files
        .iter()
        .find(|f| f.key.as_str() == "image")
        .expect("the image is listed among the files read");
    assert_eq!(image.size, PNG.len() as u64);
    assert_eq!(image.sha256.as_str().len(), 64);
    assert!(!expected.exists(), "no worktree directory");
    assert_eq!(worktree_count(&repo), 1, "git worktree list is unchanged");
    assert!(!branch_exists(&repo, "dispatch/plan-only"));
    never_asked(d, "thread/start");
    assert_eq!(lane_count(d).await, 0, "no lane row");
}

async fn images_go_only_to_models_that_take_them(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("shot.png");
    std::fs::write(&png, PNG).expect("write");
    let png = png.display().to_string();
    let cwd = dir.path().display().to_string();
    let err = expect_error(
        d.call::<NewInput>(json!({
            "name": "blind", "cwd": cwd, "model": fake_app_server::TEXT_MODEL,
            "text": "look", "image": [png],
        }))
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains(fake_app_server::TEXT_MODEL) && err.message.contains("images"),
        "{}",
        err.message
    );
    never_asked(d, "thread/start");
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, "not an image").expect("write");
    let err = expect_error(
        d.call::<NewInput>(json!({
            "name": "x", "cwd": cwd, "text": "look", "image": [fake.display().to_string()],
        }))
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(err.message.contains("not a PNG"), "{}", err.message);
    expect_error(
        d.call::<NewInput>(json!({ "name": "x", "cwd": cwd, "image": [png] }))
            .await,
        ErrorCode::InvalidInput,
    );
    never_asked(d, "thread/start");

    let made: NewOutput = d
        .call::<NewInput>(json!({
            "name": "seeing", "cwd": cwd, "model": fake_app_server::VISION_MODEL,
            "text": "look", "image": [png],
        }))
        .await
        .expect("an image for a model that takes them");
    assert_eq!(made.message_accepted, Some(true));
    let inputs = d.turn_inputs();
    assert_eq!(
        inputs.last().expect("a turn/start")[1],
        json!({ "type": "localImage", "path": png })
    );
    let receipt = made.receipt.expect("a receipt");
    let row = d
        .service
        .registry()
        .delivery(&receipt)
        .await
        .expect("read")
        .expect("the receipt");
    assert_eq!(row.images.len(), 1);
    assert_eq!(row.images[0].path, png);
    assert_eq!(row.images[0].size, PNG.len() as u64);
    assert_eq!(row.images[0].sha256.len(), 64);
    let shown = d
        .call::<DeliveryGetInput>(json!({ "receipt": receipt }))
        .await
        .expect("delivery get");
    let shown = serde_json::to_value(shown).expect("json");
    assert_eq!(
        shown["images"],
        json!([{ "path": png, "size": PNG.len(), "sha256": row.images[0].sha256 }]),
        "{shown}"
    );

    // `send` checks the lane's own model.
    let blind: NewOutput = d
        .call::<NewInput>(json!({
            "name": "blind lane", "cwd": cwd, "model": fake_app_server::TEXT_MODEL, "no_send": true,
        }))
        .await
        .expect("a text-only lane");
    let before = d.turn_inputs().len();
    let err = expect_error(
        d.call::<SendInput>(json!({ "lane": blind.lane.as_ref().expect("a lane").ref_, "text": "look", "image": [png] }))
            .await,
        ErrorCode::InvalidInput,
    );
    assert!(
        err.message.contains(fake_app_server::TEXT_MODEL),
        "{}",
        err.message
    );
    assert_eq!(d.turn_inputs().len(), before, "no turn started");

    // A lane on Codex's default model (here one that takes images) gets them, also through
    // its queue, and mode `context` (no turn) refuses them.
    let seeing: NewOutput = d
        .call::<NewInput>(json!({ "name": "default model", "cwd": cwd, "no_send": true }))
        .await
        .expect("a lane on the default model");
    let sent = d
        .call::<SendInput>(json!({
            "lane": seeing.lane.as_ref().expect("a lane").ref_, "text": "and this?", "image": [png, png], "mode": "queue",
        }))
        .await
        .expect("images on a queued send");
    assert!(sent.message_accepted, "an idle lane's queue moves at once");
    let last = d.turn_inputs().last().cloned().expect("a turn/start");
    assert_eq!(last.as_array().map(Vec::len), Some(3), "{last}");
    assert_eq!(last[0]["text"], "and this?");
    assert_eq!(last[2]["path"], png.as_str());
    expect_error(
        d.call::<SendInput>(json!({
            "lane": seeing.lane.as_ref().expect("a lane").ref_, "text": "note", "image": [png], "mode": "context",
        }))
        .await,
        ErrorCode::InvalidInput,
    );
}
