//! Threads dispatch did not make: `attach` adopts one as an attached lane, `sync` indexes its
//! turns and items; `rename`, `archive` and `restore` work on lanes and on unmanaged threads.

use std::collections::HashMap;

use codex_app_server::protocol::{
    ThreadArchiveParams, ThreadReadParams, ThreadSetNameParams, ThreadUnarchiveParams,
};
use dispatch_contract::types::{
    ArchiveInput, ArchiveOutput, ArchiveOutputScope, AttachInput, AttachOutput, RenameInput,
    RenameOutput, RenameOutputScope, RestoreInput, RestoreOutput, RestoreOutputScope, SyncInput,
    SyncOutput, SyncedLane,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{Fact, LaneRow, NewLane, Ownership, Recorded, Resolution, TurnStatus};
use serde_json::json;
use smallvec::smallvec;

use crate::convert::{self, now_ms};
use crate::errors::app_server_error;
use crate::ingest::{item_fact, turn_row};
use crate::service::Service;

/// What a metadata operation targets.
pub(crate) enum Target {
    Lane(Box<LaneRow>),
    Unmanaged(String),
}

fn looks_like_thread_id(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn not_found(what: &str) -> DispatchError {
    DispatchError::new(
        ErrorCode::NotFound,
        format!("no lane and no Codex thread matches `{what}`"),
    )
    .with_hint(
        Hint::new("lanes: {0}; unmanaged threads need their full id ({1})")
            .run(&operations::LIST, json!({ "all": true }))
            .run(
                &operations::SEARCH,
                json!({ "query": "<words>", "scope": "unmanaged" }),
            ),
    )
}

/// A failed App Server call about a thread: an unknown thread is `not_found`.
pub(crate) fn thread_error(thread_id: &str, err: codex_app_server::Error) -> DispatchError {
    let unknown = err.rpc_error().is_some_and(|e| {
        let m = e.message.to_lowercase();
        m.contains("not found")
            || m.contains("no thread")
            || m.contains("not loaded")
            || m.contains("unknown thread")
            || m.contains("invalid thread")
    });
    if unknown {
        not_found(thread_id)
    } else {
        app_server_error(err)
    }
}

impl Service {
    /// The lane `target` names, or an unmanaged thread by its full id.
    pub(crate) async fn target(&self, target: &str) -> Result<Target, DispatchError> {
        match self.registry().resolve(target).await? {
            Resolution::Found(lane) => Ok(Target::Lane(Box::new(lane))),
            Resolution::NotFound if looks_like_thread_id(target) => {
                Ok(Target::Unmanaged(target.to_owned()))
            }
            Resolution::NotFound => Err(not_found(target)),
            Resolution::Ambiguous(_) => self
                .resolve(target)
                .await
                .map(|lane| Target::Lane(Box::new(lane))),
        }
    }
}

/// `attach`.
impl Handle<AttachInput> for Service {
    async fn handle(&self, input: AttachInput) -> Result<AttachOutput, DispatchError> {
        let thread_id = input.thread_id.to_string();
        if let Some(lane) = self.registry().lane_by_thread(&thread_id).await? {
            return Ok(AttachOutput {
                lane: convert::lane(lane, &self.view()),
                already_attached: true,
            });
        }
        let server = self.app_server().server()?;
        let read = server
            .call(&ThreadReadParams {
                thread_id: thread_id.clone(),
                include_turns: Some(false),
            })
            .await
            .map_err(|err| thread_error(&thread_id, err))?;
        let thread = read.thread;
        let lane = self
            .registry()
            .create_lane(&NewLane {
                thread_id: thread.id.clone(),
                title: input
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .or(thread.name.clone()),
                handle: input
                    .handle
                    .as_ref()
                    .map(|h| h.trim_start_matches('@').to_owned()),
                ownership: Ownership::Attached,
                cwd: Some(thread.cwd.display().to_string()),
                model: thread.model.clone(),
            })
            .await?;
        // Codex's own parent (a fork's source, a sub-agent's parent), for `list --tree`.
        let codex_parent = thread.forked_from_id.or(thread.parent_thread_id);
        if codex_parent.is_some() {
            self.registry()
                .set_parents(&lane.lane_ref, None, codex_parent.as_deref())
                .await?;
        }
        Ok(AttachOutput {
            lane: convert::lane(lane, &self.view()),
            already_attached: false,
        })
    }

    fn logged(output: &AttachOutput) -> Logged {
        let verb = if output.already_attached {
            "already attached"
        } else {
            "attached"
        };
        Logged::lane(
            &output.lane.ref_,
            format!("{verb} thread {}", output.lane.id),
        )
    }
}

/// What [`Service::sync_lane`] found: the thread's turns, the items it added and updated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Synced {
    pub turns: u64,
    pub added: u64,
    pub updated: u64,
}

impl Service {
    /// Brings the registry's copy of `lane` up to date with the thread Codex holds (turns,
    /// items, title): what `sync` does, and `history` before it counts.
    pub(crate) async fn sync_lane(&self, lane: &LaneRow) -> Result<Synced, DispatchError> {
        let (server, _) = self.server_of(&lane.thread_id)?;
        let read = server
            .call(&ThreadReadParams {
                thread_id: lane.thread_id.clone(),
                include_turns: Some(true),
            })
            .await
            .map_err(|err| thread_error(&lane.thread_id, err))?;
        type Known = HashMap<(Option<String>, String), (Option<String>, Option<String>)>;
        let known: Known = self
            .registry()
            .tail(&lane.lane_ref, u32::MAX)
            .await?
            .into_iter()
            .map(|item| ((item.turn_id, item.item_id), (item.text, item.status)))
            .collect();
        let at_ms = now_ms();
        let (mut added, mut updated) = (0u64, 0u64);
        let mut facts = Vec::new();
        for turn in &read.thread.turns {
            let row = turn_row(turn);
            facts.push(if row.status == TurnStatus::InProgress {
                Fact::TurnStarted {
                    turn_id: row.turn_id.clone(),
                    at_ms: row.started_at_ms.unwrap_or(at_ms),
                }
            } else {
                Fact::TurnCompleted { turn: row }
            });
            for item in &turn.items {
                let fact = item_fact(&turn.id, item, at_ms);
                if let Fact::Item {
                    turn_id,
                    item_id,
                    text,
                    status,
                    ..
                } = &fact
                {
                    match known.get(&(turn_id.clone(), item_id.clone())) {
                        None => added += 1,
                        Some((old_text, old_status))
                            if old_text != text || old_status != status =>
                        {
                            updated += 1
                        }
                        Some(_) => {}
                    }
                }
                facts.push(fact);
            }
        }
        if let Some(name) = &read.thread.name {
            facts.push(Fact::Title(Some(name.clone())));
        }
        self.registry()
            .record(&[Recorded {
                lane_ref: lane.lane_ref.as_str().into(),
                event: None,
                facts: facts.into(),
            }])
            .await?;
        self.events_stored().await;
        Ok(Synced {
            turns: read.thread.turns.len() as u64,
            added,
            updated,
        })
    }
}

/// `sync`.
impl Handle<SyncInput> for Service {
    async fn handle(&self, input: SyncInput) -> Result<SyncOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let synced = self.sync_lane(&lane).await?;
        Ok(SyncOutput {
            lane: SyncedLane {
                ref_: lane.lane_ref,
                id: lane.thread_id,
            },
            turns: synced.turns,
            items_added: synced.added,
            items_updated: synced.updated,
        })
    }

    fn logged(output: &SyncOutput) -> Logged {
        Logged::lane(
            &output.lane.ref_,
            format!(
                "synced {} turns: {} new items, {} updated",
                output.turns, output.items_added, output.items_updated
            ),
        )
    }
}

/// `rename`.
impl Handle<RenameInput> for Service {
    async fn handle(&self, input: RenameInput) -> Result<RenameOutput, DispatchError> {
        let title = input.title.to_string();
        let server = self.app_server().server()?;
        match self.target(&input.target).await? {
            Target::Lane(lane) => {
                let (server, _) = self.server_of(&lane.thread_id)?;
                server
                    .call(&ThreadSetNameParams {
                        thread_id: lane.thread_id.clone(),
                        name: title.clone(),
                    })
                    .await
                    .map_err(|err| thread_error(&lane.thread_id, err))?;
                self.registry()
                    .set_title(&lane.lane_ref, Some(&title))
                    .await?;
                Ok(RenameOutput {
                    id: lane.thread_id,
                    ref_: Some(lane.lane_ref),
                    title: Some(title),
                    archived: Some(lane.archived),
                    scope: RenameOutputScope::Managed,
                })
            }
            Target::Unmanaged(thread_id) => {
                server
                    .call(&ThreadSetNameParams {
                        thread_id: thread_id.clone(),
                        name: title.clone(),
                    })
                    .await
                    .map_err(|err| thread_error(&thread_id, err))?;
                Ok(RenameOutput {
                    id: thread_id,
                    ref_: None,
                    title: Some(title),
                    archived: None,
                    scope: RenameOutputScope::Unmanaged,
                })
            }
        }
    }

    fn logged(output: &RenameOutput) -> Logged {
        Logged {
            lane: output.ref_.clone(),
            detail: format!("renamed thread {}", output.id),
        }
    }
}

impl Service {
    async fn set_archived(
        &self,
        target: &str,
        archived: bool,
    ) -> Result<(String, Option<String>, Option<String>), DispatchError> {
        self.app_server().server()?;
        let (thread_id, lane) = match self.target(target).await? {
            Target::Lane(lane) => (lane.thread_id.clone(), Some(lane)),
            Target::Unmanaged(thread_id) => (thread_id, None),
        };
        let (server, _) = self.server_of(&thread_id)?;
        let mut title = lane.as_ref().and_then(|l| l.title.clone());
        if archived {
            server
                .call(&ThreadArchiveParams {
                    thread_id: thread_id.clone(),
                })
                .await
                .map_err(|err| thread_error(&thread_id, err))?;
        } else {
            let restored = server
                .call(&ThreadUnarchiveParams {
                    thread_id: thread_id.clone(),
                })
                .await
                .map_err(|err| thread_error(&thread_id, err))?;
            title = title.or(restored.thread.name);
        }
        if let Some(lane) = &lane {
            self.registry()
                .record(&[Recorded {
                    lane_ref: lane.lane_ref.as_str().into(),
                    event: None,
                    facts: smallvec![Fact::Archived(archived)],
                }])
                .await?;
            self.events_stored().await;
        }
        Ok((thread_id, lane.map(|l| l.lane_ref), title))
    }
}

/// `archive`.
impl Handle<ArchiveInput> for Service {
    async fn handle(&self, input: ArchiveInput) -> Result<ArchiveOutput, DispatchError> {
        let (id, lane_ref, title) = self.set_archived(&input.target, true).await?;
        let scope = if lane_ref.is_some() {
            ArchiveOutputScope::Managed
        } else {
            ArchiveOutputScope::Unmanaged
        };
        Ok(ArchiveOutput {
            id,
            ref_: lane_ref,
            title,
            archived: Some(true),
            scope,
        })
    }

    fn logged(output: &ArchiveOutput) -> Logged {
        Logged {
            lane: output.ref_.clone(),
            detail: format!("archived thread {}", output.id),
        }
    }
}

/// `restore`.
impl Handle<RestoreInput> for Service {
    async fn handle(&self, input: RestoreInput) -> Result<RestoreOutput, DispatchError> {
        let (id, lane_ref, title) = self.set_archived(&input.target, false).await?;
        let scope = if lane_ref.is_some() {
            RestoreOutputScope::Managed
        } else {
            RestoreOutputScope::Unmanaged
        };
        Ok(RestoreOutput {
            id,
            ref_: lane_ref,
            title,
            archived: Some(false),
            scope,
        })
    }

    fn logged(output: &RestoreOutput) -> Logged {
        Logged {
            lane: output.ref_.clone(),
            detail: format!("restored thread {}", output.id),
        }
    }
}
