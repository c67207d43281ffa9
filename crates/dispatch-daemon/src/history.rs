//! `history`: lanes' work in numbers, from the registry's aggregates, with the git facts of
//! each lane's directory (`git status`, one bounded call per directory).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dispatch_contract::types::{
    FileHistory, GitFacts, HistoryInput, HistoryInputView, HistoryOutput, HistoryOutputView,
    HistoryRefresh, LaneHistory, ToolHistory, TurnHistory,
};
use dispatch_contract::{DispatchError, Handle, Hint, operations};
use dispatch_registry::{LaneRow, TurnStatus};
use serde_json::json;
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::convert::{self, rfc3339};
use crate::service::Service;

/// How long one `git status` may take before its lane's facts are skipped.
const GIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most directories one call looks at; lanes beyond say so.
const GIT_DIRECTORIES: usize = 50;
/// `git status` calls at a time.
const GIT_PARALLEL: usize = 4;

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn skipped(why: &str) -> GitFacts {
    GitFacts {
        branch: None,
        dirty: None,
        changed_files: None,
        skipped: Some(why.to_owned()),
    }
}

/// The branch and changes of the git working tree at `dir`, from one bounded `git status`.
pub async fn git_facts(dir: String) -> GitFacts {
    if !std::path::Path::new(&dir).is_dir() {
        return skipped("the directory does not exist");
    }
    let mut command = Command::new("git");
    command
        .args(["-C", &dir, "status", "--porcelain=v2", "--branch"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(GIT_TIMEOUT, command.output()).await {
        Err(_) => return skipped("git status timed out"),
        Ok(Err(_)) => return skipped("git is not available"),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        return skipped("not a git repository");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut branch = None;
    let mut changed = 0u64;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("# branch.head ") {
            branch = (head != "(detached)").then(|| head.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            changed += 1;
        }
    }
    GitFacts {
        branch,
        dirty: Some(changed > 0),
        changed_files: Some(changed),
        skipped: None,
    }
}

/// Git facts for each distinct directory of `rows` (at most [`GIT_DIRECTORIES`], a few at a
/// time), set on every row.
async fn add_git_facts(rows: &mut [LaneHistory]) {
    let mut directories: Vec<String> = Vec::new();
    for row in rows.iter() {
        if let Some(cwd) = &row.cwd
            && !directories.contains(cwd)
            && directories.len() < GIT_DIRECTORIES
        {
            directories.push(cwd.clone());
        }
    }
    let permits = Arc::new(Semaphore::new(GIT_PARALLEL));
    let mut calls = JoinSet::new();
    for dir in directories {
        let permits = permits.clone();
        calls.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let facts = git_facts(dir.clone()).await;
            (dir, facts)
        });
    }
    let mut facts: HashMap<String, GitFacts> = HashMap::new();
    while let Some(done) = calls.join_next().await {
        if let Ok((dir, found)) = done {
            facts.insert(dir, found);
        }
    }
    for row in rows.iter_mut() {
        row.git = Some(match &row.cwd {
            None => skipped("the lane has no working directory"),
            Some(cwd) => facts.get(cwd).cloned().unwrap_or_else(|| {
                skipped(&format!(
                    "git facts are looked up for the first {GIT_DIRECTORIES} directories only"
                ))
            }),
        });
    }
}

fn turn_status(status: &str) -> dispatch_contract::types::TurnStatus {
    convert::turn_status(TurnStatus::parse(status).unwrap_or(TurnStatus::InProgress))
}

/// `history`.
impl Handle<HistoryInput> for Service {
    async fn handle(&self, input: HistoryInput) -> Result<HistoryOutput, DispatchError> {
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let lane = match &input.lane {
            Some(selector) => Some(self.resolve(selector).await?),
            None => None,
        };
        let refresh = match &lane {
            Some(lane) => Some(self.refresh_for_history(lane).await),
            None => None,
        };
        let mut output = HistoryOutput {
            view: HistoryOutputView::Overview,
            refresh,
            lane: lane.as_ref().map(convert::lane_ref),
            lanes: Vec::new(),
            turns: Vec::new(),
            tools: Vec::new(),
            files: Vec::new(),
        };
        let registry = self.registry();
        match (input.view, &lane) {
            (HistoryInputView::Overview, _) => {
                let rows = registry
                    .history_overview(lane.as_ref().map(|l| l.lane_ref.as_str()), input.all, limit)
                    .await?;
                let mut rows: Vec<LaneHistory> = rows
                    .into_iter()
                    .map(|row| LaneHistory {
                        ref_: row.lane_ref,
                        id: row.thread_id,
                        title: row.title,
                        cwd: row.cwd,
                        turns: count(row.turns),
                        items: count(row.items),
                        messages: count(row.messages),
                        tool_calls: count(row.tool_calls),
                        files_changed: count(row.files_changed),
                        tokens_used: row.tokens_used,
                        first_activity: rfc3339(row.first_at_ms).into(),
                        last_activity: rfc3339(row.last_at_ms).into(),
                        git: None,
                    })
                    .collect();
                if !input.no_git {
                    add_git_facts(&mut rows).await;
                }
                output.lanes = rows;
            }
            (view, None) => {
                return Err(DispatchError::invalid_input(format!(
                    "the {} view shows one lane: name it",
                    convert::wire_name(&view)
                ))
                .with_hint(
                    Hint::new("for instance {0}, or {1} for every lane")
                        .run(
                            &operations::HISTORY,
                            json!({"lane": "<lane>", "view": convert::wire_name(&view)}),
                        )
                        .run(&operations::HISTORY, json!({})),
                ));
            }
            (HistoryInputView::Turns, Some(lane)) => {
                output.view = HistoryOutputView::Turns;
                output.turns = registry
                    .history_turns(&lane.lane_ref, limit)
                    .await?
                    .into_iter()
                    .map(|t| TurnHistory {
                        status: turn_status(&t.status),
                        id: t.turn_id,
                        error: t.error,
                        started_at: t.started_at_ms.map(|ms| rfc3339(ms).into()),
                        completed_at: t.completed_at_ms.map(|ms| rfc3339(ms).into()),
                        duration_ms: t.duration_ms,
                        items: count(t.items),
                        tool_calls: count(t.tool_calls),
                    })
                    .collect();
            }
            (HistoryInputView::Tools, Some(lane)) => {
                output.view = HistoryOutputView::Tools;
                output.tools = registry
                    .history_tools(&lane.lane_ref, limit)
                    .await?
                    .into_iter()
                    .map(|t| ToolHistory {
                        tool: t.tool,
                        calls: count(t.calls),
                        errored: count(t.errored),
                        last_call: rfc3339(t.last_at_ms).into(),
                    })
                    .collect();
            }
            (HistoryInputView::Files, Some(lane)) => {
                output.view = HistoryOutputView::Files;
                output.files = registry
                    .history_files(&lane.lane_ref, limit)
                    .await?
                    .into_iter()
                    .map(|f| FileHistory {
                        path: f.path,
                        changes: count(f.changes),
                        last_change: rfc3339(f.last_at_ms).into(),
                    })
                    .collect();
            }
        }
        Ok(output)
    }
}

/// How long `history` waits for Codex to refresh a named lane before it counts what the
/// registry holds.
const REFRESH_BOUND: Duration = Duration::from_secs(2);

impl Service {
    /// Refreshes `lane` from Codex, bounded by [`REFRESH_BOUND`]; a refresh that fails or
    /// takes too long leaves the registry's counts, and says so.
    async fn refresh_for_history(&self, lane: &LaneRow) -> HistoryRefresh {
        match tokio::time::timeout(REFRESH_BOUND, self.sync_lane(lane)).await {
            Ok(Ok(synced)) => HistoryRefresh {
                refreshed: true,
                detail: format!(
                    "refreshed from Codex: {} turns, {} new items, {} updated",
                    synced.turns, synced.added, synced.updated
                ),
            },
            Ok(Err(err)) => HistoryRefresh {
                refreshed: false,
                detail: format!(
                    "not refreshed ({}): the counts are what the registry holds",
                    err.message
                ),
            },
            Err(_) => HistoryRefresh {
                refreshed: false,
                detail: format!(
                    "not refreshed: Codex did not answer within {} s; the counts are what the \
                     registry holds",
                    REFRESH_BOUND.as_secs()
                ),
            },
        }
    }
}
