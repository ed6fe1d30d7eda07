//! Issue 6: `--metrics-addr` serves Prometheus text whose counters agree with the fake
//! vendor's own stats, live during a run; `dovetail run --every` repeats on a schedule,
//! skips overlapping ticks, keeps the endpoint up and stops cleanly on SIGTERM.

use std::time::Duration;

use dovetail_e2e::Scratch;
use dovetail_e2e::vendor::{RestPipeline, RestStream};
use dovetail_e2e::watch::{Scrape, Watched};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, RateLimit, VendorConfig};
use serde_json::Value;

const CLIENT_ID: &str = "metrics-e2e";
const CLIENT_SECRET: &str = "cs-metrics-e2e"; // tidy: not-secret (a fake credential)

/// The URL in the `metrics on http://…` log line.
fn metrics_url(line: &str) -> String {
    let at = line.find("http://").unwrap_or_else(|| panic!("no URL in `{line}`"));
    line[at..].split_whitespace().next().unwrap().trim_end_matches(['"', ',']).to_owned()
}

/// A second client of the same OAuth2 client id: it shares dovetail's rate-limit bucket at
/// the vendor and spends it, so dovetail meets 429s it could not foresee. Counts what it sent.
#[derive(Default, Debug)]
struct Neighbour {
    client: reqwest::Client,
    requests: u64,
    tokens: u64,
    rate_limited: u64,
}

impl Neighbour {
    async fn token(&mut self, base: &str) -> String {
        let resp = self
            .client
            .post(format!("{base}/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)])
            .send()
            .await
            .unwrap();
        self.requests += 1;
        self.tokens += 1;
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().expect("access token").to_owned()
    }

    /// A fresh token (they last one second), then 20 concurrent GETs: more than the burst.
    async fn burst(&mut self, base: &str) {
        let token = self.token(base).await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let req = self.client.get(format!("{base}/v1/items/1")).bearer_auth(&token);
            set.spawn(async move { req.send().await.unwrap().status() });
        }
        while let Some(status) = set.join_next().await {
            self.requests += 1;
            if status.unwrap() == 429 {
                self.rate_limited += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_live_during_a_run_and_match_the_vendors_stats() {
    let records = 3000;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        auth: AuthMode::OAuth2 {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            refresh_token: None,
            token_lifetime_secs: 1.0,
            rotate_refresh_tokens: false,
        },
        rate_limit: Some(RateLimit { per_second: 20.0, burst: 5 }),
        // 60 pages at ≤ 20/s and 30 ms each: a run of several seconds, several token lifetimes.
        faults: Faults { latency_ms: 30, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let base = vendor.base_url();
    let s = Scratch::new();
    RestPipeline::new(&base)
        .auth(&format!(
            "{{ type = \"oauth2_client_credentials\", token_url = \"{base}/oauth/token\", client_id = \"{CLIENT_ID}\", \
             client_secret = \"{CLIENT_SECRET}\" }}"
        ))
        .stream(RestStream::items_cursor(50))
        .write_to(&s);

    // `--every 1h`: one run now, then the process waits with the endpoint up.
    let mut p = Watched::spawn(s.cmd(&["run", "--metrics-addr", "127.0.0.1:0", "--every", "1h"]));
    let url = metrics_url(&p.wait_for("metrics on http://", Duration::from_secs(60)).await);

    // Mid-run: the read counter moves while the run is going.
    let read =
        |m: &Scrape| m.sum("dovetail_records_total", &[("pipeline", "vendor"), ("stream", "items"), ("stage", "read")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mid = loop {
        let m = Scrape::get(&url).await;
        let n = read(&m);
        if n > 0.0 && n < records as f64 {
            break m;
        }
        assert!(n < records as f64, "the run finished before a scrape saw it under way");
        assert!(tokio::time::Instant::now() < deadline, "no progress within 30 s:\n{}\n{}", m.0, p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(mid.sum("dovetail_run_in_progress", &[("pipeline", "vendor")]), 1.0, "{}", mid.0);

    // A neighbour spends the shared budget until dovetail has met a 429.
    let mut n = Neighbour::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = Scrape::get(&url).await;
        if m.sum("dovetail_http_429_total", &[]) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dovetail met no 429 while the budget was spent: read {}, vendor {:?}, neighbour {n:?}",
            read(&m),
            vendor.stats()
        );
        assert!(read(&m) < records as f64, "the run ended before it met a 429: {:?}", vendor.stats());
        n.burst(&base).await;
    }

    p.wait_for("scheduled run done; waiting for the next tick", Duration::from_secs(120)).await;
    let end = Scrape::get(&url).await;
    let stats = vendor.stats();
    eprintln!("vendor stats: {stats:?}\nneighbour: {n:?}");
    let attempts = end.sum("dovetail_http_attempts_total", &[]);
    let tokens = end.sum("dovetail_http_token_requests_total", &[]);
    let dovetail_429 = end.sum("dovetail_http_429_total", &[]);
    let grants: u64 = stats.token_grants.values().sum();
    // The vendor counts API and token requests; dovetail counts API attempts and token requests apart.
    assert_eq!(attempts + tokens, (stats.requests - n.requests) as f64, "requests:\n{}", end.0);
    assert_eq!(dovetail_429, (stats.rate_limited - n.rate_limited) as f64, "429s:\n{}", end.0);
    assert_eq!(end.sum("dovetail_http_attempts_total", &[("status", "429")]), dovetail_429);
    assert!(dovetail_429 >= 1.0);
    assert_eq!(tokens, (grants - n.tokens) as f64, "token grants (less the neighbour's):\n{}", end.0);
    assert!(tokens >= 2.0, "1-second tokens over a multi-second run: {tokens}");
    // Engine counters agree with what the vendor served and the sink holds.
    assert_eq!(read(&end), records as f64, "{}", end.0);
    let stage = |st: &str| end.sum("dovetail_records_total", &[("stream", "items"), ("stage", st)]);
    assert_eq!(stage("written"), records as f64);
    assert_eq!(stage("dead_lettered"), 0.0);
    assert_eq!(end.sum("dovetail_runs_total", &[("pipeline", "vendor"), ("outcome", "succeeded")]), 1.0);
    assert_eq!(end.sum("dovetail_run_in_progress", &[("pipeline", "vendor")]), 0.0);
    assert_eq!(end.sum("dovetail_run_duration_seconds_count", &[("pipeline", "vendor")]), 1.0, "{}", end.0);
    let last = end.sum("dovetail_last_success_timestamp_seconds", &[("pipeline", "vendor")]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 300.0..=now + 1.0).contains(&last), "last success at {last}, now {now}");
    assert!(end.0.contains("# TYPE dovetail_run_duration_seconds histogram"), "{}", end.0);
    // Every family says what it is.
    for family in end.0.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()) {
        assert!(end.0.contains(&format!("# HELP {family} ")), "`{family}` has no HELP:\n{}", end.0);
    }

    // SIGTERM while waiting: a prompt, clean exit.
    p.terminate();
    let (status, took) = p.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert_eq!(p.count("stopped while waiting for the next run"), 1, "{}", p.log());
}

/// Runs of pipeline `vendor` in `dovetail status --json`, newest first: (id, outcome).
async fn runs(s: &Scratch) -> Vec<(i64, String)> {
    let out = s.run_async(&["status", "--json"]).await;
    assert!(out.status.success(), "{}", dovetail_e2e::show(&out));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_repeats_skips_overlapping_ticks_and_sigterm_mid_run_interrupts_cleanly() {
    // 3 pages × 600 ms: each full-refresh run outlasts the 1-second tick.
    let vendor = FakeVendor::start(VendorConfig {
        records: 300,
        faults: Faults { latency_ms: 600, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url())
        .stream(RestStream::items_cursor(100))
        .option("items", "sync_mode = \"full_refresh\"")
        .write_to(&s);

    let mut p = Watched::spawn(s.cmd(&["run", "--every", "1s"]));
    let within = Duration::from_secs(60);
    p.wait_for("tick skipped: the previous run is still going", within).await;
    p.wait_for("scheduled run done", within).await;
    p.wait_for("scheduled run done", within).await;
    let done = runs(&s).await;
    let succeeded = done.iter().filter(|(_, o)| o == "succeeded").count();
    assert!(succeeded >= 2, "two runs, one after the other: {done:?}");
    // The next run is under way once its lock is held and it logged its start.
    p.wait_for("run started", within).await;
    p.terminate();
    let (status, _) = p.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(130), "interrupted like a single run:\n{}", p.log());
    assert_eq!(p.count("stopped during a run"), 1, "{}", p.log());
    let after = runs(&s).await;
    assert_eq!(after[0].1, "interrupted", "{after:?}");
    assert!(after[1..].iter().all(|(_, o)| o == "succeeded"), "{after:?}");
}
