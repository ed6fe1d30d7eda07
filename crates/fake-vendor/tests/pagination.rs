//! Every pagination style returns every record exactly once, in order, and ends.

mod common;

use common::{client, get, header, ids, start};
use serde_json::Value;

/// Follows one listing style to the end; returns the records and the number of requests.
async fn pull(base: &str, style: &str, size: u64, since: Option<&str>) -> (Vec<Value>, u64) {
    let c = client();
    let since = since.map(|s| format!("&updated_since={}", s.replace('+', "%2B"))).unwrap_or_default();
    let mut out = Vec::new();
    let mut requests = 0;
    match style {
        "cursor" => {
            let mut cursor: Option<String> = None;
            loop {
                let cur = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
                let (status, _, body) = get(&c, &format!("{base}/v1/items?limit={size}{since}{cur}")).await;
                requests += 1;
                assert_eq!(status, 200);
                out.extend(body["data"].as_array().unwrap().iter().cloned());
                match body["meta"]["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
        }
        "next" => {
            let mut url = format!("{base}/v1/items/next?limit={size}{since}");
            loop {
                let (status, _, body) = get(&c, &url).await;
                requests += 1;
                assert_eq!(status, 200);
                out.extend(body["data"].as_array().unwrap().iter().cloned());
                match body["next"].as_str() {
                    Some(next) => url = next.to_owned(),
                    None => break,
                }
            }
        }
        "link" => {
            let mut url = format!("{base}/v1/items/link?per_page={size}{since}");
            loop {
                let (status, headers, body) = get(&c, &url).await;
                requests += 1;
                assert_eq!(status, 200);
                out.extend(body.as_array().unwrap().iter().cloned());
                let Some(link) = header(&headers, "link") else { break };
                assert!(link.ends_with(">; rel=\"next\""), "{link}");
                url = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
            }
        }
        "paged" => {
            for page in 1.. {
                let (status, _, body) =
                    get(&c, &format!("{base}/v1/items/paged?per_page={size}&page={page}{since}")).await;
                requests += 1;
                assert_eq!(status, 200);
                assert_eq!(body["page"], page);
                let data = body["data"].as_array().unwrap();
                if data.is_empty() {
                    break;
                }
                out.extend(data.iter().cloned());
            }
        }
        "offset" => {
            let mut offset = 0;
            loop {
                let (status, _, body) =
                    get(&c, &format!("{base}/v1/items/offset?limit={size}&offset={offset}{since}")).await;
                requests += 1;
                assert_eq!(status, 200);
                let total = body["total"].as_u64().unwrap();
                out.extend(body["data"].as_array().unwrap().iter().cloned());
                offset += size;
                if offset >= total {
                    break;
                }
            }
        }
        other => panic!("unknown style {other}"),
    }
    (out, requests)
}

fn assert_ordered(records: &[Value]) {
    let keys: Vec<(String, u64)> =
        records.iter().map(|r| (r["updated_at"].as_str().unwrap().to_owned(), r["id"].as_u64().unwrap())).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "not strictly ordered by (updated_at, id)");
}

const STYLES: [&str; 5] = ["cursor", "next", "link", "paged", "offset"];

#[tokio::test]
async fn every_style_returns_every_record_once_in_order() {
    let vendor = start(257).await;
    for style in STYLES {
        let (records, requests) = pull(&vendor.base_url(), style, 20, None).await;
        let got = ids(&Value::Array(records.clone()));
        assert_eq!(got, (1..=257).collect::<Vec<_>>(), "{style}");
        assert_ordered(&records);
        // 13 pages; the page-number style needs one more request to see the empty page.
        let expected = if style == "paged" { 14 } else { 13 };
        assert_eq!(requests, expected, "{style}");
    }
    let stats = vendor.stats();
    assert_eq!(stats.records_served, 257 * 5);
    assert_eq!(stats.by_path["/v1/items/link"], 13);
}

#[tokio::test]
async fn cursor_styles_end_without_an_empty_page_when_pages_divide_evenly() {
    let vendor = start(200).await;
    for style in ["cursor", "next", "link"] {
        let (records, requests) = pull(&vendor.base_url(), style, 50, None).await;
        assert_eq!(records.len(), 200, "{style}");
        assert_eq!(requests, 4, "{style}");
    }
}

#[tokio::test]
async fn updated_since_is_inclusive_and_keeps_ties() {
    let vendor = start(100).await;
    let c = client();
    let (_, _, r9) = get(&c, &format!("{}/v1/items/9", vendor.base_url())).await;
    let (_, _, r10) = get(&c, &format!("{}/v1/items/10", vendor.base_url())).await;
    assert_eq!(r9["updated_at"], r10["updated_at"], "every 10th record ties with the previous one");
    let since = r10["updated_at"].as_str().unwrap().to_owned();
    for style in STYLES {
        let (records, _) = pull(&vendor.base_url(), style, 7, Some(&since)).await;
        assert_eq!(ids(&Value::Array(records)), (9..=100).collect::<Vec<_>>(), "{style}");
    }
    // The same instant written with an offset means the same thing.
    let (records, _) = pull(&vendor.base_url(), "cursor", 50, Some(&since.replace('Z', "+00:00"))).await;
    assert_eq!(records.len(), 92);
    let (_, _, offset) = get(&c, &format!("{}/v1/items/offset?updated_since={since}", vendor.base_url())).await;
    assert_eq!(offset["total"], 92);
    let (status, _, body) = get(&c, &format!("{}/v1/items?updated_since=yesterday", vendor.base_url())).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn touched_and_added_records_come_last_for_incremental_syncs() {
    let vendor = start(50).await;
    let c = client();
    let (_, _, before) = get(&c, &format!("{}/v1/items/7", vendor.base_url())).await;
    let (all, _) = pull(&vendor.base_url(), "cursor", 100, None).await;
    let max = all.last().unwrap()["updated_at"].as_str().unwrap().to_owned();
    vendor.touch(&[7, 30]);
    vendor.add_records(2);
    let (after, _) = pull(&vendor.base_url(), "cursor", 100, None).await;
    assert_eq!(after.len(), 52);
    let tail = ids(&Value::Array(after[48..].to_vec()));
    assert_eq!(tail, vec![7, 30, 51, 52]);
    assert_ordered(&after);
    for style in STYLES {
        let (changed, _) = pull(&vendor.base_url(), style, 2, Some(&max)).await;
        // Inclusive: the old newest records (49 and 50 tie) come again, then everything changed since.
        assert_eq!(ids(&Value::Array(changed)), vec![49, 50, 7, 30, 51, 52], "{style}");
    }
    let touched = &after[48];
    assert!(touched["updated_at"].as_str() > Some(max.as_str()));
    assert_ne!(touched["name"], before["name"]);
    assert_ne!(touched["quantity"], before["quantity"]);
}

#[tokio::test]
async fn records_have_the_documented_shape_and_exact_big_numbers() {
    let vendor = start(30).await;
    let text =
        client().get(format!("{}/v1/items?limit=30", vendor.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("\"big\":12345678901234567891}"), "big is written as an exact number");
    let body: Value = serde_json::from_str(&text).unwrap();
    let records = body["data"].as_array().unwrap();
    for r in records {
        assert!(r["updated_at"].as_str().unwrap().ends_with('Z'));
        assert!(r["name"].is_string() && r["price"].is_number() && r["quantity"].is_u64());
        assert!(r["active"].is_boolean() && r["tags"].is_array());
        assert!(r["owner"]["id"].is_u64() && r["owner"]["login"].is_string());
        assert!(r["notes"].is_string() || r["notes"].is_null());
        let price = r["price"].to_string();
        assert_eq!(price.split('.').nth(1).map(str::len), Some(2), "two decimals: {price}");
    }
    assert!(records.iter().any(|r| r["notes"].is_null()), "some notes are null");
    assert!(records.iter().any(|r| r["tags"].as_array().unwrap().is_empty()), "some tags are empty");
    let (status, _, body) = get(&client(), &format!("{}/v1/items/31", vendor.base_url())).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn comments_paginate_per_item() {
    let vendor = start(40).await;
    let c = client();
    let mut counts = Vec::new();
    for item in 1..=40u64 {
        let mut cursor = String::new();
        let mut got = Vec::new();
        loop {
            let url = format!("{}/v1/items/{item}/comments?limit=1{cursor}", vendor.base_url());
            let (status, _, body) = get(&c, &url).await;
            assert_eq!(status, 200);
            for comment in body["data"].as_array().unwrap() {
                assert_eq!(comment["item_id"], item);
                assert!(comment["body"].is_string() && comment["created_at"].is_string());
                got.push(comment["id"].as_u64().unwrap());
            }
            match body["meta"]["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let (_, _, all) = get(&c, &format!("{}/v1/items/{item}/comments", vendor.base_url())).await;
        assert_eq!(ids(&all["data"]), got, "item {item}");
        counts.push(got.len());
    }
    assert!(counts.iter().all(|n| *n <= 3));
    assert!(counts.contains(&0) && counts.contains(&3), "0 to 3 comments: {counts:?}");
    let (status, _, _) = get(&c, &format!("{}/v1/items/41/comments", vendor.base_url())).await;
    // limit=1 takes max(n, 1) requests per item, plus one unpaged request each, plus the 404.
    let expected: usize = counts.iter().map(|n| (*n).max(1)).sum::<usize>() + 40 + 1;
    assert_eq!(vendor.stats().by_path["/v1/items/{id}/comments"] as usize, expected);
    assert_eq!(status, 404);
}

#[tokio::test]
async fn etags_answer_304_to_matching_if_none_match() {
    let vendor = start(10).await;
    let c = client();
    for path in ["/v1/items/3", "/v1/items?limit=5"] {
        let url = format!("{}{path}", vendor.base_url());
        let (status, headers, _) = get(&c, &url).await;
        assert_eq!(status, 200);
        let etag = header(&headers, "etag").unwrap().to_owned();
        let resp = c.get(&url).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 304, "{path}");
        assert_eq!(resp.text().await.unwrap(), "");
        let resp = c.get(&url).header("if-none-match", "\"other\"").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    vendor.touch(&[3]);
    let url = format!("{}/v1/items/3", vendor.base_url());
    let (_, headers, _) = get(&c, &url).await;
    assert_eq!(vendor.stats().conditional_hits, 2);
    assert!(header(&headers, "etag").is_some());
}

#[tokio::test]
async fn bad_paging_parameters_are_400() {
    let vendor = start(10).await;
    let c = client();
    for q in ["/v1/items?limit=0", "/v1/items?cursor=%21%21", "/v1/items/paged?page=0", "/v1/items/offset?offset=x"] {
        let (status, _, body) = get(&c, &format!("{}{q}", vendor.base_url())).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{q}");
    }
    let (_, _, body) = get(&c, &format!("{}/v1/items?limit=5000", vendor.base_url())).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 10, "large pages are clamped, not refused");
}
