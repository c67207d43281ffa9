//! Multi-row statements with a small, fixed set of texts, so they stay prepared.
//!
//! Each statement sends a chunk of rows as `VALUES (?, ..), (?, ..)`. Chunks hold 1, 8, 64 or
//! 512 rows (at most 512 × 19 = 9,728 parameters, below SQLite's 32,766); a short chunk is padded with all-NULL rows, which every statement filters out
//! (`WHERE column1 IS NOT NULL`, or a join on the first column). Every kind of statement thus
//! has four texts, each prepared once per connection by sqlx's statement cache.
//!
//! An `INSERT` may name *shared* columns (never the first): a chunk whose rows all hold the
//! same values there (a flood's lane and turn) binds them once, as parameters in the select
//! list, instead of once per row; it has four more texts. sqlx copies each text it
//! binds and SQLite copies it again, so a value bound once instead of 512 times saves both
//! (ADR 0020, "Ingest, tenth round"). Parameters stay anonymous (`?`): sqlx asks SQLite for
//! the name of every parameter it binds, and for numbered ones (`?NNN`) SQLite finds each
//! name by a linear search, quadratic in a chunk's parameters.

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
    /// What follows `head` to make it end with `VALUES`: empty, or for an `INSERT` with
    /// shared columns (whose `head` is the `INSERT INTO t (..)` alone) `SELECT * FROM (VALUES`.
    values: &'static str,
    columns: usize,
    tail: &'static str,
    /// The columns (0-based, in order, never 0) a chunk binds once when its rows agree on them.
    shared: &'static [usize],
    texts: OnceLock<[String; 4]>,
    shared_texts: OnceLock<[String; 4]>,
}

/// Which of a row's values a bind function adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Columns {
    /// Every column, in order.
    All,
    /// Every column but the shared ones, in order (the chunk binds those once).
    Unshared,
}

impl Bulk {
    /// A statement binding `columns` values per row.
    pub(crate) const fn new(head: &'static str, columns: usize, tail: &'static str) -> Bulk {
        Bulk {
            head,
            values: "",
            columns,
            tail,
            shared: &[],
            texts: OnceLock::new(),
            shared_texts: OnceLock::new(),
        }
    }

    /// `{insert} SELECT * FROM (VALUES (?, ..), .. {tail}`, where `insert` is
    /// `INSERT INTO t (..)` and `tail` starts with the `)` that closes the rows; of its
    /// `columns` values per row, `shared` are bound once for a chunk whose rows agree on them
    /// (see [`Bulk::run_sharing`]).
    pub(crate) const fn sharing(
        insert: &'static str,
        columns: usize,
        shared: &'static [usize],
        tail: &'static str,
    ) -> Bulk {
        // Checked when the statics are compiled: the first column tells padding rows (every
        // tail filters on `column1`), and `shared_text` numbers the others in order.
        let mut i = 0;
        while i < shared.len() {
            assert!(
                shared[i] > 0 && shared[i] < columns,
                "a shared column out of range"
            );
            assert!(
                i == 0 || shared[i - 1] < shared[i],
                "shared columns out of order"
            );
            i += 1;
        }
        Bulk {
            head: insert,
            values: " SELECT * FROM (VALUES",
            columns,
            tail,
            shared,
            texts: OnceLock::new(),
            shared_texts: OnceLock::new(),
        }
    }

    /// The text for chunks of `CHUNK_SIZES[index]` rows, each row with its own parameters.
    fn text(&self, index: usize) -> &str {
        let texts = self.texts.get_or_init(|| {
            CHUNK_SIZES.map(|rows| {
                let tuple = format!("({})", vec!["?"; self.columns].join(", "));
                self.statement(&vec![tuple; rows].join(", "))
            })
        });
        &texts[index]
    }

    /// The text for chunks of `CHUNK_SIZES[index]` rows that bind the shared columns once:
    /// `{insert} SELECT column1, ?, .. FROM (VALUES (?, ..), .. {tail}`, a bare parameter in
    /// the select list for each shared column (numbered first, being first in the text) and
    /// the rows holding only the others. The rows stay a co-routine, as in [`Bulk::text`]
    /// (joining them to a one-row subquery of the shared values made SQLite copy the rows
    /// into a temporary table first).
    fn shared_text(&self, index: usize) -> &str {
        let texts = self.shared_texts.get_or_init(|| {
            let mut unshared = 0;
            let select: Vec<String> = (0..self.columns)
                .map(|column| {
                    if self.shared.contains(&column) {
                        "?".to_owned()
                    } else {
                        unshared += 1;
                        format!("column{unshared}")
                    }
                })
                .collect();
            let tuple = format!("({})", vec!["?"; unshared].join(", "));
            CHUNK_SIZES.map(|rows| {
                format!(
                    "{} SELECT {} FROM (VALUES {} {}",
                    self.head,
                    select.join(", "),
                    vec![tuple.as_str(); rows].join(", "),
                    self.tail,
                )
            })
        });
        &texts[index]
    }

    fn statement(&self, tuples: &str) -> String {
        format!("{}{} {} {}", self.head, self.values, tuples, self.tail)
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
        self.run_sharing(
            conn,
            rows,
            |_, _| false,
            |_, _| Ok(()),
            |args, row, _| bind(args, row),
            path,
            context,
        )
        .await
    }

    /// [`Bulk::run`] for a statement with shared columns: a chunk whose rows are all `same`
    /// as its first binds the shared columns once (`bind_shared`, from the first row) and the
    /// rest row by row (`bind` with [`Columns::Unshared`]); any other chunk binds every column
    /// of every row (`bind` with [`Columns::All`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_sharing<R>(
        &self,
        conn: &mut SqliteConnection,
        rows: &[R],
        same: impl Fn(&R, &R) -> bool,
        mut bind_shared: impl FnMut(&mut SqliteArguments, &R) -> Result<(), BoxDynError>,
        mut bind: impl FnMut(&mut SqliteArguments, &R, Columns) -> Result<(), BoxDynError>,
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
            let sharing = !self.shared.is_empty()
                && chunk.len() > 1
                && chunk.iter().all(|row| same(&chunk[0], row));
            let (columns, per_row) = if sharing {
                (Columns::Unshared, self.columns - self.shared.len())
            } else {
                (Columns::All, self.columns)
            };
            let mut args = SqliteArguments::default();
            // Sized once: grown by pushes, a 512-row chunk's values were copied ten times
            // over, and the freed 64 KiB blocks made glibc consolidate its free lists.
            args.reserve(CHUNK_SIZES[index] * per_row + self.shared.len(), 0);
            let bound: Result<(), BoxDynError> = (|| {
                if sharing {
                    bind_shared(&mut args, &chunk[0])?;
                }
                for row in chunk {
                    bind(&mut args, row, columns)?;
                }
                for _ in 0..padding * per_row {
                    args.add(None::<i64>)?;
                }
                Ok(())
            })();
            bound.map_err(|err| RegistryError::db(path, context, sqlx::Error::Encode(err)))?;
            let text = if sharing {
                self.shared_text(index)
            } else {
                self.text(index)
            };
            // The text is built only from the constant fragments given to `Bulk::new`.
            let done = sqlx::query_with(AssertSqlSafe(text), args)
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

    #[test]
    fn shared_columns_are_bound_once_in_the_select_list() {
        let bulk = Bulk::sharing(
            "INSERT INTO t (a, b, c, d)",
            4,
            &[1, 3],
            ") WHERE column1 IS NOT NULL",
        );
        assert_eq!(
            bulk.text(0),
            "INSERT INTO t (a, b, c, d) SELECT * FROM (VALUES (?, ?, ?, ?) ) WHERE column1 IS NOT NULL"
        );
        assert_eq!(
            bulk.shared_text(1),
            format!(
                "INSERT INTO t (a, b, c, d) SELECT column1, ?, column2, ? FROM (VALUES {} ) \
                 WHERE column1 IS NOT NULL",
                ["(?, ?)"; 8].join(", ")
            )
        );
        assert_eq!(bulk.shared_text(3).matches("(?, ?)").count(), 512);
    }
}
