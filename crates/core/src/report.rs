//! What a run did: per-stream counts and per-stage timings.

use std::collections::BTreeMap;

pub use crate::names::RunOutcome;

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
    /// Records not written because a later record of their key in the same pass replaced
    /// them (the source repeats the key; the last one wins).
    #[serde(default)]
    pub superseded: u64,
    /// Rows deleted by delete propagation or because the source reported them deleted.
    pub deleted: u64,
    /// Writes the destination answered from its idempotency store (a retry or rerun of a
    /// create it had already made: Stripe's `Idempotent-Replayed: true`), among `written`.
    #[serde(default)]
    pub replayed: u64,
    /// Records sent to dead letters.
    pub dead_lettered: u64,
    /// Pages (batches) processed.
    pub batches: u64,
    /// Milliseconds spent per stage: `read`, `map`, `ledger`, `write`, `commit`.
    pub stage_ms: BTreeMap<String, u64>,
    /// `succeeded`, `failed`, `paused` or `interrupted` once the stream ended (`running`
    /// before).
    pub outcome: RunOutcome,
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
    /// Response-shape drift against the stream's baseline: one entry per (path, change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::drift::DriftEvent>,
    /// Why the stream is paused, when the run paused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Whether the stream stopped at the run's record limit (`run --limit`) before the end
    /// of its pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
}

/// What a connector's HTTP client did during a run: the figures that explain a slow or
/// failed sync (retries and their causes, rate-limit waits, token refreshes, cache use).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpReport {
    /// Logical requests (each may take several attempts).
    pub requests: u64,
    /// Attempts sent.
    pub attempts: u64,
    /// Attempts by HTTP status, or `error` for connect errors and timeouts.
    pub by_status: BTreeMap<String, u64>,
    /// Waits before a retry.
    pub retries: u64,
    /// Retries by cause (`503`, `429`, `connection error`, `undecodable body`, ...).
    pub retry_causes: BTreeMap<String, u64>,
    /// Milliseconds spent waiting before retries (backoff and `Retry-After`).
    pub retry_wait_ms: u64,
    /// Milliseconds spent waiting for the rate limiter (budget, server resets, pacing).
    pub rate_limit_wait_ms: u64,
    /// OAuth2 token requests (first token and refreshes) of the connector's credential: a
    /// provider is shared by every connector of the process on that credential, so a source
    /// and a sink on one OAuth client both count the same requests.
    pub token_requests: u64,
    /// 304 answers served from the response cache.
    pub not_modified: u64,
    /// Responses served stale from the cache because the remote was unavailable.
    pub stale: u64,
    /// Logical requests that failed after their retries.
    pub failed: u64,
    /// The pinned API version sent, when the connector pins one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Endpoints the vendor marked deprecated (`Deprecation` / `Sunset` headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deprecations: Vec<Deprecation>,
    /// While a request waits out a rate limit of a second or more: until when (RFC 3339),
    /// for a progress line to say why nothing moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<String>,
}

/// An endpoint the vendor marked deprecated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Deprecation {
    /// `GET /v1/items`.
    pub endpoint: String,
    /// The `Deprecation` header, when sent.
    pub deprecation: Option<String>,
    /// The `Sunset` header (the date it stops working), when sent.
    pub sunset: Option<String>,
}

impl HttpReport {
    /// What happened since `before` (a snapshot of the same client taken earlier).
    pub fn since(&self, before: &HttpReport) -> HttpReport {
        let sub = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            a.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        HttpReport {
            requests: self.requests.saturating_sub(before.requests),
            attempts: self.attempts.saturating_sub(before.attempts),
            by_status: sub(&self.by_status, &before.by_status),
            retries: self.retries.saturating_sub(before.retries),
            retry_causes: sub(&self.retry_causes, &before.retry_causes),
            retry_wait_ms: self.retry_wait_ms.saturating_sub(before.retry_wait_ms),
            rate_limit_wait_ms: self.rate_limit_wait_ms.saturating_sub(before.rate_limit_wait_ms),
            token_requests: self.token_requests.saturating_sub(before.token_requests),
            not_modified: self.not_modified.saturating_sub(before.not_modified),
            stale: self.stale.saturating_sub(before.stale),
            failed: self.failed.saturating_sub(before.failed),
            api_version: self.api_version.clone(),
            deprecations: self.deprecations.iter().filter(|d| !before.deprecations.contains(d)).cloned().collect(),
            rate_limited_until: self.rate_limited_until.clone(),
        }
    }
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
    /// `succeeded`, `failed`, `paused` or `interrupted`.
    pub outcome: RunOutcome,
    /// True when nothing was written or committed.
    pub dry_run: bool,
    /// Per-stream reports by stream name.
    pub streams: BTreeMap<String, StreamReport>,
    /// Exit code the CLI uses for this outcome.
    pub exit_code: i32,
    /// The first error, with its context, if the run failed.
    pub error: Option<String>,
    /// What the operator should do about `error` (see `Error::next_step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// `error`'s reason alone (message and causes), for tables that must show it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Where `error` happened: the request, file or record (a URL without secrets), apart
    /// from the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_at: Option<String>,
    /// HTTP figures of the source's and the sink's clients (`source`, `sink`), for
    /// connectors that speak HTTP.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http: BTreeMap<String, HttpReport>,
}

impl RunReport {
    /// Sum of one counter over all streams.
    pub fn total(&self, f: impl Fn(&StreamReport) -> u64) -> u64 {
        self.streams.values().map(f).sum()
    }
}
