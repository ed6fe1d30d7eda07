//! [`SqliteConfig`]: where the database lives and how tables and soft deletes are named.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::column::SYNCED_AT;

/// Configuration of the `sqlite` sink.
///
/// ```toml
/// [sink]
/// kind = "sqlite"
/// path = "out/warehouse.db"
/// table_prefix = "crm_"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file. Relative paths are resolved against the config file's folder;
    /// missing parent directories are created when the sink first opens it.
    pub path: PathBuf,
    /// Prefix put in front of every table name (`crm_` turns stream `users` into table
    /// `crm_users`). Default: none, the table is named after the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// Column a soft delete sets to the time of the delete (RFC 3339), for streams whose
    /// delete mode is `soft_delete`. A later write of the same key clears it.
    #[serde(default = "default_soft_delete_column")]
    pub soft_delete_column: String,
}

fn default_soft_delete_column() -> String {
    "_deleted_at".to_owned()
}

impl SqliteConfig {
    /// A config writing to `path` with the defaults for everything else.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig { path: path.into(), table_prefix: None, soft_delete_column: default_soft_delete_column() }
    }

    /// The table a stream is written to: the prefix, if any, followed by the stream name.
    pub fn table_name(&self, stream: &str) -> String {
        match &self.table_prefix {
            Some(p) => format!("{p}{stream}"),
            None => stream.to_owned(),
        }
    }

    /// Reject values that cannot work, before any IO.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` must name the database file".into());
        }
        if self.soft_delete_column.is_empty() {
            return Err("`soft_delete_column` must not be empty".into());
        }
        if self.table_prefix.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err("`table_prefix` must not contain a NUL character".into());
        }
        if self.soft_delete_column.contains('\0') {
            return Err("`soft_delete_column` must not contain a NUL character".into());
        }
        if self.soft_delete_column.eq_ignore_ascii_case(SYNCED_AT) {
            return Err(format!("`soft_delete_column` cannot be `{SYNCED_AT}`, which the sink sets on every write"));
        }
        Ok(())
    }
}
