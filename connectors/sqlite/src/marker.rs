//! A table's creation marker: a random id written as a comment into the `CREATE TABLE`
//! statement, which SQLite keeps in `sqlite_master` for the table's life (column adds
//! included) and drops with it. The engine commits it with the stream's ledger; a table that
//! is gone, or whose marker differs from the committed one (dropped and created again), holds
//! none of what the ledger remembers.

use std::hash::{BuildHasher, RandomState};

use dovetail_core::{Error, SinkRecall};
use rusqlite::{Connection, OptionalExtension};

use crate::error::db_error;

const TAG: &str = "-- dovetail:table ";

/// The comment that opens a new table's column list, with a fresh marker.
pub(crate) fn comment() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = RandomState::new().hash_one((nanos, std::process::id()));
    format!("{TAG}{id:016x}\n")
}

/// `None`: no such table; `Some(None)`: a table without a marker (made before markers, or
/// by someone else).
pub(crate) fn read(conn: &Connection, table: &str) -> Result<Option<Option<String>>, Error> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
        .optional()
        .map_err(|e| db_error(e, format!("cannot look up table `{table}`")))?;
    Ok(sql.map(|sql| {
        let at = sql.find(TAG)? + TAG.len();
        let id: String = sql[at..].chars().take_while(char::is_ascii_hexdigit).collect();
        (!id.is_empty()).then_some(id)
    }))
}

/// What the table holds against the marker the ledger remembers.
pub(crate) fn recall(found: Option<Option<String>>, table: &str, remembered: Option<&str>) -> SinkRecall {
    match (found, remembered) {
        (None, _) => SinkRecall::Lost(format!("the sink's table `{table}` is gone")),
        (Some(_), None) => SinkRecall::Unknown,
        (Some(Some(m)), Some(r)) if m == r => SinkRecall::Intact,
        (Some(m), Some(r)) => SinkRecall::Lost(format!(
            "the sink's table `{table}` was rebuilt (marker {}, the ledger remembers {r})",
            m.as_deref().unwrap_or("none")
        )),
    }
}
