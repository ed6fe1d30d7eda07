//! Injected misbehaviour: dropped connections, malformed and truncated bodies, data drift, outages.

mod common;

use common::{client, get, header, start, start_with};
use dovetail_fake_vendor::{DriftKind, Faults, VendorConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn dropped_connections_are_io_errors_not_statuses() {
    let vendor = start(10).await;
    vendor.set_faults(Faults { drop_ratio: 1.0, ..Faults::default() });
    let c = client();
    for _ in 0..3 {
        let err = c.get(format!("{}/v1/items", vendor.base_url())).send().await.expect_err("no response");
        assert!(!err.is_status(), "{err:?}");
    }
    vendor.set_faults(Faults::default());
    assert_eq!(get(&c, &format!("{}/v1/items/1", vendor.base_url())).await.0, 200);
    let stats = vendor.stats();
    assert_eq!((stats.dropped, stats.requests), (3, 4));
    assert_eq!(stats.by_status.values().sum::<u64>(), 1, "a dropped request has no status");
}

#[tokio::test]
async fn every_nth_request_is_dropped_or_answered_503_deterministically() {
    let vendor = start(10).await;
    vendor.set_faults(Faults { drop_every: 3, error_503_every: 4, ..Faults::default() });
    let c = client();
    let mut seen = Vec::new();
    for _ in 0..12 {
        match c.get(format!("{}/v1/items/1", vendor.base_url())).send().await {
            Ok(r) => seen.push(r.status().as_u16()),
            Err(e) => {
                assert!(!e.is_status(), "{e:?}");
                seen.push(0);
            }
        }
    }
    // The 3rd, 6th, 9th and 12th are dropped; the 4th and 8th answered 503 (the 12th dropped first).
    assert_eq!(seen, [200, 200, 0, 503, 200, 0, 200, 503, 0, 200, 200, 0]);
    let stats = vendor.stats();
    assert_eq!((stats.dropped, stats.by_status.get(&503).copied()), (4, Some(2)));
}

#[tokio::test]
async fn drop_after_create_creates_then_hangs_up() {
    let vendor = start(1).await;
    vendor.set_faults(Faults { drop_after_create_ratio: 1.0, ..Faults::default() });
    let c = client();
    let url = format!("{}/v1/items", vendor.base_url());
    let send = || c.post(&url).header("idempotency-key", "k-1").json(&json!({"external_id": "e1", "n": 1})).send();
    let err = send().await.expect_err("no response");
    assert!(!err.is_status());
    assert_eq!(vendor.created().len(), 1, "the object exists although the client saw an error");
    // The retry with the same key is answered from the store, and that answer is not dropped.
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(header(resp.headers(), "idempotent-replayed"), Some("true"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], vendor.created()[0]["id"]);
    let stats = vendor.stats();
    assert_eq!((stats.creations, stats.dropped, stats.idempotent_replays), (1, 1, 1));
}

#[tokio::test]
async fn a_malformed_page_stays_malformed() {
    let vendor = start(50).await;
    vendor.set_faults(Faults { malformed_page: Some(1), ..Faults::default() });
    let c = client();
    let base = vendor.base_url();
    let (_, _, first) = get(&c, &format!("{base}/v1/items?limit=10")).await;
    let cursor = first["meta"]["next_cursor"].as_str().unwrap().to_owned();
    for url in [
        format!("{base}/v1/items?limit=10&cursor={cursor}"),
        format!("{base}/v1/items?limit=10&cursor={cursor}"),
        format!("{base}/v1/items/paged?per_page=10&page=2"),
        format!("{base}/v1/items/offset?limit=10&offset=10"),
    ] {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.expect("the HTTP message itself is complete");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{url}: {text}");
    }
    assert_eq!(get(&c, &format!("{base}/v1/items/paged?per_page=10&page=3")).await.0, 200);
    assert_eq!(vendor.stats().pages_served, 2, "malformed pages are not counted as served");
    assert_eq!(vendor.stats().malformed_pages, 4);
}

#[tokio::test]
async fn a_malformed_page_times_n_is_malformed_n_times_then_well_formed() {
    let vendor = start(50).await;
    vendor.set_faults(Faults { malformed_page: Some(1), malformed_page_times: 2, ..Faults::default() });
    let c = client();
    let url = format!("{}/v1/items/paged?per_page=10&page=2", vendor.base_url());
    for _ in 0..2 {
        let text = c.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    }
    let (status, _, body) = get(&c, &url).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (200, Some(10)));
    let stats = vendor.stats();
    assert_eq!((stats.malformed_pages, stats.pages_served), (2, 1));
}

#[tokio::test]
async fn truncated_bodies_fail_after_the_status() {
    let vendor = start(50).await;
    vendor.set_faults(Faults { truncate_ratio: 1.0, ..Faults::default() });
    let c = client();
    let resp = c.get(format!("{}/v1/items?limit=20", vendor.base_url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let err = resp.bytes().await.expect_err("body cut short");
    assert!(!err.is_status(), "{err:?}");
    vendor.set_faults(Faults::default());
    assert_eq!(get(&c, &format!("{}/v1/items/1", vendor.base_url())).await.0, 200);
}

#[tokio::test]
async fn nulls_are_stable_per_record() {
    let vendor = start(200).await;
    vendor.set_faults(Faults { null_ratio: 0.3, ..Faults::default() });
    let c = client();
    let url = format!("{}/v1/items?limit=200", vendor.base_url());
    let (_, _, a) = get(&c, &url).await;
    let (_, _, b) = get(&c, &url).await;
    assert_eq!(a, b, "the same records are null every time");
    let records = a["data"].as_array().unwrap();
    let nulled: Vec<&Value> = records.iter().filter(|r| r["name"].is_null()).collect();
    assert!((30..=90).contains(&nulled.len()), "{} of 200", nulled.len());
    assert!(nulled.iter().all(|r| r["price"].is_null() && r["tags"].is_null() && r["id"].is_u64()));
    vendor.set_faults(Faults { null_ratio: 1.0, ..Faults::default() });
    let (_, _, single) = get(&c, &format!("{}/v1/items/5", vendor.base_url())).await;
    assert!(single["name"].is_null());
}

#[tokio::test]
async fn drift_changes_records_past_k() {
    let vendor = start(20).await;
    let c = client();
    let url = format!("{}/v1/items?limit=20", vendor.base_url());
    vendor.set_faults(Faults { drift_after: Some(15), drift: DriftKind::TypeChange, ..Faults::default() });
    let (_, _, body) = get(&c, &url).await;
    for r in body["data"].as_array().unwrap() {
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["price"].is_string(), id > 15, "record {id}");
        if id > 15 {
            let price = r["price"].as_str().unwrap();
            assert!(price.parse::<f64>().is_ok() && price.split('.').nth(1).map(str::len) == Some(2), "{price}");
        }
    }
    vendor.set_faults(Faults { drift_after: Some(15), drift: DriftKind::Rename, ..Faults::default() });
    let (_, _, body) = get(&c, &url).await;
    for r in body["data"].as_array().unwrap() {
        let id = r["id"].as_u64().unwrap();
        assert_eq!((r.get("title").is_some(), r.get("name").is_some()), (id > 15, id <= 15), "record {id}");
        assert!(r["price"].is_number());
    }
}

#[tokio::test]
async fn deprecation_headers_on_listings() {
    let vendor = start(5).await;
    let c = client();
    let (_, headers, _) = get(&c, &format!("{}/v1/items", vendor.base_url())).await;
    assert!(headers.get("deprecation").is_none());
    vendor.set_faults(Faults { deprecation: true, ..Faults::default() });
    let (_, headers, _) = get(&c, &format!("{}/v1/items/link", vendor.base_url())).await;
    assert_eq!(header(&headers, "deprecation"), Some("@1767225600"));
    assert_eq!(header(&headers, "sunset"), Some("Wed, 01 Jul 2026 00:00:00 GMT"));
    vendor.set_faults(Faults {
        deprecation: true,
        sunset: Some("Fri, 01 Jan 2027 00:00:00 GMT".into()),
        ..Faults::default()
    });
    let (_, headers, _) = get(&c, &format!("{}/v1/items/paged", vendor.base_url())).await;
    assert_eq!(header(&headers, "sunset"), Some("Fri, 01 Jan 2027 00:00:00 GMT"));
}

#[tokio::test]
async fn the_down_switch_answers_503_until_lifted() {
    let vendor = start(5).await;
    let c = client();
    vendor.set_down(true);
    for path in ["/v1/items", "/v1/items/1", "/oauth/token"] {
        let resp = c.get(format!("{}{path}", vendor.base_url())).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 503, "{path}");
        assert!(resp.headers().get("retry-after").is_none());
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "unavailable");
    }
    let (status, _, stats) = get(&c, &format!("{}/_stats", vendor.base_url())).await;
    assert_eq!(status, 200, "stats are never down");
    assert_eq!(stats["server_errors"], 3);
    vendor.set_down(false);
    assert_eq!(get(&c, &format!("{}/v1/items", vendor.base_url())).await.0, 200);
}

/// Statuses of `n` sequential requests against a fresh server with these faults.
async fn statuses(seed: u64, faults: Faults, n: usize) -> Vec<u16> {
    let vendor = start_with(VendorConfig { records: 5, seed, faults, ..VendorConfig::default() }).await;
    let c = client();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.get(format!("{}/v1/items/1", vendor.base_url())).send().await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn error_ratios_are_reproducible_per_seed() {
    let faults = Faults { error_500_ratio: 0.2, error_503_ratio: 0.2, ..Faults::default() };
    let a = statuses(42, faults.clone(), 200).await;
    assert_eq!(a, statuses(42, faults.clone(), 200).await, "same seed, same sequence");
    assert_ne!(a, statuses(43, faults, 200).await, "another seed, another sequence");
    let count = |s: u16| a.iter().filter(|x| **x == s).count();
    assert!((15..=70).contains(&count(500)), "500s: {}", count(500));
    assert!((10..=60).contains(&count(503)), "503s: {}", count(503));
    assert_eq!(count(200) + count(500) + count(503), 200);
}
