//! Multi-row statements with a small, fixed set of texts, so they stay prepared.
//!
//! Each statement sends a chunk of rows as `VALUES (?, ..), (?, ..)`. Chunks hold 1, 8, 64,
//! 512 or 1,024 rows, as many of those as SQLite's limit of 32,766 parameters allows for the
//! statement's columns; a short chunk is padded with all-NULL rows, which every statement
//! filters out (`WHERE column1 IS NOT NULL`, or a join on the first column). Every kind of
//! statement thus has at most five texts, each prepared once per connection by sqlx's
//! statement cache (and only once used).
//!
//! Every statement is a hand-over to sqlx's SQLite thread and back, so a flood's batch (up to
//! 4,096 notifications: ~2,700 events and ~1,400 items) is sent in few, large chunks: rows
//! beyond 512 are padded only up to as many again, so padding never costs more than the rows
//! themselves. Larger chunks do not pay: SQLite's time to prepare a multi-row `VALUES` grows
//! faster than its rows (5 columns: ~1 ms for 512 rows, ~2 ms for 1,024, ~10 ms for 2,048,
//! ~30-45 ms for 4,096), and the prepared statement stays in the connection's memory (ADR 0020,
//! fifth round).

use std::path::Path;
use std::sync::OnceLock;

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, AssertSqlSafe};

use crate::RegistryError;

/// Rows per chunk, smallest first.
const CHUNK_SIZES: [usize; 5] = [1, 8, 64, 512, 1024];

/// Up to this many rows a chunk is always padded to the next size (as it always was).
const PAD_FREELY: usize = 512;

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` (since 3.32), which the bundled build keeps.
const MAX_PARAMETERS: usize = 32_766;

/// A statement of the form `{head} (?, ..), (?, ..) {tail}`, where `head` ends with `VALUES`.
pub(crate) struct Bulk {
    head: &'static str,
    columns: usize,
    tail: &'static str,
    texts: [OnceLock<String>; CHUNK_SIZES.len()],
}

impl Bulk {
    /// A statement binding `columns` values per row.
    pub(crate) const fn new(head: &'static str, columns: usize, tail: &'static str) -> Bulk {
        Bulk {
            head,
            columns,
            tail,
            texts: [const { OnceLock::new() }; CHUNK_SIZES.len()],
        }
    }

    /// How many of [`CHUNK_SIZES`] fit SQLite's parameter limit (at least one).
    fn sizes(&self) -> usize {
        CHUNK_SIZES
            .iter()
            .take_while(|&&rows| rows * self.columns.max(1) <= MAX_PARAMETERS)
            .count()
            .max(1)
    }

    /// The text for chunks of `CHUNK_SIZES[index]` rows.
    fn text(&self, index: usize) -> &str {
        self.texts[index].get_or_init(|| {
            let rows = CHUNK_SIZES[index];
            let tuple = format!("({})", vec!["?"; self.columns].join(", "));
            format!(
                "{} {} {}",
                self.head,
                vec![tuple; rows].join(", "),
                self.tail
            )
        })
    }

    /// The next chunk of `remaining` rows: `(rows taken, index of its size)`. Up to
    /// [`PAD_FREELY`] rows, or when the padding is at most the rows themselves, all of them
    /// padded to the next size; otherwise the largest size they fill.
    fn next_chunk(&self, remaining: usize) -> (usize, usize) {
        let sizes = &CHUNK_SIZES[..self.sizes()];
        let largest = sizes.len() - 1;
        if remaining >= sizes[largest] {
            return (sizes[largest], largest);
        }
        let up = sizes
            .iter()
            .position(|&size| size >= remaining)
            .unwrap_or(largest);
        if remaining <= PAD_FREELY || sizes[up] - remaining <= remaining {
            return (remaining, up);
        }
        let down = sizes
            .iter()
            .rposition(|&size| size <= remaining)
            .unwrap_or(0);
        (sizes[down], down)
    }

    /// Runs the statement over all `rows`, binding each with `bind` (which must add exactly
    /// `columns` values); returns the total of rows affected.
    pub(crate) async fn run<R>(
        &self,
        conn: &mut SqliteConnection,
        rows: &[R],
        mut bind: impl FnMut(&mut SqliteArguments, &R) -> Result<(), BoxDynError>,
        path: &Path,
        context: &'static str,
    ) -> Result<u64, RegistryError> {
        let mut affected = 0;
        let mut rest = rows;
        while !rest.is_empty() {
            let (taken, index) = self.next_chunk(rest.len());
            let (chunk, after) = rest.split_at(taken.min(rest.len()));
            rest = after;
            let padding = CHUNK_SIZES[index] - chunk.len();
            let mut args = SqliteArguments::default();
            // Sized once: grown by pushes, a 512-row chunk's values were copied ten times
            // over, and the freed 64 KiB blocks made glibc consolidate its free lists.
            args.reserve(CHUNK_SIZES[index] * self.columns, 0);
            let bound: Result<(), BoxDynError> = (|| {
                for row in chunk {
                    bind(&mut args, row)?;
                }
                for _ in 0..padding * self.columns {
                    args.add(None::<i64>)?;
                }
                Ok(())
            })();
            bound.map_err(|err| RegistryError::db(path, context, sqlx::Error::Encode(err)))?;
            // The text is built only from the constant fragments given to `Bulk::new`.
            let done = sqlx::query_with(AssertSqlSafe(self.text(index)), args)
                .execute(&mut *conn)
                .await
                .map_err(RegistryError::db_with(path, context))?;
            affected += done.rows_affected();
        }
        Ok(affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_have_one_tuple_per_row() {
        let bulk = Bulk::new("INSERT INTO t (a, b) VALUES", 2, "");
        assert_eq!(
            bulk.text(0).trim_end(),
            "INSERT INTO t (a, b) VALUES (?, ?)"
        );
        for (index, rows) in CHUNK_SIZES.iter().enumerate() {
            assert_eq!(bulk.text(index).matches("(?, ?)").count(), *rows);
        }
    }

    /// The chunks a number of rows is sent in: `(rows, padded to)`.
    fn chunks(bulk: &Bulk, mut rows: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        while rows > 0 {
            let (taken, index) = bulk.next_chunk(rows);
            out.push((taken, CHUNK_SIZES[index]));
            rows -= taken;
        }
        out
    }

    #[test]
    fn a_flood_batch_takes_few_statements() {
        let events = Bulk::new("", 5, "");
        // A batch of 4,096 notifications of the ingest benchmark: 2,730 events, 1,365 items.
        assert_eq!(
            chunks(&events, 2730),
            vec![(1024, 1024), (1024, 1024), (682, 1024)]
        );
        assert_eq!(chunks(&events, 1365), vec![(1024, 1024), (341, 512)]);
        assert_eq!(chunks(&events, 600), vec![(600, 1024)]);
        // Small batches are padded to the next size, as before.
        assert_eq!(chunks(&events, 1), vec![(1, 1)]);
        assert_eq!(chunks(&events, 100), vec![(100, 512)]);
        assert_eq!(chunks(&events, 512), vec![(512, 512)]);
    }

    #[test]
    fn padding_beyond_512_rows_is_at_most_the_rows_themselves() {
        let bulk = Bulk::new("", 7, "");
        for rows in 1..=9000 {
            let chunks = chunks(&bulk, rows);
            assert_eq!(chunks.iter().map(|(taken, _)| taken).sum::<usize>(), rows);
            for (taken, size) in chunks {
                assert!(taken <= size);
                assert!(
                    taken <= PAD_FREELY || size - taken <= taken,
                    "{rows}: {taken} in {size}"
                );
            }
        }
    }

    #[test]
    fn wide_statements_stay_below_the_parameter_limit() {
        let lanes = Bulk::new("", 19, "");
        assert_eq!(CHUNK_SIZES[lanes.sizes() - 1], 1024);
        assert_eq!(
            chunks(&lanes, 3000),
            vec![(1024, 1024), (1024, 1024), (952, 1024)]
        );
        for columns in 1..=40 {
            let bulk = Bulk::new("", columns, "");
            let largest = CHUNK_SIZES[bulk.sizes() - 1];
            assert!(largest * columns <= MAX_PARAMETERS, "{columns} columns");
        }
    }
}
