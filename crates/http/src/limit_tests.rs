//! Tests of the rate limiter (`limit.rs`): budgets, gates and pacing in virtual time.
use super::*;
use crate::clock::FakeClock;

#[tokio::test]
async fn budget_spaces_requests_in_virtual_time() {
    let clock = FakeClock::new();
    let budget = RateBudget { requests: 2, per: Duration::from_secs(1), burst: 2 };
    let limits = Limits::new("test", clock.clone(), Some(budget), 4);
    let l = limits.limiter("h", "c");
    for _ in 0..4 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    // Two in the burst, then one every 500 ms.
    let total: Duration = clock.sleeps().iter().sum();
    assert_eq!(total, Duration::from_millis(1000));
    assert!(Arc::ptr_eq(&l, &limits.limiter("h", "c")));
    l.block_for(clock.as_ref(), Duration::from_secs(30));
    l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    assert_eq!(clock.sleeps().last(), Some(&Duration::from_secs(30)));
}

#[tokio::test]
async fn a_bare_429_holds_the_group_then_paces_and_successes_restore_the_rate() {
    let clock = FakeClock::new();
    let limits = Limits::new("test", clock.clone(), None, 4);
    let l = limits.limiter("h", "c");
    // Requests every 40 ms, then a 429 without a wait header whose retry waits 2 s.
    for _ in 0..8 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
        clock.advance(Duration::from_millis(40));
    }
    assert!(clock.sleeps().is_empty());
    l.slow_down(clock.as_ref(), "h", Duration::from_secs(2));
    let spacing = l.spacing();
    assert_eq!(spacing, Duration::from_millis(80), "half the observed rate of one request per 40 ms");
    // A burst of 5 back-to-back requests (any clone, any stream: one limiter): the first
    // waits out the cool-down, the others then go one spacing apart.
    for _ in 0..5 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2), spacing, spacing, spacing, spacing]);
    // A second bare 429 halves the rate again.
    l.slow_down(clock.as_ref(), "h", Duration::ZERO);
    assert_eq!(l.spacing(), spacing * 2);
    // Successes restore it gradually, then pacing is off.
    l.succeeded();
    assert!(l.spacing() < spacing * 2 && l.spacing() > spacing);
    for _ in 0..200 {
        l.succeeded();
    }
    assert_eq!(l.spacing(), Duration::ZERO);
    clock.advance(Duration::from_secs(5));
    let before = clock.sleeps().len();
    for _ in 0..5 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    assert_eq!(clock.sleeps().len(), before, "no waits once the rate is restored");
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, reqwest::header::HeaderValue::from_str(v).unwrap());
    }
    m
}

/// `X-RateLimit-*` with the reset `in_s` seconds after the fake clock's current wall time.
fn x(clock: &FakeClock, limit: u32, left: u32, in_s: f64) -> HeaderMap {
    let now = clock.now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let reset = (now + in_s).ceil() as u64;
    headers(&[
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", left.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ])
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn a_continuous_per_second_limit_is_paced_at_its_rate_not_to_the_whole_second() {
    let clock = FakeClock::new();
    let limits = Limits::new("test", clock.clone(), None, 4);
    let l = limits.limiter("h", "c");
    let style = ResetStyle::EpochSeconds;
    // L = 50 per second, 9 left, next token "at the next whole second" (rounded up): the
    // sustained rate (one per 20 ms) beats spreading 9 over the second (one per 111 ms).
    l.observe(clock.as_ref(), &x(&clock, 50, 9, 0.3), style);
    assert_eq!(l.server_spacing(), ms(20));
    for _ in 0..3 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    assert_eq!(clock.sleeps(), vec![ms(20), ms(20)]);
    // Nothing left, reset rounded up to a whole second 0.99 s away: the next token is at
    // most one interval (20 ms) away, so the gate closes for 20 ms, not 990 ms.
    clock.advance(ms(10));
    l.observe(clock.as_ref(), &x(&clock, 50, 0, 0.01), style);
    l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    assert_eq!(clock.sleeps()[2..], [ms(20)]);
    // A 429 whose Retry-After says 1 s: the gate holds for the full second (exec closes
    // it with `block_for`), whatever the headers' shorter wait says.
    let mut too_many = x(&clock, 50, 0, 0.01);
    too_many.insert("retry-after", reqwest::header::HeaderValue::from_static("1"));
    l.observe(clock.as_ref(), &too_many, style);
    l.block_for(clock.as_ref(), Duration::from_secs(1));
    l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    assert_eq!(clock.sleeps()[3..], [Duration::from_secs(1)]);
    // Many left and the reset close: the remaining whole tokens may go faster than L/W.
    clock.advance(ms(880));
    l.observe(clock.as_ref(), &x(&clock, 50, 10, 0.01), style);
    assert!(l.server_spacing() < ms(20), "{:?}", l.server_spacing());
}

#[tokio::test]
async fn an_hourly_window_is_spread_until_its_reset_and_waited_out_when_spent() {
    let clock = FakeClock::new();
    let limits = Limits::new("test", clock.clone(), None, 4);
    let l = limits.limiter("h", "c");
    let style = ResetStyle::EpochSeconds;
    // GitHub: 5000 per hour with 4000 left goes unpaced; with 500 left, reset in 3000 s,
    // the rest is spread: one request every 6 s.
    l.observe(clock.as_ref(), &x(&clock, 5000, 4000, 3000.0), style);
    assert_eq!(l.server_spacing(), Duration::ZERO);
    l.observe(clock.as_ref(), &x(&clock, 5000, 500, 3000.0), style);
    assert_eq!(l.server_spacing(), Duration::from_secs(6));
    for _ in 0..3 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(6); 2]);
    // Spent 1.5 s before the reset: the reset is a window end (a far reset was seen), so
    // the gate holds until it, not just one token interval (0.72 s).
    l.observe(clock.as_ref(), &x(&clock, 5000, 0, 1.5), style);
    l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    assert_eq!(clock.sleeps()[2..], [Duration::from_secs(2)]);
    // Delta-seconds IETF headers without a limit: spread 10 over 5 s.
    let ietf = headers(&[("ratelimit-remaining", "10".into()), ("ratelimit-reset", "5".into())]);
    l.observe(clock.as_ref(), &ietf, ResetStyle::DeltaSeconds);
    assert_eq!(l.server_spacing(), ms(500));
}

#[tokio::test]
async fn a_configured_budget_and_the_server_pacing_combine_to_the_stricter() {
    let clock = FakeClock::new();
    let budget = RateBudget { requests: 2, per: Duration::from_secs(1), burst: 1 };
    let limits = Limits::new("test", clock.clone(), Some(budget), 4);
    let l = limits.limiter("h", "c");
    l.observe(clock.as_ref(), &x(&clock, 50, 9, 0.5), ResetStyle::EpochSeconds);
    for _ in 0..3 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    assert_eq!(clock.sleeps(), vec![ms(500), ms(500)], "the budget is stricter than 20 ms");
    let clock = FakeClock::new();
    clock.advance(Duration::from_secs(1));
    let fast = Limits::new("test", clock.clone(), Some(RateBudget { requests: 100, ..budget }), 4);
    let l = fast.limiter("h", "c");
    l.observe(clock.as_ref(), &x(&clock, 5000, 10, 50.0), ResetStyle::EpochSeconds);
    for _ in 0..3 {
        l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    }
    // (The budget's 10 ms comes first, then the rest of the server's 5 s.)
    let total: Duration = clock.sleeps().iter().sum();
    assert_eq!(total, Duration::from_secs(10), "the server is stricter than 100/s: {:?}", clock.sleeps());
}

#[test]
fn limits_and_windows_are_read_in_every_form() {
    let h =
        |pairs: &[(&'static str, &str)]| headers(&pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect::<Vec<_>>());
    assert_eq!(limit_of(&h(&[("x-ratelimit-limit", "50")])), Some((50, None)));
    let ietf = h(&[("ratelimit-limit", "100, 100;w=60, 1000;w=3600")]);
    assert_eq!(limit_of(&ietf), Some((100, Some(Duration::from_secs(60)))));
    let policy = h(&[("ratelimit-limit", "100"), ("ratelimit-policy", "100;w=60;burst=10")]);
    assert_eq!(limit_of(&policy), Some((100, Some(Duration::from_secs(60)))));
    assert_eq!(limit_of(&h(&[("x-ratelimit-limit", "0")])), None);
    assert_eq!(limit_of(&h(&[("x-ratelimit-limit", "many")])), None);
}

#[tokio::test]
async fn hubspots_rolling_window_headers_pace_at_max_per_interval() {
    let clock = FakeClock::new();
    let limits = Limits::new("test", clock.clone(), None, 4);
    let l = limits.limiter("h", "c");
    let hubspot = |left: u32| {
        headers(&[
            ("x-hubspot-ratelimit-max", "101".into()),
            ("x-hubspot-ratelimit-remaining", left.to_string()),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".into()),
        ])
    };
    // 101 per 10 s (paced as 100, a margin for jitter), no reset sent: one every 100 ms.
    l.observe(clock.as_ref(), &hubspot(99), ResetStyle::EpochSeconds);
    assert_eq!(l.server_spacing(), ms(100));
    // Nothing left: the gate closes for one interval.
    l.observe(clock.as_ref(), &hubspot(0), ResetStyle::EpochSeconds);
    l.ready(clock.as_ref(), "h", Duration::MAX).await.unwrap();
    assert_eq!(clock.sleeps(), vec![ms(100)]);
}

#[tokio::test]
async fn a_daily_allowance_running_low_is_spread_and_a_spent_one_closes_the_gate_until_its_reset() {
    let clock = FakeClock::new();
    let limits = Limits::new("test", clock.clone(), None, 4);
    let l = limits.limiter("h", "c");
    let daily = |left: u32| {
        headers(&[
            ("x-hubspot-ratelimit-daily", "250000".into()),
            ("x-hubspot-ratelimit-daily-remaining", left.to_string()),
        ])
    };
    // Plenty left: unpaced. Without a rule the reset is the next midnight UTC.
    l.observe(clock.as_ref(), &daily(200_000), ResetStyle::EpochSeconds);
    assert_eq!(l.daily_spacing(), Duration::ZERO);
    let now = clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let to_midnight = Duration::from_secs((now / 86_400 + 1) * 86_400 - now);
    l.observe(clock.as_ref(), &daily(1_000), ResetStyle::EpochSeconds);
    assert_eq!(l.daily_spacing(), (to_midnight / 1_000).min(MAX_SPACING));
    // The connector's rule: back in 100 s; 10 left → one every 10 s; spent → the gate.
    l.set_daily_reset(Arc::new(|now| now + Duration::from_secs(100)));
    l.observe(clock.as_ref(), &daily(10), ResetStyle::EpochSeconds);
    assert_eq!(l.daily_spacing(), Duration::from_secs(10));
    l.observe(clock.as_ref(), &daily(0), ResetStyle::EpochSeconds);
    assert_eq!(l.ready(clock.as_ref(), "h", Duration::from_secs(60)).await, Err(Duration::from_secs(100)));
    assert_eq!(l.gate(clock.as_ref()), Some(Duration::from_secs(100)));
}
