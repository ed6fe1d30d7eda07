//! "What happened": a run told in plain words, after `dovetail run` and `dovetail demo`.
//! Built from the run report and the dead letters only (the demo adds what its vendor
//! counted): nothing is claimed that they do not show.

use std::path::{Path, PathBuf};

use dovetail_core::{DriftClass, ErrorKind, HttpReport, RunOutcome, RunReport};
use dovetail_fake_vendor::{AuthMode, Stats};

use crate::output::{self, count};

/// What the demo knows besides the run report: its vendor's counters and auth, and whether
/// the state held a run before this demo.
#[derive(Debug)]
pub struct Demo<'a> {
    /// The id of the last run before this demo (0: none).
    pub previous_run: i64,
    /// The vendor's own counters, now.
    pub vendor: &'a Stats,
    /// The vendor's counters when this run started: the story tells only this run's share,
    /// as the run report does (the demo's earlier runs met their own faults).
    pub at_start: &'a Stats,
    /// How the vendor authenticates.
    pub auth: &'a AuthMode,
}

impl Demo<'_> {
    /// What the vendor counted during this run, by `f`.
    fn this_run(&self, f: impl Fn(&Stats) -> u64) -> u64 {
        f(self.vendor).saturating_sub(f(self.at_start))
    }
}

/// The run in words: what dovetail survived, what it wrote, where things are.
pub fn story(
    r: &RunReport,
    dead: &[dovetail_core::state::DeadLetter],
    state_path: &Path,
    sinks: &[PathBuf],
    demo: Option<&Demo<'_>>,
) -> String {
    let mut out = String::from("\nWhat happened:\n");
    let written = r.total(|s| s.written);
    let unchanged = r.total(|s| s.skipped_unchanged) + r.total(|s| s.filtered);
    if written == 0 && r.outcome == RunOutcome::Succeeded {
        out.push_str(&format!(
            "  - Nothing new at the {}: 0 records written ({unchanged} already delivered were skipped). This rerun changed nothing.\n",
            if demo.is_some() { "vendor" } else { "source" }
        ));
    } else {
        out.push_str(&format!(
            "  - {} records read, {written} written, {unchanged} skipped as already delivered, {} dead-lettered.\n",
            r.total(|s| s.read),
            r.total(|s| s.dead_lettered)
        ));
    }
    if let Some(h) = r.http.get("source") {
        out.push_str(&http(h, demo));
    }
    out.push_str(&drift(r));
    let (queued, drained) = (r.total(|s| s.outbox_queued), r.total(|s| s.outbox_delivered));
    if queued + drained > 0 {
        out.push_str(&format!(
            "  - Outbox (the sink was down): {queued} records queued this run, {drained} delivered from it before anything new was read, {} still waiting.\n",
            r.total(|s| s.outbox_pending)
        ));
    }
    let new_dead: Vec<_> = dead.iter().filter(|d| d.created_at.as_str() >= r.started_at.as_str()).collect();
    if new_dead.is_empty() {
        out.push_str("  - Dead letters: none this run.\n");
    } else {
        out.push_str(&format!("  - Dead letters ({}), each with its reason:\n", new_dead.len()));
        for d in new_dead.iter().take(5) {
            out.push_str(&format!("      #{}: {}\n", d.id, output::truncate(&d.reason, 120)));
        }
    }
    let shown = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    for s in sinks {
        out.push_str(&format!("  - Data: {} (SQLite; one table per stream).\n", shown(s)));
    }
    let Some(demo) = demo else {
        out.push_str(&format!("  - State: {} (checkpoints, ledger, dead letters, run history).\n", shown(state_path)));
        if r.exit_code != 0 && r.exit_code != ErrorKind::Interrupted.exit_code() {
            out.push_str(&format!("  The run did not succeed ({}): the error and what to do follow.\n", r.outcome));
        }
        return out;
    };
    out.push_str(&format!(
        "  - State: {} (checkpoints, ledger, dead letters, run history; tokens in tokens.json beside it).\n",
        shown(state_path)
    ));
    if demo.previous_run > 0 {
        out.push_str(
            "  Run `dovetail demo` again: the vendor starts fresh, dovetail remembers, and nothing is written twice.\n",
        );
    } else {
        out.push_str("  Run `dovetail demo` again: dovetail resumes from its checkpoint and writes nothing new.\n");
    }
    if r.exit_code != 0 && r.exit_code != ErrorKind::Interrupted.exit_code() {
        out.push_str(&format!(
            "  The run did not succeed: {}\n",
            r.error.clone().unwrap_or_else(|| r.outcome.to_string())
        ));
    }
    out
}

/// The source's HTTP figures in words: requests, what was survived and retried, rate limits,
/// tokens, the cache, deprecations.
fn http(h: &HttpReport, demo: Option<&Demo<'_>>) -> String {
    let mut out = String::new();
    let by = |c: &str| h.retry_causes.get(c).copied().unwrap_or(0);
    let server_errors: u64 = h.retry_causes.iter().filter(|(c, _)| c.starts_with('5')).map(|(_, n)| n).sum();
    let counted = demo.map(|d| format!("; the vendor counted {}, token requests included", d.this_run(|v| v.requests)));
    out.push_str(&format!(
        "  - {} ({}{}).\n",
        count(h.requests, "HTTP request", "HTTP requests"),
        count(h.attempts, "attempt", "attempts"),
        counted.unwrap_or_default()
    ));
    if server_errors > 0 {
        out.push_str(&format!(
            "  - Survived {} (5xx): each retried with backoff and jitter.\n",
            count(server_errors, "server error", "server errors")
        ));
    }
    // dovetail-http's retry cause for an attempt held back because no token could be had.
    let token_failures = by("token endpoint");
    if token_failures > 0 {
        out.push_str(&format!(
            "  - Survived {} (the token endpoint answered 5xx or nothing): the requests waiting for a token were retried with backoff.\n",
            count(token_failures, "failed token request", "failed token requests")
        ));
    }
    let other: u64 = h.retries - server_errors - by("429") - token_failures;
    if other > 0 {
        let more = count(other, "more attempt", "more attempts");
        // Outside the demo, each cause by name (`connection dropped ×2, timeout ×1`).
        let why = match demo {
            Some(_) => "connection errors, broken bodies".to_owned(),
            None => h
                .retry_causes
                .iter()
                .filter(|(c, _)| !c.starts_with('5') && *c != "429" && *c != "token endpoint")
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        out.push_str(&format!("  - Retried {more} ({why}).\n"));
    }
    let refused = h.by_status.get("429").copied().unwrap_or(0);
    // The demo's vendor always limits the rate; elsewhere a rate limit is told when it bit.
    if demo.is_some() || refused > 0 || h.rate_limit_wait_ms > 0 {
        out.push_str(&format!(
            "  - Rate limit: {} waiting for the {}'s budget to refill, {} refused with 429.\n",
            output::duration(h.rate_limit_wait_ms),
            if demo.is_some() { "vendor" } else { "API" },
            count(refused, "request", "requests")
        ));
    }
    match demo {
        Some(d) => out.push_str(&vendor(h, d)),
        None if h.token_requests > 0 => {
            out.push_str(&format!("  - Credentials: {}.\n", count(h.token_requests, "token request", "token requests")))
        }
        None => {}
    }
    if h.not_modified > 0 {
        out.push_str(&format!("  - {} responses were not modified (304) and came from the cache.\n", h.not_modified));
    }
    for d in &h.deprecations {
        out.push_str(&format!(
            "  - The {} marked {} deprecated{}.\n",
            if demo.is_some() { "vendor" } else { "API" },
            d.endpoint,
            d.sunset.as_ref().map(|s| format!(" (sunset {s})")).unwrap_or_default()
        ));
    }
    out
}

/// What only the demo's vendor counted: broken pages, dropped connections, token rotations.
fn vendor(h: &HttpReport, demo: &Demo<'_>) -> String {
    let mut out = String::new();
    let malformed = demo.this_run(|v| v.malformed_pages);
    if malformed > 0 {
        out.push_str(&format!(
            "  - The vendor answered {} 200 with JSON that does not parse: taken for a broken answer, not for data ({} retried).\n",
            count(malformed, "listing page", "listing pages"),
            count(h.retry_causes.get("undecodable body").copied().unwrap_or(0), "undecodable body", "undecodable bodies")
        ));
    }
    let dropped = demo.this_run(|v| v.dropped);
    if dropped > 0 {
        out.push_str(&format!(
            "  - The vendor dropped {} without answering.\n",
            count(dropped, "connection", "connections")
        ));
    }
    if let AuthMode::OAuth2 { rotate_refresh_tokens, .. } = demo.auth
        && h.token_requests > 0
    {
        let rotated = demo.this_run(|v| v.token_grants.get("refresh_token").copied().unwrap_or(0));
        let saved = if *rotate_refresh_tokens && rotated > 0 {
            format!(
                "; the vendor rotated the refresh token {}, each new one saved before use",
                count(rotated, "time", "times")
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  - OAuth2: {} (the first token and refreshes before each expiry){saved}.\n",
            count(h.token_requests, "token request", "token requests")
        ));
    }
    out
}

/// Nulls and drift, per stream.
fn drift(r: &RunReport) -> String {
    let mut out = String::new();
    for (stream, s) in &r.streams {
        let nulls: u64 = s.drift.iter().filter(|d| d.change == DriftClass::NullValue).map(|d| d.count).sum();
        if nulls > 0 {
            out.push_str(&format!(
                "  - Survived nulls where the schema promises values ({nulls} values in `{stream}`): kept as null and reported by path above, not dropped.\n"
            ));
        }
        for d in s.drift.iter().filter(|d| d.change != DriftClass::NullValue) {
            let what = match d.change {
                DriftClass::TypeChanged => format!("arrived as {} where the schema says {}", d.observed, d.expected),
                DriftClass::NewField => "is a field the schema does not know".to_owned(),
                DriftClass::MissingField => "was missing".to_owned(),
                DriftClass::EnumValue => format!("took the new value {} (the schema lists {})", d.observed, d.expected),
                DriftClass::ColumnType => {
                    format!("arrived as {} in a SQLite column made for {}", d.observed, d.expected)
                }
                DriftClass::NullValue => d.change.to_string(), // told above, with the other nulls
            };
            out.push_str(&format!(
                "  - Detected drift in `{stream}`: {} {what} in {} records, from {}; kept and reported, not dropped.\n",
                d.path, d.count, d.first_at
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_names_each_retry_cause_once_and_in_its_own_words() {
        let mut h = dovetail_core::HttpReport {
            requests: 30,
            attempts: 33,
            retries: 6,
            token_requests: 5,
            ..Default::default()
        };
        for (cause, n) in [("503", 2), ("500", 1), ("429", 1), ("token endpoint", 1), ("timeout", 1)] {
            h.retry_causes.insert(cause.into(), n);
        }
        h.by_status.insert("429".into(), 1);
        let r =
            RunReport { outcome: RunOutcome::Succeeded, http: [("source".to_owned(), h)].into(), ..Default::default() };
        let vendor =
            Stats { requests: 36, token_grants: [("refresh_token".to_owned(), 4)].into(), ..Default::default() };
        let auth = AuthMode::OAuth2 {
            client_id: "c".into(),
            client_secret: "s".into(),
            refresh_token: None,
            token_lifetime_secs: 2.0,
            rotate_refresh_tokens: true,
        };
        let start = Stats::default();
        let demo = Demo { previous_run: 0, vendor: &vendor, at_start: &start, auth: &auth };
        let text = story(&r, &[], Path::new("state.db"), &[], Some(&demo));
        for line in [
            "  - 30 HTTP requests (33 attempts; the vendor counted 36, token requests included).\n",
            "  - Survived 3 server errors (5xx): each retried with backoff and jitter.\n",
            "  - Survived 1 failed token request (the token endpoint answered 5xx or nothing): the requests waiting for a token were retried with backoff.\n",
            "  - Retried 1 more attempt (connection errors, broken bodies).\n",
            "  - Rate limit: 0ms waiting for the vendor's budget to refill, 1 request refused with 429.\n",
            "  - OAuth2: 5 token requests (the first token and refreshes before each expiry); the vendor rotated the refresh token 4 times, each new one saved before use",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // A vendor without OAuth2: no claim of expiring or rotating tokens.
        let demo = Demo { previous_run: 0, vendor: &vendor, at_start: &start, auth: &AuthMode::None };
        let text = story(&r, &[], Path::new("state.db"), &[], Some(&demo));
        assert!(!text.contains("OAuth2") && !text.contains("rotated"), "{text}");
        // Outside the demo: no vendor counts, no token claims beyond the count.
        let text = story(&r, &[], Path::new("state.db"), &[], None);
        assert!(text.contains("  - 30 HTTP requests (33 attempts).\n"), "{text}");
        assert!(text.contains("  - Retried 1 more attempt (timeout ×1).\n"), "{text}");
        assert!(text.contains("  - Credentials: 5 token requests.\n"), "{text}");
        assert!(!text.contains("vendor") && !text.contains("OAuth2") && !text.contains("tokens.json"), "{text}");
    }

    #[test]
    fn the_demo_tells_the_vendor_faults_this_run_met_not_the_whole_demo() {
        let mut h = dovetail_core::HttpReport { requests: 10, attempts: 11, retries: 1, ..Default::default() };
        h.retry_causes.insert("undecodable body".into(), 1);
        let r =
            RunReport { outcome: RunOutcome::Succeeded, http: [("source".to_owned(), h)].into(), ..Default::default() };
        let before = Stats { requests: 40, malformed_pages: 1, dropped: 3, ..Default::default() };
        let earlier_run = Stats { requests: 51, ..before.clone() };
        let demo = Demo { previous_run: 0, vendor: &earlier_run, at_start: &before, auth: &AuthMode::None };
        let text = story(&r, &[], Path::new("state.db"), &[], Some(&demo));
        assert!(text.contains("(11 attempts; the vendor counted 11, token requests included)"), "{text}");
        assert!(!text.contains("does not parse") && !text.contains("dropped"), "{text}");
        let met = Stats { requests: 51, malformed_pages: 2, dropped: 4, ..before.clone() };
        let demo = Demo { previous_run: 0, vendor: &met, at_start: &before, auth: &AuthMode::None };
        let text = story(&r, &[], Path::new("state.db"), &[], Some(&demo));
        assert!(text.contains("answered 1 listing page 200 with JSON that does not parse: taken for a broken answer, not for data (1 undecodable body retried)"), "{text}");
        assert!(text.contains("The vendor dropped 1 connection without answering."), "{text}");
    }

    #[test]
    fn outside_the_demo_a_quiet_run_claims_no_rate_limit_or_tokens() {
        let h = dovetail_core::HttpReport { requests: 3, attempts: 3, ..Default::default() };
        let r =
            RunReport { outcome: RunOutcome::Succeeded, http: [("source".to_owned(), h)].into(), ..Default::default() };
        let text = story(&r, &[], Path::new("state.db"), &[], None);
        assert!(!text.contains("Rate limit") && !text.contains("token"), "{text}");
    }
}
