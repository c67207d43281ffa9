//! Multi-row statements with a small, fixed set of texts, so they stay prepared.
//!
//! Each statement sends a chunk of rows as `VALUES (?, ..), (?, ..)`. Chunks hold 1, 8, 64 or
//! 512 rows (at most 512 × 19 = 9,728 parameters, below SQLite's 32,766); a short chunk is padded with all-NULL rows, which every statement filters out
//! (`WHERE column1 IS NOT NULL`, or a join on the first column). Every kind of statement thus
//! has four texts, each prepared once per connection by sqlx's statement cache.

use std::path::Path;
use std::sync::OnceLock;

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, AssertSqlSafe};

use crate::RegistryError;

/// Rows per chunk, smallest first.
const CHUNK_SIZES: [usize; 4] = [1, 8, 64, 512];

/// A statement of the form `{head} (?, ..), (?, ..) {tail}`, where `head` ends with `VALUES`.
pub(crate) struct Bulk {
    head: &'static str,
    columns: usize,
    tail: &'static str,
    texts: OnceLock<[String; 4]>,
}

impl Bulk {
    /// A statement binding `columns` values per row.
    pub(crate) const fn new(head: &'static str, columns: usize, tail: &'static str) -> Bulk {
        Bulk {
            head,
            columns,
            tail,
            texts: OnceLock::new(),
        }
    }

    /// The text for chunks of `CHUNK_SIZES[index]` rows.
    fn text(&self, index: usize) -> &str {
        let texts = self.texts.get_or_init(|| {
            CHUNK_SIZES.map(|rows| {
                let tuple = format!("({})", vec!["?"; self.columns].join(", "));
                format!(
                    "{} {} {}",
                    self.head,
                    vec![tuple; rows].join(", "),
                    self.tail
                )
            })
        });
        &texts[index]
    }

    /// Binds all `rows` into chunks ready to run (see [`BoundChunk::execute`]), each row with
    /// `bind` (which must add exactly `columns` values), appending them to `out`. Binding
    /// needs no connection, so it can be done while another batch is being stored.
    pub(crate) fn bind<R>(
        &'static self,
        mut rows: impl ExactSizeIterator<Item = R>,
        mut bind: impl FnMut(&mut SqliteArguments, R) -> Result<(), BoxDynError>,
        path: &Path,
        context: &'static str,
        out: &mut Vec<BoundChunk>,
    ) -> Result<(), RegistryError> {
        let largest = CHUNK_SIZES[CHUNK_SIZES.len() - 1];
        loop {
            let rows_in_chunk = rows.len().min(largest);
            if rows_in_chunk == 0 {
                return Ok(());
            }
            let index = CHUNK_SIZES
                .iter()
                .position(|&size| size >= rows_in_chunk)
                .unwrap_or(CHUNK_SIZES.len() - 1);
            let padding = CHUNK_SIZES[index] - rows_in_chunk;
            let mut args = SqliteArguments::default();
            // Sized once: grown by pushes, a 512-row chunk's values were copied ten times
            // over, and the freed 64 KiB blocks made glibc consolidate its free lists.
            args.reserve(CHUNK_SIZES[index] * self.columns, 0);
            let bound: Result<(), BoxDynError> = (|| {
                for row in rows.by_ref().take(rows_in_chunk) {
                    bind(&mut args, row)?;
                }
                for _ in 0..padding * self.columns {
                    args.add(None::<i64>)?;
                }
                Ok(())
            })();
            bound.map_err(|err| RegistryError::db(path, context, sqlx::Error::Encode(err)))?;
            out.push(BoundChunk {
                bulk: self,
                index,
                args,
                context,
            });
        }
    }

    /// Runs the statement over all `rows`, binding each with `bind` (which must add exactly
    /// `columns` values); returns the total of rows affected.
    pub(crate) async fn run<R>(
        &'static self,
        conn: &mut SqliteConnection,
        rows: &[R],
        mut bind: impl FnMut(&mut SqliteArguments, &R) -> Result<(), BoxDynError>,
        path: &Path,
        context: &'static str,
    ) -> Result<u64, RegistryError> {
        let mut chunks = Vec::new();
        self.bind(rows.iter(), &mut bind, path, context, &mut chunks)?;
        let mut affected = 0;
        for chunk in chunks {
            affected += chunk.execute(conn, path).await?;
        }
        Ok(affected)
    }
}

/// One chunk of a [`Bulk`] statement's rows, bound and ready to run: it owns its values, so
/// it can be bound on one task and run on another.
pub(crate) struct BoundChunk {
    bulk: &'static Bulk,
    /// Which of the statement's texts (by `CHUNK_SIZES`).
    index: usize,
    args: SqliteArguments,
    context: &'static str,
}

impl BoundChunk {
    /// Runs the chunk on `conn`; returns the rows affected.
    pub(crate) async fn execute(
        self,
        conn: &mut SqliteConnection,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        // The text is built only from the constant fragments given to `Bulk::new`.
        let done = sqlx::query_with(AssertSqlSafe(self.bulk.text(self.index)), self.args)
            .execute(&mut *conn)
            .await
            .map_err(RegistryError::db_with(path, self.context))?;
        Ok(done.rows_affected())
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
        assert_eq!(bulk.text(1).matches("(?, ?)").count(), 8);
        assert_eq!(bulk.text(2).matches("(?, ?)").count(), 64);
        assert_eq!(bulk.text(3).matches("(?, ?)").count(), 512);
    }
}
