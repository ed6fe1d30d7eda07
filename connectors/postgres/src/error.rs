//! PostgreSQL failures as dovetail errors. Messages name the operation and the server's
//! words, never the URL (it may hold the password).

use dovetail_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

/// An operation that failed, for the message.
pub(crate) struct PgErr<'a> {
    op: &'a str,
    /// `sink` or `source`: which side's messages and config keys these are.
    role: &'static str,
}

impl<'a> PgErr<'a> {
    pub(crate) fn new(op: &'a str) -> Self {
        PgErr { op, role: "sink" }
    }

    /// The same, for the source's operations (`postgres source: …`, `source.url`).
    pub(crate) fn source(op: &'a str) -> Self {
        PgErr { op, role: "source" }
    }

    /// What `e` means: a lost server is `Unavailable`, a refused login `Auth`, a missing
    /// privilege `Permanent` naming it, a serialization failure `Transient`, bad data `Data`.
    pub(crate) fn err(&self, e: tokio_postgres::Error) -> Error {
        let (op, role) = (self.op, self.role);
        let Some(code) = e.code().cloned() else {
            return Error::new(ErrorKind::Unavailable, format!("postgres {role}: {op}: the connection to PostgreSQL failed"))
                .with_source(e)
                .with_hint(format!("check that PostgreSQL is running and reachable (`{role}.url`), then run again; a run resumes from its last checkpoint"));
        };
        let server = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
        let class = &code.code()[..2];
        if code == SqlState::INVALID_PASSWORD || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return Error::new(ErrorKind::Auth, format!("postgres {role}: PostgreSQL refused the login: {server}"))
                .with_hint(format!(
                    "check the user and password of `{role}.url` (put the password in `${{ENV}}` or `${{file:…}}`)"
                ));
        }
        if code == SqlState::INSUFFICIENT_PRIVILEGE {
            let grant = match role {
                "source" => "grant the source's user USAGE on the schema and SELECT on the table (`GRANT SELECT ON …`)",
                _ => {
                    "grant the sink's user USAGE and CREATE on the schema (to create tables), or INSERT, UPDATE and \
                      DELETE on the existing tables"
                }
            };
            return Error::permanent(format!("postgres {role}: {op}: {server}")).with_hint(grant);
        }
        if code == SqlState::T_R_SERIALIZATION_FAILURE || code == SqlState::T_R_DEADLOCK_DETECTED {
            return Error::transient(format!("postgres {role}: {op}: {server}")).with_source(e);
        }
        if matches!(class, "08" | "57" | "53") {
            return Error::new(ErrorKind::Unavailable, format!("postgres {role}: {op}: {server}"))
                .with_source(e)
                .with_hint("check PostgreSQL, then run again; a run resumes from its last checkpoint");
        }
        if code == SqlState::INVALID_CATALOG_NAME {
            return Error::config(format!("postgres {role}: {server} (`{role}.url`)"));
        }
        if matches!(class, "22" | "23") {
            return Error::data(format!("postgres {role}: {op}: {server}")).with_source(e);
        }
        Error::permanent(format!("postgres {role}: {op}: {server}")).with_source(e)
    }
}
