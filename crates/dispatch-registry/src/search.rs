//! Full-text search over item text and lane titles (FTS5). User queries are plain words: each
//! is quoted as an FTS5 string, so quotes, `*`, `NEAR`, `AND` or parentheses never reach the
//! query syntax and never make SQLite fail.

use crate::history::{errored_sql, tool_kinds_sql, tool_name_sql};
use crate::{Registry, RegistryError};

/// Structural filters on a search; the default filters nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Only this lane (ref).
    pub lane_ref: Option<String>,
    /// Only items of this kind (`agent_message`, `command`, `file_change`, ...).
    pub kind: Option<String>,
    /// Only calls of this tool (a tool kind, or an MCP tool as `server.tool`).
    pub tool: Option<String>,
    /// Only file changes touching this path (the whole path, or its trailing components).
    pub file: Option<String>,
    /// Only items that failed or were declined, and errors.
    pub errored: bool,
    /// Only items first seen at or after this time (Unix epoch milliseconds).
    pub since_ms: Option<i64>,
    /// Only items first seen before this time (Unix epoch milliseconds).
    pub until_ms: Option<i64>,
}

impl SearchFilter {
    /// Whether a filter concerns items, so titles cannot match.
    fn items_only(&self) -> bool {
        self.kind.is_some()
            || self.tool.is_some()
            || self.file.is_some()
            || self.errored
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }
}

/// One search hit in a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRow {
    /// The lane.
    pub lane_ref: String,
    /// Its Codex thread.
    pub thread_id: String,
    /// Its title.
    pub title: Option<String>,
    /// The matching item; `None` when the title matched.
    pub item_id: Option<String>,
    /// The matching text with the matches in `[brackets]`.
    pub snippet: String,
}

/// The FTS5 query for plain `words`: every word quoted (inner quotes doubled), all required.
/// `None` when there is no word to look for.
pub fn fts_query(words: &str) -> Option<String> {
    let terms: Vec<String> = words
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

impl Registry {
    /// Lanes whose title or items contain every word of `words`: title hits first, then
    /// items, newest first (FTS5 walks its index in rowid order and stops at `limit`, so a
    /// common word costs no more than a rare one); at most `limit`.
    pub async fn search(&self, words: &str, limit: u32) -> Result<Vec<SearchRow>, RegistryError> {
        self.search_filtered(words, &SearchFilter::default(), limit)
            .await
    }

    /// [`Registry::search`] narrowed by `filter`: a lane filter applies to titles and items,
    /// the others to items only (no title hit then).
    pub async fn search_filtered(
        &self,
        words: &str,
        filter: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<SearchRow>, RegistryError> {
        let Some(query) = fts_query(words) else {
            return Ok(Vec::new());
        };
        // Items stored since the index was last brought up to date are indexed first, so
        // that the search finds everything stored before it began; with nothing pending, a
        // search takes no write lock (and never waits for a batch being stored).
        self.fold_if_any().await?;
        let titles: Vec<(String, String, Option<String>, String)> = if filter.items_only() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT l.ref, l.thread_id, l.title, snippet(lanes_fts, 0, '[', ']', '…', 16)
                 FROM lanes_fts JOIN lanes l ON l.rowid = lanes_fts.rowid
                 WHERE lanes_fts MATCH ?1 AND (?3 IS NULL OR l.ref = ?3)
                 ORDER BY lanes_fts.rowid DESC LIMIT ?2",
            )
            .bind(&query)
            .bind(i64::from(limit))
            .bind(filter.lane_ref.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(RegistryError::db_with(self.path(), "searching titles"))?
        };
        let items: Vec<(String, String, Option<String>, String, String)> = sqlx::query_as(concat!(
            "SELECT i.lane_ref, l.thread_id, l.title, i.item_id,
                    snippet(items_fts, 0, '[', ']', '…', 16)
             FROM items_fts
             JOIN items i ON i.rowid = items_fts.rowid
             JOIN lanes l ON l.ref = i.lane_ref
             WHERE items_fts MATCH ?1
               AND (?3 IS NULL OR i.lane_ref = ?3)
               AND (?4 IS NULL OR i.kind = ?4)
               AND (?5 IS NULL OR (i.kind IN ",
            tool_kinds_sql!(),
            " AND ",
            tool_name_sql!("i"),
            " = ?5))
               AND (?6 IS NULL OR EXISTS (SELECT 1 FROM item_files f WHERE f.item = i.id
                     AND substr(f.path, -length(?6)) = ?6
                     AND (length(f.path) = length(?6)
                          OR substr(f.path, -length(?6) - 1, 1) = '/')))
               AND (NOT ?7 OR ",
            errored_sql!("i"),
            ")
               AND (?8 IS NULL OR i.at_ms >= ?8)
               AND (?9 IS NULL OR i.at_ms < ?9)
             ORDER BY items_fts.rowid DESC LIMIT ?2"
        ))
        .bind(&query)
        .bind(i64::from(limit))
        .bind(filter.lane_ref.as_deref())
        .bind(filter.kind.as_deref())
        .bind(filter.tool.as_deref())
        .bind(filter.file.as_deref())
        .bind(filter.errored)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "searching items"))?;
        let hits = titles
            .into_iter()
            .map(|(lane_ref, thread_id, title, snippet)| SearchRow {
                lane_ref,
                thread_id,
                title,
                item_id: None,
                snippet,
            })
            .chain(
                items
                    .into_iter()
                    .map(|(lane_ref, thread_id, title, item_id, snippet)| SearchRow {
                        lane_ref,
                        thread_id,
                        title,
                        item_id: Some(item_id),
                        snippet,
                    }),
            )
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn query_syntax_is_quoted_as_text() {
        assert_eq!(
            fts_query("zebra stable").as_deref(),
            Some("\"zebra\" \"stable\"")
        );
        assert_eq!(
            fts_query("say \"hi\"").as_deref(),
            Some("\"say\" \"\"\"hi\"\"\"")
        );
        assert_eq!(
            fts_query("a NEAR b*").as_deref(),
            Some("\"a\" \"NEAR\" \"b*\"")
        );
        assert_eq!(fts_query("   "), None);
    }
}
