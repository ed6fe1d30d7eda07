//! Token-bucket rate limiting: headers, 429 with Retry-After, and the sliding-window statistic.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{client, header, start_with};
use dovetail_fake_vendor::{RateLimit, VendorConfig};
use serde_json::Value;

fn limited(per_second: f64, burst: u32) -> VendorConfig {
    VendorConfig { records: 10, rate_limit: Some(RateLimit { per_second, burst }), ..VendorConfig::default() }
}

fn num(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
    header(headers, name).unwrap_or_else(|| panic!("{name} missing")).parse().unwrap()
}

#[tokio::test]
async fn headers_count_down_then_429_with_retry_after() {
    // One token a second: no refill worth speaking of during the test.
    let vendor = start_with(limited(1.0, 5)).await;
    let c = client();
    let url = format!("{}/v1/items?limit=1", vendor.base_url());
    for expected in (0..5).rev() {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(num(resp.headers(), "x-ratelimit-limit"), 5);
        assert_eq!(num(resp.headers(), "x-ratelimit-remaining"), expected);
    }
    for _ in 0..3 {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(num(resp.headers(), "retry-after"), 1);
        assert_eq!(num(resp.headers(), "x-ratelimit-remaining"), 0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let reset = num(resp.headers(), "x-ratelimit-reset");
        assert!((now..=now + 2).contains(&reset), "reset {reset}, now {now}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "rate_limited");
    }
    // Control and stats are never limited.
    let stats = c.get(format!("{}/_stats", vendor.base_url())).send().await.unwrap();
    assert_eq!(stats.status().as_u16(), 200);
    let stats = vendor.stats();
    assert_eq!((stats.rate_limited, stats.requests), (3, 8));
    assert_eq!(stats.max_requests_in_1s, 5);
}

#[tokio::test]
async fn refusals_take_no_tokens_and_waiting_for_reset_avoids_429() {
    let vendor = start_with(limited(10.0, 1)).await;
    let c = client();
    let url = format!("{}/v1/items/1", vendor.base_url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(num(resp.headers(), "x-ratelimit-remaining"), 0);
    let reset = num(resp.headers(), "x-ratelimit-reset");
    // Real time is the feature: wait until the advertised reset second has begun.
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        if now >= reset {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 200);

    // Hammering while empty must not push the next token further away.
    let started = Instant::now();
    let mut refused = 0;
    while c.get(&url).send().await.unwrap().status().as_u16() == 429 {
        refused += 1;
    }
    assert!(refused > 0);
    assert!(started.elapsed() < Duration::from_millis(400), "a token came back after {:?}", started.elapsed());
}

#[tokio::test]
async fn accepted_requests_never_exceed_rate_plus_burst_in_any_second() {
    let vendor = start_with(limited(20.0, 5)).await;
    let url = format!("{}/v1/items/1", vendor.base_url());
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, url) = (client(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while Instant::now() < deadline {
                if c.get(&url).send().await.unwrap().status().as_u16() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let stats = vendor.stats();
    assert!(stats.rate_limited > 0);
    assert!(stats.max_requests_in_1s <= 25, "max in 1 s: {}", stats.max_requests_in_1s);
    assert!(stats.max_requests_in_1s >= 15, "max in 1 s: {}", stats.max_requests_in_1s);
    assert!(ok <= 5 + 20 * 2, "{ok} accepted in 1.5 s");
}
