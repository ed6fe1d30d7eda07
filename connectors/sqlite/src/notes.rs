//! What the sink notes about the columns it makes: the JSON types each was made for, in a
//! table `_dovetail_columns` of the same database (like dlt's `_dlt_version`), so a later
//! run knows that a column without a declared type was made for numbers and can tell a
//! string arriving there as `column_type` drift. Written in the transaction that creates
//! or alters the table; widened by `dovetail drift accept`.

use std::collections::HashMap;

use dovetail_core::Error;
use rusqlite::{Connection, OptionalExtension};

use crate::column::Seen;
use crate::error::db_error;

/// The notes table.
pub const NOTES_TABLE: &str = "_dovetail_columns";

/// The noted types of `table`'s columns (none when the notes table does not exist).
pub(crate) fn load(conn: &Connection, table: &str) -> Result<HashMap<String, Seen>, Error> {
    let what = |e| db_error(e, format!("cannot read the column notes of table `{table}`"));
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [NOTES_TABLE], |r| r.get(0))
        .optional()
        .map_err(what)?;
    if exists.is_none() {
        return Ok(HashMap::new());
    }
    let mut stmt = conn
        .prepare(&format!("SELECT column_name, json_types FROM {NOTES_TABLE} WHERE table_name = ?1"))
        .map_err(what)?;
    let rows = stmt.query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(what)?;
    let mut out = HashMap::new();
    for row in rows {
        let (column, types) = row.map_err(what)?;
        out.insert(column, Seen::from_names(types.split('|')));
    }
    Ok(out)
}

/// Note (or replace) what `column` of `table` was made for; nothing when nothing is known.
pub(crate) fn save(conn: &Connection, table: &str, column: &str, seen: Seen) -> Result<(), Error> {
    if !seen.known() {
        return Ok(());
    }
    let what = |e| db_error(e, format!("cannot note the type of column `{column}` of table `{table}`"));
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {NOTES_TABLE} (table_name TEXT NOT NULL, column_name TEXT NOT NULL, \
         json_types TEXT NOT NULL, PRIMARY KEY (table_name, column_name)) WITHOUT ROWID"
    ))
    .map_err(what)?;
    conn.execute(
        &format!("INSERT OR REPLACE INTO {NOTES_TABLE} (table_name, column_name, json_types) VALUES (?1, ?2, ?3)"),
        (table, column, seen.names()),
    )
    .map_err(what)?;
    Ok(())
}
