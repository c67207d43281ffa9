//! `history`: what the registry knows about lanes' work, as SQL aggregates over indexed
//! tables: one row per lane (from `lane_kinds`, `turns` and `item_files`, kept small by
//! triggers and folds, plus the items stored since the last fold: `crate::items_fold`), and
//! for one lane its turns, the tools it called and the files it changed.

use serde::{Deserialize, Serialize};

use crate::items_fold::unfolded_kinds_sql;
use crate::{Registry, RegistryError};

/// The item kinds that are tool calls.
pub const TOOL_KINDS: &[&str] = &[
    "command",
    "file_change",
    "mcp_tool_call",
    "dynamic_tool_call",
    "collab_agent_tool_call",
    "web_search",
    "image_view",
    "image_generation",
];

/// The item kinds `history` counts as tool calls, as an SQL list.
macro_rules! tool_kinds_sql {
    () => {
        "('command', 'file_change', 'mcp_tool_call', 'dynamic_tool_call', \
          'collab_agent_tool_call', 'web_search', 'image_view', 'image_generation')"
    };
}
pub(crate) use tool_kinds_sql;

/// The name of the tool an item called, as SQL over `items` aliased `$i`: `server.tool` of an
/// MCP call, the tool of a dynamic call, else the item's kind.
macro_rules! tool_name_sql {
    ($i:literal) => {
        concat!(
            "CASE WHEN ",
            $i,
            ".kind IN ('mcp_tool_call', 'dynamic_tool_call') AND COALESCE(",
            $i,
            ".text, '') <> '' THEN ",
            $i,
            ".text ELSE ",
            $i,
            ".kind END"
        )
    };
}
pub(crate) use tool_name_sql;

/// Item statuses that mean the call went wrong.
macro_rules! errored_sql {
    ($i:literal) => {
        concat!(
            "(",
            $i,
            ".status IN ('failed', 'declined') OR ",
            $i,
            ".kind = 'error')"
        )
    };
}
pub(crate) use errored_sql;

/// One lane's history in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LaneHistory {
    /// The lane.
    pub lane_ref: String,
    /// Its Codex thread.
    pub thread_id: String,
    /// Its title.
    pub title: Option<String>,
    /// Its working directory.
    pub cwd: Option<String>,
    /// Turns recorded.
    pub turns: i64,
    /// Items recorded.
    pub items: i64,
    /// Messages (the user's and the agent's).
    pub messages: i64,
    /// Tool calls (commands, file changes, MCP and other tool calls).
    pub tool_calls: i64,
    /// Distinct files changed.
    pub files_changed: i64,
    /// Tokens used, as Codex last reported the thread's total.
    pub tokens_used: Option<i64>,
    /// The first activity (Unix epoch milliseconds).
    pub first_at_ms: i64,
    /// The last activity (Unix epoch milliseconds).
    pub last_at_ms: i64,
}

/// One turn in a lane's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TurnHistory {
    /// The turn id.
    pub turn_id: String,
    /// `in_progress`, `completed`, `interrupted` or `failed`.
    pub status: String,
    /// The error of a failed turn.
    pub error: Option<String>,
    /// When it started.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub completed_at_ms: Option<i64>,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// Items recorded in it.
    pub items: i64,
    /// Tool calls in it.
    pub tool_calls: i64,
}

/// A tool and how often a lane called it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ToolHistory {
    /// The tool: an item kind (`command`, `file_change`, `web_search`, ...) or an MCP tool
    /// as `server.tool`.
    pub tool: String,
    /// Calls.
    pub calls: i64,
    /// Calls that failed or were declined.
    pub errored: i64,
    /// The last call (Unix epoch milliseconds).
    pub last_at_ms: i64,
}

/// A file and how often a lane changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FileHistory {
    /// The path, as Codex reported it.
    pub path: String,
    /// File-change items that touched it.
    pub changes: i64,
    /// The last change (Unix epoch milliseconds).
    pub last_at_ms: i64,
}

impl Registry {
    /// One row per lane, newest activity first (archived lanes only with
    /// `include_archived`), or just `only`'s row; at most `limit`.
    pub async fn history_overview(
        &self,
        only: Option<&str>,
        include_archived: bool,
        limit: u32,
    ) -> Result<Vec<LaneHistory>, RegistryError> {
        sqlx::query_as(concat!(
            "SELECT l.ref AS lane_ref, l.thread_id, l.title, l.cwd, \
               (SELECT COUNT(*) FROM turns t WHERE t.lane_ref = l.ref) AS turns, \
               COALESCE(k.items, 0) AS items, COALESCE(k.messages, 0) AS messages, \
               COALESCE(k.tools, 0) AS tool_calls, \
               (SELECT COUNT(DISTINCT f.path) FROM item_files f WHERE f.lane_ref = l.ref) \
                 AS files_changed, \
               json_extract(l.token_usage, '$.total.totalTokens') AS tokens_used, \
               MIN(l.created_at_ms, COALESCE(k.first_at_ms, l.created_at_ms)) AS first_at_ms, \
               MAX(l.updated_at_ms, COALESCE(k.last_at_ms, l.updated_at_ms)) AS last_at_ms \
             FROM lanes l LEFT JOIN ( \
               SELECT lane_ref, SUM(items) AS items, \
                 SUM(CASE WHEN kind IN ('agent_message', 'user_message') THEN items END) \
                   AS messages, \
                 SUM(CASE WHEN kind IN ",
            tool_kinds_sql!(),
            " THEN items END) AS tools, \
                 MIN(first_at_ms) AS first_at_ms, MAX(last_at_ms) AS last_at_ms \
               FROM ( \
                 SELECT lane_ref, kind, items, first_at_ms, last_at_ms FROM lane_kinds \
                 UNION ALL ",
            unfolded_kinds_sql!(),
            " ) GROUP BY lane_ref \
             ) k ON k.lane_ref = l.ref \
             WHERE (?1 IS NULL AND (?2 OR NOT (l.archived OR l.status = 'archived'))) \
               OR l.ref = ?1 \
             ORDER BY l.updated_at_ms DESC, l.ref LIMIT ?3"
        ))
        .bind(only)
        .bind(include_archived)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading the history overview",
        ))
    }

    /// The lane's turns, newest first, with their item and tool-call counts; at most `limit`.
    pub async fn history_turns(
        &self,
        lane_ref: &str,
        limit: u32,
    ) -> Result<Vec<TurnHistory>, RegistryError> {
        sqlx::query_as(concat!(
            "SELECT t.turn_id, t.status, t.error, t.started_at_ms, t.completed_at_ms, \
               COALESCE(t.duration_ms, t.completed_at_ms - t.started_at_ms) AS duration_ms, \
               COUNT(i.id) AS items, COUNT(CASE WHEN i.kind IN ",
            tool_kinds_sql!(),
            " THEN 1 END) AS tool_calls \
             FROM turns t LEFT JOIN items i ON i.lane_ref = t.lane_ref AND i.turn_id = t.turn_id \
             WHERE t.lane_ref = ?1 \
             GROUP BY t.turn_id \
             ORDER BY COALESCE(t.started_at_ms, t.completed_at_ms) DESC, t.turn_id DESC \
             LIMIT ?2"
        ))
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's turns",
        ))
    }

    /// The tools the lane called, most called first; at most `limit`.
    pub async fn history_tools(
        &self,
        lane_ref: &str,
        limit: u32,
    ) -> Result<Vec<ToolHistory>, RegistryError> {
        sqlx::query_as(concat!(
            "SELECT ",
            tool_name_sql!("i"),
            " AS tool, COUNT(*) AS calls, COUNT(CASE WHEN ",
            errored_sql!("i"),
            " THEN 1 END) AS errored, MAX(i.at_ms) AS last_at_ms \
             FROM items i WHERE i.lane_ref = ?1 AND i.kind IN ",
            tool_kinds_sql!(),
            " GROUP BY tool ORDER BY 2 DESC, tool LIMIT ?2"
        ))
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's tools",
        ))
    }

    /// The files the lane changed, most changed first; at most `limit`.
    pub async fn history_files(
        &self,
        lane_ref: &str,
        limit: u32,
    ) -> Result<Vec<FileHistory>, RegistryError> {
        sqlx::query_as(
            "SELECT f.path, COUNT(*) AS changes, MAX(i.at_ms) AS last_at_ms \
             FROM item_files f JOIN items i ON i.id = f.item \
             WHERE f.lane_ref = ?1 GROUP BY f.path ORDER BY 2 DESC, f.path LIMIT ?2",
        )
        .bind(lane_ref)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(
            self.path(),
            "reading a lane's files",
        ))
    }
}
