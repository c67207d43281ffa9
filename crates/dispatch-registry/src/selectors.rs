//! Selectors: resolving what a user typed to name a lane.
//!
//! The rules, first match wins: an exact ref; an exact thread id; `@handle` (unique); an exact
//! title; a unique ref prefix. A title or prefix that matches several lanes is ambiguous and
//! yields the candidates, ordered by ref. An exact title wins over a prefix so that a lane
//! named like the start of another lane's ref (`new --name nvV`) is never shadowed by it.

use serde::{Deserialize, Serialize};

use crate::lanes::{LaneRow, select_lanes};
use crate::refs::could_be_ref_prefix;
use crate::{Registry, RegistryError};

/// What a selector names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A resolution is built once per command; boxing the lane would only add noise at every match.
#[allow(clippy::large_enum_variant)]
pub enum Resolution {
    /// Exactly one lane.
    Found(LaneRow),
    /// No lane.
    NotFound,
    /// Several lanes, ordered by ref (`ambiguous_selector`).
    Ambiguous(Vec<Candidate>),
}

/// One of the lanes an ambiguous selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The lane's ref.
    pub lane_ref: String,
    /// The Codex thread id.
    pub thread_id: String,
    /// The title.
    pub title: Option<String>,
    /// The handle, without `@`.
    pub handle: Option<String>,
}

impl From<&LaneRow> for Candidate {
    fn from(lane: &LaneRow) -> Candidate {
        Candidate {
            lane_ref: lane.lane_ref.clone(),
            thread_id: lane.thread_id.clone(),
            title: lane.title.clone(),
            handle: lane.handle.clone(),
        }
    }
}

/// How many matches a handle, prefix or title lookup reads: enough to tell one from many and
/// to list a useful set of candidates.
const MAX_CANDIDATES: i64 = 50;

impl Registry {
    /// Resolves a selector; archived lanes are found like any other.
    pub async fn resolve(&self, selector: &str) -> Result<Resolution, RegistryError> {
        if selector.is_empty() {
            return Ok(Resolution::NotFound);
        }
        if let Some(lane) = self.lane(selector).await? {
            return Ok(Resolution::Found(lane));
        }
        if let Some(lane) = self.lane_by_thread(selector).await? {
            return Ok(Resolution::Found(lane));
        }
        if let Some(handle) = selector.strip_prefix('@').filter(|h| !h.is_empty()) {
            let found = self
                .matching(
                    select_lanes!("WHERE handle = ?1 ORDER BY ref LIMIT ?2"),
                    handle,
                )
                .await?;
            if let Some(resolution) = decide(found) {
                return Ok(resolution);
            }
        }
        let found = self
            .matching(
                select_lanes!("WHERE title = ?1 ORDER BY ref LIMIT ?2"),
                selector,
            )
            .await?;
        if let Some(resolution) = decide(found) {
            return Ok(resolution);
        }
        if !could_be_ref_prefix(selector) {
            return Ok(Resolution::NotFound);
        }
        // Base62 sorts below '{' in ASCII, so every ref starting with the prefix lies in
        // [prefix, prefix + "{").
        let found = self
            .matching(
                select_lanes!("WHERE ref >= ?1 AND ref < ?1 || '{' ORDER BY ref LIMIT ?2"),
                selector,
            )
            .await?;
        Ok(decide(found).unwrap_or(Resolution::NotFound))
    }

    /// Runs a lookup query taking the selector text and a limit.
    async fn matching(&self, sql: &'static str, text: &str) -> Result<Vec<LaneRow>, RegistryError> {
        let lanes: String = sqlx::query_scalar(sql)
            .bind(text)
            .bind(MAX_CANDIDATES)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "resolving a selector"))?;
        let mut lanes = self.lanes_from(&lanes)?;
        lanes.sort_unstable_by(|a, b| a.lane_ref.cmp(&b.lane_ref));
        Ok(lanes)
    }
}

/// One match is found, several are ambiguous, none means "try the next rule".
fn decide(mut found: Vec<LaneRow>) -> Option<Resolution> {
    match found.len() {
        0 => None,
        1 => found.pop().map(Resolution::Found),
        _ => Some(Resolution::Ambiguous(
            found.iter().map(Candidate::from).collect(),
        )),
    }
}
