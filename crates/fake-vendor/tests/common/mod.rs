//! Helpers shared by the integration tests.
#![allow(dead_code)]

use dovetail_fake_vendor::{FakeVendor, VendorConfig, VendorHandle};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Starts a server with `records` records and otherwise default config.
pub async fn start(records: u64) -> VendorHandle {
    start_with(VendorConfig { records, ..VendorConfig::default() }).await
}

pub async fn start_with(config: VendorConfig) -> VendorHandle {
    FakeVendor::start(config).await.expect("fake vendor starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// GETs `url` and returns status, headers and the parsed body (`Null` when the body is empty).
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, HeaderMap, Value) {
    let resp = client.get(url).send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body arrives");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    (status, headers, body)
}

pub fn ids(records: &Value) -> Vec<u64> {
    records.as_array().expect("array").iter().map(|r| r["id"].as_u64().expect("id")).collect()
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
