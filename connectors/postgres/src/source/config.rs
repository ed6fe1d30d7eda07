//! [`PostgresSourceConfig`]: which table or query is read, by which cursor and key.

use dovetail_core::Secret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Configuration of the `postgres` source: one stream, a table or a query.
///
/// ```toml
/// [pipelines.reverse.source]
/// kind = "postgres"
/// url = "postgres://reader:${PG_PASSWORD}@db.internal:5432/warehouse?sslmode=verify-full"
/// table = "customers"
/// cursor = "updated_at"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`, with the
    /// state store's TLS keys. Put the password in `${ENV}` or `${file:…}`; it never appears
    /// in output.
    pub url: Secret,
    /// Table to read (in `schema`). Exactly one of `table` and `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Schema of `table` (default `public`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// A `SELECT` to read instead of a table, wrapped as a subquery (`key` is then required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Stream name (default: the table's name; required with `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Column that grows when a row changes (`updated_at`): incremental reads by keyset
    /// pagination on (cursor, key). Without it every run reads everything in key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Key columns (default: the table's primary key, read from the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// Rows per page (default 1000).
    #[serde(default = "default_page_size", deserialize_with = "dovetail_http::in_range_req::<_, _, 1, 100_000>")]
    #[schemars(range(min = 1, max = 100_000))]
    pub page_size: usize,
    /// Re-read this many seconds before the last cursor value (default 0): rows whose
    /// `updated_at = now()` was set by a transaction that committed after a later row was
    /// read are then still picked up; the ledger skips what was already sent.
    #[serde(default, deserialize_with = "dovetail_http::in_range_req::<_, _, 0, 31_536_000>")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub lookback_secs: u64,
}

fn default_schema() -> String {
    "public".to_owned()
}

fn default_page_size() -> usize {
    1000
}

impl PostgresSourceConfig {
    /// A config reading `table` of schema `public` from `url`, in full (no cursor).
    pub fn table(url: impl Into<String>, table: impl Into<String>) -> Self {
        PostgresSourceConfig {
            url: Secret::new(url),
            table: Some(table.into()),
            schema: default_schema(),
            query: None,
            stream: None,
            cursor: None,
            key: None,
            page_size: default_page_size(),
            lookback_secs: 0,
        }
    }

    /// The same, read incrementally by `cursor`.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// The stream's name: `stream`, else the table's.
    pub fn stream_name(&self) -> &str {
        self.stream.as_deref().or(self.table.as_deref()).unwrap_or("query")
    }

    /// Reject what cannot work, before any IO, naming the key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match (&self.table, &self.query) {
            (Some(_), Some(_)) => return Err("set either `table` or `query`, not both".into()),
            (None, None) => return Err("set `table` (a table to read) or `query` (a SELECT to read)".into()),
            (None, Some(_)) if self.stream.is_none() => {
                return Err("`stream` (the stream's name) is required with `query`".into());
            }
            (None, Some(_)) if self.key.is_none() => {
                return Err("`key` (the columns that identify a row) is required with `query`".into());
            }
            _ => {}
        }
        let mut names: Vec<(&str, &str)> = vec![("schema", &self.schema)];
        names.extend(self.table.as_deref().map(|t| ("table", t)));
        names.extend(self.cursor.as_deref().map(|c| ("cursor", c)));
        names.extend(self.stream.as_deref().map(|s| ("stream", s)));
        if let Some(k) = &self.key {
            if k.is_empty() {
                return Err("`key` must list at least one column".into());
            }
            names.extend(k.iter().map(|k| ("key", k.as_str())));
        }
        for (key, v) in names {
            if v.is_empty() {
                return Err(format!("`{key}` must not be empty"));
            }
            if v.contains('\0') {
                return Err(format!("`{key}` must not contain a NUL character"));
            }
        }
        if !(1..=100_000).contains(&self.page_size) {
            return Err(format!("`page_size` must be between 1 and 100000, got {}", self.page_size));
        }
        if self.lookback_secs > 31_536_000 {
            return Err(format!("`lookback_secs` must be at most 31536000 (a year), got {}", self.lookback_secs));
        }
        if self.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err("`query` must not be empty".into());
        }
        Ok(())
    }
}
