//! What the vendor limits is shared by every process on one PostgreSQL state, through the
//! binary: three `dovetail run` processes of three pipelines (the run lock is per pipeline,
//! so they run at once, like workers of a fleet) on one OAuth2 client whose refresh tokens
//! rotate never present a rotated-away refresh token, and on one rate-limited credential
//! never draw a 429 while still using the budget.

use std::process::Output;
use std::time::Duration;

use dovetail_e2e::vendor::output_async;
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, RateLimit, VendorConfig};
use dovetail_testkit::pg;

const CLIENT_ID: &str = "fleet-e2e";
const CLIENT_SECRET: &str = "cs-fleet-e2e"; // tidy: not-secret (a fake credential)
const CONFIGURED_RT: &str = "rt-fleet-e2e"; // tidy: not-secret (a fake credential)
const BEARER: &str = "fleet-e2e-bearer"; // tidy: not-secret (a fake credential)
/// The token store's key (PostgreSQL state seals every token).
const SECRET_KEY: &str = "5f1e0c2a9b3d4e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"; // tidy: not-secret (a test key)

/// The three pipelines, one process each.
const PIPELINES: [&str; 3] = ["alpha", "beta", "gamma"];

/// Pipeline `name`: the vendor's cursor listing (`per_page` a page) → `PUT /v1/items/NAME-{id}`
/// on the same vendor, source and sink on `auth`.
fn pipeline(name: &str, base_url: &str, auth: &str, per_page: u32, http: &str) -> String {
    format!(
        r#"[pipelines.{name}]
batch_size = {per_page}

[pipelines.{name}.source]
kind = "rest"
base_url = "{base_url}"
auth = {auth}
http = {http}

[[pipelines.{name}.source.streams]]
name = "items"
path = "/v1/items"
query = {{ limit = "{per_page}" }}
records = "/data"
pagination = {{ type = "cursor", pointer = "/meta/next_cursor", param = "cursor" }}
primary_key = ["id"]

[pipelines.{name}.sink]
kind = "rest"
base_url = "{base_url}"
auth = {auth}
http = {http}

[pipelines.{name}.sink.streams.items]
mode = "upsert"
path = "/v1/items/{name}-{{id}}"
body = {{ pipeline = "{name}", source_id = "{{{{id}}}}" }}
concurrency = 8

"#
    )
}

/// A scratch config with `pipelines` and its state in `db`'s schema `dt_fleet`.
fn setup(db: &pg::TestDb, pipelines: &str) -> Scratch {
    let s = Scratch::new();
    s.write("dovetail.toml", &format!("[state]\nurl = \"{}\"\nschema = \"dt_fleet\"\n\n{pipelines}", db.url()));
    s
}

/// `dovetail run --json P` for every pipeline, each its own process, all at once.
async fn run_all(s: &Scratch) -> Vec<(String, Output)> {
    let runs: Vec<_> = PIPELINES
        .iter()
        .map(|p| {
            let mut c = s.cmd(&["run", "--json", p]);
            c.env("DOVETAIL_SECRET_KEY", SECRET_KEY);
            (p.to_string(), tokio::spawn(output_async(c)))
        })
        .collect();
    let mut out = Vec::new();
    for (p, run) in runs {
        out.push((p, run.await.expect("join a run")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_rotating_refresh_token_through_postgres() {
    let Some(db) = pg::database("fleet_oauth") else { return };
    // 1-second access tokens, a new refresh token on every grant (the old one void), 50 ms
    // per response: each run lasts several token lifetimes, in three processes at once.
    let vendor = FakeVendor::start(VendorConfig {
        records: 400,
        auth: AuthMode::OAuth2 {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            refresh_token: Some(CONFIGURED_RT.into()),
            token_lifetime_secs: 1.0,
            rotate_refresh_tokens: true,
        },
        faults: Faults { latency_ms: 50, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let base = vendor.base_url();
    let auth = format!(
        "{{ type = \"oauth2_refresh_token\", token_url = \"{base}/oauth/token\", client_id = \"{CLIENT_ID}\", \
         client_secret = \"{CLIENT_SECRET}\", refresh_token = \"{CONFIGURED_RT}\", refresh_skew_secs = 0 }}"
    );
    let http = "{ max_concurrency = 16, retry = { base_delay_ms = 5, max_delay_ms = 50, max_elapsed_ms = 5000 } }";
    let s = setup(&db, &PIPELINES.iter().map(|p| pipeline(p, &base, &auth, 20, http)).collect::<String>());

    let started = std::time::Instant::now();
    let runs = run_all(&s).await;
    let took = started.elapsed();
    let stats = vendor.stats();
    for (p, out) in &runs {
        assert!(out.status.success(), "`{p}` failed: {stats:?}\n{}", show(out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("invalid_grant"), "{}", show(out));
    }
    let grants = stats.token_grants.get("refresh_token").copied().unwrap_or(0);
    eprintln!(
        "3 runs in {took:?}: refresh grants {grants}, 401s {}, invalid grants {}, reused refresh tokens {}",
        stats.unauthorized, stats.invalid_grants, stats.reused_refresh_tokens
    );
    assert_eq!(stats.reused_refresh_tokens, 0, "a rotated-away refresh token was presented: {stats:?}");
    assert_eq!(stats.invalid_grants, 0, "{stats:?}");
    // The runs outlived their tokens: refreshes happened while the three ran at once.
    assert!(grants >= 3, "{stats:?}");
    let created = vendor.created();
    assert_eq!(created.len(), 3 * 400, "every pipeline wrote every record");
    assert_eq!(stats.duplicate_creations, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_rate_budget_through_postgres() {
    let Some(db) = pg::database("fleet_budget") else { return };
    // The vendor allows 20 requests/s for the one credential (a bucket of 20). Each process
    // is configured a little under it (19/s, burst 10: room for network jitter), and would
    // alone send far more (8 writes at once, 20 ms each): without sharing, three spend 57/s.
    const RECORDS: u64 = 60;
    let vendor = FakeVendor::start(VendorConfig {
        records: RECORDS,
        auth: AuthMode::Bearer { token: BEARER.into() },
        rate_limit: Some(RateLimit { per_second: 20.0, burst: 20 }),
        faults: Faults { latency_ms: 20, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let base = vendor.base_url();
    let auth = format!("{{ type = \"bearer\", token = \"{BEARER}\" }}");
    let http = "{ max_concurrency = 8, rate_limit = { per_second = 19, burst = 10 }, retry = { base_delay_ms = 5, \
                max_delay_ms = 50, max_elapsed_ms = 60000 } }";
    let s = setup(&db, &PIPELINES.iter().map(|p| pipeline(p, &base, &auth, 20, http)).collect::<String>());

    // The busy interval, from the vendor's request count sampled every 10 ms.
    let vendor = std::sync::Arc::new(vendor);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (vendor, done) = (vendor.clone(), done.clone());
        tokio::spawn(async move {
            let (mut first, mut last, mut seen) = (None, None, 0);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let now = std::time::Instant::now();
                let n = vendor.stats().requests;
                if n > seen {
                    first.get_or_insert(now);
                    last = Some(now);
                    seen = n;
                }
                if finished {
                    return first.zip(last);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let runs = run_all(&s).await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let stats = vendor.stats();
    for (p, out) in &runs {
        assert!(out.status.success(), "`{p}` failed: {stats:?}\n{}", show(out));
    }
    let (first, last) = sampler.await.unwrap().expect("requests");
    let busy = last.duration_since(first).as_secs_f64();
    // The vendor's sustained budget over the busy interval (its initial burst on top is slack).
    let used = stats.requests as f64 / (20.0 * busy);
    eprintln!(
        "{} requests in {busy:.2} s: {:.1}/s, {:.0} % of 20/s; 429s: {}, most in 1 s: {}",
        stats.requests,
        stats.requests as f64 / busy,
        used * 100.0,
        stats.rate_limited,
        stats.max_requests_in_1s
    );
    assert_eq!(stats.rate_limited, 0, "429s: {stats:?}");
    assert!(used >= 0.9, "only {:.0} % of the budget used: {stats:?}", used * 100.0);
    assert_eq!(vendor.created().len(), 3 * RECORDS as usize, "every pipeline wrote every record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_limit_the_vendor_advertises_is_kept_by_the_whole_fleet() {
    let Some(db) = pg::database("fleet_learned") else { return };
    // The vendor allows 10 requests/s (a bucket of 10) and says so in `X-RateLimit-Limit`; each
    // process is configured for 40/s (burst 5). Alone, each would pace itself to the 10/s it
    // learns; three at once would spend 30/s unless what one learned binds them all.
    const RECORDS: u64 = 30;
    let vendor = FakeVendor::start(VendorConfig {
        records: RECORDS,
        auth: AuthMode::Bearer { token: BEARER.into() },
        rate_limit: Some(RateLimit { per_second: 10.0, burst: 10 }),
        faults: Faults { latency_ms: 20, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let base = vendor.base_url();
    let auth = format!("{{ type = \"bearer\", token = \"{BEARER}\" }}");
    let http = "{ max_concurrency = 8, rate_limit = { per_second = 40, burst = 5 }, retry = { base_delay_ms = 5, \
                max_delay_ms = 50, max_elapsed_ms = 60000 } }";
    let s = setup(&db, &PIPELINES.iter().map(|p| pipeline(p, &base, &auth, 10, http)).collect::<String>());
    let runs = run_all(&s).await;
    let stats = vendor.stats();
    for (p, out) in &runs {
        assert!(out.status.success(), "`{p}` failed: {stats:?}\n{}", show(out));
    }
    eprintln!("{} requests; 429s: {}, most in 1 s: {}", stats.requests, stats.rate_limited, stats.max_requests_in_1s);
    // The configured burst (5) is below the vendor's (10), so even the requests sent before
    // any process had a response fit: not one 429 across the fleet.
    assert_eq!(stats.rate_limited, 0, "429s: {stats:?}");
    assert_eq!(vendor.created().len(), 3 * RECORDS as usize, "every pipeline wrote every record");
    let c = {
        let (c, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c
    };
    let rate: Option<f64> = c.query_one("SELECT min(rate) FROM dt_fleet.rate_budgets", &[]).await.unwrap().get(0);
    assert_eq!(rate, Some(10.0), "the learned limit is kept with the shared budget");
}
