//! `/healthz` and `/readyz` on the metrics address, through the binary: a `dovetail run
//! --every` process is alive (200) throughout; it is ready (200) while its PostgreSQL state
//! answers, unready (503, with a JSON reason naming the state check) while the server is
//! down, and ready again once it is back.

use std::time::Duration;

use dovetail_e2e::Scratch;
use dovetail_e2e::vendor::{RestPipeline, RestStream};
use dovetail_e2e::watch::Watched;
use dovetail_fake_vendor::{FakeVendor, VendorConfig};
use dovetail_testkit::pg::{Cluster, ClusterOptions};
use serde_json::Value;

/// The base URL in the `metrics on http://…/metrics` log line.
fn base_url(line: &str) -> String {
    let at = line.find("http://").unwrap_or_else(|| panic!("no URL in `{line}`"));
    let url = line[at..].split_whitespace().next().unwrap().trim_end_matches(['"', ',']);
    url.trim_end_matches("/metrics").to_owned()
}

/// GET `url`: status and JSON body.
async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} answered no JSON ({e}): {body}")))
}

/// Polls `/readyz` until it answers `status` (within 30 s) and returns its body.
async fn readyz_until(base: &str, status: u16, p: &Watched) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = get(&format!("{base}/readyz")).await;
        if got == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed {got} ({body}), not {status}:\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_state_store_and_healthz_the_process() {
    let Some(cluster) = Cluster::start("health_readyz", &ClusterOptions::default()) else { return };
    let db = cluster.database("health_readyz");
    let vendor = FakeVendor::start(VendorConfig { records: 50, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    let toml = RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(50)).toml();
    s.write("dovetail.toml", &format!("[state]\nurl = \"{}\"\nschema = \"dt_health\"\n\n{toml}", db.url()));

    let mut p = Watched::spawn(s.cmd(&["run", "--metrics-addr", "127.0.0.1:0", "--every", "1h"]));
    let base = base_url(&p.wait_for("metrics on http://", Duration::from_secs(60)).await);
    p.wait_for("scheduled run done; waiting for the next tick", Duration::from_secs(60)).await;

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, &body["alive"]), (200, &Value::Bool(true)), "{body}");
    let body = readyz_until(&base, 200, &p).await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["state"]["ok"], true, "{body}");

    // The state's server goes away: unready, saying which check failed and why; still alive.
    cluster.stop();
    let body = readyz_until(&base, 503, &p).await;
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["state"]["ok"], false, "{body}");
    let reason = body["checks"]["state"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{body}");
    assert!(!reason.contains(db.password()), "a secret in /readyz: {body}");
    let (status, _) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "alive while the state is down");

    // Back: ready again, the same process.
    cluster.start_again();
    let body = readyz_until(&base, 200, &p).await;
    assert_eq!(body["checks"]["state"]["ok"], true, "{body}");
    // The metrics are still where they were.
    let scrape = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(scrape.contains("dovetail_runs_total"), "{scrape}");

    p.terminate();
    let (status, _) = p.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
}
