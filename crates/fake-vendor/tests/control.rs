//! The HTTP control plane and the binary, driven from outside as another process would.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use common::{client, get, start};
use dovetail_fake_vendor::Stats;
use serde_json::{Value, json};

async fn post(c: &reqwest::Client, url: String, body: Value) -> u16 {
    c.post(url).json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn control_endpoints_steer_the_server_and_are_not_counted() {
    let vendor = start(20).await;
    let c = client();
    let base = vendor.base_url();
    assert_eq!(post(&c, format!("{base}/_control/faults"), json!({"error_503_ratio": 1.0})).await, 200);
    assert_eq!(vendor.faults().error_503_ratio, 1.0);
    assert_eq!(get(&c, &format!("{base}/v1/items")).await.0, 503);
    let (_, _, faults) = get(&c, &format!("{base}/_control/faults")).await;
    assert_eq!(faults["error_503_ratio"], 1.0);
    assert_eq!(post(&c, format!("{base}/_control/faults"), json!({})).await, 200);
    assert_eq!(post(&c, format!("{base}/_control/faults"), json!({"nonsense": 1})).await, 400);

    assert_eq!(post(&c, format!("{base}/_control/down"), json!({"down": true})).await, 200);
    assert_eq!(get(&c, &format!("{base}/v1/items")).await.0, 503);
    assert_eq!(post(&c, format!("{base}/_control/down"), json!({"down": false})).await, 200);

    assert_eq!(post(&c, format!("{base}/_control/touch"), json!({"ids": [3]})).await, 200);
    assert_eq!(post(&c, format!("{base}/_control/add_records"), json!({"n": 2})).await, 200);
    let (_, _, page) = get(&c, &format!("{base}/v1/items/offset?limit=100")).await;
    assert_eq!(page["total"], 22);
    let last: Vec<u64> = page["data"].as_array().unwrap()[19..].iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(last, vec![3, 21, 22]);

    c.post(format!("{base}/v1/items")).json(&json!({"a": 1})).send().await.unwrap();
    let (_, _, created) = get(&c, &format!("{base}/_control/created")).await;
    assert_eq!(created["data"][0]["id"], "obj_1");

    let (_, _, stats) = get(&c, &format!("{base}/_stats")).await;
    let stats: Stats = serde_json::from_value(stats).unwrap();
    assert_eq!(stats, vendor.stats());
    assert_eq!(stats.requests, 4, "only API calls count");
    assert_eq!(stats.by_path.get("other"), None);
    assert_eq!(stats.by_status[&503], 2);

    assert_eq!(post(&c, format!("{base}/_control/reset_stats"), json!({})).await, 200);
    assert_eq!(vendor.stats(), Stats::default());
    assert_eq!(get(&c, &format!("{base}/_control/nope")).await.0, 404);
    assert_eq!(get(&c, &format!("{base}/v2/nope")).await.0, 404);
    assert_eq!(vendor.stats().by_path["other"], 1);
}

/// Kills the child if a test fails before it exits by itself.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Reap, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dovetail-fake-vendor"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url =
        line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (Reap(child), url)
}

#[tokio::test]
async fn the_binary_prints_its_address_serves_and_shuts_down() {
    let (mut child, url) = spawn(&["--records", "30", "--rate", "100", "--burst", "10", "--bearer", "tok"]);
    let c = client();
    let resp = c.get(format!("{url}/v1/items/offset?limit=100")).bearer_auth("tok").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "10");
    assert_eq!(resp.json::<Value>().await.unwrap()["total"], 30);
    assert_eq!(c.get(format!("{url}/v1/items")).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(post(&c, format!("{url}/_control/shutdown"), json!({})).await, 200);
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_binary_reads_a_toml_config_and_exits_when_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.toml");
    std::fs::write(&path, "records = 12\nseed = 3\n[faults]\ndeprecation = true\n").unwrap();
    let (mut child, url) = spawn(&["--config", path.to_str().unwrap(), "--exit-on-stdin-close"]);
    let (status, headers, body) = get(&client(), &format!("{url}/v1/items/offset")).await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(12)));
    assert!(headers.get("deprecation").is_some());
    drop(child.0.stdin.take());
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await.unwrap().unwrap();
    assert!(status.success());

    let bad = Command::new(env!("CARGO_BIN_EXE_dovetail-fake-vendor"))
        .args(["--config", dir.path().join("missing.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
}
