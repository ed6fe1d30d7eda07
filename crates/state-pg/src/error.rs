//! PostgreSQL failures as dovetail errors. Messages name the server as `host:port` and the
//! operation, never the URL (it may carry the password).

use deadpool_postgres::PoolError;
use dovetail_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

use crate::PgTarget;

/// A failed statement or connection: wrong password or user is [`ErrorKind::Auth`]; a
/// missing privilege [`ErrorKind::Permanent`] naming it; a lock held elsewhere
/// [`ErrorKind::Busy`]; a serialization failure or deadlock [`ErrorKind::Transient`]; an
/// unreachable or lost server [`ErrorKind::Unavailable`]; anything else internal.
pub fn pg_err(target: &PgTarget, op: &str, e: tokio_postgres::Error) -> Error {
    let at = target.place();
    if let Some(why) = tls_refusal(&e) {
        let mode = target.sslmode.name();
        return Error::config(format!(
            "state store: {op}: the TLS certificate of PostgreSQL at {at} was refused (sslmode={mode}): {why}"
        ))
        .with_hint(
            "set `sslrootcert=/path/ca.pem` in `state.url` to the CA that signed the server's certificate, and use \
             the host name the certificate names (verify-full checks it)",
        );
    }
    let Some(code) = e.code().cloned() else {
        // No SQLSTATE: the connection could not be made or was lost.
        return Error::new(ErrorKind::Unavailable, format!("state store: {op}: cannot reach PostgreSQL at {at}"))
            .with_source(e)
            .with_hint(format!(
                "check that PostgreSQL is running and reachable at {at} (`state.url`), then run again; a run \
                 resumes from its last checkpoint"
            ));
    };
    let server = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    if code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && server.contains("no encryption") {
        let user = target.config.get_user().unwrap_or("?");
        return Error::new(
            ErrorKind::Auth,
            format!("state store: PostgreSQL at {at} refused user `{user}` without TLS: {server}"),
        )
        .with_hint(
            "the server lets this user in over TLS only: use `sslmode=verify-full` (or `require`) in `state.url`",
        );
    }
    if code == SqlState::INVALID_PASSWORD || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        let user = target.config.get_user().unwrap_or("?");
        return Error::new(ErrorKind::Auth, format!("state store: PostgreSQL at {at} refused user `{user}`: {server}"))
            .with_hint("check the user and password of `state.url` (put the password in `${ENV}` or `${file:…}`)");
    }
    if code == SqlState::INSUFFICIENT_PRIVILEGE {
        let schema = target.schema();
        return Error::new(ErrorKind::Permanent, format!("state store: {op}: {server} (PostgreSQL at {at})"))
            .with_hint(format!(
                "grant the state user CREATE on the database (to create schema `{schema}`) or USAGE and CREATE on \
                 schema `{schema}` and its tables, or set `state.schema` to a schema it owns"
            ));
    }
    if code == SqlState::LOCK_NOT_AVAILABLE {
        return Error::new(ErrorKind::Busy, format!("state store: {op}: {server} (PostgreSQL at {at})")).with_source(e);
    }
    if code == SqlState::T_R_SERIALIZATION_FAILURE || code == SqlState::T_R_DEADLOCK_DETECTED {
        return Error::transient(format!("state store: {op}: {server}")).with_source(e);
    }
    let class = &code.code()[..2];
    // 08: connection exception; 57: operator intervention (shutdown, restart); 53: out of
    // resources (too many connections, disk full).
    if matches!(class, "08" | "57" | "53") {
        return Error::new(ErrorKind::Unavailable, format!("state store: {op}: PostgreSQL at {at}: {server}"))
            .with_source(e)
            .with_hint(format!("check PostgreSQL at {at}, then run again; a run resumes from its last checkpoint"));
    }
    if code == SqlState::INVALID_CATALOG_NAME {
        return Error::config(format!("state store: PostgreSQL at {at}: {server} (`state.url`)"));
    }
    Error::internal(format!("state store: {op} failed: {server}")).with_source(e)
}

/// Whether `e` means the connection went away, not that the statement was wrong: no
/// SQLSTATE (the socket closed or could not be opened), a connection exception (08), or the
/// server shutting down, crashing or still starting (57P01, 57P02, 57P03). Such a statement
/// can be tried again on a new connection once the server is back.
pub(crate) fn lost(e: &tokio_postgres::Error) -> bool {
    if tls_refusal(e).is_some() {
        return false;
    }
    match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
    }
}

/// The reason a TLS handshake refused the server (its certificate), if that is why `e` failed.
fn tls_refusal(e: &tokio_postgres::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        // `io::Error::source` skips the error it wraps; rustls's hides there.
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        cur = err.source();
    }
    None
}

/// Whether a dovetail error was caused by a lost connection ([`lost`]).
pub(crate) fn is_lost(e: &Error) -> bool {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<tokio_postgres::Error>()).is_some_and(lost)
}

/// A statement refused for want of a privilege, naming the privilege and the `GRANT` that
/// gives it (`needs` like `CREATE on schema "x"`).
pub(crate) fn privilege_err(target: &PgTarget, op: &str, needs: &str, grant: &str, e: tokio_postgres::Error) -> Error {
    if e.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return pg_err(target, op, e);
    }
    let server = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    let user = target.config.get_user().unwrap_or("?");
    Error::new(
        ErrorKind::Permanent,
        format!(
            "state store: permission denied: dovetail needs {needs} as user `{user}` ({op}; PostgreSQL at {}: {server})",
            target.place()
        ),
    )
    .with_hint(format!("run `{grant}` as the owner, or set `state.schema` to a schema user `{user}` owns"))
}

/// A connection the pool could not give.
pub(crate) fn pool_err(target: &PgTarget, e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => pg_err(target, "connecting", e),
        PoolError::Timeout(_) => Error::new(
            ErrorKind::Unavailable,
            format!("state store: timed out connecting to PostgreSQL at {}", target.place()),
        )
        .with_hint(format!("check that PostgreSQL is running and reachable at {} (`state.url`)", target.place())),
        other => {
            Error::internal(format!("state store: no PostgreSQL connection to {}", target.place())).with_source(other)
        }
    }
}
