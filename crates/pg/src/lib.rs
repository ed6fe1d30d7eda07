//! dovetail-pg: how dovetail connects to PostgreSQL, shared by the state store
//! (dovetail-state-pg) and the postgres connector so both read a URL and speak TLS the same
//! way: [`PgUrl::parse`] takes `postgres://user[:password]@host[:port]/db[?sslmode=…&sslrootcert=…]`
//! (libpq's `sslmode` names, [`tls`]) and never repeats the URL in an error, since it may
//! hold the password. [`TxConn`] is a transaction whose BEGIN and COMMIT are pipelined with
//! its statements.
#![warn(missing_docs)]

pub mod tls;
pub mod tx;

use std::path::PathBuf;
use std::time::Duration;

use dovetail_core::Error;

pub use tls::SslMode;
pub use tx::{Connection, TxConn};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed PostgreSQL URL: the driver's config with dovetail's TLS settings apart.
#[derive(Clone)]
pub struct PgUrl {
    /// The driver's config (connect timeout and `application_name` set).
    pub config: tokio_postgres::Config,
    /// `sslmode` from the URL (default `prefer`).
    pub sslmode: SslMode,
    /// `sslrootcert` from the URL: PEM CA certificates to trust.
    pub rootcert: Option<PathBuf>,
    /// `host:port`, for messages (never the password).
    pub place: String,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUrl").field("at", &self.place).finish_non_exhaustive()
    }
}

impl PgUrl {
    /// Parse `url`, the value of config key `key` (named in errors instead of the URL).
    pub fn parse(url: &str, key: &str) -> Result<PgUrl, Error> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = SslMode::default();
        let mut rootcert = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sslmode" => sslmode = SslMode::parse_in(&v, key)?,
                "sslrootcert" => rootcert = Some(PathBuf::from(&*v)),
                _ => {
                    rest.append_pair(&k, &v);
                }
            }
        }
        let rest = rest.finish();
        let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{rest}") };
        let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::config(format!("`{key}` is not a PostgreSQL URL this dovetail understands: {e}"))
        })?;
        if config.get_user().is_none() {
            return Err(Error::config(format!("`{key}` names no user: use postgres://user@host:port/database")));
        }
        config.ssl_mode(sslmode.wire());
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("dovetail");
        }
        let place = place_of(&config);
        Ok(PgUrl { config, sslmode, rootcert, place })
    }

    /// `host:port/database` (the database defaults to the user name, as in libpq): what two
    /// URLs share when they reach the same database, for the sink-at-state check.
    pub fn database(&self) -> String {
        let db = self.config.get_dbname().or(self.config.get_user()).unwrap_or_default();
        format!("{}/{db}", self.place.to_ascii_lowercase())
    }

    /// The TLS connector this URL asks for.
    pub fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
        tls::connector(self.sslmode, self.rootcert.as_deref())
    }
}

fn place_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tls_keys_and_hides_the_password() {
        let u = PgUrl::parse("postgres://u:s3cret@db:6543/d?sslmode=require&sslrootcert=/ca.pem", "sink.url").unwrap();
        assert_eq!(
            (u.sslmode, u.rootcert.as_deref(), u.place.as_str()),
            (SslMode::Require, Some("/ca.pem".as_ref()), "db:6543")
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let e = PgUrl::parse("postgres://u:s3cret@db/d?sslmode=maybe", "sink.url").unwrap_err().to_string();
        assert!(e.contains("unknown sslmode `maybe` in `sink.url`") && !e.contains("s3cret"), "{e}");
        let e = PgUrl::parse("postgres://db/d", "sink.url").unwrap_err().to_string();
        assert!(e.contains("`sink.url` names no user"), "{e}");
    }
}
