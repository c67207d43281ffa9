//! `list`: lanes a page at a time behind an opaque cursor bound to its query, the Codex
//! threads that are not lanes (`unmanaged`, through `thread/list`), and a lane's family
//! (`parent`, `children_of`, `tree`) from recorded fork parents and Codex's parent threads.

use codex_app_server::protocol::{ThreadListCwdFilter, ThreadListParams};
use dispatch_contract::types::{ListInput, ListOutput, TreeNode, UnmanagedThread};
use dispatch_contract::{DispatchError, Encoded, Handle, Surface};
use dispatch_registry::{Kept, PageAfter, PageFilter, TREE_LIMIT, TopologyRow};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::convert;
use crate::errors::app_server_error;
use crate::lane_texts::{LaneTexts, Read};
use crate::service::Service;

/// Most `thread/list` calls one `list --unmanaged` page makes (attached threads are skipped,
/// so a page may take more than one call).
const UNMANAGED_CALLS: usize = 20;

/// What a cursor continues.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// Lanes after this one.
    Lanes(PageAfter),
    /// Unmanaged threads from Codex's own cursor.
    Threads(String),
}

/// The query a cursor is bound to: every input that selects, none that sizes the page.
fn query_key(input: &ListInput) -> String {
    let key = json!({
        "status": input.status.as_ref().map(convert::wire_name),
        "all": input.all,
        "unmanaged": input.unmanaged,
        "archived": input.archived,
        "cwd": input.cwd.as_ref().map(|v| v.as_str()),
        "parent": input.parent.as_ref().map(|v| v.as_str()),
        "children_of": input.children_of.as_ref().map(|v| v.as_str()),
        "tree": input.tree.as_ref().map(|v| v.as_str()),
    });
    let digest = Sha256::digest(key.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The opaque text of a cursor: hex of `v1|<query>|<position>`.
fn encode_cursor(query: &str, cursor: &Cursor) -> String {
    let position = match cursor {
        Cursor::Lanes(after) => format!("L|{}|{}", after.updated_at_ms, after.lane_ref),
        Cursor::Threads(codex) => format!("U|{codex}"),
    };
    format!("v1|{query}|{position}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a cursor back, refusing one that is not `list`'s or belongs to another query.
fn decode_cursor(text: &str, query: &str) -> Result<Cursor, DispatchError> {
    let unreadable = || {
        DispatchError::invalid_input("the cursor is not one that `list` returned")
            .with_hint("pass `next_cursor` exactly as a previous page returned it, or start over without a cursor")
    };
    let bytes = (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(unreadable)?;
    let plain = String::from_utf8(bytes).map_err(|_| unreadable())?;
    let mut parts = plain.splitn(4, '|');
    let (Some("v1"), Some(bound), Some(kind), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unreadable());
    };
    if bound != query {
        return Err(DispatchError::invalid_input(
            "the cursor belongs to another query: its filters differ from this call's",
        )
        .with_hint(
            "repeat the call with the same filters as the one that returned the cursor, or start over without a cursor",
        ));
    }
    match kind {
        "L" => {
            let (at, lane_ref) = rest.split_once('|').ok_or_else(unreadable)?;
            let updated_at_ms = at.parse().map_err(|_| unreadable())?;
            Ok(Cursor::Lanes(PageAfter {
                updated_at_ms,
                lane_ref: lane_ref.to_owned(),
            }))
        }
        "U" => Ok(Cursor::Threads(rest.to_owned())),
        _ => Err(unreadable()),
    }
}

/// Refuses combinations of inputs that mean nothing together.
fn check_combination(input: &ListInput) -> Result<(), DispatchError> {
    let family = [
        input.parent.is_some(),
        input.children_of.is_some(),
        input.tree.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if family > 1 {
        return Err(DispatchError::invalid_input(
            "`parent`, `children_of` and `tree` are alternatives: give one",
        ));
    }
    if input.unmanaged && (family > 0 || input.status.is_some() || input.all) {
        return Err(DispatchError::invalid_input(
            "unmanaged threads are not lanes: they have no status, archive flag or family here",
        )
        .with_hint("leave out the lane filters, or list lanes without `unmanaged`"));
    }
    if !input.unmanaged && (input.archived || input.cwd.is_some()) {
        return Err(DispatchError::invalid_input(
            "`archived` and `cwd` filter unmanaged threads: they need `unmanaged`",
        ));
    }
    Ok(())
}

fn tree_node(row: TopologyRow, depth_base: i64) -> TreeNode {
    TreeNode {
        ref_: row.lane_ref,
        parent: row.parent_ref,
        depth: u64::try_from(row.depth - depth_base).unwrap_or(0),
    }
}

impl Service {
    /// The lanes a family filter selects, and their tree; `None`: no family filter.
    async fn family(
        &self,
        input: &ListInput,
    ) -> Result<Option<(Vec<String>, Vec<TreeNode>)>, DispatchError> {
        if let Some(selector) = &input.tree {
            let lane = self.resolve(selector).await?;
            let rows = self.registry().lane_tree(&lane.lane_ref).await?;
            let refs = rows.iter().map(|r| r.lane_ref.clone()).collect();
            let nodes = rows.into_iter().map(|r| tree_node(r, 0)).collect();
            return Ok(Some((refs, nodes)));
        }
        if let Some(selector) = &input.children_of {
            let lane = self.resolve(selector).await?;
            let children = self
                .registry()
                .child_lanes(
                    &lane.lane_ref,
                    u32::try_from(TREE_LIMIT).unwrap_or(u32::MAX),
                )
                .await?;
            let nodes = children
                .iter()
                .map(|(child, _)| TreeNode {
                    ref_: child.clone(),
                    parent: Some(lane.lane_ref.clone()),
                    depth: 0,
                })
                .collect();
            let refs = children.into_iter().map(|(child, _)| child).collect();
            return Ok(Some((refs, nodes)));
        }
        if let Some(selector) = &input.parent {
            let lane = self.resolve(selector).await?;
            let Some((parent, _)) = self.registry().parent_lane(&lane.lane_ref).await? else {
                return Ok(Some((Vec::new(), Vec::new())));
            };
            let grandparent = self.registry().parent_lane(&parent).await?;
            let node = TreeNode {
                ref_: parent.clone(),
                parent: grandparent.map(|(r, _)| r),
                depth: 0,
            };
            return Ok(Some((vec![parent], vec![node])));
        }
        Ok(None)
    }

    /// A page of Codex threads that are not lanes.
    async fn unmanaged_page(
        &self,
        input: &ListInput,
        from: Option<String>,
        query: &str,
    ) -> Result<ListOutput, DispatchError> {
        let limit = usize::try_from(input.limit.get()).unwrap_or(usize::MAX);
        let server = self.app_server().server()?;
        let mut threads = Vec::new();
        let mut cursor = from;
        for _ in 0..UNMANAGED_CALLS {
            let wanted = u32::try_from(limit - threads.len()).unwrap_or(u32::MAX);
            let listed = server
                .call(&ThreadListParams {
                    cursor: cursor.clone(),
                    limit: Some(wanted),
                    archived: Some(input.archived),
                    cwd: input
                        .cwd
                        .as_ref()
                        .map(|cwd| ThreadListCwdFilter::One(cwd.as_str().to_owned())),
                    model_providers: Some(Vec::new()),
                    ..Default::default()
                })
                .await
                .map_err(app_server_error)?;
            for thread in listed.data {
                if self.registry().lane_by_thread(&thread.id).await?.is_some() {
                    continue;
                }
                threads.push(UnmanagedThread {
                    parent_id: thread.forked_from_id.or(thread.parent_thread_id),
                    agent: thread.agent_nickname.or(thread.agent_role),
                    title: thread.name,
                    preview: thread.preview,
                    cwd: thread.cwd.display().to_string(),
                    created_at: convert::rfc3339(seconds_to_ms(thread.created_at)).into(),
                    updated_at: convert::rfc3339(seconds_to_ms(thread.updated_at)).into(),
                    id: thread.id,
                });
            }
            cursor = listed.next_cursor;
            if threads.len() >= limit || cursor.is_none() {
                break;
            }
        }
        Ok(ListOutput {
            lanes: Vec::new(),
            next_cursor: cursor.map(|c| encode_cursor(query, &Cursor::Threads(c))),
            threads,
            tree: Vec::new(),
        })
    }
}

/// Codex reports thread times in seconds.
fn seconds_to_ms(value: i64) -> i64 {
    if value > 100_000_000_000 {
        value
    } else {
        value.saturating_mul(1000)
    }
}

/// `list`.
impl Handle<ListInput> for Service {
    async fn handle(&self, input: ListInput) -> Result<ListOutput, DispatchError> {
        check_combination(&input)?;
        let query = query_key(&input);
        let cursor = input
            .cursor
            .as_ref()
            .map(|text| decode_cursor(text, &query))
            .transpose()?;
        if input.unmanaged {
            let from = match cursor {
                Some(Cursor::Threads(codex)) => Some(codex),
                None => None,
                Some(Cursor::Lanes(_)) => {
                    return Err(DispatchError::invalid_input(
                        "the cursor continues a list of lanes, not of unmanaged threads",
                    ));
                }
            };
            return self.unmanaged_page(&input, from, &query).await;
        }
        let after = match cursor {
            Some(Cursor::Lanes(after)) => Some(after),
            None => None,
            Some(Cursor::Threads(_)) => {
                return Err(DispatchError::invalid_input(
                    "the cursor continues a list of unmanaged threads, not of lanes",
                ));
            }
        };
        let (only, tree) = match self.family(&input).await? {
            Some((refs, nodes)) => (Some(refs), nodes),
            None => (None, Vec::new()),
        };
        let filter = PageFilter {
            status: input.status.map(convert::registry_status),
            // A family is shown whole, archived members included.
            include_archived: input.all || only.is_some(),
            only,
        };
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let view = self.view();
        let surface = Surface::current();
        let texts = self.lane_texts();
        let page = match texts.read(surface) {
            Read::Stamps => {
                // The lanes kept for their row version are copied; the others are read in the
                // same snapshot and converted as they are parsed; those seen unchanged before
                // are kept for the readings of the clock they hold for (none when they read
                // its value).
                let mut made = Vec::new();
                let page = self
                    .registry()
                    .list_lanes_page_kept(
                        &filter,
                        after.as_ref(),
                        limit,
                        |stamps| texts.kept(stamps, &view, surface),
                        |row, stamp, admit| {
                            let (lane, kept) = LaneTexts::make(row, stamp, &view, admit);
                            made.extend(kept);
                            lane
                        },
                    )
                    .await?;
                texts.keep(made, &view, surface);
                page
            }
            Read::Probe => {
                // After the plain calls: the page with its stamps in one statement, each lane
                // looked up as it is parsed (a page that still churns costs one read).
                let mut made = Vec::new();
                let mut probe =
                    texts.probe(&view, surface, usize::try_from(limit).unwrap_or(usize::MAX));
                let page = self
                    .registry()
                    .list_lanes_page_stamped(&filter, after.as_ref(), limit, |row, stamp| {
                        match probe.look(stamp, &view) {
                            Kept::Held(lane) => lane,
                            Kept::Make(admit) => {
                                let (lane, kept) = LaneTexts::make(row, stamp, &view, admit);
                                made.extend(kept);
                                lane
                            }
                        }
                    })
                    .await?;
                probe.finish();
                texts.keep(made, &view, surface);
                page
            }
            // Most of a recent page changed or read the clock: read this one plainly.
            Read::Plain => {
                self.registry()
                    .list_lanes_page_as(&filter, after.as_ref(), limit, |row| {
                        Encoded::Typed(convert::lane(row, &view))
                    })
                    .await?
            }
        };
        Ok(ListOutput {
            lanes: page.lanes,
            next_cursor: page
                .next
                .map(|after| encode_cursor(&query, &Cursor::Lanes(after))),
            threads: Vec::new(),
            tree,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use dispatch_contract::ErrorCode;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_query() {
        let after = Cursor::Lanes(PageAfter {
            updated_at_ms: 1_700_000_000_123,
            lane_ref: "ab|c12".into(),
        });
        let text = encode_cursor("q1", &after);
        assert_eq!(decode_cursor(&text, "q1").unwrap(), after);
        let other = decode_cursor(&text, "q2").unwrap_err();
        assert_eq!(other.code, ErrorCode::InvalidInput);
        assert!(other.message.contains("another query"), "{}", other.message);
        for junk in ["", "zz", "abc", "7631", "bm90IGEgY3Vyc29y"] {
            let err = decode_cursor(junk, "q1").unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidInput, "{junk}");
        }
        let threads = Cursor::Threads("codex|cursor".into());
        assert_eq!(
            decode_cursor(&encode_cursor("q1", &threads), "q1").unwrap(),
            threads
        );
    }
}
