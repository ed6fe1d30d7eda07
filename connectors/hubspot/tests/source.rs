//! The HubSpot source against its recorded fixtures, through the real engine.

use dovetail_core::testing::{MemorySink, MemoryState};
use dovetail_core::{BuildCx, DeleteMode, Pipeline, RunOptions, RunOutcome, Source, SourceConnector, StreamOptions};
use dovetail_hubspot::{HubspotConfig, HubspotSource};
use dovetail_testkit::FixtureServer;
use serde_json::json;

fn source(base_url: &str) -> HubspotSource {
    let config: HubspotConfig =
        serde_json::from_value(json!({ "base_url": base_url, "token": "test-token", "objects": ["contacts"] }))
            .unwrap();
    HubspotSource::build(config, &BuildCx::default()).unwrap()
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_arrives_with_values_typed_by_the_properties_api() {
    let server = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let p = Pipeline::builder("p").source(source(&server.base_url())).sink(sink.clone()).state(state).build().unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.streams["contacts"].written, 3);
    assert!(r.streams["contacts"].drift.is_empty(), "{:?}", r.streams["contacts"].drift);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    let rows = sink.rows("contacts");
    let first = rows.iter().find(|r| r["id"] == "1").unwrap();
    assert_eq!(first["properties"]["num_notes"], json!(2));
    assert_eq!(first["properties"]["hs_buying_role"], json!(["BUDGET_HOLDER", "DECISION_MAKER"]));
    assert_eq!(first["properties"]["hs_email_optout"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_schema_lists_each_property_with_its_type_and_options() {
    let server = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let s = source(&server.base_url());
    assert!(s.streams()[0].schema.is_none(), "nothing is asked before discovery");
    s.discover(&dovetail_core::Cx::default()).await.unwrap();
    let spec = s.streams().into_iter().next().unwrap();
    let props = &spec.schema.unwrap()["properties"]["properties"]["properties"];
    assert_eq!(props["lifecyclestage"]["enum"], json!(["lead", "customer", null]));
    assert_eq!(props["hs_buying_role"]["type"], json!(["array", "null"]));
    assert_eq!(props["num_notes"]["type"], json!(["number", "null"]));
    assert_eq!(props["date_of_birth"]["format"], "date");
    assert_eq!(spec.cursor_field.unwrap().to_string(), "updatedAt");
}

#[test]
fn config_mistakes_are_refused_naming_the_key() {
    let parse = |v: serde_json::Value| serde_json::from_value::<HubspotConfig>(v).map_err(|e| e.to_string());
    let e = parse(json!({ "token": "t", "objects": ["contacts"], "tokn": 1 })).unwrap_err();
    assert!(e.contains("unknown field `tokn`"), "{e}");
    let build = |v| HubspotSource::build(parse(v).unwrap(), &BuildCx::default()).unwrap_err().to_string();
    assert!(build(json!({ "objects": ["contacts"] })).contains("`token`"));
    let both = json!({ "token": "t", "objects": ["contacts"],
        "oauth": { "client_id": "c", "client_secret": "s", "refresh_token": "r" } });
    assert!(build(both).contains("not both"));
    let e = build(json!({ "token": "t", "objects": ["contacts"], "properties": { "deals": ["amount"] } }));
    assert!(e.contains("`properties.deals`"), "{e}");
    assert!(build(json!({ "token": "t", "objects": [] })).contains("`objects`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_searches_from_the_cursor_and_lists_what_was_archived_since() {
    let state = MemoryState::default();
    let sink = MemorySink::default();
    let first = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let p = Pipeline::builder("p")
        .source(source(&first.base_url()))
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap();
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["contacts"].written, 3);
    // The search answers contact 3 (inside the lookback): unchanged; contact 9 was archived.
    // Archived objects are deletes, never rows: contact 9 was never delivered, so there is
    // nothing to delete either (tests/tests/hubspot.rs deletes a delivered one).
    let second = FixtureServer::from_file(fixture("contacts_rerun")).await.unwrap();
    let p = Pipeline::builder("p")
        .source(source(&second.base_url()))
        .sink(sink.clone())
        .state(state)
        .stream("contacts", StreamOptions { delete_mode: DeleteMode::Delete, ..Default::default() })
        .build()
        .unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert!(second.unmatched().is_empty(), "{:?}", second.unmatched());
    let s = &r.streams["contacts"];
    assert_eq!((s.written, s.deleted), (0, 0), "{s:?}");
    let mut ids: Vec<String> = sink.rows("contacts").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_paced_at_five_a_second() {
    let (state, sink) = (MemoryState::default(), MemorySink::default());
    let first = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let p = Pipeline::builder("p")
        .source(source(&first.base_url()))
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap();
    p.run(RunOptions::default()).await.unwrap();
    // Three search pages: the second and the third wait 200 ms each.
    let second = FixtureServer::from_file(fixture("contacts_search_pages")).await.unwrap();
    let p = Pipeline::builder("p").source(source(&second.base_url())).sink(sink).state(state).build().unwrap();
    let started = std::time::Instant::now();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert!(second.unmatched().is_empty(), "{:?}", second.unmatched());
    assert_eq!(second.served().iter().sum::<usize>(), 6, "properties, account info, 3 searches, archived");
    assert!(started.elapsed() >= std::time::Duration::from_millis(400), "{:?}", started.elapsed());
}
