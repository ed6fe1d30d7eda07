//! Mapping SQLite and serialization failures to dovetail's [`Error`].

use std::path::Path;

use dovetail_core::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// Whether SQLite gave up waiting for another connection's lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A failed database operation: [`ErrorKind::Transient`] when the database was busy (another
/// process held the write lock past the busy timeout), [`ErrorKind::Internal`] otherwise.
pub(crate) fn db_err(op: &str, e: rusqlite::Error) -> Error {
    if is_busy(&e) {
        Error::transient(format!("state store: {op}: the database is busy (locked by another process)")).with_source(e)
    } else {
        Error::new(ErrorKind::Internal, format!("state store: {op} failed")).with_source(e)
    }
}

/// A database that cannot be opened or set up is a configuration problem (wrong path, not a
/// database, no permission), unless it is merely busy.
pub(crate) fn open_err(path: &Path, e: rusqlite::Error) -> Error {
    if is_busy(&e) {
        db_err(&format!("opening `{}`", path.display()), e)
    } else {
        Error::config(format!("cannot open the state database `{}`", path.display())).with_source(e)
    }
}

/// JSON that cannot be written or read back.
pub(crate) fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::internal(format!("state store: {what} is not valid JSON")).with_source(e)
}

/// A name read back from `table`.`column` ([`dovetail_core::RunOutcome`], `PauseKind`,
/// `DriftClass`): one this dovetail does not know (a database written by a newer one, or
/// edited by hand) is an internal error naming the table, the column and the value.
pub(crate) fn stored_name<T>(table: &str, column: &str, value: &str) -> Result<T, Error>
where
    T: std::str::FromStr<Err = dovetail_core::UnknownName>,
{
    value.parse().map_err(|e| {
        Error::internal(format!(
            "state store: table `{table}`, column `{column}`: {e}; was the database written by a newer dovetail?"
        ))
    })
}

/// Extension to attach an operation name to rusqlite results.
pub(crate) trait DbResultExt<T> {
    /// Map the error with [`db_err`].
    fn op(self, op: &str) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for rusqlite::Result<T> {
    fn op(self, op: &str) -> Result<T, Error> {
        self.map_err(|e| db_err(op, e))
    }
}
