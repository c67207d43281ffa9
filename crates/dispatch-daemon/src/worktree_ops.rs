//! `worktree remove`: removes the git worktree `new` made for a lane (a dirty one only with
//! `force`), keeps its branch, and forgets it in the registry. The git side is
//! `worktree.rs`.

use dispatch_contract::types::{WorktreeRemoveInput, WorktreeRemoveOutput};
use dispatch_contract::{DispatchError, Handle, Hint, Logged, operations};
use serde_json::json;

use crate::service::Service;
use crate::worktree;

/// `worktree remove`.
impl Handle<WorktreeRemoveInput> for Service {
    async fn handle(
        &self,
        input: WorktreeRemoveInput,
    ) -> Result<WorktreeRemoveOutput, DispatchError> {
        let lane = self.resolve(&input.lane).await?;
        let Some(tree) = lane.worktree.clone() else {
            return Err(DispatchError::invalid_input(format!(
                "lane {} has no worktree dispatch made (or it was removed already)",
                lane.lane_ref
            ))
            .with_hint(
                Hint::new("only lanes made with a worktree have one ({0})").run(
                    &operations::NEW,
                    json!({ "name": "<name>", "worktree": true }),
                ),
            ));
        };
        worktree::remove(&lane.lane_ref, &tree, input.force).await?;
        self.registry()
            .set_worktree(&lane.lane_ref, None)
            .await
            .map_err(|err| {
                DispatchError::from(err).after(format_args!(
                    "the worktree {} was removed, but the registry could not forget it",
                    tree.path
                ))
            })?;
        Ok(WorktreeRemoveOutput {
            lane: lane.lane_ref,
            path: tree.path,
            branch: tree.branch,
            forced: input.force,
        })
    }

    fn logged(output: &WorktreeRemoveOutput) -> Logged {
        let forced = if output.forced { " (forced)" } else { "" };
        Logged::lane(
            &output.lane,
            format!(
                "removed worktree {}{forced}; branch {} kept",
                output.path, output.branch
            ),
        )
    }
}
