//! One credential, one holder: every connector and pipeline of a `dovetail` process that
//! uses the same OAuth2 refresh token shares one token provider, so none of them presents a
//! refresh token another already rotated away; and a credential goes only to the origins it
//! was configured for — a GitHub Enterprise token never follows a next-page link to another
//! host unless `http.allowed_origins` says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dovetail_e2e::vendor::count;
use dovetail_e2e::watch::Watched;
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, Recorder, VendorConfig};
use dovetail_testkit::{BASE_URL, Fixture, FixtureServer};
use serde_json::Value;

const CLIENT_ID: &str = "shared-e2e";
const CLIENT_SECRET: &str = "cs-shared-e2e"; // tidy: not-secret (a fake credential)
const CONFIGURED_RT: &str = "rt-shared-e2e"; // tidy: not-secret (a fake credential)

/// The three pipelines of the shared-credential test.
const PIPELINES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Records at the vendor, read 20 to a page (and written 20 to a sink batch).
const RECORDS: u64 = 300;
/// Records touched after the first tick: each later tick reads them changed and writes them again.
const TOUCHED: [u64; 5] = [7, 60, 150, 222, 299];

/// The `auth` every source and sink uses: the same refresh-token grant, refreshing at expiry.
fn oauth_auth(base_url: &str) -> String {
    format!(
        "{{ type = \"oauth2_refresh_token\", token_url = \"{base_url}/oauth/token\", client_id = \"{CLIENT_ID}\", \
         client_secret = \"{CLIENT_SECRET}\", refresh_token = \"{CONFIGURED_RT}\", refresh_skew_secs = 0 }}"
    )
}

/// Pipeline `name`: the vendor's cursor listing, 20 records a page → `PUT /v1/items/NAME-{id}`
/// on the same vendor, 20 records a batch, so the sink writes while the source still reads.
fn pipeline(name: &str, base_url: &str) -> String {
    let auth = oauth_auth(base_url);
    let http = "{ max_concurrency = 32, retry = { base_delay_ms = 5, max_delay_ms = 50, max_elapsed_ms = 5000 } }";
    format!(
        r#"[pipelines.{name}]
batch_size = 20

[pipelines.{name}.source]
kind = "rest"
base_url = "{base_url}"
auth = {auth}
http = {http}

[[pipelines.{name}.source.streams]]
name = "items"
path = "/v1/items"
query = {{ limit = "20" }}
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
body = {{ pipeline = "{name}", source_id = "{{{{id}}}}", name = "{{{{name}}}}" }}
concurrency = 20

"#
    )
}

/// Runs in `dovetail status --json`, oldest first: (pipeline, outcome).
async fn runs(s: &Scratch) -> Vec<(String, String)> {
    let out = s.run_async(&["status", "--json"]).await;
    assert!(out.status.success(), "{}", show(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut runs: Vec<(i64, String, String)> = status["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {status:#}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["pipeline"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, p, o)| (p, o)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_and_sinks_of_three_scheduled_pipelines_share_one_rotating_refresh_token() {
    // 1-second access tokens, a new refresh token on every grant (the old one void), and
    // 100 ms per response: a pipeline's 15 pages take ~1.5 s, so each run outlives the
    // access token it started with and refreshes while its sink holds the same credential.
    let vendor = FakeVendor::start(VendorConfig {
        records: RECORDS,
        auth: AuthMode::OAuth2 {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            refresh_token: Some(CONFIGURED_RT.into()),
            token_lifetime_secs: 1.0,
            rotate_refresh_tokens: true,
        },
        faults: Faults { latency_ms: 100, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let base = vendor.base_url();
    let s = Scratch::new();
    s.write("dovetail.toml", &PIPELINES.iter().map(|p| pipeline(p, &base)).collect::<String>());

    let mut p = Watched::spawn(s.cmd(&["run", "--every", "1s"]));
    let within = Duration::from_secs(120);
    let done = "scheduled run done; waiting for the next tick";
    let first = p.wait_for(done, within).await;
    assert!(first.contains("code=0"), "the first tick failed: {:?}\n{}", vendor.stats(), p.log());
    // Every pipeline wrote every record.
    let created = vendor.created();
    for name in PIPELINES {
        let mine = created.iter().filter(|o| o["pipeline"] == name).count();
        assert_eq!(mine, RECORDS as usize, "objects written by `{name}` in the first tick");
    }
    // Later ticks read these changed and write them again, sources and sinks alike.
    vendor.touch(&TOUCHED);
    for _ in 0..2 {
        let line = p.wait_for(done, within).await;
        assert!(line.contains("code=0"), "a later tick failed: {:?}\n{}", vendor.stats(), p.log());
    }
    // The 1-second access tokens expired and were refreshed during those ticks.
    let stats = vendor.stats();
    assert!(stats.token_grants.get("refresh_token").copied().unwrap_or(0) >= 3, "{stats:?}");

    p.terminate();
    let (status, _) = p.exit_within(Duration::from_secs(30)).await;
    // SIGTERM while waiting for the next tick exits 0; the log line that says the tick is
    // done may arrive (buffered) just as the next run starts, and then that run is
    // interrupted like a single run (130).
    if p.count("stopped while waiting for the next run") == 1 {
        assert_eq!(status.code(), Some(0), "{}", p.log());
    } else {
        assert_eq!(p.count("stopped during a run"), 1, "{}", p.log());
        assert_eq!(status.code(), Some(130), "{}", p.log());
    }

    let stats = vendor.stats();
    let grants = stats.token_grants.get("refresh_token").copied().unwrap_or(0);
    let started = p.count("run starting");
    eprintln!(
        "pipeline runs started: {started}, refresh grants: {grants}, 401s: {}, invalid grants: {}, reused refresh \
         tokens: {}",
        stats.unauthorized, stats.invalid_grants, stats.reused_refresh_tokens
    );
    assert_eq!(stats.reused_refresh_tokens, 0, "a rotated-away refresh token was presented again: {stats:?}");
    assert_eq!(stats.invalid_grants, 0, "{stats:?}");
    assert!(!p.log().contains("invalid_grant"), "{}", p.log());
    // The pipelines of one tick share the process's token, and a tick outlives a 1-second
    // token: more grants than ticks means tokens expired and were refreshed mid-run. (More
    // grants than pipeline runs held only on a quiet machine: a slow tick reuses one token.)
    assert!(started >= 3 * PIPELINES.len(), "{started} pipeline runs:\n{}", p.log());
    let ticks = started.div_ceil(PIPELINES.len());
    assert!(grants as usize > ticks, "{grants} refresh grants for {ticks} ticks ({started} runs): {stats:?}");
    assert!(stats.unauthorized <= grants, "{} 401s for {grants} grants: {stats:?}", stats.unauthorized);

    // Every run of every pipeline succeeded (but a last one SIGTERM interrupted).
    let history = runs(&s).await;
    let (last, earlier) = history.split_last().expect("runs");
    assert!(earlier.iter().all(|(_, o)| o == "succeeded"), "{history:?}");
    assert!(last.1 == "succeeded" || last.1 == "interrupted", "{history:?}");
    for name in PIPELINES {
        let ok = history.iter().filter(|(p, o)| p == name && o == "succeeded").count();
        assert!(ok >= 3, "`{name}` succeeded {ok} times: {history:?}");
    }

    // Each sink wrote each record once, and the touched ones again after the first tick.
    let created = vendor.created();
    assert_eq!(stats.duplicate_creations, 0, "{stats:?}");
    let by_ext: BTreeMap<String, &Value> =
        created.iter().map(|o| (o["external_id"].as_str().unwrap().to_owned(), o)).collect();
    assert_eq!(by_ext.len(), created.len(), "one object per external id");
    assert_eq!(created.len(), PIPELINES.len() * RECORDS as usize);
    for name in PIPELINES {
        for id in 1..=RECORDS {
            let o = by_ext.get(&format!("{name}-{id}")).unwrap_or_else(|| panic!("no object {name}-{id}"));
            assert_eq!(o["pipeline"], name, "{o}");
            assert_eq!(o["source_id"], id, "{o}");
            let touched = o["name"].as_str().unwrap().contains(" rev");
            assert_eq!(touched, TOUCHED.contains(&id), "{o}");
        }
    }
}

const GH_TOKEN: &str = "ghp_e2e_enterprise_token_not_real"; // tidy: not-secret (a fake credential)

/// The issues fixture's first page of `octo/hello`, served under `/api/v3` (a GitHub
/// Enterprise Server's API root), with its `Link: rel="next"` pointing at `elsewhere`.
async fn ghe_with_next_link_to(elsewhere: &str) -> FixtureServer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/github/fixtures/issues.json");
    let mut fixture = Fixture::load(path).unwrap();
    let mut first = fixture.exchanges.swap_remove(0);
    assert_eq!(first.request.path, "/repos/octo/hello/issues", "the fixture changed shape");
    first.request.path = format!("/api/v3{}", first.request.path);
    let link = first.response.headers.get_mut("link").expect("the first page has a Link header");
    assert!(link.contains("rel=\"next\""), "{link}");
    *link = link.replace(BASE_URL, elsewhere);
    FixtureServer::start(Fixture::new(vec![first])).await.unwrap()
}

fn ghe_config(ghe_base: &str, allowed: &str) -> String {
    format!(
        r#"[pipelines.ghe.source]
kind = "github"
token = "${{GH_TOKEN}}"
base_url = "{ghe_base}/api/v3"
owner = "octo"
owner_type = "org"
repositories = ["hello"]
streams = ["issues"]
start_date = "2011-01-01T00:00:00Z"
http = {{ {allowed}retry = {{ max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2 }} }}

[pipelines.ghe.sink]
kind = "sqlite"
path = "out.db"
"#
    )
}

async fn run_ghe(s: &Scratch) -> (std::process::Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("GH_TOKEN", GH_TOKEN);
    let out = dovetail_e2e::vendor::output_async(cmd).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_enterprise_token_follows_a_next_link_to_another_origin_only_when_allowed() {
    // The Recorder stands in for https://api.github.com: it answers `[]` and keeps every request.
    let recorder = Recorder::start().await.unwrap();
    let elsewhere = recorder.origin();
    let ghe = ghe_with_next_link_to(&elsewhere).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &ghe_config(&ghe.base_url(), ""));

    let (out, report) = run_ghe(&s).await;
    assert_eq!(out.status.code(), Some(8), "refused as Permanent: {}", show(&out));
    assert_eq!(report["exit_code"], 8, "{report:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [elsewhere.as_str(), ghe.base_url().as_str(), "http.allowed_origins"] {
        assert!(stderr.contains(needle), "stderr does not name `{needle}`:\n{}", show(&out));
    }
    assert!(recorder.requests().is_empty(), "a request went to the other origin: {:?}", recorder.requests());
    assert!(recorder.requests_containing(GH_TOKEN).is_empty());
    assert_eq!(ghe.served(), [1], "the GHE page was read once");
    assert!(ghe.unmatched().is_empty(), "{:?}", ghe.unmatched());
    let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(!text.contains(GH_TOKEN), "the token leaked into the output");

    // The same config with the other origin allowed: the link is followed, token and all.
    s.write("dovetail.toml", &ghe_config(&ghe.base_url(), &format!("allowed_origins = [\"{elsewhere}\"], ")));
    let (out, report) = run_ghe(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    let sent = recorder.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let next = &sent[0];
    assert_eq!(next.method, "GET", "{next:?}");
    assert!(next.target.starts_with("/repos/octo/hello/issues?") && next.target.contains("page=2"), "{next:?}");
    let auth: Vec<&str> = next.headers.iter().filter(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).collect();
    assert_eq!(auth, [format!("Bearer {GH_TOKEN}")], "{next:?}");
    assert_eq!(recorder.requests_containing(GH_TOKEN).len(), 1);
    // The first page (re-read: the refused run did not move past it) was written.
    assert_eq!(ghe.served(), [2]);
    assert!(ghe.unmatched().is_empty(), "{:?}", ghe.unmatched());
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM issues", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2, "{report:#}");
    eprintln!("allowed run: issues written {}", count(&report, "issues", "written"));
}
