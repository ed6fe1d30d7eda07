//! The HubSpot and Stripe connectors composed in Rust with `Pipeline::builder` — the same
//! builder the `dovetail` binary fills from TOML (docs/connectors/hubspot.md and stripe.md,
//! "From Rust"): each source into SQLite, each sink fed from a JSONL file, against the
//! doubles over loopback; a second run writes nothing and sends no write.

use std::sync::{Arc, Mutex};

use dovetail_core::{BuildCx, Pipeline, RunOptions, SinkConnector, SourceConnector, StreamOptions, SyncMode};
use dovetail_e2e::hubspot as double;
use dovetail_e2e::stripe::{KEY, StripeDouble, customers, now};
use dovetail_files::FilesSource;
use dovetail_hubspot::{HubspotSink, HubspotSource};
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use dovetail_state::SqliteState;
use dovetail_stripe::{StripeSink, StripeSource};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A fast retry policy for the doubles.
fn http() -> Value {
    json!({ "timeout_ms": 2000, "retry": { "base_delay_ms": 1, "max_delay_ms": 5, "max_elapsed_ms": 5000 } })
}

fn cx(dir: &tempfile::TempDir, pipeline: &str) -> BuildCx {
    BuildCx { base_dir: dir.path().to_path_buf(), pipeline: pipeline.into(), ..Default::default() }
}

fn rows(dir: &tempfile::TempDir, sql: &str) -> i64 {
    rusqlite::Connection::open(dir.path().join("warehouse.db")).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// HubSpot's contacts at `base_url` into `warehouse.db` in `dir`, composed in code.
fn contacts_into_sqlite(base_url: &str, dir: &tempfile::TempDir) -> Pipeline {
    let config = serde_json::from_value(json!({
        "token": "pat-na1-from-rust-not-real", "base_url": base_url, "objects": ["contacts"], "http": http(),
    }))
    .unwrap();
    Pipeline::builder("crm")
        .source(HubspotSource::build(config, &cx(dir, "crm")).unwrap())
        .sink(SqliteSink::build(SqliteConfig::new("warehouse.db"), &cx(dir, "crm")).unwrap())
        .state(SqliteState::open(dir.path().join("state.db")).unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_contacts_into_sqlite_from_rust() {
    const T1: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    let contacts: double::Contacts =
        Arc::new(Mutex::new((1..=250).map(|id| (id, T1 + id as i64 * 1000, format!("c{id}@example.com"))).collect()));
    let (server, _, _) = double::start(contacts.clone(), None, Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = contacts_into_sqlite(&server.uri(), &dir);
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["contacts"].written, 250, "{report:?}");
    assert_eq!(rows(&dir, "SELECT count(*) FROM contacts"), 250);
    // Ten change: the next run searches from its cursor and writes those ten.
    for c in contacts.lock().unwrap().iter_mut().filter(|c| c.0 <= 10) {
        c.1 += 86_400_000;
        c.2 = format!("v2-{}", c.2);
    }
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["contacts"].written, 10, "{report:?}");
    assert_eq!(rows(&dir, "SELECT count(*) FROM contacts WHERE json_extract(properties, '$.email') LIKE 'v2-%'"), 10);
}

/// HubSpot's batch upsert by `email`, answering each input with an id; the emails sent.
struct Upsert(Arc<Mutex<Vec<String>>>);

impl Respond for Upsert {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        let emails: Vec<String> = inputs.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect();
        self.0.lock().unwrap().extend(emails.iter().cloned());
        let results: Vec<Value> = emails
            .iter()
            .map(|e| json!({ "id": format!("{}", 1000 + e.len()), "properties": { "email": e } }))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "status": "COMPLETE", "results": results, "errors": [] }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonl_file_into_hubspot_contacts_from_rust() {
    let server = MockServer::start().await;
    let props = json!({ "results": [
        { "name": "email", "type": "string", "fieldType": "text", "options": [] },
        { "name": "firstname", "type": "string", "fieldType": "text", "options": [] },
    ]});
    Mock::given(method("GET"))
        .and(path("/crm/properties/2026-09/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(props))
        .mount(&server)
        .await;
    let sent = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/crm/objects/2026-09/contacts/batch/upsert"))
        .respond_with(Upsert(sent.clone()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=5)
        .map(|i| json!({ "email": format!("p{i}@example.com"), "firstname": format!("P{i}") }).to_string())
        .collect();
    std::fs::write(dir.path().join("contacts.jsonl"), lines.join("\n") + "\n").unwrap();
    let source = serde_json::from_value(json!({
        "streams": [{ "name": "contacts", "path": "contacts.jsonl", "primary_key": ["email"] }]
    }))
    .unwrap();
    let sink = serde_json::from_value(json!({
        "token": "pat-na1-from-rust-not-real", "base_url": server.uri(), "object": "contacts",
        "id_property": "email", "http": http(),
    }))
    .unwrap();
    let pipeline = Pipeline::builder("reverse")
        .source(FilesSource::build(source, &cx(&dir, "reverse")).unwrap())
        .sink(HubspotSink::build(sink, &cx(&dir, "reverse")).unwrap())
        .state(SqliteState::open(dir.path().join("state.db")).unwrap())
        .stream("contacts", StreamOptions { sync_mode: SyncMode::Incremental, ..Default::default() })
        .build()
        .unwrap();
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["contacts"].written, 5, "{report:?}");
    let mut got = sent.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, (1..=5).map(|i| format!("p{i}@example.com")).collect::<Vec<_>>());
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["contacts"].written, 0, "{report:?}");
    assert_eq!(sent.lock().unwrap().len(), 5, "a second run sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_customers_into_sqlite_from_rust() {
    let stripe = StripeDouble::start().await;
    let t = now() - 3_600;
    stripe.add("/v1/customers", customers(1..=120, |i| t + i64::from(i)));
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::from_value(json!({
        "api_key": KEY, "base_url": stripe.uri(), "streams": ["customers"], "http": http(),
    }))
    .unwrap();
    let pipeline = Pipeline::builder("payments")
        .source(StripeSource::build(config, &cx(&dir, "payments")).unwrap())
        .sink(SqliteSink::build(SqliteConfig::new("warehouse.db"), &cx(&dir, "payments")).unwrap())
        .state(SqliteState::open(dir.path().join("state.db")).unwrap())
        .build()
        .unwrap();
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["customers"].written, 120, "{report:?}");
    assert_eq!(rows(&dir, "SELECT count(DISTINCT id) FROM customers"), 120);
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["customers"].written, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonl_file_into_stripe_customers_from_rust() {
    let stripe = StripeDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> =
        (1..=4).map(|i| json!({ "email": format!("s{i}@example.com"), "name": format!("S{i}") }).to_string()).collect();
    std::fs::write(dir.path().join("customers.jsonl"), lines.join("\n") + "\n").unwrap();
    let source = serde_json::from_value(json!({
        "streams": [{ "name": "customers", "path": "customers.jsonl", "primary_key": ["email"] }]
    }))
    .unwrap();
    let sink = serde_json::from_value(json!({ "api_key": KEY, "base_url": stripe.uri(), "http": http() })).unwrap();
    let pipeline = Pipeline::builder("billing")
        .source(FilesSource::build(source, &cx(&dir, "billing")).unwrap())
        .sink(StripeSink::build(sink, &cx(&dir, "billing")).unwrap())
        .state(SqliteState::open(dir.path().join("state.db")).unwrap())
        .stream("customers", StreamOptions { sync_mode: SyncMode::Incremental, ..Default::default() })
        .build()
        .unwrap();
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["customers"].written, 4, "{report:?}");
    let created = stripe.objects("/v1/customers");
    let mut emails: Vec<&str> = created.iter().filter_map(|c| c["email"].as_str()).collect();
    emails.sort_unstable();
    assert_eq!(emails, ["s1@example.com", "s2@example.com", "s3@example.com", "s4@example.com"]);
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["customers"].written, 0, "{report:?}");
    assert_eq!(stripe.writes().0, 4, "one create each, none again");
}

/// The properties API (with `favorite_color` once `added`) and one list page of two
/// contacts carrying the properties the request names.
struct Portal(Arc<std::sync::atomic::AtomicBool>);

impl Respond for Portal {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let added = self.0.load(std::sync::atomic::Ordering::SeqCst);
        if req.url.path().starts_with("/crm/properties/") {
            let mut props = vec![
                json!({ "name": "email", "type": "string", "fieldType": "text", "options": [] }),
                json!({ "name": "lastmodifieddate", "type": "datetime", "fieldType": "date", "options": [] }),
            ];
            if added {
                props.push(json!({ "name": "favorite_color", "type": "string", "fieldType": "text", "options": [] }));
            }
            return ResponseTemplate::new(200).set_body_json(json!({ "results": props }));
        }
        if req.url.path().starts_with("/account-info/") {
            return ResponseTemplate::new(200).set_body_json(json!({ "portalId": 1, "timeZone": "UTC" }));
        }
        let asked: Vec<String> = match req.url.query_pairs().find(|(k, _)| k == "properties") {
            Some((_, v)) => v.split(',').map(str::to_owned).collect(),
            None => serde_json::from_slice::<Value>(&req.body).ok().map_or_else(Vec::new, |b| {
                b["properties"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }),
        };
        let results: Vec<Value> = (1..=2)
            .map(|id| {
                let mut p = json!({ "email": format!("c{id}@example.com"), "lastmodifieddate": "2026-11-01T00:00:00Z" });
                // HubSpot sends the properties a request names, no others.
                if added && asked.iter().any(|a| a == "favorite_color") {
                    p["favorite_color"] = json!("teal");
                }
                json!({ "id": id.to_string(), "properties": p, "createdAt": "2026-11-01T00:00:00Z",
                    "updatedAt": if added { "2026-11-02T00:00:00Z" } else { "2026-11-01T00:00:00Z" }, "archived": false })
            })
            .collect();
        // The list, the archived listing and the search answer alike: archived objects have
        // no `archivedAt` here, so the source keeps none of them.
        let archived = req.url.query_pairs().any(|(k, v)| k == "archived" && v == "true");
        let results = if archived { Vec::new() } else { results };
        ResponseTemplate::new(200).set_body_json(json!({ "total": results.len(), "results": results }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_pipeline_reads_the_properties_again_each_run_and_reports_a_new_one_as_drift() {
    let server = MockServer::start().await;
    let added = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Mock::given(wiremock::matchers::any()).respond_with(Portal(added.clone())).mount(&server).await;
    let dir = tempfile::tempdir().unwrap();
    // One pipeline, run twice, as `dovetail run --every` and a worker do.
    let pipeline = contacts_into_sqlite(&server.uri(), &dir);
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["contacts"].written, 2, "{report:?}");
    added.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    let drift: Vec<String> = report.streams["contacts"].drift.iter().map(|d| format!("{d:?}")).collect();
    assert!(
        drift.iter().any(|d| d.contains("/properties/favorite_color") && d.to_lowercase().contains("new")),
        "the added property is drift on the next run: {drift:#?}"
    );
}
