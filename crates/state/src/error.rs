//! Mapping SQLite and serialization failures to dovetail's [`Error`].

use std::path::Path;

use dovetail_core::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// Whether SQLite gave up waiting for another connection's lock.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A failed database operation: [`ErrorKind::Busy`] when another process held the write lock
/// past the busy timeout, [`ErrorKind::Unavailable`] when the disk is full,
/// [`ErrorKind::Permanent`] when the file is read-only for this user,
/// [`ErrorKind::Internal`] otherwise.
pub(crate) fn db_err(op: &str, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        _ if is_busy(&e) => Error::new(
            ErrorKind::Busy,
            format!(
                "state store: {op}: the state database is busy: another process held its write lock for more \
                 than {}s",
                crate::BUSY_TIMEOUT.as_secs()
            ),
        )
        .with_source(e)
        .with_hint(
            "another process is writing the state database (another dovetail run: `dovetail status` shows running \
             runs); wait for it to finish, or stop it, then run `dovetail run {pipeline}` again",
        ),
        Some(ErrorCode::DiskFull) => Error::new(
            ErrorKind::Unavailable,
            format!("state store: {op}: the file system holding the state database is full"),
        )
        .with_source(e)
        .with_hint(
            "free space on the file system holding the state database (`[state] path`), then run \
                     `dovetail run {pipeline}` again; it resumes from the last checkpoint",
        ),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => Error::new(
            ErrorKind::Permanent,
            format!("state store: {op}: permission denied: the state database is not writable by this user"),
        )
        .with_source(e)
        .with_hint(
            "give the user running dovetail write permission on the state database, the files beside it and \
             their folder (`[state] path`), then run again",
        ),
        _ => Error::new(ErrorKind::Internal, format!("state store: {op} failed")).with_source(e),
    }
}

/// A database that cannot be opened or set up: busy, full or read-only as [`db_err`] says,
/// naming the file; otherwise a configuration problem (wrong path, not a database).
pub(crate) fn open_err(path: &Path, e: rusqlite::Error) -> Error {
    let file = path.display();
    let fs = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path).display();
    match e.sqlite_error_code() {
        _ if is_busy(&e) => db_err(&format!("opening `{file}`"), e),
        Some(ErrorCode::DiskFull) => Error::new(
            ErrorKind::Unavailable,
            format!("cannot open the state database `{file}`: the file system holding `{fs}` is full"),
        )
        .with_source(e)
        .with_hint(format!("free space on the file system holding `{fs}`, then run again")),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => Error::new(
            ErrorKind::Permanent,
            format!(
                "cannot open the state database `{file}`: permission denied: it (or its folder `{fs}`) is not \
                 writable by this user"
            ),
        )
        .with_source(e)
        .with_hint(format!(
            "give the user running dovetail write permission on `{file}`, the files beside it and `{fs}`, then run again"
        )),
        _ => Error::config(format!("cannot open the state database `{file}`")).with_source(e),
    }
}

/// A state database SQLite could open only read-only (the file, or its folder, is not
/// writable by this user).
pub(crate) fn read_only(path: &Path) -> Error {
    let file = path.display();
    let fs = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path).display();
    Error::new(
        ErrorKind::Permanent,
        format!("the state database `{file}` is read-only: permission denied to write it (or `{fs}`) as this user"),
    )
    .with_hint(format!(
        "give the user running dovetail write permission on `{file}`, the files beside it and `{fs}`, then run again"
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: ErrorCode) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error { code, extended_code: 0 }, None)
    }

    #[test]
    fn busy_full_and_read_only_are_named_for_what_they_are() {
        let busy = db_err("starting a commit", sqlite(ErrorCode::DatabaseBusy));
        assert_eq!(busy.kind(), &ErrorKind::Busy);
        assert!(busy.next_step().contains("wait for it to finish, or stop it"), "{}", busy.next_step());
        let full = db_err("committing", sqlite(ErrorCode::DiskFull));
        assert_eq!(full.kind(), &ErrorKind::Unavailable);
        assert!(full.message().contains("the file system holding the state database is full"), "{full}");
        let ro = db_err("committing", sqlite(ErrorCode::ReadOnly));
        assert_eq!(ro.kind(), &ErrorKind::Permanent);
        assert!(ro.message().contains("permission denied"), "{ro}");
        assert_eq!(db_err("x", sqlite(ErrorCode::InternalMalfunction)).kind(), &ErrorKind::Internal);

        let path = Path::new("/s/state.db");
        let full = open_err(path, sqlite(ErrorCode::DiskFull));
        assert_eq!(full.kind(), &ErrorKind::Unavailable);
        assert!(full.message().contains("the file system holding `/s` is full"), "{full}");
        assert_eq!(open_err(path, sqlite(ErrorCode::DatabaseLocked)).kind(), &ErrorKind::Busy);
        assert_eq!(open_err(path, sqlite(ErrorCode::NotADatabase)).kind(), &ErrorKind::Config);
        let ro = read_only(path);
        assert_eq!(ro.kind(), &ErrorKind::Permanent);
        assert!(ro.message().contains("`/s/state.db` is read-only: permission denied"), "{ro}");
    }
}
