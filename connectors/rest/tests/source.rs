//! The REST source over loopback HTTP (wiremock), driven by the real engine.

use dovetail_core::testing::{MemorySink, MemoryState};
use dovetail_core::{BuildCx, DeliveryStore, HistoryStore, Pipeline, RunOptions, RunOutcome, SourceConnector};
use dovetail_rest::{RestSource, RestSourceConfig};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn source(server: &MockServer, streams: Value) -> RestSource {
    let cfg: RestSourceConfig = serde_json::from_value(json!({
        "base_url": server.uri(),
        "api_version": { "header": "X-Api-Version", "value": "2026-01-01" },
        "http": { "retry": { "max_attempts": 2, "base_delay_ms": 1, "max_delay_ms": 2 } },
        "streams": streams,
    }))
    .unwrap();
    RestSource::build(cfg, &BuildCx::default()).unwrap()
}

fn pipeline(src: RestSource, sink: &MemorySink, state: &MemoryState) -> Pipeline {
    Pipeline::builder("p").source(src).sink(sink.clone()).state(state.clone()).batch_size(2).build().unwrap()
}

fn item(id: u64, t: u64) -> Value {
    json!({ "id": id, "updated_at": format!("2026-01-01T00:00:{t:02}Z"), "name": format!("n{id}") })
}

async fn cursor_page(server: &MockServer, cursor: Option<&str>, items: Vec<Value>, next: Option<&str>) {
    let m = Mock::given(method("GET")).and(path("/v1/items"));
    let m = match cursor {
        Some(c) => m.and(query_param("cursor", c)),
        None => m.and(query_param_is_missing("cursor")),
    };
    m.respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": items, "meta": { "next": next } })))
        .mount(server)
        .await;
}

fn cursor_stream() -> Value {
    json!([{
        "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"],
        "query": { "limit": "2" },
        "pagination": { "type": "cursor", "pointer": "/meta/next", "param": "cursor" },
        "incremental": { "cursor_field": "updated_at", "param": "updated_since", "initial": "2000-01-01T00:00:00Z" }
    }])
}

/// A stored position without the listing's trail of fetched pages (checked present: it is
/// what lets a resumed listing see a loop; its bytes are opaque hashes).
fn without_trail(mut position: Option<Value>) -> Option<Value> {
    let page = position.as_mut().and_then(|p| p.get_mut("page")).and_then(Value::as_object_mut);
    assert!(page.and_then(|p| p.remove("fetched")).is_some(), "no `fetched` in {position:?}");
    position
}

#[tokio::test]
async fn cursor_pages_arrive_once_with_the_version_header_and_a_failed_page_resumes_there() {
    let server = MockServer::start().await;
    cursor_page(&server, None, vec![item(1, 1), item(2, 2)], Some("c2")).await;
    cursor_page(&server, Some("c2"), vec![item(3, 3), item(4, 4)], Some("c3")).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "c3"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&server, cursor_stream()), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert_eq!(r.streams["items"].written, 4);
    let cp = state.checkpoint("p", "items").await.unwrap().unwrap();
    assert_eq!(
        without_trail(cp.position),
        Some(json!({ "page": { "cursor": "c3", "received": 4, "origin": server.uri() } }))
    );
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.headers.get("x-api-version").is_some_and(|v| v == "2026-01-01")));
    assert!(sent[0].url.query().unwrap().contains("updated_since=2000-01-01T00%3A00%3A00Z"), "{}", sent[0].url);

    // The API recovers: the rerun starts at the failed page, not at the first one.
    server.reset().await;
    cursor_page(&server, Some("c3"), vec![item(5, 5)], None).await;
    let r = pipeline(source(&server, cursor_stream()), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["items"].written), (RunOutcome::Succeeded, 1));
    assert!(r.streams["items"].resumed);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(sink.rows("items").len(), 5);

    // The next run asks only for what changed since the last cursor (inclusive).
    server.reset().await;
    cursor_page(&server, None, vec![item(5, 5), item(6, 6)], None).await;
    let r = pipeline(source(&server, cursor_stream()), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["items"].written, r.streams["items"].filtered), (1, 1));
    let q = server.received_requests().await.unwrap()[0].url.query().unwrap().to_owned();
    assert!(q.contains("updated_since=2026-01-01T00%3A00%3A05Z"), "{q}");
}

#[tokio::test]
async fn a_malformed_numbered_page_is_dead_lettered_and_the_stream_goes_on() {
    let server = MockServer::start().await;
    let page = |n: &str, body: ResponseTemplate| {
        Mock::given(method("GET")).and(path("/v1/rows")).and(query_param("page", n)).respond_with(body)
    };
    page("1", ResponseTemplate::new(200).set_body_json(json!([item(1, 1), item(2, 2)]))).mount(&server).await;
    page("2", ResponseTemplate::new(200).set_body_string("[{\"id\": 3, \"upd")).mount(&server).await;
    page("3", ResponseTemplate::new(200).set_body_json(json!([item(5, 5)]))).mount(&server).await;
    let streams = json!([{
        "name": "rows", "path": "/v1/rows", "primary_key": ["id"],
        "pagination": { "type": "page_number", "param": "page", "page_size": 2 }
    }]);
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&server, streams), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.streams["rows"].written, r.streams["rows"].dead_lettered), (3, 1));
    let dl = state.dead_letters(Some("p"), Some("rows"), 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert!(dl[0].reason.contains("page=2") && dl[0].reason.contains("not valid JSON"), "{}", dl[0].reason);
}

#[tokio::test]
async fn a_malformed_cursor_page_stops_the_stream_at_its_checkpoint_naming_the_url() {
    let server = MockServer::start().await;
    cursor_page(&server, None, vec![item(1, 1), item(2, 2)], Some("c2")).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"data\": [{\"id\": 3"))
        .mount(&server)
        .await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&server, cursor_stream()), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    let err = r.streams["items"].error.clone().unwrap();
    assert!(err.contains("cursor=c2") && err.contains("next run starts at this page"), "{err}");
    assert_eq!(r.exit_code, dovetail_core::ErrorKind::Data.exit_code());
    let cp = state.checkpoint("p", "items").await.unwrap().unwrap();
    assert_eq!(
        without_trail(cp.position),
        Some(json!({ "page": { "cursor": "c2", "received": 2, "origin": server.uri() } }))
    );
}

#[tokio::test]
async fn child_streams_read_every_parents_children_with_the_parent_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [item(1, 1), item(2, 2), item(3, 3)] })))
        .mount(&server)
        .await;
    for (id, n) in [(1u64, 3u64), (2, 0), (3, 1)] {
        let comments: Vec<Value> = (0..n).map(|c| json!({ "id": id * 10 + c, "body": "hi" })).collect();
        Mock::given(method("GET"))
            .and(path(format!("/v1/items/{id}/comments")))
            .respond_with(ResponseTemplate::new(200).set_body_json(comments))
            .mount(&server)
            .await;
    }
    let streams = json!([
        { "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"] },
        { "name": "comments", "path": "/v1/items/{parent.id}/comments", "primary_key": ["id"],
          "parent": { "stream": "items", "fields": { "item_id": "id" } } }
    ]);
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&server, streams), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    let rows = sink.rows("comments");
    assert_eq!(rows.len(), 4);
    let mut pairs: Vec<(u64, u64)> =
        rows.iter().map(|r| (r["item_id"].as_u64().unwrap(), r["id"].as_u64().unwrap())).collect();
    pairs.sort();
    assert_eq!(pairs, vec![(1, 10), (1, 11), (1, 12), (3, 30)]);
}

#[tokio::test]
async fn a_child_stream_takes_its_url_from_a_parent_field_within_the_allowed_origins() {
    let (server, other) = (MockServer::start().await, MockServer::start().await);
    // Item 1 links to its comments relatively, item 2 absolutely, item 3 on another host.
    let parents = json!({ "data": [
        { "id": 1, "links": { "comments": "/v1/items/1/comments" } },
        { "id": 2, "links": { "comments": format!("{}/v1/items/2/comments", server.uri()) } },
        { "id": 3, "links": { "comments": format!("{}/v1/items/3/comments", other.uri()) } },
    ] });
    Mock::given(method("GET"))
        .and(path("/v1/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(parents))
        .mount(&server)
        .await;
    for id in [1u64, 2, 3] {
        let t = ResponseTemplate::new(200).set_body_json(json!([{ "id": id * 10 }]));
        Mock::given(path(format!("/v1/items/{id}/comments"))).respond_with(t.clone()).mount(&server).await;
        Mock::given(path(format!("/v1/items/{id}/comments"))).respond_with(t).mount(&other).await;
    }
    let streams = json!([
        { "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"] },
        { "name": "comments", "path": "{parent.links.comments}", "primary_key": ["id"],
          "parent": { "stream": "items", "fields": { "item_id": "id" } } }
    ]);
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let r = pipeline(source(&server, streams), &sink, &state).run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    let err = r.streams["comments"].error.clone().unwrap();
    assert!(err.contains(&format!("refused to send a request to {}", other.uri())), "{err}");
    assert!(err.contains("the URL of child stream `comments` from the parent's `links.comments`"), "{err}");
    let mut got: Vec<u64> = sink.rows("comments").iter().map(|r| r["id"].as_u64().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![10, 20], "the children on the base URL's origin arrived");
    assert!(other.received_requests().await.unwrap().is_empty(), "nothing went to the other origin");
}

#[test]
fn a_configured_path_on_another_origin_is_a_config_error() {
    let cfg = |allowed: Value| -> RestSourceConfig {
        serde_json::from_value(json!({
            "base_url": "https://api.example.com",
            "auth": { "type": "bearer", "token": "t" },
            "http": { "allowed_origins": allowed },
            "streams": [{ "name": "files", "path": "https://files.example.com/v1/{parent.id}", "primary_key": ["id"],
                          "parent": { "stream": "items" } },
                        { "name": "items", "path": "/v1/items", "primary_key": ["id"] }],
        }))
        .unwrap()
    };
    let e = RestSource::build(cfg(json!([])), &BuildCx::default()).unwrap_err();
    assert_eq!(*e.kind(), dovetail_core::ErrorKind::Config);
    assert!(e.message().contains("stream `files`: refused to send a request to https://files.example.com"), "{e}");
    assert!(e.message().contains("https://api.example.com (the base URL)"), "{e}");
    assert!(e.next_step().contains("`http.allowed_origins`"), "{}", e.next_step());
    RestSource::build(cfg(json!(["https://files.example.com"])), &BuildCx::default()).unwrap();
}

#[tokio::test]
async fn a_corrupt_checkpoint_is_reported_not_guessed() {
    let server = MockServer::start().await;
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    state
        .commit(dovetail_core::state::Commit {
            pipeline: "p".into(),
            stream: "items".into(),
            checkpoint: Some(dovetail_core::Checkpoint {
                position: Some(json!({ "pgae": 3 })),
                pass: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = pipeline(source(&server, cursor_stream()), &sink, &state).run(RunOptions::default()).await.unwrap();
    let err = r.streams["items"].error.clone().unwrap();
    assert!(err.contains("not one this connector wrote") && err.contains("dovetail reset"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
