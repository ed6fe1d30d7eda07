//! Classifying SQLite failures into dovetail's [`ErrorKind`]s.

use dovetail_core::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// Wrap a SQLite error with what the sink was doing, classified by its result code:
/// busy/locked/full/IO are worth a retry, permission and open failures are configuration,
/// constraint and size failures are about the data, the rest is permanent.
pub(crate) fn db_error(e: rusqlite::Error, doing: impl Into<String>) -> Error {
    let kind = match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::SystemIoFailure,
        ) => ErrorKind::Transient,
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly | ErrorCode::NotADatabase) => {
            ErrorKind::Config
        }
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => ErrorKind::Data,
        _ => ErrorKind::Permanent,
    };
    Error::new(kind, doing).with_source(e).in_connector(crate::KIND)
}

/// Whether an error executing one row's statement is about that row alone (the row goes
/// to dead letters and the batch continues) rather than about the database.
pub(crate) fn is_row_error(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig))
        || matches!(e, rusqlite::Error::ToSqlConversionFailure(_))
}
