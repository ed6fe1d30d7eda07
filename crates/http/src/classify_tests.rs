//! The `classify` table: every main status, with and without the remote's wait, with a
//! cached copy, a refreshable credential, a scope and a classifier's verdict; the budget;
//! and status → kind → disposition.

use std::time::{Duration, SystemTime};

use dovetail_core::Disposition;
use reqwest::header::HeaderValue;

use super::*;
use crate::clock::FakeClock;

fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    m
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The default context: nothing cached, no credential to refresh, unscoped, no classifier.
fn cx<'a>(clock: &'a FakeClock, classifier: Option<&'a Classifier>) -> Context<'a> {
    Context {
        cached: false,
        reauthorize: false,
        scoped: false,
        classifier,
        clock,
        reset_style: ResetStyle::EpochSeconds,
    }
}

const NOW: u64 = 1_700_000_000;

#[test]
fn every_main_status_without_and_with_the_remotes_wait() {
    let clock = FakeClock::new();
    let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + secs(NOW + 12));
    let none = h(&[]);
    let after_7 = h(&[("retry-after", "7")]);
    let after_date = h(&[("retry-after", &date)]);
    let exhausted = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &(NOW + 30).to_string())]);
    let reset_only = h(&[("x-ratelimit-remaining", "5"), ("x-ratelimit-reset", &(NOW + 30).to_string())]);
    let retry = |wait| Step::Retry { wait };
    let limited = |wait| Step::RateLimited { wait, floor: None };
    #[rustfmt::skip]
    let table: Vec<(u16, &HeaderMap, Step<'_>)> = vec![
        (200, &none, Step::Success),
        (201, &none, Step::Success),
        (204, &none, Step::Success),
        // A 2xx's rate-limit headers are the limiter's business, not a retry.
        (200, &exhausted, Step::Success),
        (304, &none, Step::Fail(ErrorKind::Permanent)),
        (400, &none, Step::Fail(ErrorKind::Permanent)),
        (400, &after_7, Step::Fail(ErrorKind::Permanent)),
        (401, &none, Step::Fail(ErrorKind::Auth)),
        (403, &none, Step::Fail(ErrorKind::Auth)),
        (403, &exhausted, Step::Fail(ErrorKind::Auth)),
        (404, &none, Step::Fail(ErrorKind::Permanent)),
        (407, &none, Step::Fail(ErrorKind::Auth)),
        (408, &none, retry(None)),
        (408, &after_7, retry(Some(secs(7)))),
        (409, &none, Step::Fail(ErrorKind::Permanent)),
        (422, &none, Step::Fail(ErrorKind::Permanent)),
        (429, &none, limited(None)),
        (429, &after_7, limited(Some(secs(7)))),
        (429, &after_date, limited(Some(secs(12)))),
        // A 429 names its window's reset even when `Remaining` is not 0.
        (429, &reset_only, limited(Some(secs(30)))),
        (429, &exhausted, limited(Some(secs(30)))),
        (500, &none, retry(None)),
        (500, &after_date, retry(Some(secs(12)))),
        (502, &none, retry(None)),
        (503, &none, retry(None)),
        (503, &after_7, retry(Some(secs(7)))),
        (503, &exhausted, retry(Some(secs(30)))),
        // A 503 that is not out of budget: its reset header is no wait.
        (503, &reset_only, retry(None)),
        (504, &none, retry(None)),
        (501, &none, Step::Fail(ErrorKind::Permanent)),
    ];
    for (status, headers, want) in table {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(classify(status, headers, b"", &cx(&clock, None)), want, "{status} {headers:?}");
    }
    assert!(clock.sleeps().is_empty());
}

#[test]
fn delta_reset_headers_and_a_date_in_the_past() {
    let clock = FakeClock::new();
    let delta = Context { reset_style: ResetStyle::DeltaSeconds, ..cx(&clock, None) };
    let exhausted = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")]);
    assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &exhausted, b"", &delta), Step::Retry { wait: Some(secs(5)) });
    let ietf = h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "9")]);
    assert_eq!(
        classify(StatusCode::TOO_MANY_REQUESTS, &ietf, b"", &delta),
        Step::RateLimited { wait: Some(secs(9)), floor: None }
    );
    let past = h(&[("retry-after", &httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + secs(NOW - 60)))]);
    let step = classify(StatusCode::TOO_MANY_REQUESTS, &past, b"", &cx(&clock, None));
    assert_eq!(step, Step::RateLimited { wait: Some(Duration::ZERO), floor: None }, "a date already past: no wait");
}

#[test]
fn a_cached_copy_answers_a_304_and_a_refreshable_credential_a_401() {
    let clock = FakeClock::new();
    let none = h(&[]);
    let cached = Context { cached: true, ..cx(&clock, None) };
    assert_eq!(classify(StatusCode::NOT_MODIFIED, &none, b"", &cached), Step::NotModified);
    assert_eq!(classify(StatusCode::OK, &none, b"", &cached), Step::Success);
    let fresh = Context { reauthorize: true, ..cx(&clock, None) };
    assert_eq!(classify(StatusCode::UNAUTHORIZED, &none, b"", &fresh), Step::Reauthorize);
    assert_eq!(classify(StatusCode::FORBIDDEN, &none, b"", &fresh), Step::Fail(ErrorKind::Auth));
    let spent = Context { reauthorize: false, ..cx(&clock, None) };
    assert_eq!(classify(StatusCode::UNAUTHORIZED, &none, b"", &spent), Step::Fail(ErrorKind::Auth));
}

#[test]
fn a_scoped_client_refuses_the_redirect_it_did_not_follow() {
    let clock = FakeClock::new();
    let moved = h(&[("location", "https://elsewhere.test/v1/items")]);
    let scoped = Context { scoped: true, ..cx(&clock, None) };
    for status in [301, 302, 303, 307, 308] {
        let status = StatusCode::from_u16(status).unwrap();
        let step = classify(status, &moved, b"", &scoped);
        assert_eq!(step, Step::RedirectRefused { location: "https://elsewhere.test/v1/items" }, "{status}");
        assert_eq!(step.failure_kind(), Some(ErrorKind::Permanent));
        // Unscoped, reqwest followed it; one that comes back anyway is refused as any 3xx.
        assert_eq!(classify(status, &moved, b"", &cx(&clock, None)), Step::Fail(ErrorKind::Permanent));
    }
    assert_eq!(classify(StatusCode::FOUND, &h(&[]), b"", &scoped), Step::Fail(ErrorKind::Permanent), "no Location");
}

#[test]
fn a_classifiers_verdict_overrides_the_default() {
    let clock = FakeClock::new();
    // "This 403 is a rate limit until T; that 404 is worth a retry; this 503 is final."
    let c: Classifier = Arc::new(|s, headers, body| match s.as_u16() {
        403 if body.starts_with(b"slow") => {
            Some(Verdict::RateLimited(Wait::Until(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_045))))
        }
        403 if headers.contains_key("x-limit") => Some(Verdict::RateLimited(Wait::Headers)),
        403 if body.starts_with(b"pause") => Some(Verdict::RateLimited(Wait::For(secs(3)))),
        403 if body.starts_with(b"floor") => Some(Verdict::RateLimited(Wait::Backoff { first: secs(60) })),
        404 => Some(Verdict::Retry),
        503 => Some(Verdict::Fail(ErrorKind::Permanent)),
        200 | 304 | 401 => Some(Verdict::Fail(ErrorKind::Internal)),
        _ => None,
    });
    let cx = Context { cached: true, reauthorize: true, ..cx(&clock, Some(&c)) };
    let none = h(&[]);
    let forbidden = StatusCode::FORBIDDEN;
    assert_eq!(classify(forbidden, &none, b"slow down", &cx), Step::RateLimited { wait: Some(secs(45)), floor: None });
    assert_eq!(classify(forbidden, &none, b"pause", &cx), Step::RateLimited { wait: Some(secs(3)), floor: None });
    let limit = h(&[("x-limit", "1"), ("retry-after", "20")]);
    assert_eq!(classify(forbidden, &limit, b"", &cx), Step::RateLimited { wait: Some(secs(20)), floor: None });
    assert_eq!(classify(forbidden, &h(&[("x-limit", "1")]), b"", &cx), Step::RateLimited { wait: None, floor: None });
    assert_eq!(
        classify(forbidden, &h(&[("retry-after", "20")]), b"floor", &cx),
        Step::RateLimited { wait: None, floor: Some(secs(60)) },
        "a vendor floor is the classifier's answer when it gives one, headers or not"
    );
    assert_eq!(classify(forbidden, &none, b"no", &cx), Step::Fail(ErrorKind::Auth), "None keeps the default");
    assert_eq!(
        classify(StatusCode::NOT_FOUND, &h(&[("retry-after", "2")]), b"", &cx),
        Step::Retry { wait: Some(secs(2)) }
    );
    assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &none, b"", &cx), Step::Fail(ErrorKind::Permanent));
    assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &none, b"", &cx), Step::RateLimited { wait: None, floor: None });
    // Never asked about a success, a cached 304 or the first 401.
    assert_eq!(classify(StatusCode::OK, &none, b"", &cx), Step::Success);
    assert_eq!(classify(StatusCode::NOT_MODIFIED, &none, b"", &cx), Step::NotModified);
    assert_eq!(classify(StatusCode::UNAUTHORIZED, &none, b"", &cx), Step::Reauthorize);
}

#[test]
fn the_budget_counts_attempts_and_time_and_needs_a_repeatable_request() {
    let p = RetryPolicy { max_attempts: 3, max_elapsed: secs(60), ..RetryPolicy::default() };
    #[rustfmt::skip]
    let table = [
        // (repeatable, attempt, elapsed, wait, another attempt)
        (true, 1, 0, 1, true),
        (true, 2, 10, 1, true),
        (true, 3, 10, 1, false),
        (true, 1, 50, 10, true),
        (true, 1, 50, 11, false),
        (true, 1, 0, 61, false),
        (false, 1, 0, 1, false),
    ];
    for (repeatable, attempt, elapsed, wait, want) in table {
        assert_eq!(
            retry_allowed(&p, repeatable, attempt, secs(elapsed), secs(wait), false),
            want,
            "{attempt} {elapsed} {wait}"
        );
    }
}

#[test]
fn a_rate_limit_wait_is_bounded_by_its_own_cap_not_the_time_budget() {
    let p = RetryPolicy {
        max_attempts: 3,
        max_elapsed: secs(60),
        max_rate_limit_wait: secs(300),
        ..RetryPolicy::default()
    };
    #[rustfmt::skip]
    let table = [
        // (repeatable, attempt, elapsed, wait, another attempt)
        (true, 1, 50, 200, true),   // past max_elapsed: taken all the same
        (true, 1, 0, 300, true),
        (true, 1, 0, 301, false),   // longer than the cap: stop, come back later
        (true, 3, 0, 1, false),     // attempts still count
        (false, 1, 0, 1, false),
    ];
    for (repeatable, attempt, elapsed, wait, want) in table {
        assert_eq!(
            retry_allowed(&p, repeatable, attempt, secs(elapsed), secs(wait), true),
            want,
            "{attempt} {elapsed} {wait}"
        );
    }
    // A vendor floor doubles per attempt: GitHub's minute, then 2, 4, 8 minutes.
    let floors: Vec<u64> = (1..=4).map(|n| floor_wait(secs(60), n).as_secs()).collect();
    assert_eq!(floors, [60, 120, 240, 480]);
}

#[test]
fn status_to_kind_to_disposition() {
    use Disposition::*;
    let clock = FakeClock::new();
    let none = h(&[]);
    // The kind a request ends with when this status is its last response (retries spent
    // for the retried ones), and what callers do with it.
    #[rustfmt::skip]
    let table = [
        (400, ErrorKind::Permanent, Reject),
        (401, ErrorKind::Auth, Abort),
        (403, ErrorKind::Auth, Abort),
        (404, ErrorKind::Permanent, Reject),
        (407, ErrorKind::Auth, Abort),
        (408, ErrorKind::Transient, Retry),
        (409, ErrorKind::Permanent, Reject),
        (410, ErrorKind::Permanent, Reject),
        (422, ErrorKind::Permanent, Reject),
        (429, ErrorKind::RateLimited { until: None }, Retry),
        (500, ErrorKind::Transient, Retry),
        (501, ErrorKind::Permanent, Reject),
        (502, ErrorKind::Transient, Retry),
        (503, ErrorKind::Transient, Retry),
        (504, ErrorKind::Transient, Retry),
    ];
    for (status, kind, disposition) in table {
        let status = StatusCode::from_u16(status).unwrap();
        let got = classify(status, &none, b"", &cx(&clock, None)).failure_kind();
        assert_eq!(got.as_ref(), Some(&kind), "{status}");
        assert_eq!(kind.disposition(), disposition, "{status}");
    }
    let after_7 = h(&[("retry-after", "7")]);
    let waited = classify(StatusCode::TOO_MANY_REQUESTS, &after_7, b"", &cx(&clock, None));
    // The time to come back is set when the request gives up (the wait it would take next).
    assert_eq!(waited, Step::RateLimited { wait: Some(secs(7)), floor: None });
    assert_eq!(waited.failure_kind(), Some(ErrorKind::RateLimited { until: None }));
    assert_eq!(status_kind(StatusCode::TOO_MANY_REQUESTS), ErrorKind::RateLimited { until: None });
    assert_eq!(classify(StatusCode::OK, &none, b"", &cx(&clock, None)).failure_kind(), None);
}

#[test]
fn a_failure_carries_the_headers_of_interest_and_never_a_credential() {
    let headers = h(&[
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "1700000030"),
        ("ratelimit-policy", "100;w=60"),
        ("retry-after", "30"),
        ("x-github-request-id", "AB:CD"),
        ("x-vendor-trace", "t-1"),
        ("set-cookie", "session=s3cr3t"),
        ("authorization", "Bearer s3cr3t"),
        ("x-api-key", "s3cr3t"),
        ("content-type", "application/json"),
    ]);
    let extra = vec!["x-vendor-trace".to_owned(), "authorization".to_owned()];
    let f = http_failure(Some(StatusCode::FORBIDDEN), &headers, Some(secs(30)), &extra);
    assert_eq!((f.status, f.retry_after_ms), (Some(403), Some(30_000)));
    let mut names: Vec<&str> = f.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ratelimit-policy",
            "retry-after",
            "x-github-request-id",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "x-vendor-trace"
        ]
    );
    assert_eq!(f.header("x-github-request-id"), Some("AB:CD"));
    assert!(!format!("{f:?}").contains("s3cr3t"), "{f:?}");
    let e = status_error(ErrorKind::Auth, StatusCode::FORBIDDEN, "no access", f.clone());
    assert_eq!((e.message(), e.status(), e.http()), ("HTTP 403 Forbidden: no access", Some(403), Some(&f)));
}
