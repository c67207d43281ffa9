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
        let largest = CHUNK_SIZES[CHUNK_SIZES.len() - 1];
        let mut affected = 0;
        for chunk in rows.chunks(largest) {
            let index = CHUNK_SIZES
                .iter()
                .position(|&size| size >= chunk.len())
                .unwrap_or(CHUNK_SIZES.len() - 1);
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
        assert_eq!(bulk.text(1).matches("(?, ?)").count(), 8);
        assert_eq!(bulk.text(2).matches("(?, ?)").count(), 64);
        assert_eq!(bulk.text(3).matches("(?, ?)").count(), 512);
    }
}
