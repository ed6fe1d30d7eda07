//! Classifying SQLite failures into dovetail's [`ErrorKind`]s: one table ([`kind_of`]) that
//! every caller consults; what follows from a kind is its `disposition()`.

use dovetail_core::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// What a SQLite failure means, by its result code: busy/locked/IO are worth a retry, a full
/// disk is an outage (it frees up without a config change), a read-only or unwritable file
/// is permanent, a file that is not a database is configuration, constraint and size
/// failures are about the data, the rest is permanent.
pub(crate) fn kind_of(e: &rusqlite::Error) -> ErrorKind {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure) => ErrorKind::Transient,
        Some(ErrorCode::DiskFull) => ErrorKind::Unavailable,
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => ErrorKind::Permanent,
        Some(ErrorCode::NotADatabase) => ErrorKind::Config,
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => ErrorKind::Data,
        _ => ErrorKind::Permanent,
    }
}

/// Wrap a SQLite error with what the sink was doing, classified by [`kind_of`].
pub(crate) fn db_error(e: rusqlite::Error, doing: impl Into<String>) -> Error {
    Error::new(kind_of(&e), doing).with_source(e).in_connector(crate::KIND)
}

/// A failure of the database file at `path` as a whole: a full disk or a missing write
/// permission names the path (and the file system) and says what to do; anything else is
/// [`db_error`].
pub(crate) fn file_error(e: rusqlite::Error, doing: impl Into<String>, path: &std::path::Path) -> Error {
    let doing = doing.into();
    let fs = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path).display();
    let file = path.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            db_error(e, format!("{doing}: the file system holding `{fs}` is full")).with_hint(format!(
                "free space on the file system holding `{fs}`, then run `dovetail run {{pipeline}}` again; it resumes \
                 from the last checkpoint"
            ))
        }
        // A folder where the database file should be is the config's `path`.
        Some(ErrorCode::CannotOpen) if path.is_dir() => {
            Error::new(ErrorKind::Config, format!("{doing}: `{file}` is a folder, not a database file"))
                .with_source(e)
                .in_connector(crate::KIND)
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => db_error(
            e,
            format!("{doing}: permission denied: `{file}` (or its folder `{fs}`) is not writable by this user"),
        )
        .with_hint(format!(
            "give the user running dovetail write permission on `{file}` and `{fs}` (or point the sink's `path` \
             elsewhere), then run again"
        )),
        _ => db_error(e, doing),
    }
}

/// Whether an error executing one row's statement is about that row alone (the row goes
/// to dead letters and the batch continues) rather than about the database: a `Data`
/// failure of the table, or a value that does not convert to SQL.
pub(crate) fn is_row_error(e: &rusqlite::Error) -> bool {
    kind_of(e) == ErrorKind::Data || matches!(e, rusqlite::Error::ToSqlConversionFailure(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: ErrorCode) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error { code, extended_code: 0 }, None)
    }

    #[test]
    fn one_table_decides_what_a_failure_means() {
        use dovetail_core::Disposition::*;
        #[rustfmt::skip]
        let table = [
            (ErrorCode::DatabaseBusy, ErrorKind::Transient, Retry, false),
            (ErrorCode::DatabaseLocked, ErrorKind::Transient, Retry, false),
            (ErrorCode::DiskFull, ErrorKind::Unavailable, Outage, false),
            (ErrorCode::CannotOpen, ErrorKind::Permanent, Reject, false),
            (ErrorCode::ReadOnly, ErrorKind::Permanent, Reject, false),
            (ErrorCode::PermissionDenied, ErrorKind::Permanent, Reject, false),
            (ErrorCode::NotADatabase, ErrorKind::Config, Abort, false),
            (ErrorCode::ConstraintViolation, ErrorKind::Data, Reject, true),
            (ErrorCode::TypeMismatch, ErrorKind::Data, Reject, true),
            (ErrorCode::TooBig, ErrorKind::Data, Reject, true),
            (ErrorCode::InternalMalfunction, ErrorKind::Permanent, Reject, false),
        ];
        for (code, kind, disposition, row) in table {
            let e = sqlite(code);
            assert_eq!(kind_of(&e), kind, "{code:?}");
            assert_eq!(kind.disposition(), disposition, "{code:?}");
            assert_eq!(is_row_error(&e), row, "{code:?}");
        }
    }
}
