//! Human output of the launch settings: `new --dry-run`'s plan and `config show`.

use dispatch_contract::types::*;

use super::{Render, e, warnings};

/// One `key = value  (source)` line per setting.
fn settings(settings: &[LaunchSetting]) -> Vec<String> {
    if settings.is_empty() {
        return vec!["  (none: Codex's defaults)".to_owned()];
    }
    let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    settings
        .iter()
        .map(|s| {
            // JSON, so a string's spaces and line ends show.
            let value = e(&s.value.to_string());
            format!("  {:width$} = {value}  ({})", s.key, e(&s.source))
        })
        .collect()
}

fn files(files: &[LaunchFile]) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            format!(
                "  {} ({} bytes, sha256 {}) -> {}",
                e(&f.path),
                f.size,
                e(&f.sha256),
                e(&f.key)
            )
        })
        .collect()
}

/// The plan of `new --dry-run`.
pub(super) fn plan(plan: &LaunchPlan) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut lines = vec![
        format!(
            "dry run: nothing was created; `new` would make lane {}",
            e(&plan.title)
        ),
        format!(
            "cwd: {}",
            plan.cwd.as_deref().map_or("(the daemon's)".to_owned(), e)
        ),
        "settings:".to_owned(),
    ];
    lines.extend(settings(&plan.settings));
    if !plan.files.is_empty() {
        lines.push("files read:".to_owned());
        lines.extend(files(&plan.files));
    }
    lines.push(format!(
        "first turn: {} ({} images); goal: {}; ephemeral: {}",
        yes(plan.sends_turn),
        plan.images,
        yes(plan.sets_goal),
        yes(plan.ephemeral)
    ));
    lines.push(match &plan.worktree {
        Some(tree) => format!(
            "worktree: {} on new branch {} (of {})",
            tree.path, tree.branch, tree.repo
        ),
        None => "worktree: no".to_owned(),
    });
    lines.extend(warnings(&plan.warnings));
    lines.join("\n")
}

impl Render for ConfigShowOutput {
    fn human(&self) -> String {
        let mut lines = vec![format!("launch settings for {}:", e(&self.cwd))];
        lines.extend(settings(&self.settings));
        if !self.files.is_empty() {
            lines.push("files read:".to_owned());
            lines.extend(files(&self.files));
        }
        if self.presets.is_empty() {
            lines.push("presets: none defined".to_owned());
        } else {
            lines.push(format!(
                "presets: {}",
                self.presets
                    .iter()
                    .map(|p| e(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines.join("\n")
    }
}
