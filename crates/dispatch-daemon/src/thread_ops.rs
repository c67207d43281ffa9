//! What Codex can do to a lane's thread besides turns: `fork` (a new owned lane from its
//! history), `revert` (drop its last turns), `compact` (summarise its context), `review`
//! (Codex's code review, inline) and `delete` (the thread, for good). Every check comes first;
//! what fails after Codex acted is a warning.

use std::path::Path;

use codex_app_server::protocol::{
    AskForApproval, ReviewDelivery, ReviewStartParams, ReviewTarget, SandboxMode,
    ThreadCompactStartParams, ThreadDeleteParams, ThreadForkParams, ThreadRevertParams,
    ThreadSetNameParams, ThreadTurnsListParams, Turn, TurnItemsView,
};
use dispatch_contract::types::{
    CompactInput, CompactOutput, DeleteInput, DeleteOutput, DeleteOutputScope, ForkInput,
    ForkInputApprovalPolicy, ForkInputSandbox, ForkOutput, RevertInput, RevertOutput, ReviewInput,
    ReviewOutput,
};
use dispatch_contract::{DispatchError, Handle, Hint, Logged, operations};
use dispatch_registry::{Fact, LaneRow, NewLane, Ownership, TurnStatus};
use serde_json::json;

use crate::convert::{self, now_ms, rfc3339};
use crate::deliver::lane_busy;
use crate::errors::app_server_error;
use crate::ingest::{item_fact, turn_row};
use crate::models;
use crate::service::Service;
use crate::threads::{Target, thread_error};
use crate::turn_start::running_turn;

/// Turns read per `thread/turns/list` page, and at most in all.
const TURNS_PAGE: u32 = 100;
const MAX_TURNS: usize = 10_000;

/// Every turn of `thread_id`, oldest first (at most [`MAX_TURNS`]).
async fn thread_turns(
    server: &codex_app_server::AppServer,
    thread_id: &str,
    items: TurnItemsView,
) -> Result<Vec<Turn>, DispatchError> {
    let mut turns = Vec::new();
    let mut cursor = None;
    loop {
        let page = server
            .call(&ThreadTurnsListParams {
                thread_id: thread_id.to_owned(),
                cursor: cursor.take(),
                limit: Some(TURNS_PAGE),
                items_view: Some(items),
                ..Default::default()
            })
            .await
            .map_err(|err| thread_error(thread_id, err))?;
        let last_page = page.data.is_empty() || page.next_cursor.is_none();
        turns.extend(page.data);
        if last_page || turns.len() >= MAX_TURNS {
            break;
        }
        cursor = page.next_cursor;
    }
    // Codex lists the newest first.
    turns.reverse();
    Ok(turns)
}

/// The registry's facts for `turns` and their items.
fn history_facts(turns: &[Turn]) -> Vec<Fact> {
    let at_ms = now_ms();
    let mut facts = Vec::new();
    for turn in turns {
        let row = turn_row(turn);
        facts.push(if row.status == TurnStatus::InProgress {
            Fact::TurnStarted {
                turn_id: row.turn_id.clone(),
                at_ms: row.started_at_ms.unwrap_or(at_ms),
            }
        } else {
            Fact::TurnCompleted { turn: row }
        });
        facts.extend(
            turn.items
                .iter()
                .map(|item| item_fact(&turn.id, item, at_ms)),
        );
    }
    facts
}

/// `cwd` checked to be an existing absolute directory.
fn checked_dir(field: &str, dir: &str) -> Result<(), DispatchError> {
    let path = Path::new(dir);
    if path.is_absolute() && path.is_dir() {
        Ok(())
    } else {
        Err(DispatchError::invalid_input(format!(
            "`{field}`: {dir} is not an existing directory (an absolute path)"
        )))
    }
}

/// Whether `dir` is inside a git work tree (it or a parent has `.git`).
fn in_git_repository(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

impl Service {
    /// `lane_busy` when the lane runs a turn, by the registry or by Codex.
    async fn refuse_if_running(
        &self,
        server: &codex_app_server::AppServer,
        lane: &LaneRow,
    ) -> Result<(), DispatchError> {
        if let Some(turn_id) = running_turn(lane) {
            return Err(lane_busy(lane, &turn_id));
        }
        match self.codex_running(server, lane).await {
            Some(busy) => Err(busy),
            None => Ok(()),
        }
    }
}

/// `fork`.
impl Handle<ForkInput> for Service {
    async fn handle(&self, input: ForkInput) -> Result<ForkOutput, DispatchError> {
        let parent = self.resolve(&input.lane).await?;
        let cwd = input.cwd.as_ref().map(|c| c.to_string());
        if let Some(dir) = &cwd {
            checked_dir("cwd", dir)?;
        }
        let (server, generation) = self.server_for(&parent.thread_id)?;
        models::check_settings(
            &server,
            self.registry(),
            input.model.as_deref().map(String::as_str),
            None,
            None,
        )
        .await?;
        self.ensure_loaded(&server, generation, &parent.thread_id)
            .await?;
        let through = input.through_turn.as_ref().map(|t| t.to_string());
        if let Some(turn_id) = &through {
            let turns = thread_turns(&server, &parent.thread_id, TurnItemsView::NotLoaded).await?;
            if !turns.iter().any(|t| &t.id == turn_id) {
                return Err(DispatchError::invalid_input(format!(
                    "`through_turn`: {turn_id} is not a turn of lane {}",
                    parent.lane_ref
                ))
                .with_hint(
                    Hint::new("{0} shows the lane's turns")
                        .run(&operations::TAIL, json!({ "lane": parent.lane_ref })),
                ));
            }
        }
        let forked = server
            .call(&ThreadForkParams {
                thread_id: parent.thread_id.clone(),
                last_turn_id: through,
                cwd: cwd.clone(),
                model: input.model.as_ref().map(|m| m.to_string()),
                sandbox: input.sandbox.map(|s| match s {
                    ForkInputSandbox::ReadOnly => SandboxMode::ReadOnly,
                    ForkInputSandbox::WorkspaceWrite => SandboxMode::WorkspaceWrite,
                    ForkInputSandbox::DangerFullAccess => SandboxMode::DangerFullAccess,
                }),
                approval_policy: input.approval_policy.map(|p| match p {
                    ForkInputApprovalPolicy::Untrusted => AskForApproval::Untrusted,
                    ForkInputApprovalPolicy::OnRequest => AskForApproval::OnRequest,
                    ForkInputApprovalPolicy::Never => AskForApproval::Never,
                }),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        let thread_id = forked.thread.id.clone();
        self.mark_loaded(generation, &thread_id);
        let name = input.name.to_string();
        let lane = self
            .registry()
            .create_lane(&NewLane {
                thread_id: thread_id.clone(),
                title: Some(name.clone()),
                handle: None,
                ownership: Ownership::Owned,
                cwd: Some(forked.cwd.display().to_string()),
                model: input
                    .model
                    .as_ref()
                    .map(|m| m.to_string())
                    .or(parent.model.clone()),
            })
            .await
            .map_err(|err| {
                DispatchError::from(err)
                    .after(format_args!(
                        "Codex forked thread {thread_id}, but dispatch could not record its lane"
                    ))
                    .with_hint(
                        Hint::new("once the registry can be written, {0} adopts the thread")
                            .run(&operations::ATTACH, json!({ "thread_id": thread_id })),
                    )
                    .with_details(json!({ "thread_id": thread_id, "done": ["thread_forked"] }))
            })?;
        let mut warnings = Vec::new();
        if let Err(err) = self
            .registry()
            .set_parent(&lane.lane_ref, &parent.lane_ref)
            .await
        {
            warnings.push(format!(
                "the lane's parent could not be recorded: {}",
                DispatchError::from(err).message
            ));
        }
        if let Err(err) = server
            .call(&ThreadSetNameParams {
                thread_id: thread_id.clone(),
                name,
            })
            .await
        {
            warnings.push(format!(
                "the Codex thread could not be named: {}",
                app_server_error(err).message
            ));
        }
        // The child's history: what the fork answered with, or what Codex lists.
        let turns = if forked.thread.turns.is_empty() {
            match thread_turns(&server, &thread_id, TurnItemsView::Full).await {
                Ok(turns) => turns,
                Err(err) => {
                    warnings.push(format!(
                        "the child's history could not be read: {}",
                        err.message
                    ));
                    Vec::new()
                }
            }
        } else {
            forked.thread.turns.clone()
        };
        let facts = history_facts(&turns);
        if !facts.is_empty()
            && let Err(err) = self.record_facts(&lane.lane_ref, facts).await
        {
            warnings.push(format!(
                "the child's history was not indexed ({}); `sync` indexes it",
                err.message
            ));
        }
        let lane = match self.registry().lane(&lane.lane_ref).await {
            Ok(Some(fresh)) => fresh,
            _ => lane,
        };
        Ok(ForkOutput {
            lane: convert::lane(lane, &self.view()),
            parent: convert::lane_ref(&parent),
            turns: turns.len() as u64,
            warnings,
        })
    }

    fn logged(output: &ForkOutput) -> Logged {
        Logged::lane(
            &output.lane.ref_,
            format!(
                "forked from lane {} with {} turns",
                output.parent.ref_, output.turns
            ),
        )
    }
}

/// `revert`.
impl Handle<RevertInput> for Service {
    async fn handle(&self, input: RevertInput) -> Result<RevertOutput, DispatchError> {
        if input.turns.is_some() && input.before_turn.is_some() {
            return Err(DispatchError::invalid_input(
                "give `turns` or `before_turn`, not both",
            ));
        }
        let lane = self.resolve(&input.lane).await?;
        let _writer = self.lane_lock(&lane.lane_ref).await;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.refuse_if_running(&server, &lane).await?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let turns = thread_turns(&server, &lane.thread_id, TurnItemsView::NotLoaded).await?;
        let cut = match &input.before_turn {
            Some(turn_id) => turns
                .iter()
                .position(|t| t.id == turn_id.as_str())
                .ok_or_else(|| {
                    DispatchError::invalid_input(format!(
                        "`before_turn`: {} is not a turn of lane {}",
                        turn_id.as_str(),
                        lane.lane_ref
                    ))
                    .with_hint(
                        Hint::new("{0} shows the lane's turns")
                            .run(&operations::TAIL, json!({ "lane": lane.lane_ref })),
                    )
                })?,
            None => {
                let n = input.turns.map_or(1, |n| n.get());
                let have = turns.len();
                match usize::try_from(n).ok().and_then(|n| have.checked_sub(n)) {
                    Some(cut) => cut,
                    None => {
                        return Err(DispatchError::invalid_input(format!(
                            "lane {} has {have} turns: {n} cannot be reverted",
                            lane.lane_ref
                        )));
                    }
                }
            }
        };
        let Some(before) = turns.get(cut) else {
            return Err(DispatchError::invalid_input(format!(
                "lane {} has no turn to revert",
                lane.lane_ref
            )));
        };
        server
            .call(&ThreadRevertParams {
                thread_id: lane.thread_id.clone(),
                before_turn_id: before.id.clone(),
            })
            .await
            .map_err(app_server_error)?;
        let reverted: Vec<String> = turns[cut..].iter().map(|t| t.id.clone()).collect();
        let latest = turns[..cut].last().map(turn_row);
        let mut warnings = Vec::new();
        if let Err(err) = self
            .registry()
            .drop_turns(&lane.lane_ref, &reverted, latest.as_ref())
            .await
        {
            warnings.push(format!(
                "the registry still shows the reverted turns ({}); `sync` cannot remove them",
                DispatchError::from(err).message
            ));
        }
        self.events_stored().await;
        Ok(RevertOutput {
            lane: convert::lane_ref(&lane),
            turns_left: cut as u64,
            reverted,
            files_reverted: false,
            warnings,
        })
    }

    fn logged(output: &RevertOutput) -> Logged {
        Logged::lane(
            &output.lane.ref_,
            format!(
                "reverted {} turns ({} left); files not reverted",
                output.reverted.len(),
                output.turns_left
            ),
        )
    }
}

/// `compact`.
impl Handle<CompactInput> for Service {
    async fn handle(&self, input: CompactInput) -> Result<CompactOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let _writer = self.lane_lock(&lane.lane_ref).await;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.refuse_if_running(&server, &lane).await?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let at_ms = now_ms();
        server
            .call(&ThreadCompactStartParams {
                thread_id: lane.thread_id.clone(),
            })
            .await
            .map_err(app_server_error)?;
        let mut warnings = Vec::new();
        if let Err(err) = self
            .registry()
            .note_compaction_requested(&lane.lane_ref, at_ms)
            .await
        {
            warnings.push(format!(
                "the registry could not record the request: {}",
                DispatchError::from(err).message
            ));
        }
        Ok(CompactOutput {
            lane: convert::lane_ref(&lane),
            started: true,
            requested_at: rfc3339(at_ms),
            warnings,
        })
    }

    fn logged(output: &CompactOutput) -> Logged {
        Logged::lane(&output.lane.ref_, "context compaction started")
    }
}

/// `review`.
impl Handle<ReviewInput> for Service {
    async fn handle(&self, input: ReviewInput) -> Result<ReviewOutput, DispatchError> {
        let given = [
            input.uncommitted,
            input.base.is_some(),
            input.commit.is_some(),
            input.instructions.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given > 1 {
            return Err(DispatchError::invalid_input(
                "give one review target: `uncommitted`, `base`, `commit` or `instructions`",
            ));
        }
        let (target, described) = if let Some(branch) = &input.base {
            (
                ReviewTarget::BaseBranch {
                    branch: branch.to_string(),
                },
                format!("the changes against branch {}", branch.as_str()),
            )
        } else if let Some(sha) = &input.commit {
            (
                ReviewTarget::Commit {
                    sha: sha.to_string(),
                    title: None,
                },
                format!("commit {}", sha.as_str()),
            )
        } else if let Some(text) = &input.instructions {
            (
                ReviewTarget::Custom {
                    instructions: text.to_string(),
                },
                "custom instructions".to_owned(),
            )
        } else {
            (
                ReviewTarget::UncommittedChanges,
                "the uncommitted changes".to_owned(),
            )
        };
        let lane = self.resolve(&input.lane).await?;
        let Some(cwd) = lane.cwd.clone() else {
            return Err(DispatchError::invalid_input(format!(
                "lane {} has no recorded working directory to review",
                lane.lane_ref
            )));
        };
        if input.instructions.is_none() && !in_git_repository(Path::new(&cwd)) {
            return Err(DispatchError::invalid_input(format!(
                "the working directory of lane {} ({cwd}) is not in a git repository: a review \
                 compares changes that git tracks",
                lane.lane_ref
            ))
            .with_hint(
                Hint::new(
                    "run `git init` there and commit, or review by instructions instead ({0})",
                )
                .run(
                    &operations::REVIEW,
                    json!({ "lane": lane.lane_ref, "instructions": "<instructions>" }),
                ),
            ));
        }
        let _writer = self.lane_lock(&lane.lane_ref).await;
        let (server, generation) = self.server_for(&lane.thread_id)?;
        self.refuse_if_running(&server, &lane).await?;
        self.ensure_loaded(&server, generation, &lane.thread_id)
            .await?;
        let mut warnings: Vec<String> =
            self.credential_warning(&server).await.into_iter().collect();
        let started = server
            .call(&ReviewStartParams {
                thread_id: lane.thread_id.clone(),
                target,
                delivery: Some(ReviewDelivery::Inline),
            })
            .await
            .map_err(app_server_error)?;
        let turn_id = started.turn.id.clone();
        let fact = Fact::TurnStarted {
            turn_id: turn_id.clone(),
            at_ms: now_ms(),
        };
        if let Err(err) = self.record_facts(&lane.lane_ref, vec![fact]).await {
            warnings.push(format!(
                "the review started, but the registry could not record its turn ({})",
                err.message
            ));
        }
        Ok(ReviewOutput {
            lane: convert::lane_ref(&lane),
            target: described,
            turn_id: Some(turn_id),
            message_accepted: true,
            warnings,
        })
    }

    fn logged(output: &ReviewOutput) -> Logged {
        let turn = output.turn_id.as_deref().unwrap_or("none");
        Logged::lane(
            &output.lane.ref_,
            format!("review of {} started, turn {turn}", output.target),
        )
    }
}

/// `delete`.
impl Handle<DeleteInput> for Service {
    async fn handle(&self, input: DeleteInput) -> Result<DeleteOutput, DispatchError> {
        if !input.yes {
            return Err(DispatchError::invalid_input(
                "`delete` removes the Codex thread for good and needs confirmation: `yes` is \
                 not true",
            )
            .with_hint(
                Hint::new("confirm ({0}), or archive it instead, which can be undone ({1})")
                    .run(
                        &operations::DELETE,
                        json!({ "target": &*input.target, "yes": true }),
                    )
                    .run(&operations::ARCHIVE, json!({ "target": &*input.target })),
            ));
        }
        let (thread_id, lane) = match self.target(&input.target).await? {
            Target::Lane(lane) => (lane.thread_id.clone(), Some(lane)),
            Target::Unmanaged(thread_id) => (thread_id, None),
        };
        let (server, _) = self.server_of(&thread_id)?;
        if let Some(lane) = &lane {
            let _writer = self.lane_lock(&lane.lane_ref).await;
            self.refuse_if_running(&server, lane).await?;
        }
        server
            .call(&ThreadDeleteParams {
                thread_id: thread_id.clone(),
            })
            .await
            .map_err(|err| thread_error(&thread_id, err))?;
        self.forget_thread(&thread_id);
        let mut warnings = Vec::new();
        if let Some(lane) = &lane {
            match self.registry().delete_lane(&lane.lane_ref).await {
                Ok(_) => self.lane_removed(),
                Err(err) => warnings.push(format!(
                    "the thread was deleted, but the registry still lists lane {} ({})",
                    lane.lane_ref,
                    DispatchError::from(err).message
                )),
            }
        }
        Ok(DeleteOutput {
            id: thread_id,
            title: lane.as_ref().and_then(|l| l.title.clone()),
            scope: if lane.is_some() {
                DeleteOutputScope::Managed
            } else {
                DeleteOutputScope::Unmanaged
            },
            ref_: lane.map(|l| l.lane_ref),
            warnings,
        })
    }

    fn logged(output: &DeleteOutput) -> Logged {
        Logged {
            lane: output.ref_.clone(),
            detail: format!("deleted thread {}", output.id),
        }
    }
}
