//! `list` in pages (keyset pagination on the activity order) and the lanes' topology: the
//! parent each lane was forked from, as dispatch recorded it (`parent_ref`) or as Codex names
//! it (`parent_thread_id`, when that thread is a lane).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::lanes::{LaneElement, LaneRecord, LaneRow, LaneStatus, select_lanes};
use crate::{Registry, RegistryError};

/// Which lanes [`Registry::list_lanes_page`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFilter {
    /// Only lanes showing this status. [`LaneStatus::Archived`] lists the archived lanes.
    pub status: Option<LaneStatus>,
    /// Include archived lanes (implied by `status: Some(Archived)`).
    pub include_archived: bool,
    /// Only these lanes (refs); `None`: every lane.
    pub only: Option<Vec<String>>,
}

/// Where a page starts: after this lane in the activity order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageAfter {
    /// The last lane's activity time.
    pub updated_at_ms: i64,
    /// The last lane's ref.
    pub lane_ref: String,
}

/// One page of lanes (as rows, or as what [`Registry::list_lanes_page_as`] made of them).
#[derive(Debug, Clone, PartialEq)]
pub struct LanePage<T = LaneRow> {
    /// The lanes, newest activity first (then by ref).
    pub lanes: Vec<T>,
    /// Where the next page starts, when there are more lanes.
    pub next: Option<PageAfter>,
}

/// The lanes a page holds room for before it has read any: the largest page `list` asks for.
const PAGE_ROOM: usize = 1000;

/// A lane in a topology answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyRow {
    /// The lane.
    pub lane_ref: String,
    /// Its Codex thread.
    pub thread_id: String,
    /// Its parent lane, if it has one that is a lane.
    pub parent_ref: Option<String>,
    /// Depth below the root of the answer (0 for the root).
    pub depth: i64,
}

/// The parent of lane `l` as SQL: the recorded parent, else the lane of Codex's parent thread.
macro_rules! parent_of {
    ($l:literal) => {
        concat!(
            "COALESCE(",
            $l,
            ".parent_ref, (SELECT p.ref FROM lanes p WHERE p.thread_id = ",
            $l,
            ".parent_thread_id))"
        )
    };
}

/// Most lanes a tree answer holds.
pub const TREE_LIMIT: i64 = 10_000;
/// Deepest level a tree answer descends to.
pub const TREE_DEPTH: i64 = 64;

/// Where a page continues after `lane`.
fn after_lane(lane: &LaneRow) -> PageAfter {
    PageAfter {
        updated_at_ms: lane.updated_at_ms,
        lane_ref: lane.lane_ref.clone(),
    }
}

/// The page order: newest activity first, then by ref.
fn page_order(a: &PageAfter, b: &PageAfter) -> std::cmp::Ordering {
    crate::lanes::activity_order(
        (a.updated_at_ms, &a.lane_ref),
        (b.updated_at_ms, &b.lane_ref),
    )
}

/// `lanes` and their `keys` (one each, in the same order) in the page order.
fn in_page_order<T>(lanes: Vec<T>, keys: Vec<PageAfter>) -> (Vec<T>, Vec<PageAfter>) {
    if keys.is_sorted_by(|a, b| page_order(a, b).is_le()) {
        return (lanes, keys);
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| page_order(&keys[a], &keys[b]));
    let mut lanes: Vec<Option<T>> = lanes.into_iter().map(Some).collect();
    let mut keys: Vec<Option<PageAfter>> = keys.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|at| Some((lanes.get_mut(at)?.take()?, keys.get_mut(at)?.take()?)))
        .unzip()
}

/// The `WHERE .. ORDER BY .. LIMIT` of a page of lanes, binding `?1`..`?6` as
/// [`bind_page`] does: every query of a page selects its lanes with it, so they agree.
macro_rules! page_rest {
    () => {
        concat!(
            $crate::lanes::status_filter!(),
            " AND (?3 IS NULL OR ref IN (SELECT value FROM json_each(?3))) \
         AND updated_at_ms <= COALESCE(?4, 9223372036854775807) \
         AND (?4 IS NULL OR updated_at_ms < ?4 OR ref > ?5) \
         ORDER BY updated_at_ms DESC, ref LIMIT ?6"
        )
    };
}
pub(crate) use page_rest;

/// The rows of a page, as one JSON text ([`select_lanes`] with [`page_rest`]).
pub(crate) const SELECT_PAGE: &str = select_lanes!(page_rest!());

/// Binds [`page_rest`]'s parameters: the filter, the refs it is limited to (JSON, from
/// [`Registry::only_refs`]), where the page starts and one lane more than it holds (to know
/// whether another page follows).
pub(crate) fn bind_page<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    filter: &'q PageFilter,
    only: Option<String>,
    after: Option<&'q PageAfter>,
    limit: u32,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(filter.status.map(LaneStatus::as_str))
        .bind(filter.include_archived)
        .bind(only)
        .bind(after.map(|a| a.updated_at_ms))
        .bind(after.map(|a| a.lane_ref.as_str()))
        .bind(i64::from(limit) + 1)
}

impl Registry {
    /// A page of at most `limit` lanes matching `filter`, newest activity first (then by ref),
    /// starting after `after`. Archived lanes are left out unless `include_archived` is set or
    /// the filter asks for [`LaneStatus::Archived`].
    pub async fn list_lanes_page(
        &self,
        filter: &PageFilter,
        after: Option<&PageAfter>,
        limit: u32,
    ) -> Result<LanePage, RegistryError> {
        self.list_lanes_page_as(filter, after, limit, |row| row)
            .await
    }

    /// [`Registry::list_lanes_page`], each lane converted by `convert` as soon as it is
    /// parsed: a page of 1,000 lanes is never held as rows (some 450 KiB, a fresh mapping
    /// under the daemon's fixed mmap threshold) beside what they became.
    pub async fn list_lanes_page_as<T>(
        &self,
        filter: &PageFilter,
        after: Option<&PageAfter>,
        limit: u32,
        mut convert: impl FnMut(LaneRow) -> T,
    ) -> Result<LanePage<T>, RegistryError> {
        self.page_of::<LaneRecord, T>(SELECT_PAGE, filter, after, limit, |row, ()| convert(row))
            .await
    }

    /// A page read with `statement` ([`page_rest`]'s selection, as a JSON array of `E`), each
    /// lane converted by `convert`, with what came with it, as soon as it is parsed.
    pub(crate) async fn page_of<E: LaneElement, T>(
        &self,
        statement: &'static str,
        filter: &PageFilter,
        after: Option<&PageAfter>,
        limit: u32,
        mut convert: impl FnMut(LaneRow, E::With) -> T,
    ) -> Result<LanePage<T>, RegistryError> {
        let only = self.only_refs(filter)?;
        let row = bind_page(sqlx::query(statement), filter, only, after, limit)
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::db_with(
                self.path(),
                "listing a page of lanes",
            ))?;
        // Parsed where sqlx holds it: a page of 1,000 lanes is over 500 KiB of text.
        let text: &str = row.try_get(0).map_err(RegistryError::db_with(
            self.path(),
            "listing a page of lanes",
        ))?;
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let room = wanted.saturating_add(1).min(PAGE_ROOM + 1);
        let mut lanes = Vec::with_capacity(room);
        let mut keys = Vec::with_capacity(room);
        self.each_element::<E>(text, &mut |row, with| {
            keys.push(after_lane(&row));
            lanes.push(convert(row, with));
        })?;
        // `select_lanes` leaves the order of its array unspecified; SQLite hands the rows
        // over in the query's order, which is checked, and restored if it was not.
        let (mut lanes, mut keys) = in_page_order(lanes, keys);
        let next = if lanes.len() > wanted {
            lanes.truncate(wanted);
            keys.truncate(wanted);
            keys.pop()
        } else {
            None
        };
        Ok(LanePage { lanes, next })
    }

    /// The refs a filter limits a page to, as the JSON array [`page_rest`] reads.
    pub(crate) fn only_refs(&self, filter: &PageFilter) -> Result<Option<String>, RegistryError> {
        filter
            .only
            .as_ref()
            .map(|refs| {
                serde_json::to_string(refs).map_err(|err| {
                    RegistryError::corrupt(self.path(), format!("lane refs did not encode: {err}"))
                })
            })
            .transpose()
    }

    /// Records a lane's parents: the lane it was forked from (`parent_ref`) and the thread
    /// Codex names as its parent; `None` leaves a parent as it is.
    pub async fn set_parents(
        &self,
        lane_ref: &str,
        parent_ref: Option<&str>,
        parent_thread_id: Option<&str>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE lanes SET parent_ref = COALESCE(?2, parent_ref), \
               parent_thread_id = COALESCE(?3, parent_thread_id) WHERE ref = ?1",
        )
        .bind(lane_ref)
        .bind(parent_ref)
        .bind(parent_thread_id)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "recording a lane's parent",
        ))?;
        Ok(())
    }

    /// The lane's parent lane: `(ref, thread id)`, if it has one.
    pub async fn parent_lane(
        &self,
        lane_ref: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        sqlx::query_as(concat!(
            "SELECT p.ref, p.thread_id FROM lanes l JOIN lanes p ON p.ref = ",
            parent_of!("l"),
            " WHERE l.ref = ?1"
        ))
        .bind(lane_ref)
        .fetch_optional(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's parent",
        ))
    }

    /// The lane's direct children, `(ref, thread id)`, oldest first; at most `limit`.
    pub async fn child_lanes(
        &self,
        lane_ref: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        sqlx::query_as(
            "SELECT c.ref, c.thread_id FROM lanes c WHERE c.parent_ref = ?1 \
             UNION \
             SELECT c.ref, c.thread_id FROM lanes c JOIN lanes p ON p.ref = ?1 \
               WHERE c.parent_ref IS NULL AND c.parent_thread_id = p.thread_id \
             ORDER BY 1 LIMIT ?2",
        )
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's children",
        ))
    }

    /// The lane and every lane below it, depth first (children by ref), with their depth;
    /// at most [`TREE_LIMIT`] lanes and [`TREE_DEPTH`] levels (a cycle stops there too).
    pub async fn lane_tree(&self, lane_ref: &str) -> Result<Vec<TopologyRow>, RegistryError> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(concat!(
            "WITH RECURSIVE parents (ref, thread_id, parent) AS ( \
               SELECT l.ref, l.thread_id, ",
            parent_of!("l"),
            " FROM lanes l), \
             tree (ref, thread_id, parent, depth, path) AS ( \
               SELECT ref, thread_id, NULL, 0, ref FROM parents WHERE ref = ?1 \
               UNION ALL \
               SELECT c.ref, c.thread_id, c.parent, t.depth + 1, t.path || '/' || c.ref \
               FROM parents c JOIN tree t ON c.parent = t.ref \
               WHERE t.depth < ?2 AND instr(t.path, c.ref) = 0 \
             ) \
             SELECT ref, thread_id, parent, depth FROM tree ORDER BY path LIMIT ?3"
        ))
        .bind(lane_ref)
        .bind(TREE_DEPTH)
        .bind(TREE_LIMIT)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "reading a lane tree"))?;
        Ok(rows
            .into_iter()
            .map(|(lane_ref, thread_id, parent_ref, depth)| TopologyRow {
                lane_ref,
                thread_id,
                parent_ref,
                depth,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(updated_at_ms: i64, lane_ref: &str) -> PageAfter {
        PageAfter {
            updated_at_ms,
            lane_ref: lane_ref.to_owned(),
        }
    }

    /// Lanes handed over out of order are put in the page order, each with its own key;
    /// lanes already in order are left as they are.
    #[test]
    fn lanes_out_of_order_are_put_in_the_page_order_with_their_keys() {
        let keys = vec![
            key(5, "b"),
            key(9, "z"),
            key(5, "a"),
            key(1, "c"),
            key(9, "y"),
        ];
        let lanes: Vec<String> = keys.iter().map(|k| k.lane_ref.to_uppercase()).collect();
        let (lanes, keys) = in_page_order(lanes, keys);
        assert_eq!(lanes, ["Y", "Z", "A", "B", "C"]);
        assert_eq!(
            keys,
            [
                key(9, "y"),
                key(9, "z"),
                key(5, "a"),
                key(5, "b"),
                key(1, "c")
            ]
        );
        let (again, _) = in_page_order(lanes.clone(), keys);
        assert_eq!(again, lanes);
        let (none, no_keys) = in_page_order(Vec::<String>::new(), Vec::new());
        assert!(none.is_empty() && no_keys.is_empty());
    }
}
