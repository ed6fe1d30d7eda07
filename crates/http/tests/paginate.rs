//! Each pagination style ends, and each loop guard fires, over loopback HTTP.

mod common;

use common::builder;
use dovetail_core::ErrorKind;
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
    assert_eq!(e.kind(), &ErrorKind::Data);
    let want = format!("the `Link` header's next page is {}/l?page=2, the page that sent it", server.uri());
    assert!(e.to_string().contains(&want), "{e}");
    assert!(e.next_step().contains("dovetail reset"), "{}", e.next_step());
    // Page 2 was fetched once: the repeat was refused before it was sent.
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// A listing read the way a connector reads it: a new paginator per page, from the state the
/// one before left (what a checkpoint holds, through JSON).
async fn per_page(client: &dovetail_http::HttpClient, style: PageStyle) -> (Vec<Value>, dovetail_core::Error) {
    let mut state = dovetail_http::paginate::PageState::default();
    let mut items = Vec::new();
    loop {
        let mut p = client.paginate_from(Request::get("/l"), style.clone(), state).items_at("/data");
        match p.next_page().await {
            Ok(Some(page)) => items.extend(page.items),
            Ok(None) => panic!("the listing ended without a loop: {items:?}"),
            Err(e) => return (items, e),
        }
        let saved = serde_json::to_string(p.state().expect("the listing goes on")).unwrap();
        state = serde_json::from_str(&saved).unwrap();
    }
}

#[tokio::test]
async fn a_link_back_to_an_earlier_page_stops_a_listing_read_one_paginator_a_page() {
    let server = MockServer::start().await;
    let link = |p: &str| format!("<{}/l?page={p}&per_page=2>; rel=\"next\"", server.uri());
    // A → B → A, the link back to A reordering its query.
    let a = json(json!({"data": [1]})).insert_header("link", link("2").as_str());
    Mock::given(method("GET")).and(query_param_is_missing("page")).respond_with(a).mount(&server).await;
    let b = json(json!({"data": [2]}))
        .insert_header("link", format!("<{}/l?sort=asc&per_page=2#top>; rel=\"next\"", server.uri()).as_str());
    page(&server, Some(("page", "2")), b).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let first = Request::get("/l").query("per_page", "2").query("sort", "asc");
    let mut state = dovetail_http::paginate::PageState::default();
    let mut items = Vec::new();
    let e = loop {
        let mut p = client.paginate_from(first.clone(), PageStyle::LinkHeader, state).items_at("/data");
        match p.next_page().await {
            Ok(Some(page)) => items.extend(page.items),
            other => break other.map(|_| ()).unwrap_err(),
        }
        state = serde_json::from_value(serde_json::to_value(p.state().unwrap()).unwrap()).unwrap();
    };
    assert_eq!(items, vec![json!(1), json!(2)]);
    assert_eq!(e.kind(), &ErrorKind::Data);
    assert!(e.to_string().contains("already fetched (2 pages before)"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_cursor_that_returns_to_an_earlier_value_stops_the_listing() {
    let server = MockServer::start().await;
    page(&server, None, json(json!({"data": [1], "meta": {"next": "a"}}))).await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "b"}}))).await;
    page(&server, Some(("cursor", "b")), json(json!({"data": [3], "meta": {"next": "a"}}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::Cursor { pointer: "/meta/next".into(), param: "cursor".into() };
    let (items, e) = per_page(&client, style).await;
    assert_eq!(items, vec![json!(1), json!(2), json!(3)]);
    assert!(
        e.to_string()
            .contains("the cursor at `/meta/next` is `a`, which this listing already sent as `cursor` (2 pages before"),
        "{e}"
    );
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
    assert_eq!(e.kind(), &ErrorKind::Data);
    assert!(
        e.to_string().contains("pagination loop (cursor pagination): the cursor at `/meta/next` is `a` again"),
        "{e}"
    );
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
    assert!(e.to_string().contains("pagination loop (next-URL pagination): the next-page URL at `/next` is"), "{e}");
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
    let mut p = client.paginate(Request::get("/l"), style.clone());
    assert_eq!(p.next_page().await.unwrap().unwrap().items.len(), 2);
    let e = p.next_page().await.unwrap_err();
    assert!(e.to_string().contains("page 2 (") && e.to_string().contains("holds the same records as page 1"), "{e}");
    assert!(e.next_step().contains("`page` is the API's page parameter"), "{}", e.next_step());
    assert!(p.looped());

    // Not only the page before: 1, 2, then 1 again (a body with a changing request id).
    server.reset().await;
    let rows = |n: u64, id: &str| json(json!({"request_id": id, "data": [n]}));
    page(&server, Some(("page", "1")), rows(1, "r1")).await;
    page(&server, Some(("page", "2")), rows(2, "r2")).await;
    page(&server, Some(("page", "3")), rows(1, "r3")).await;
    let (items, e) = per_page(&client, style).await;
    assert_eq!(items, vec![json!(1), json!(2)], "the repeated page's records were handed on");
    assert!(e.to_string().contains("page 3 (") && e.to_string().contains("same records as page 1"), "{e}");
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
    assert!(e.to_string().contains("the page at offset 1 (") && e.to_string().contains("the page before"), "{e}");
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
    let mut saved = serde_json::to_value(p.state().unwrap()).unwrap();
    let fetched = saved.as_object_mut().unwrap().remove("fetched").expect("the trail is saved");
    assert_eq!(saved, json!({"cursor": "a", "received": 1, "origin": server.uri()}));
    saved["fetched"] = fetched;
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

#[tokio::test]
async fn a_position_stored_before_listings_remembered_pages_still_resumes() {
    let server = MockServer::start().await;
    page(&server, Some(("cursor", "a")), json(json!({"data": [2], "meta": {"next": "b"}}))).await;
    page(&server, Some(("cursor", "b")), json(json!({"data": [3], "meta": {"next": "b"}}))).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::Cursor { pointer: "/meta/next".into(), param: "cursor".into() };
    // What a checkpoint held before `fetched` existed.
    let old = json!({"cursor": "a", "received": 1, "origin": server.uri()});
    let state = serde_json::from_value(old).unwrap();
    let mut p = client.paginate_from(Request::get("/l"), style, state).items_at("/data");
    assert_eq!(p.next_page().await.unwrap().unwrap().items, vec![json!(2)]);
    assert_eq!(p.next_page().await.unwrap().unwrap().items, vec![json!(3)]);
    // From where it resumed on, it remembers.
    assert!(p.next_page().await.unwrap_err().to_string().contains("is `b` again"));
}

#[tokio::test]
async fn last_id_pages_send_the_last_id_until_has_more_is_false() {
    let server = MockServer::start().await;
    let after =
        |id: &'static str| Mock::given(method("GET")).and(path("/v1/customers")).and(query_param("starting_after", id));
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param_is_missing("starting_after"))
        .respond_with(json(json!({"object": "list", "data": [{"id": "cus_3"}, {"id": "cus_2"}], "has_more": true})))
        .mount(&server)
        .await;
    after("cus_2")
        .respond_with(json(json!({"object": "list", "data": [{"id": "cus_1"}], "has_more": false})))
        .mount(&server)
        .await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::LastId { param: "starting_after".into(), has_more: "/has_more".into(), id: "/id".into() };
    let first = Request::get("/v1/customers").query("limit", "2");
    let items = all(client.paginate(first.clone(), style.clone()).items_at("/data")).await.unwrap();
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, ["cus_3", "cus_2", "cus_1"]);
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.url.query().unwrap_or_default().contains("limit=2")), "the query is kept");

    // More pages promised but no id on the last item: a Data error naming the pointers.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .respond_with(json(json!({"data": [{"name": "x"}], "has_more": true})))
        .mount(&server)
        .await;
    let mut p = client.paginate(first.clone(), style.clone()).items_at("/data");
    let e = p.next_page().await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Data);
    assert!(
        e.to_string().contains("`/has_more` says more pages follow, but the page's last item has nothing at `/id`"),
        "{e}"
    );

    // A server that answers the same last id again: the loop guard stops the listing.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .respond_with(json(json!({"data": [{"id": "cus_9"}], "has_more": true})))
        .mount(&server)
        .await;
    let e = all(client.paginate(first, style).items_at("/data")).await.unwrap_err();
    assert!(e.to_string().contains("pagination loop (last-id pagination)"), "{e}");
}

#[tokio::test]
async fn body_cursor_pages_post_the_cursor_in_the_body_and_loop_guard_fires() {
    use wiremock::matchers::body_json;
    let server = MockServer::start().await;
    let post = |body: Value, t: ResponseTemplate| {
        Mock::given(method("POST")).and(path("/s")).and(body_json(body)).respond_with(t)
    };
    post(json!({ "limit": 2 }), json(json!({ "results": [1, 2], "paging": { "next": { "after": "2" } } })))
        .mount(&server)
        .await;
    post(json!({ "limit": 2, "after": "2" }), json(json!({ "results": [3], "paging": { "next": { "after": "3" } } })))
        .mount(&server)
        .await;
    post(json!({ "limit": 2, "after": "3" }), json(json!({ "results": [4] }))).mount(&server).await;
    let client = builder(&server.uri(), &FakeClock::new()).build().unwrap();
    let style = PageStyle::BodyCursor { pointer: "/paging/next/after".into(), field: "after".into() };
    let first = Request::post("/s").json(&json!({ "limit": 2 }));
    let items = all(client.paginate(first.clone(), style.clone()).items_at("/results")).await.unwrap();
    assert_eq!(items, vec![json!(1), json!(2), json!(3), json!(4)]);

    // One URL for every page: the cursor tells them apart, and a cursor sent before is a loop.
    server.reset().await;
    post(json!({ "limit": 2 }), json(json!({ "results": [1], "paging": { "next": { "after": "2" } } })))
        .mount(&server)
        .await;
    post(json!({ "limit": 2, "after": "2" }), json(json!({ "results": [2], "paging": { "next": { "after": "2" } } })))
        .mount(&server)
        .await;
    let e = all(client.paginate(first, style).items_at("/results")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Data);
    assert!(e.to_string().contains("body-cursor pagination"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
