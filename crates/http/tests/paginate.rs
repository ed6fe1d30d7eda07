//! Each pagination style ends, and each loop guard fires, over loopback HTTP.

mod common;

use common::builder;
use dovetail_http::paginate::{PageStyle, Paginator};
use dovetail_http::{FakeClock, Request};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn all(mut p: Paginator) -> Result<Vec<Value>, dovetail_core::Error> {
    let mut out = Vec::new();
    while let Some(page) = p.next_page().await? {
        out.extend(page.items);
    }
    Ok(out)
}

async fn page(server: &MockServer, param: Option<(&str, &str)>, t: ResponseTemplate) {
    let m = Mock::given(method("GET")).and(path("/l"));
    let m = match param {
        Some((k, v)) => m.and(query_param(k, v)),
        None => m.and(query_param_is_missing("cursor")).and(query_param_is_missing("page")),
    };
    m.respond_with(t).mount(server).await;
}

fn json(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

#[tokio::test]
async fn link_header_pages_end_and_loop_guard_fires() {
    let server = MockServer::start().await;
    let next = |p: &str| format!("<{}/l?page={p}>; rel=\"next\"", server.uri());
    page(&server, None, json(json!([1, 2])).insert_header("link", next("2").as_str())).await;
    page(&server, Some(("page", "2")), json(json!([3])).insert_header("link", next("3").as_str())).await;
    page(&server, Some(("page", "3")), json(json!([4]))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let items = all(client.paginate(Request::get("/l"), PageStyle::LinkHeader)).await.unwrap();
    assert_eq!(items, vec![json!(1), json!(2), json!(3), json!(4)]);

    server.reset().await;
    page(&server, None, json(json!([1])).insert_header("link", next("2").as_str())).await;
    page(&server, Some(("page", "2")), json(json!([2])).insert_header("link", next("2").as_str())).await;
    let e = all(client.paginate(Request::get("/l"), PageStyle::LinkHeader)).await.unwrap_err();
    assert!(e.to_string().contains("pagination loop"), "{e}");
}

#[tokio::test]
async fn cursor_pages_end_and_loop_guard_fires() {
    let server = MockServer::start().await;
    page(&server, None, json(json!({"data": [1], "meta": {"next": "a"}}))).await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "b"}}))).await;
    page(&server, Some(("cursor", "b")), json(json!({"data": [3], "meta": {"next": null}}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::Cursor { pointer: "/meta/next".into(), param: "cursor".into() };
    let items = all(client.paginate(Request::get("/l"), style.clone()).items_at("/data")).await.unwrap();
    assert_eq!(items, vec![json!(1), json!(2), json!(3)]);

    server.reset().await;
    page(&server, None, json(json!({"data": [1], "meta": {"next": "a"}}))).await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "a"}}))).await;
    let e = all(client.paginate(Request::get("/l"), style).items_at("/data")).await.unwrap_err();
    assert!(e.to_string().contains("pagination loop: the server sent `a` as next twice"), "{e}");
}

#[tokio::test]
async fn next_url_pages_end_and_loop_guard_fires() {
    let server = MockServer::start().await;
    page(&server, None, json(json!({"items": [1], "next": "/l?cursor=2"}))).await;
    page(&server, Some(("cursor", "2")), json(json!({"items": [2], "next": ""}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::NextUrl { pointer: "/next".into() };
    let items = all(client.paginate(Request::get("/l"), style.clone()).items_at("/items")).await.unwrap();
    assert_eq!(items, vec![json!(1), json!(2)]);

    server.reset().await;
    page(&server, None, json(json!({"items": [1], "next": "/l?cursor=2"}))).await;
    page(&server, Some(("cursor", "2")), json(json!({"items": [2], "next": "/l?cursor=2"}))).await;
    let e = all(client.paginate(Request::get("/l"), style).items_at("/items")).await.unwrap_err();
    assert!(e.to_string().contains("pagination loop"), "{e}");
}

#[tokio::test]
async fn page_numbers_end_on_an_empty_page_and_a_repeated_page_is_caught() {
    let server = MockServer::start().await;
    page(&server, Some(("page", "1")), json(json!([1, 2]))).await;
    page(&server, Some(("page", "2")), json(json!([3]))).await;
    page(&server, Some(("page", "3")), json(json!([]))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::PageNumber { param: "page".into(), first: 1 };
    let items = all(client.paginate(Request::get("/l").query("per_page", "2"), style.clone())).await.unwrap();
    assert_eq!(items.len(), 3);
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.url.query().unwrap().contains("per_page=2")));

    server.reset().await;
    Mock::given(method("GET")).respond_with(json(json!([1, 2]))).mount(&server).await;
    let e = all(client.paginate(Request::get("/l"), style)).await.unwrap_err();
    assert!(e.to_string().contains("identical"), "{e}");
}

#[tokio::test]
async fn offsets_advance_by_items_received_and_end_on_an_empty_page() {
    let server = MockServer::start().await;
    page(&server, Some(("offset", "0")), json(json!({"rows": [1, 2]}))).await;
    page(&server, Some(("offset", "2")), json(json!({"rows": [3, 4]}))).await;
    page(&server, Some(("offset", "4")), json(json!({"rows": []}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::Offset { param: "offset".into() };
    let items = all(client.paginate(Request::get("/l"), style.clone()).items_at("/rows")).await.unwrap();
    assert_eq!(items.len(), 4);

    server.reset().await;
    Mock::given(method("GET")).respond_with(json(json!({"rows": [1]}))).mount(&server).await;
    let e = all(client.paginate(Request::get("/l"), style).items_at("/rows")).await.unwrap_err();
    assert!(e.to_string().contains("identical"), "{e}");
}

#[tokio::test]
async fn a_listing_resumes_from_its_saved_state_without_refetching_pages() {
    let server = MockServer::start().await;
    page(&server, None, json(json!({"data": [1], "meta": {"next": "a"}}))).await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "b"}}))).await;
    page(&server, Some(("cursor", "b")), json(json!({"data": [3], "meta": {}}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::Cursor { pointer: "/meta/next".into(), param: "cursor".into() };
    let mut p = client.paginate(Request::get("/l"), style.clone()).items_at("/data");
    assert_eq!(p.next_page().await.unwrap().unwrap().items, vec![json!(1)]);
    // The state survives a round trip through JSON, as it does through a checkpoint.
    let saved = serde_json::to_value(p.state().unwrap()).unwrap();
    assert_eq!(saved, json!({"cursor": "a", "received": 1, "origin": server.uri()}));
    drop(p);

    server.reset().await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "b"}}))).await;
    page(&server, Some(("cursor", "b")), json(json!({"data": [3], "meta": {}}))).await;
    let state = serde_json::from_value(saved).unwrap();
    let rest = all(client.paginate_from(Request::get("/l"), style, state).items_at("/data")).await.unwrap();
    assert_eq!(rest, vec![json!(2), json!(3)]);
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2, "the first page was fetched again");
    assert!(sent.iter().all(|r| r.url.query().is_some_and(|q| q.contains("cursor="))));
}

#[tokio::test]
async fn short_pages_and_totals_end_a_listing_without_an_extra_request() {
    let server = MockServer::start().await;
    page(&server, Some(("page", "1")), json(json!([1, 2]))).await;
    page(&server, Some(("page", "2")), json(json!([3]))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::PageNumber { param: "page".into(), first: 1 };
    let items = all(client.paginate(Request::get("/l"), style).stop_when_fewer_than(2)).await.unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    server.reset().await;
    page(&server, Some(("offset", "0")), json(json!({"rows": [1, 2], "total": 4}))).await;
    page(&server, Some(("offset", "2")), json(json!({"rows": [3, 4], "total": 4}))).await;
    let style = PageStyle::Offset { param: "offset".into() };
    let items = all(client.paginate(Request::get("/l"), style).items_at("/rows").total_at("/total")).await.unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn numbered_pages_can_be_skipped_but_cursor_pages_cannot() {
    let server = MockServer::start().await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let mut p = client.paginate(Request::get("/l"), PageStyle::PageNumber { param: "page".into(), first: 1 });
    assert!(p.skip_page(100));
    assert_eq!(p.state().unwrap().page, Some(2));
    let mut p = client.paginate(Request::get("/l"), PageStyle::Offset { param: "offset".into() });
    assert!(p.skip_page(100));
    assert_eq!(p.state().unwrap().received, 100);
    let cursor = PageStyle::Cursor { pointer: "/next".into(), param: "cursor".into() };
    let mut p = client.paginate(Request::get("/l"), cursor);
    assert!(!p.skip_page(100));
    assert_eq!(p.state(), Some(&dovetail_http::paginate::PageState::default()));
}
