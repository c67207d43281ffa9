//! Full-text search over item text and lane titles (FTS5). User queries are plain words: each
//! is quoted as an FTS5 string, so quotes, `*`, `NEAR`, `AND` or parentheses never reach the
//! query syntax and never make SQLite fail.

use crate::{Registry, RegistryError};

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
        let Some(query) = fts_query(words) else {
            return Ok(Vec::new());
        };
        let titles: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT l.ref, l.thread_id, l.title, snippet(lanes_fts, 0, '[', ']', '…', 16)
             FROM lanes_fts JOIN lanes l ON l.rowid = lanes_fts.rowid
             WHERE lanes_fts MATCH ?1 ORDER BY lanes_fts.rowid DESC LIMIT ?2",
        )
        .bind(&query)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "searching titles"))?;
        let items: Vec<(String, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT i.lane_ref, l.thread_id, l.title, i.item_id,
                    snippet(items_fts, 0, '[', ']', '…', 16)
             FROM items_fts
             JOIN items i ON i.rowid = items_fts.rowid
             JOIN lanes l ON l.ref = i.lane_ref
             WHERE items_fts MATCH ?1 ORDER BY items_fts.rowid DESC LIMIT ?2",
        )
        .bind(&query)
        .bind(i64::from(limit))
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
