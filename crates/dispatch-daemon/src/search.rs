//! `search`: FTS5 over the lanes' indexed items and titles, merged with Codex's own thread
//! search (`thread/list searchTerm`) for threads dispatch does not manage. Structural filters
//! (lane, type, tool, file, errored, since, until) narrow the lanes' hits.

use std::collections::HashSet;

use codex_app_server::protocol::ThreadListParams;
use dispatch_contract::types::{
    SearchHit, SearchHitScope, SearchInput, SearchInputScope, SearchOutput,
};
use dispatch_contract::{DispatchError, Handle};
use dispatch_registry::SearchFilter;
use jiff::civil::Date;
use jiff::tz::TimeZone;

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

/// Which end of a bare date a bound means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `since`: the day's first moment.
    Since,
    /// `until`: the next day's first moment (the bound is exclusive), so the whole day counts.
    Until,
}

/// A date bound as Unix epoch milliseconds: RFC 3339, or `YYYY-MM-DD` as that whole day in
/// `tz`.
pub fn parse_bound(field: &str, text: &str, end: End, tz: &TimeZone) -> Result<i64, DispatchError> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let invalid = || {
        DispatchError::invalid_input(format!(
            "`{field}` is not a date: {text:?}"
        ))
        .with_hint("give a date as YYYY-MM-DD (that whole day, local time) or a time in RFC 3339, like 2026-11-26T09:30:00Z")
    };
    let date: Date = text.parse().map_err(|_| invalid())?;
    let day = match end {
        End::Since => date,
        End::Until => date.tomorrow().map_err(|_| invalid())?,
    };
    let zoned = day.to_zoned(tz.clone()).map_err(|_| invalid())?;
    Ok(zoned.timestamp().as_millisecond())
}

impl Service {
    /// The registry's filter for `input`, resolving its lane and dates.
    async fn search_filter(&self, input: &SearchInput) -> Result<SearchFilter, DispatchError> {
        let tz = TimeZone::system();
        let lane_ref = match &input.lane {
            Some(selector) => Some(self.resolve(selector).await?.lane_ref),
            None => None,
        };
        Ok(SearchFilter {
            lane_ref,
            kind: input.type_.as_ref().map(|v| v.as_str().to_owned()),
            tool: input.tool.as_ref().map(|v| v.as_str().to_owned()),
            file: input.file.as_ref().map(|v| v.as_str().to_owned()),
            errored: input.errored,
            since_ms: input
                .since
                .as_ref()
                .map(|s| parse_bound("since", s, End::Since, &tz))
                .transpose()?,
            until_ms: input
                .until
                .as_ref()
                .map(|s| parse_bound("until", s, End::Until, &tz))
                .transpose()?,
        })
    }
}

/// `search`.
impl Handle<SearchInput> for Service {
    async fn handle(&self, input: SearchInput) -> Result<SearchOutput, DispatchError> {
        let limit = u32::try_from(input.limit.get()).unwrap_or(u32::MAX);
        let query = input.query.to_string();
        let filter = self.search_filter(&input).await?;
        let filtered = filter != SearchFilter::default();
        if filtered && input.scope == SearchInputScope::Unmanaged {
            return Err(DispatchError::invalid_input(
                "the filters narrow lanes' items: unmanaged threads have none here",
            )
            .with_hint("search scope managed or all with the filters, or unmanaged without them"));
        }
        let mut hits = Vec::new();
        if matches!(
            input.scope,
            SearchInputScope::Managed | SearchInputScope::All
        ) {
            for row in self
                .registry()
                .search_filtered(&query, &filter, limit)
                .await?
            {
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
        if !filtered
            && matches!(
                input.scope,
                SearchInputScope::Unmanaged | SearchInputScope::All
            )
        {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_bare_date_is_the_whole_day_in_local_time() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let since = parse_bound("since", "2026-03-10", End::Since, &tz).unwrap();
        let until = parse_bound("until", "2026-03-10", End::Until, &tz).unwrap();
        let midnight: jiff::Timestamp = "2026-03-09T23:00:00Z".parse().unwrap();
        assert_eq!(since, midnight.as_millisecond());
        assert_eq!(until - since, 24 * 3600 * 1000);
        let exact = parse_bound("since", "2026-03-10T08:00:00+01:00", End::Since, &tz).unwrap();
        assert_eq!(exact - since, 8 * 3600 * 1000);
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "10/03/2026",
            "2026-03-10T25:00Z",
        ] {
            let err = parse_bound("since", bad, End::Since, &tz).unwrap_err();
            assert_eq!(
                err.code,
                dispatch_contract::ErrorCode::InvalidInput,
                "{bad}"
            );
            assert!(err.message.contains("`since`"), "{}", err.message);
        }
    }
}
