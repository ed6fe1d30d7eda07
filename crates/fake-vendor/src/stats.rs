//! What the server saw: [`Stats`], served at `GET /_stats` and by `VendorHandle::stats`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A snapshot of the counters since start or the last reset. Control and stats calls are not counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// API and token-endpoint requests, dropped ones included.
    pub requests: u64,
    /// Responses by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// 401 responses.
    pub unauthorized: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// 5xx responses, injected ones and the down switch included.
    pub server_errors: u64,
    /// Connections closed without a response (`drop_ratio`, `drop_after_create_ratio`).
    pub dropped: u64,
    /// Successful token grants by `grant_type`.
    pub token_grants: BTreeMap<String, u64>,
    /// Token requests refused with `invalid_grant` (unknown, already used or revoked refresh token).
    pub invalid_grants: u64,
    /// Token requests that presented a refresh token already rotated away by an earlier use
    /// ("refresh token already used"); also counted in `invalid_grants`.
    pub reused_refresh_tokens: u64,
    /// Records in well-formed listing pages answered 200.
    pub records_served: u64,
    /// Well-formed listing pages answered 200.
    pub pages_served: u64,
    /// Listing pages answered 200 with a body that never parses (`malformed_page`).
    pub malformed_pages: u64,
    /// Requests by path template (`/v1/items`, `/v1/items/{id}/comments`, ...).
    pub by_path: BTreeMap<String, u64>,
    /// Objects created by `POST /v1/items` or a first `PUT /v1/items/{external_id}`.
    pub creations: u64,
    /// Creations whose `external_id` (or, without one, whole body) matched an earlier object.
    pub duplicate_creations: u64,
    /// `POST`s answered from the idempotency store.
    pub idempotent_replays: u64,
    /// Most API requests accepted (not answered 429) within any sliding 1-second window.
    pub max_requests_in_1s: u64,
    /// 304 answers to `If-None-Match`.
    pub conditional_hits: u64,
    /// Requests answered with a redirect (`/moved/...`).
    pub redirects: u64,
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) stats: Stats,
    window: VecDeque<Instant>,
}

impl Counters {
    pub(crate) fn request(&mut self, template: &str) {
        self.stats.requests += 1;
        *self.stats.by_path.entry(template.to_owned()).or_default() += 1;
    }

    pub(crate) fn status(&mut self, status: u16) {
        *self.stats.by_status.entry(status).or_default() += 1;
        match status {
            401 => self.stats.unauthorized += 1,
            429 => self.stats.rate_limited += 1,
            304 => self.stats.conditional_hits += 1,
            500..=599 => self.stats.server_errors += 1,
            _ => {}
        }
    }

    /// Notes an API request that got past the rate limiter.
    pub(crate) fn accepted(&mut self, now: Instant) {
        while self.window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.window.pop_front();
        }
        self.window.push_back(now);
        self.stats.max_requests_in_1s = self.stats.max_requests_in_1s.max(self.window.len() as u64);
    }

    pub(crate) fn reset(&mut self) {
        *self = Counters::default();
    }
}
