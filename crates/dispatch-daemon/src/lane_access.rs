//! Reaching a lane: resolving a selector, the lane's App Server process (`placement.rs`)
//! with its thread loaded in it, and recording facts about the lane.

use codex_app_server::protocol::ThreadResumeParams;
use dispatch_contract::{DispatchError, ErrorCode};
use dispatch_registry::{Fact, LaneRow, Recorded, Resolution};
use serde_json::json;

use crate::errors::app_server_error;
use crate::service::Service;

impl Service {
    /// The lane `selector` names: `not_found` or `ambiguous_selector` otherwise.
    pub async fn resolve(&self, selector: &str) -> Result<LaneRow, DispatchError> {
        match self.registry().resolve(selector).await? {
            Resolution::Found(lane) => Ok(lane),
            Resolution::NotFound => Err(DispatchError::new(
                ErrorCode::NotFound,
                format!("no lane matches `{selector}`"),
            )),
            Resolution::Ambiguous(candidates) => {
                let listed: Vec<String> = candidates
                    .iter()
                    .map(|c| {
                        format!(
                            "{} ({}{})",
                            c.lane_ref,
                            c.title.as_deref().unwrap_or("untitled"),
                            c.handle
                                .as_deref()
                                .map(|h| format!(", @{h}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                Err(DispatchError::new(
                    ErrorCode::AmbiguousSelector,
                    format!(
                        "`{selector}` matches {} lanes: {}",
                        candidates.len(),
                        listed.join(", ")
                    ),
                )
                .with_details(json!({
                    "candidates": candidates.iter().map(|c| json!({
                        "ref": c.lane_ref, "id": c.thread_id, "title": c.title, "handle": c.handle
                    })).collect::<Vec<_>>()
                })))
            }
        }
    }

    /// Makes sure the current App Server has `thread_id` loaded (after a daemon or App Server
    /// restart it is not, nor after it was unloaded as idle), resuming it when needed.
    pub(crate) async fn ensure_loaded(
        &self,
        server: &codex_app_server::AppServer,
        generation: crate::supervisor::Generation,
        thread_id: &str,
    ) -> Result<(), DispatchError> {
        if self.is_loaded(generation, thread_id) {
            return Ok(());
        }
        // In a process a recycle is putting in place, wait for the old one to be gone first:
        // until then the old one holds the thread (operations that take the lane's write lock
        // wait for that anyway; this is for those that do not). Bounded by the old one's
        // shutdown grace.
        if let Some(replacing) = self.replacing.get(generation.process) {
            let mut gate = replacing.subscribe();
            // The value seen is dropped at once: a `Ref` held would block the recycle.
            let _gone = gate
                .wait_for(|fresh| *fresh != generation.incarnation)
                .await
                .map(drop);
        }
        server
            .call(&ThreadResumeParams {
                thread_id: thread_id.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(app_server_error)?;
        self.mark_loaded(generation, thread_id);
        self.unload_idle_excess(server, generation, thread_id).await;
        Ok(())
    }

    pub(crate) async fn record_facts(
        &self,
        lane_ref: &str,
        facts: Vec<Fact>,
    ) -> Result<(), DispatchError> {
        self.registry()
            .record(&[Recorded {
                lane_ref: lane_ref.into(),
                event: None,
                facts: facts.into(),
            }])
            .await?;
        self.events_stored().await;
        Ok(())
    }
}
