//! Pages of lanes for a reader that keeps what it made of each lane (the daemon's cache of
//! encoded `list` entries): the page is read as stamps (ref, row version, activity time), the
//! reader says which lanes it still holds for those versions, and only the others' rows are
//! read, in the same read transaction, so the page's order and the rows agree.
//!
//! A row's `version` is bumped by a trigger on every UPDATE of it, and every INSERT into
//! `lanes` gives the row a new `incarnation` (migration 0011), so no writer, in this process or
//! another, can change a lane without changing its stamp.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::lanes::{LaneElement, LaneRecord, LaneRow, lane_json_array, select_lanes};
use crate::pages::{LanePage, PageAfter, PageFilter, SELECT_PAGE, bind_page, page_rest};
use crate::{Registry, RegistryError};

/// A lane's place in a page and the version of its row: the same stamp, the same row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneStamp {
    /// The lane's ref.
    pub lane_ref: String,
    /// Which INSERT made its row: a new one for every INSERT into `lanes`.
    pub incarnation: i64,
    /// Its row's version: bumped by every UPDATE of the row.
    pub version: i64,
    /// Its activity time (the page's order).
    pub updated_at_ms: i64,
}

/// The page order of two stamps (see `page_order`), without copying their refs.
fn stamp_order(a: &LaneStamp, b: &LaneStamp) -> std::cmp::Ordering {
    crate::lanes::activity_order(
        (a.updated_at_ms, &a.lane_ref),
        (b.updated_at_ms, &b.lane_ref),
    )
}

impl LaneStamp {
    /// Where a page continues after this lane.
    fn after(&self) -> PageAfter {
        PageAfter {
            updated_at_ms: self.updated_at_ms,
            lane_ref: self.lane_ref.clone(),
        }
    }
}

/// The stamps of a page, as one JSON text: (ref, incarnation, version, updated_at_ms) per
/// lane.
const SELECT_STAMPS: &str = concat!(
    "SELECT json_group_array(json_array(ref, incarnation, version, updated_at_ms)) FROM \
     (SELECT ref, incarnation, version, updated_at_ms FROM lanes ",
    page_rest!(),
    ")"
);

/// The rows of a page with their stamps, as one JSON text: `[row, incarnation, version]` per
/// lane (the row as [`select_lanes`] reads it; its activity time is in it).
const SELECT_PAGE_STAMPED: &str = concat!(
    "SELECT '[' || COALESCE(group_concat(j, ','), '') || ']' FROM (SELECT json_array(",
    lane_json_array!(),
    ", incarnation, version) AS j FROM lanes ",
    page_rest!(),
    ")"
);

/// An element of [`SELECT_PAGE_STAMPED`]'s array.
#[derive(Deserialize)]
struct StampedRecord(LaneRecord, i64, i64);

impl LaneElement for StampedRecord {
    type With = (i64, i64);

    fn into_parts(self) -> (LaneRecord, (i64, i64)) {
        (self.0, (self.1, self.2))
    }
}

/// The rows of the lanes named by `?1`, a JSON array of refs.
const SELECT_NAMED: &str = select_lanes!("WHERE ref IN (SELECT value FROM json_each(?1))");

/// What a reader holds for a lane of a page: the lane itself, or what it needs to make it
/// from its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept<T, M> {
    /// The reader holds the lane for this stamp.
    Held(T),
    /// The reader makes the lane from its row, with this.
    Make(M),
}

/// What `slot` says to make its lane with, if it is still to be made (it holds a placeholder
/// until the lane made takes its place).
fn take_make<T, M: Default>(slot: &mut Kept<T, M>) -> Option<M> {
    match slot {
        Kept::Make(with) => Some(std::mem::take(with)),
        Kept::Held(_) => None,
    }
}

impl Registry {
    /// [`Registry::list_lanes_page_as`] for a reader that keeps what it made of lanes: the
    /// same lanes, order and `next` for the same arguments. `kept` gets the page's stamps, in
    /// page order, and answers what it holds for each (one entry per stamp; a missing entry
    /// counts as `Make(M::default())`); the rows of the lanes it does not hold are read in the
    /// same read transaction and handed to `make` with their stamp and what `kept` answered.
    /// When the reader holds at most half of the page, the page's rows are read with the
    /// plain query (cheaper than naming most of them) and only the rows of the lanes it does
    /// not hold are handed to `make`.
    pub async fn list_lanes_page_kept<T, M: Default>(
        &self,
        filter: &PageFilter,
        after: Option<&PageAfter>,
        limit: u32,
        kept: impl FnOnce(&[LaneStamp]) -> Vec<Kept<T, M>>,
        mut make: impl FnMut(LaneRow, &LaneStamp, M) -> T,
    ) -> Result<LanePage<T>, RegistryError> {
        let db = || RegistryError::db_with(self.path(), "listing a page of lanes");
        let only = self.only_refs(filter)?;
        // One snapshot for the stamps and the rows: a deferred transaction reads the WAL as
        // of its first statement until it ends.
        let mut tx = self.pool.begin().await.map_err(db())?;
        let row = bind_page(
            sqlx::query(SELECT_STAMPS),
            filter,
            only.clone(),
            after,
            limit,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db())?;
        let text: &str = row.try_get(0).map_err(db())?;
        let mut stamps = self.stamps(text)?;
        // `json_group_array` leaves its order unspecified; each stamp carries its key.
        if !stamps.is_sorted_by(|a, b| stamp_order(a, b).is_le()) {
            stamps.sort_by(stamp_order);
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = if stamps.len() > wanted {
            stamps.truncate(wanted);
            stamps.last().map(LaneStamp::after)
        } else {
            None
        };
        // Held lanes and, in place of each lane to make, what to make it with: the slot of a
        // lane made holds it.
        let mut lanes = kept(&stamps);
        lanes.resize_with(stamps.len(), || Kept::Make(M::default()));
        let mut missing = lanes
            .iter()
            .filter(|lane| matches!(lane, Kept::Make(_)))
            .count();
        if missing * 2 > stamps.len() {
            // Most of the page: read it whole, in page order, and match the rows to the
            // stamps by place (by ref when SQLite's order differs).
            let row = bind_page(sqlx::query(SELECT_PAGE), filter, only, after, limit)
                .fetch_one(&mut *tx)
                .await
                .map_err(db())?;
            let text: &str = row.try_get(0).map_err(db())?;
            let mut next_at = 0;
            let mut by_ref: Option<HashMap<&str, usize>> = None;
            self.each_lane(text, &mut |row| {
                if missing == 0 {
                    return;
                }
                let at = if stamps
                    .get(next_at)
                    .is_some_and(|stamp| stamp.lane_ref == row.lane_ref)
                {
                    Some(next_at)
                } else {
                    by_ref
                        .get_or_insert_with(|| {
                            stamps
                                .iter()
                                .enumerate()
                                .map(|(at, stamp)| (stamp.lane_ref.as_str(), at))
                                .collect()
                        })
                        .get(row.lane_ref.as_str())
                        .copied()
                };
                if let Some(at) = at {
                    next_at = at + 1;
                    if let (Some(slot), Some(stamp)) = (lanes.get_mut(at), stamps.get(at))
                        && let Some(with) = take_make(slot)
                    {
                        *slot = Kept::Held(make(row, stamp, with));
                        missing -= 1;
                    }
                }
            })?;
        } else if missing > 0 {
            let wanted: HashMap<&str, usize> = lanes
                .iter()
                .enumerate()
                .filter(|(_, lane)| matches!(lane, Kept::Make(_)))
                .filter_map(|(at, _)| Some((stamps.get(at)?.lane_ref.as_str(), at)))
                .collect();
            let refs: Vec<&str> = wanted.keys().copied().collect();
            let refs = serde_json::to_string(&refs).map_err(|err| {
                RegistryError::corrupt(self.path(), format!("lane refs did not encode: {err}"))
            })?;
            let row = sqlx::query(SELECT_NAMED)
                .bind(refs)
                .fetch_one(&mut *tx)
                .await
                .map_err(db())?;
            let text: &str = row.try_get(0).map_err(db())?;
            self.each_lane(text, &mut |row| {
                if let Some(&at) = wanted.get(row.lane_ref.as_str())
                    && let (Some(slot), Some(stamp)) = (lanes.get_mut(at), stamps.get(at))
                    && let Some(with) = take_make(slot)
                {
                    *slot = Kept::Held(make(row, stamp, with));
                }
            })?;
        }
        tx.commit().await.map_err(db())?;
        let lanes: Option<Vec<T>> = lanes
            .into_iter()
            .map(|lane| match lane {
                Kept::Held(lane) => Some(lane),
                Kept::Make(_) => None,
            })
            .collect();
        // Impossible in one snapshot: a stamped lane's row is there.
        let lanes = lanes.ok_or_else(|| {
            RegistryError::corrupt(
                self.path(),
                "a lane of the page was missing when its row was read",
            )
        })?;
        Ok(LanePage { lanes, next })
    }

    /// [`Registry::list_lanes_page_as`] with each lane's stamp, read in the same statement as
    /// its row (one read of the page): the same lanes, order and `next`, each lane converted
    /// by `convert` with its stamp as soon as it is parsed. For a reader that keeps what it
    /// made of lanes and expects most of the page to have changed.
    pub async fn list_lanes_page_stamped<T>(
        &self,
        filter: &PageFilter,
        after: Option<&PageAfter>,
        limit: u32,
        mut convert: impl FnMut(LaneRow, &LaneStamp) -> T,
    ) -> Result<LanePage<T>, RegistryError> {
        self.page_of::<StampedRecord, T>(
            SELECT_PAGE_STAMPED,
            filter,
            after,
            limit,
            |row, (incarnation, version)| {
                let stamp = LaneStamp {
                    lane_ref: row.lane_ref.clone(),
                    incarnation,
                    version,
                    updated_at_ms: row.updated_at_ms,
                };
                convert(row, &stamp)
            },
        )
        .await
    }

    /// Parses the stamps selected by [`SELECT_STAMPS`].
    fn stamps(&self, text: &str) -> Result<Vec<LaneStamp>, RegistryError> {
        let raw: Vec<(String, i64, i64, i64)> = serde_json::from_str(text).map_err(|err| {
            RegistryError::corrupt(self.path(), format!("lane stamps did not read back: {err}"))
        })?;
        Ok(raw
            .into_iter()
            .map(
                |(lane_ref, incarnation, version, updated_at_ms)| LaneStamp {
                    lane_ref,
                    incarnation,
                    version,
                    updated_at_ms,
                },
            )
            .collect())
    }
}
