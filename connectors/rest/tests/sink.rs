//! The REST sink over loopback HTTP (wiremock), driven by the real engine.

use dovetail_core::testing::{MemorySource, MemoryState};
use dovetail_core::{BuildCx, Pipeline, RunOptions, RunOutcome, SinkConnector};
use dovetail_rest::{RestSink, RestSinkConfig};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn sink(server: &MockServer, streams: Value) -> RestSink {
    let cfg: RestSinkConfig = serde_json::from_value(json!({
        "base_url": server.uri(),
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
        "streams": streams,
    }))
    .unwrap();
    RestSink::build(cfg, &BuildCx::default()).unwrap()
}

fn people(names: &[&str]) -> Vec<Value> {
    names.iter().enumerate().map(|(i, n)| json!({ "id": i + 1, "name": n })).collect()
}

/// Answers a create with an id derived from the record's `external_id`.
struct Created;

impl Respond for Created {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        ResponseTemplate::new(201).set_body_json(json!({ "id": format!("obj_{}", body["external_id"]) }))
    }
}

#[tokio::test]
async fn creates_carry_stable_idempotency_keys_and_changes_update_the_created_record() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/people")).respond_with(Created).mount(&server).await;
    Mock::given(method("PATCH")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let streams = json!({ "people": {
        "mode": "create", "path": "/v1/people", "update_method": "patch",
        "body": { "external_id": "{{id}}", "display": "Person {{name}}" }
    }});
    let src = MemorySource::new("people", &["id"], people(&["ada", "bob", "cy"]));
    let state = MemoryState::default();
    let p = Pipeline::builder("p").source(src.clone()).sink(sink(&server, streams.clone())).state(state.clone());
    let p = p.build().unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["people"].written), (RunOutcome::Succeeded, 3), "{:?}", r.error);
    let first = server.received_requests().await.unwrap();
    let keys: Vec<String> =
        first.iter().map(|r| r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.starts_with("dt-")));
    let bodies: Vec<Value> = first.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert!(bodies.contains(&json!({ "external_id": 1, "display": "Person ada" })), "{bodies:?}");

    // Unchanged: nothing sent. One change: a PATCH to the id the create returned.
    server.reset().await;
    Mock::given(method("PATCH")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    src.set_records("people", people(&["ada", "bobby", "cy"]));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["people"].written, r.streams["people"].skipped_unchanged), (1, 2));
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].method.as_str(), sent[0].url.path()), ("PATCH", "/v1/people/obj_2"));

    // A fresh ledger (a crash before the commit) sends the same keys again: the API dedupes.
    server.reset().await;
    Mock::given(method("POST")).and(path("/v1/people")).respond_with(Created).mount(&server).await;
    src.set_records("people", people(&["ada", "bob", "cy"]));
    let fresh = Pipeline::builder("p").source(src).sink(sink(&server, streams)).state(MemoryState::default());
    fresh.build().unwrap().run(RunOptions::default()).await.unwrap();
    let mut again: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned())
        .collect();
    let mut keys = keys;
    keys.sort();
    again.sort();
    assert_eq!(again, keys);
}

#[tokio::test]
async fn a_rejected_record_is_dead_lettered_and_a_down_api_fails_the_batch() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/people/2"))
        .respond_with(ResponseTemplate::new(422).set_body_string("name too short"))
        .mount(&server)
        .await;
    Mock::given(method("PUT")).respond_with(ResponseTemplate::new(204)).mount(&server).await;
    let streams = json!({ "people": { "mode": "upsert", "path": "/v1/people/{id}" } });
    let src = MemorySource::new("people", &["id"], people(&["ada", "b", "cy"]));
    let state = MemoryState::default();
    let p = Pipeline::builder("p").source(src).sink(sink(&server, streams.clone())).state(state.clone());
    let r = p.build().unwrap().run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["people"].written, r.streams["people"].dead_lettered), (2, 1));
    let dl = dovetail_core::HistoryStore::dead_letters(&state, Some("p"), Some("people"), 10).await.unwrap();
    assert!(dl[0].reason.contains("name too short"), "{}", dl[0].reason);

    server.reset().await;
    Mock::given(method("PUT")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let src = MemorySource::new("people", &["id"], people(&["x"]));
    let p = Pipeline::builder("q").source(src).sink(sink(&server, streams)).state(state);
    let p = p.build().unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    let err = r.streams["people"].error.clone().unwrap();
    assert!(err.contains("503") && err.contains("1 records wait in the outbox"), "{err}");

    // Back up: the next run delivers the queued record first.
    server.reset().await;
    Mock::given(method("PUT")).respond_with(ResponseTemplate::new(204)).mount(&server).await;
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["people"].outbox_delivered), (RunOutcome::Succeeded, 1));
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1, "delivered once; the source's re-read is unchanged");
    assert_eq!(sent[0].url.path(), "/v1/people/1");
}

#[test]
fn sink_config_mistakes_are_named() {
    let build = |streams: Value| {
        let cfg: RestSinkConfig =
            serde_json::from_value(json!({ "base_url": "http://127.0.0.1:1", "streams": streams })).unwrap();
        RestSink::build(cfg, &BuildCx::default()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(build(json!({ "a": { "mode": "upsert", "path": "/x" } })).contains("placeholders"));
    assert!(build(json!({ "a": { "mode": "create", "path": "/x", "batch": 10 } })).contains("`batch` needs"));
    assert!(build(json!({ "a": { "mode": "create", "path": "x" } })).contains("must start with `/`"));
}

#[tokio::test]
async fn upserts_in_batches_send_arrays_of_the_rendered_records() {
    let server = MockServer::start().await;
    Mock::given(method("PUT")).and(path("/v1/people")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let streams =
        json!({ "people": { "mode": "upsert", "path": "/v1/people", "batch": 2, "body": { "key": "{{id}}" } } });
    let src = MemorySource::new("people", &["id"], people(&["ada", "bob", "cy"]));
    let p = Pipeline::builder("p").source(src).sink(sink(&server, streams)).state(MemoryState::default());
    let r = p.build().unwrap().run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["people"].written), (RunOutcome::Succeeded, 3), "{:?}", r.error);
    let bodies: Vec<Value> =
        server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(bodies, vec![json!([{ "key": 1 }, { "key": 2 }]), json!([{ "key": 3 }])]);
}
