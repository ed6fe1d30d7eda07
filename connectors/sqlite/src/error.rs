//! Classifying SQLite failures into dovetail's [`ErrorKind`]s: one table ([`kind_of`]) that
//! every caller consults; what follows from a kind is its `disposition()`.

use dovetail_core::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// What a SQLite failure means, by its result code: busy/locked/full/IO are worth a retry,
/// permission and open failures are configuration, constraint and size failures are about
/// the data, the rest is permanent.
pub(crate) fn kind_of(e: &rusqlite::Error) -> ErrorKind {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::SystemIoFailure,
        ) => ErrorKind::Transient,
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly | ErrorCode::NotADatabase) => {
            ErrorKind::Config
        }
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => ErrorKind::Data,
        _ => ErrorKind::Permanent,
    }
}

/// Wrap a SQLite error with what the sink was doing, classified by [`kind_of`].
pub(crate) fn db_error(e: rusqlite::Error, doing: impl Into<String>) -> Error {
    Error::new(kind_of(&e), doing).with_source(e).in_connector(crate::KIND)
}

/// Whether an error executing one row's statement is about that row alone (the row goes
/// to dead letters and the batch continues) rather than about the database: a `Data`
/// failure of the table, or a value that does not convert to SQL.
pub(crate) fn is_row_error(e: &rusqlite::Error) -> bool {
    kind_of(e) == ErrorKind::Data || matches!(e, rusqlite::Error::ToSqlConversionFailure(_))
}

/// The error of `check` when the write lock cannot be taken: a database busy with another
/// writer past the busy timeout may free itself (transient); anything else — a full disk
/// included — means the configured file cannot be written (config).
pub(crate) fn lock_error(e: rusqlite::Error, path: &std::path::Path) -> Error {
    let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
    let kind = if busy { ErrorKind::Transient } else { ErrorKind::Config };
    Error::new(kind, format!("cannot write to sqlite database {}", path.display())).with_source(e)
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
            (ErrorCode::DiskFull, ErrorKind::Transient, Retry, false),
            (ErrorCode::CannotOpen, ErrorKind::Config, Abort, false),
            (ErrorCode::ReadOnly, ErrorKind::Config, Abort, false),
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
        let path = std::path::Path::new("out.db");
        assert_eq!(lock_error(sqlite(ErrorCode::DatabaseBusy), path).kind(), &ErrorKind::Transient);
        assert_eq!(lock_error(sqlite(ErrorCode::DiskFull), path).kind(), &ErrorKind::Config);
    }
}
