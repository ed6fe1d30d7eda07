//! What a run did: per-stream counts and per-stage timings.

use std::collections::BTreeMap;

/// Counts and timings of one stream in one run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamReport {
    /// Records the source returned (rejects included).
    pub read: u64,
    /// Records the cursor bound filtered out as already delivered.
    pub filtered: u64,
    /// Records that passed mapping.
    pub mapped: u64,
    /// Records written to the sink (or that would be, in a dry run).
    pub written: u64,
    /// Records skipped because the ledger had the same content.
    pub skipped_unchanged: u64,
    /// Rows deleted by delete propagation.
    pub deleted: u64,
    /// Records sent to dead letters.
    pub dead_lettered: u64,
    /// Pages (batches) processed.
    pub batches: u64,
    /// Milliseconds spent per stage: `read`, `map`, `ledger`, `write`, `commit`.
    pub stage_ms: BTreeMap<String, u64>,
    /// `succeeded`, `failed`, `paused` or `interrupted`.
    pub outcome: String,
    /// The error, with its context, if the stream failed.
    pub error: Option<String>,
    /// Whether this stream resumed from a checkpoint position (inside a pass).
    pub resumed: bool,
    /// Pages served from the last good responses while the remote was down (`use_cache`).
    #[serde(default)]
    pub stale_pages: u64,
    /// Records queued in the outbox this run because the sink was down.
    #[serde(default)]
    pub outbox_queued: u64,
    /// Outbox records delivered this run (queued by earlier runs, or earlier in this one).
    #[serde(default)]
    pub outbox_delivered: u64,
    /// Records still waiting in the outbox after the run.
    #[serde(default)]
    pub outbox_pending: u64,
    /// Why the stream is paused, when the run paused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
}

/// Outcome of one pipeline run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id in the state store.
    pub run_id: i64,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// Whole run in milliseconds.
    pub duration_ms: u64,
    /// `succeeded`, `failed` or `interrupted`.
    pub outcome: String,
    /// True when nothing was written or committed.
    pub dry_run: bool,
    /// Per-stream reports by stream name.
    pub streams: BTreeMap<String, StreamReport>,
    /// Exit code the CLI uses for this outcome.
    pub exit_code: i32,
    /// The first error, with its context, if the run failed.
    pub error: Option<String>,
}

impl RunReport {
    /// Sum of one counter over all streams.
    pub fn total(&self, f: impl Fn(&StreamReport) -> u64) -> u64 {
        self.streams.values().map(f).sum()
    }
}
