//! Stream specifications and sync modes.

use serde_json::Value;

use crate::record::FieldPath;

/// What a source says about one of its streams.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Stream name, unique within the source.
    pub name: String,
    /// Primary-key field paths (one or more).
    pub primary_key: Vec<FieldPath>,
    /// Field whose value only grows, for incremental sync.
    pub cursor_field: Option<FieldPath>,
    /// JSON Schema of the records; `None` means it is inferred from the first batch.
    pub schema: Option<Value>,
    /// Re-read this far behind the last cursor (timestamps that lag): the engine asks the
    /// source for `since - lookback` and lets that margin through to the ledger, which skips
    /// what is unchanged. Applies to RFC 3339 timestamps and integer cursors (seconds).
    pub lookback: Option<std::time::Duration>,
    /// The cursor's lower bound before any pass has set one (a source's `start_date`): an
    /// incremental stream's first pass filters below it, counting what it drops as
    /// `filtered`, as later passes do below their checkpoint.
    pub start: Option<Value>,
}

impl StreamSpec {
    /// A stream with a name and primary key, no cursor, schema inferred.
    pub fn new(name: impl Into<String>, primary_key: Vec<FieldPath>) -> Self {
        StreamSpec { name: name.into(), primary_key, cursor_field: None, schema: None, lookback: None, start: None }
    }
    /// Set the cursor field.
    pub fn with_cursor(mut self, cursor: impl Into<FieldPath>) -> Self {
        self.cursor_field = Some(cursor.into());
        self
    }
}

/// How a stream is read on each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read what is new since the last run (by cursor when the stream has one, else by the
    /// source's own position); the ledger skips what is unchanged.
    #[default]
    Incremental,
    /// Read everything on every run; with `delete_missing`, rows gone from the source are deleted.
    FullRefresh,
}

/// What a completed full refresh does with sink rows the source no longer has, and what
/// the sink does with records the source reports deleted ([`crate::Record::deleted`]) in
/// either sync mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Leave them.
    #[default]
    Keep,
    /// Delete them from the sink.
    Delete,
    /// Mark them deleted (the sink sets its soft-delete column).
    SoftDelete,
}

/// What a stream does when its remote (source or sink) stays down past the retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// The stream fails with the cause (records bound for a down sink wait in the outbox).
    #[default]
    Fail,
    /// The stream stops at its last checkpoint and is marked paused; the next run probes it.
    Pause,
    /// Reference data: the source answers from its last good responses, marked stale.
    UseCache,
}
