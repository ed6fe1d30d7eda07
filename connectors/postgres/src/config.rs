//! [`PostgresSinkConfig`]: where the tables live and how they and soft deletes are named.

use dovetail_core::Secret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ident::SYNCED_AT;

/// Configuration of the `postgres` sink.
///
/// ```toml
/// [pipelines.crm.sink]
/// kind = "postgres"
/// url = "postgres://loader:${PG_PASSWORD}@db.internal:5432/warehouse?sslmode=verify-full"
/// schema = "crm"
/// table_prefix = "hubspot_"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`, with
    /// the state store's TLS keys (`sslmode`: disable, prefer (default), require, verify-ca,
    /// verify-full; `sslrootcert`: PEM CA certificates). Put the password in `${ENV}` or
    /// `${file:…}`; it never appears in output.
    pub url: Secret,
    /// Schema holding the tables (default `public`; created when missing).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Prefix put in front of every table name (`crm_` turns stream `users` into table
    /// `crm_users`). Default: none, the table is named after the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// Column a soft delete sets to the time of the delete, for streams whose delete mode
    /// is `soft_delete`. A later write of the same key clears it.
    #[serde(default = "default_soft_delete_column")]
    pub soft_delete_column: String,
    /// What happens to a record holding a NUL character in a string (PostgreSQL refuses it
    /// in `text` and `jsonb`): `dead_letter` (default) names the field path, `strip`
    /// removes it and records a coercion (`column_type` drift).
    #[serde(default)]
    pub nul: NulPolicy,
}

/// What the sink does with a NUL character in a string value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NulPolicy {
    /// Dead-letter the record, naming the field path.
    #[default]
    DeadLetter,
    /// Remove the NUL characters and record the coercion.
    Strip,
}

fn default_schema() -> String {
    "public".to_owned()
}

fn default_soft_delete_column() -> String {
    "_deleted_at".to_owned()
}

impl PostgresSinkConfig {
    /// A config writing to `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresSinkConfig {
            url: Secret::new(url),
            schema: default_schema(),
            table_prefix: None,
            soft_delete_column: default_soft_delete_column(),
            nul: NulPolicy::default(),
        }
    }

    /// The table a stream is written to, before shortening: the prefix, if any, then the
    /// stream name.
    pub fn table_name(&self, stream: &str) -> String {
        match &self.table_prefix {
            Some(p) => format!("{p}{stream}"),
            None => stream.to_owned(),
        }
    }

    /// Reject values that cannot work, before any IO.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (key, v) in [("schema", self.schema.as_str()), ("soft_delete_column", self.soft_delete_column.as_str())] {
            if v.is_empty() {
                return Err(format!("`{key}` must not be empty"));
            }
            if v.contains('\0') {
                return Err(format!("`{key}` must not contain a NUL character"));
            }
            if v.len() > crate::ident::MAX_IDENT {
                return Err(format!("`{key}` is longer than PostgreSQL's {} bytes", crate::ident::MAX_IDENT));
            }
        }
        if self.table_prefix.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err("`table_prefix` must not contain a NUL character".into());
        }
        if self.soft_delete_column == SYNCED_AT {
            return Err(format!("`soft_delete_column` cannot be `{SYNCED_AT}`, which the sink sets on every write"));
        }
        Ok(())
    }
}
