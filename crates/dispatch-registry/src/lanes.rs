//! Read-only views of the `lanes` table.

use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// How many lanes there are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneCounts {
    /// All lanes, archived ones included.
    pub total: i64,
    /// Lanes with no turn in flight.
    pub idle: i64,
    /// Lanes running a turn.
    pub busy: i64,
    /// Lanes blocked on an approval request.
    pub waiting_approval: i64,
    /// Lanes whose last turn failed.
    pub error: i64,
    /// Lanes that were archived.
    pub archived: i64,
}

impl Registry {
    /// Counts lanes by status.
    pub async fn lane_counts(&self) -> Result<LaneCounts, RegistryError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM lanes GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(RegistryError::db_with(self.path(), "counting lanes"))?;

        let mut counts = LaneCounts::default();
        for (status, count) in rows {
            let slot = match status.as_str() {
                "idle" => &mut counts.idle,
                "busy" => &mut counts.busy,
                "waiting_approval" => &mut counts.waiting_approval,
                "error" => &mut counts.error,
                "archived" => &mut counts.archived,
                other => {
                    return Err(RegistryError::corrupt(
                        self.path(),
                        format!("{count} lane(s) have unknown status {other:?}"),
                    ));
                }
            };
            *slot = count;
            counts.total += count;
        }
        Ok(counts)
    }
}
