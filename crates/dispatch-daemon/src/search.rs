//! `search`: FTS5 over the lanes' indexed items and titles, merged with Codex's own thread
//! search (`thread/list searchTerm`) for threads dispatch does not manage.

use std::collections::HashSet;

use codex_app_server::protocol::ThreadListParams;
use dispatch_contract::types::{
    SearchHit, SearchHitScope, SearchInput, SearchInputScope, SearchOutput,
};
use dispatch_contract::{DispatchError, Handle};

use crate::errors::app_server_error;
use crate::service::Service;

/// `text` around the first case-insensitive occurrence of a word of `query`, bracketed.
fn mark(text: &str, query: &str) -> String {
    let lower = text.to_lowercase();
    for word in query.split_whitespace() {
        let word = word.to_lowercase();
        if let Some(at) = lower.find(&word)
            && text.is_char_boundary(at)
            && text.is_char_boundary(at + word.len())
        {
            return format!(
                "{}[{}]{}",
                &text[..at],
                &text[at..at + word.len()],
                &text[at + word.len()..]
            );
        }
    }
    text.to_owned()
}

/// `search`.
impl Handle<SearchInput> for Service {
    async fn handle(&self, input: SearchInput) -> Result<SearchOutput, DispatchError> {
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let query = input.query.to_string();
        let mut hits = Vec::new();
        if matches!(
            input.scope,
            SearchInputScope::Managed | SearchInputScope::All
        ) {
            for row in self.registry().search(&query, limit).await? {
                hits.push(SearchHit {
                    ref_: Some(row.lane_ref),
                    id: row.thread_id,
                    title: row.title,
                    snippet: Some(row.snippet),
                    scope: SearchHitScope::Managed,
                    item_id: row.item_id,
                });
            }
        }
        if matches!(
            input.scope,
            SearchInputScope::Unmanaged | SearchInputScope::All
        ) {
            let server = self.app_server().server()?;
            let listed = server
                .call(&ThreadListParams {
                    search_term: Some(query.clone()),
                    limit: Some(limit),
                    ..Default::default()
                })
                .await
                .map_err(app_server_error)?;
            let mut seen = HashSet::new();
            for thread in listed.data {
                if !seen.insert(thread.id.clone())
                    || self.registry().lane_by_thread(&thread.id).await?.is_some()
                {
                    continue;
                }
                hits.push(SearchHit {
                    ref_: None,
                    snippet: Some(mark(&thread.preview, &query)),
                    title: thread.name.clone(),
                    id: thread.id,
                    scope: SearchHitScope::Unmanaged,
                    item_id: None,
                });
            }
        }
        hits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(SearchOutput { hits })
    }
}
