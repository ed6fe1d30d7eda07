//! Record mode against the fake vendor, through dovetail-http's own client and paginator,
//! then replay of the saved file with the vendor gone: same items, nothing unmatched, no
//! token or live URL in the file.

use std::sync::Arc;

use dovetail_core::Secret;
use dovetail_fake_vendor::{AuthMode, FakeVendor, VendorConfig, VendorHandle};
use dovetail_http::auth::StaticBearer;
use dovetail_http::paginate::PageStyle;
use dovetail_http::{HttpClient, Request};
use dovetail_testkit::{Fixture, FixtureServer, Recorder, Redactor};
use serde_json::Value;

const TOKEN: &str = "fv-bearer-0123456789abcdef";

async fn vendor(records: u64) -> VendorHandle {
    let auth = AuthMode::Bearer { token: TOKEN.into() };
    FakeVendor::start(VendorConfig { records, auth, ..VendorConfig::default() }).await.unwrap()
}

fn client(base: &str) -> HttpClient {
    HttpClient::builder("testkit")
        .base_url(base)
        .api_version("x-api-version", "2024-06-01")
        .auth(Arc::new(StaticBearer::new(Secret::new(TOKEN))))
        .build()
        .unwrap()
}

/// Every item of a listing, and the number of pages.
async fn pull(client: &HttpClient, first: Request, style: PageStyle, items_at: Option<&str>) -> (Vec<Value>, usize) {
    let mut p = client.paginate(first, style);
    if let Some(ptr) = items_at {
        p = p.items_at(ptr);
    }
    let (mut items, mut pages) = (Vec::new(), 0);
    while let Some(page) = p.next_page().await.unwrap() {
        pages += 1;
        items.extend(page.items);
    }
    (items, pages)
}

fn ids(items: &[Value]) -> Vec<u64> {
    items.iter().map(|v| v["id"].as_u64().unwrap()).collect()
}

fn cursor() -> PageStyle {
    PageStyle::Cursor { pointer: "/meta/next_cursor".into(), param: "cursor".into() }
}

#[tokio::test]
async fn cursor_listing_round_trips_record_save_load_replay() {
    let live = vendor(6).await;
    let recorder = Recorder::start(&live.base_url()).await.unwrap();
    let first = || Request::get("/v1/items").query("limit", "2");
    let (recorded, pages) = pull(&client(&recorder.base_url()), first(), cursor(), Some("/data")).await;
    assert_eq!(ids(&recorded), vec![1, 2, 3, 4, 5, 6]);
    assert!(pages >= 3, "{pages} pages");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors/fake/fixtures/items_cursor.json");
    let saved = recorder.save(&path, &Redactor::new()).unwrap();
    assert_eq!(saved.exchanges.len(), recorder.len());
    assert!(saved.exchanges.len() >= 3);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(TOKEN), "the token leaked into the fixture:\n{text}");
    assert!(!text.contains(&live.base_url()), "a live URL is in the fixture:\n{text}");
    let x0 = &saved.exchanges[0];
    assert_eq!(x0.request.headers["authorization"], "[redacted]");
    assert_eq!(x0.request.headers["x-api-version"], "2024-06-01");
    assert!(!x0.request.headers.contains_key("host") && !x0.request.headers.contains_key("user-agent"));
    assert_eq!(x0.request.query, vec![("limit".to_owned(), "2".to_owned())]);
    assert_eq!(x0.response.status, 200);
    assert!(x0.response.body.body.as_ref().unwrap()["data"].is_array(), "JSON bodies are stored as JSON");
    assert_eq!(Fixture::load(&path).unwrap(), saved);
    // The live vendor is gone: whatever the replay answers comes from the file.
    live.shutdown().await;

    let server = FixtureServer::from_file(&path).await.unwrap();
    let (replayed, replayed_pages) = pull(&client(&server.base_url()), first(), cursor(), Some("/data")).await;
    assert_eq!(replayed, recorded);
    assert_eq!(replayed_pages, pages);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    assert!(server.unused().is_empty(), "exchanges never replayed: {:?}", server.unused());
}

#[tokio::test]
async fn absolute_next_urls_are_recorded_as_base_url_and_replayed_against_the_server() {
    let live = vendor(5).await;
    let recorder = Recorder::start(&live.base_url()).await.unwrap();
    let rc = client(&recorder.base_url());
    let link = || Request::get("/v1/items/link").query("per_page", "2");
    let next = || Request::get("/v1/items/next").query("limit", "2");
    let next_style = || PageStyle::NextUrl { pointer: "/next".into() };
    let (by_link, link_pages) = pull(&rc, link(), PageStyle::LinkHeader, None).await;
    let (by_next, next_pages) = pull(&rc, next(), next_style(), Some("/data")).await;
    assert_eq!(ids(&by_link), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&by_next), vec![1, 2, 3, 4, 5]);
    // Pagination went through the recorder, not straight to the vendor.
    assert_eq!(recorder.len(), link_pages + next_pages);

    let fixture = recorder.fixture(&Redactor::new());
    let text = fixture.to_json();
    assert!(!text.contains(&live.base_url()), "{text}");
    assert!(!text.contains(&recorder.base_url()), "{text}");
    let link_header = &fixture.exchanges[0].response.headers["link"];
    assert!(link_header.starts_with("<{{base_url}}/v1/items/link?"), "{link_header}");
    let next_url = fixture.exchanges[link_pages].response.body.body.as_ref().unwrap()["next"].as_str().unwrap();
    assert!(next_url.starts_with("{{base_url}}/v1/items/next?"), "{next_url}");
    live.shutdown().await;

    let server = FixtureServer::start(fixture).await.unwrap();
    let sc = client(&server.base_url());
    assert_eq!(pull(&sc, link(), PageStyle::LinkHeader, None).await.0, by_link);
    assert_eq!(pull(&sc, next(), next_style(), Some("/data")).await.0, by_next);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    assert!(server.unused().is_empty());
    let first = sc.send(link()).await.unwrap();
    let replayed_link = first.header("link").unwrap();
    assert!(replayed_link.starts_with(&format!("<{}/v1/items/link?", server.base_url())), "{replayed_link}");
}

#[tokio::test]
async fn recorder_passes_errors_through_and_records_them() {
    let live = vendor(3).await;
    let recorder = Recorder::start(&live.base_url()).await.unwrap();
    let anonymous = HttpClient::builder("testkit").base_url(&recorder.base_url()).build().unwrap();
    let e = anonymous.send(Request::get("/v1/items")).await.unwrap_err();
    assert_eq!(e.kind().to_string(), "auth", "{e}");
    let fixture = recorder.fixture(&Redactor::new());
    assert_eq!(fixture.exchanges.len(), 1);
    assert_eq!(fixture.exchanges[0].response.status, 401);
    assert!(fixture.exchanges[0].response.headers.contains_key("www-authenticate"));
    recorder.clear();
    assert!(recorder.is_empty());
}

#[tokio::test]
async fn recorder_rejects_an_unusable_upstream() {
    assert!(Recorder::start("not a url").await.is_err());
    assert!(Recorder::start("ftp://example.invalid").await.is_err());
}
