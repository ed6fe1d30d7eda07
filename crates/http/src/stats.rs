//! Per-client figures for run reports: what this client (and its clones) did, as
//! [`HttpReport`]. Metrics (the `metrics` facade) are process-wide and labelled by host;
//! these are per connector, so a run report can say what its source and sink each did.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dovetail_core::report::{Deprecation, HttpReport};

/// Counters shared by a client's clones.
#[derive(Debug, Default)]
pub(crate) struct ClientStats {
    requests: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    retry_wait_ms: AtomicU64,
    rate_limit_wait_ms: AtomicU64,
    not_modified: AtomicU64,
    stale: AtomicU64,
    failed: AtomicU64,
    maps: Mutex<Maps>,
    /// The end of the rate-limit wait under way, if one of a second or more is.
    waiting: Mutex<Option<std::time::SystemTime>>,
}

#[derive(Debug, Default)]
struct Maps {
    /// By status code; 0 stands for "no response".
    by_status: BTreeMap<u16, u64>,
    retry_causes: BTreeMap<String, u64>,
    deprecations: Vec<Deprecation>,
}

impl ClientStats {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A logical request ended with `outcome` (`ok`, `cache`, `stale` or an error kind).
    pub(crate) fn request(&self, outcome: &str) {
        self.requests.fetch_add(1, Relaxed);
        match outcome {
            "ok" => {}
            "cache" => {
                self.not_modified.fetch_add(1, Relaxed);
            }
            "stale" => {
                self.stale.fetch_add(1, Relaxed);
            }
            _ => {
                self.failed.fetch_add(1, Relaxed);
            }
        }
    }

    /// An attempt got `status` (`None`: no response).
    pub(crate) fn attempt(&self, status: Option<u16>) {
        self.attempts.fetch_add(1, Relaxed);
        *self.maps().by_status.entry(status.unwrap_or(0)).or_default() += 1;
    }

    /// A retry after `wait`, because of `cause`.
    pub(crate) fn retry(&self, cause: String, wait: Duration) {
        self.retries.fetch_add(1, Relaxed);
        self.retry_wait_ms.fetch_add(wait.as_millis() as u64, Relaxed);
        *self.maps().retry_causes.entry(cause).or_default() += 1;
    }

    /// A rate-limited attempt is followed by another after `wait`: a retry, whose wait counts
    /// as rate-limit wait (the API set it), not retry wait.
    pub(crate) fn rate_limited_retry(&self, cause: String, wait: Duration) {
        self.retries.fetch_add(1, Relaxed);
        self.rate_limit_wait_ms.fetch_add(wait.as_millis() as u64, Relaxed);
        *self.maps().retry_causes.entry(cause).or_default() += 1;
    }

    /// Time spent waiting for the rate limiter before an attempt.
    pub(crate) fn rate_limit_wait(&self, wait: Duration) {
        self.rate_limit_wait_ms.fetch_add(wait.as_millis() as u64, Relaxed);
    }

    /// The vendor marked an endpoint deprecated (first sighting per client).
    pub(crate) fn deprecated(&self, d: Deprecation) {
        let mut m = self.maps();
        if !m.deprecations.contains(&d) {
            m.deprecations.push(d);
        }
    }

    /// A rate-limit wait of a second or more began (`Some(until)`) or ended (`None`).
    pub(crate) fn waiting(&self, until: Option<std::time::SystemTime>) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// The figures so far.
    pub(crate) fn report(&self, api_version: Option<String>, token_requests: u64) -> HttpReport {
        let m = self.maps();
        HttpReport {
            requests: self.requests.load(Relaxed),
            attempts: self.attempts.load(Relaxed),
            by_status: m
                .by_status
                .iter()
                .map(|(s, n)| (if *s == 0 { "error".to_owned() } else { s.to_string() }, *n))
                .collect(),
            retries: self.retries.load(Relaxed),
            retry_causes: m.retry_causes.clone(),
            retry_wait_ms: self.retry_wait_ms.load(Relaxed),
            rate_limit_wait_ms: self.rate_limit_wait_ms.load(Relaxed),
            token_requests,
            not_modified: self.not_modified.load(Relaxed),
            stale: self.stale.load(Relaxed),
            failed: self.failed.load(Relaxed),
            api_version,
            deprecations: m.deprecations.clone(),
            rate_limited_until: self.waiting.lock().unwrap_or_else(|p| p.into_inner()).map(crate::observe::rfc3339),
        }
    }
}
