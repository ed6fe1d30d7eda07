//! The connector contract suite (dovetail-testkit) over the HubSpot fixtures in
//! `fixtures/contract/` (HubSpot's list, search, error, 429 and token shapes); the
//! associations batch read (`results[].to[].toObjectId` with `associationTypes` of
//! `category`, `typeId`, `label`, a `207` error for a contact without any, one object's
//! `paging.next.after` followed) is replayed from there on its own, its rows checked.
//! `cargo xtask contract hubspot` runs it and prints the table. A stream's schema comes
//! from the properties API, read before any page: `setup.json` holds that answer (and the
//! account info) as setup exchanges every replay server of the suite also answers. The
//! schema and row snapshots are in tests/snapshots: when you change a fixture, update them
//! with `INSTA_UPDATE=always cargo test -p dovetail-hubspot --test contract` and review the
//! diff. The sink's contract runs against a HubSpot double that keeps one object per
//! `id_property` value, as HubSpot's batch upsert does; each directory the suite hands out is
//! an object of its own (named from the path), so the checks do not see each other's writes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use dovetail_core::{BuildCx, SinkConnector, SourceConnector};
use dovetail_hubspot::{HubspotConfig, HubspotSink, HubspotSinkConfig, HubspotSource};
use dovetail_testkit::{SinkContract, Skip, SourceContract};
use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "pat-na1-fixture-token-not-real";

fn build(base_url: &str, overrides: Value) -> Result<HubspotSource, dovetail_core::Error> {
    let mut cfg = json!({
        "token": TOKEN,
        "base_url": base_url,
        "objects": ["contacts", "owners"],
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
    });
    for (k, v) in overrides.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    let config: HubspotConfig = serde_json::from_value(cfg).map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    HubspotSource::build(config, &BuildCx::default())
}

// Multi-threaded: the source reads the properties API on a thread of its own, blocking the
// caller of `streams`, while the replay server runs on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_honours_the_connector_contract() {
    let oauth = json!({ "token": null, "oauth": {
        "client_id": "fixture-client", "client_secret": "fixture-secret-not-real", "refresh_token": "fixture-refresh-not-real",
    }});
    SourceContract::http("hubspot", |url| build(url, json!({})))
        .fixtures_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/contract"))
        .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
        .setup("setup.json")
        .stream("contacts", "contacts.json")
        .rerun("contacts", "contacts_rerun.json")
        .stream("owners", "owners.json")
        .scenario("unauthorized", "contacts", "contacts_unauthorized.json")
        .scenario("server_error_then_ok", "contacts", "contacts_server_error.json")
        .scenario("rate_limited_then_ok", "contacts", "contacts_rate_limited.json")
        .refreshes_on_401("contacts", "contacts_oauth_refresh.json", move |url| build(url, oauth.clone()))
        .skip(
            "sends_the_pinned_version_header",
            Skip::Because(
                "HubSpot's API version is in the path (`/crm/objects/2026-09/contacts`), not a header".into(),
            ),
        )
        .secret(TOKEN)
        .secret("fixture-secret-not-real")
        .secret("fixture-refresh-not-real")
        .example_config::<HubspotConfig>(json!({
            "token": "${HUBSPOT_TOKEN}", "objects": ["contacts", "companies", "owners"],
            "properties": { "contacts": ["email", "firstname", "lastname", "lifecyclestage"] },
        }))
        .run()
        .await;
}

/// The associations batch read in HubSpot's shape (`fixtures/contract/contacts_to_companies.json`),
/// replayed with the properties API of `setup.json`: contact 101's companies come in two
/// answers (its `paging.next.after` followed), 102 has none (a `207` error for its id), 103
/// is on the listing's second page; each association type is a row. Not a case of the suite
/// above: its record checks take each exchange for a page and the first answer's objects for
/// the stream's records, while an association page is a listing of ids plus batch reads
/// whose nested `to[].associationTypes[]` are the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_associations_fixture_yields_a_row_per_association_type() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/contract");
    let load = |name: &str| dovetail_testkit::Fixture::load(format!("{dir}/{name}")).unwrap();
    let server =
        dovetail_testkit::FixtureServer::start_with_setup(load("contacts_to_companies.json"), load("setup.json"))
            .await
            .unwrap();
    let source = build(&server.base_url(), json!({ "associations": ["contacts:companies"] })).unwrap();
    let (sink, state) = (dovetail_core::testing::MemorySink::default(), dovetail_core::testing::MemoryState::default());
    let p = dovetail_core::Pipeline::builder("p").source(source).sink(sink.clone()).state(state).build().unwrap();
    let options = dovetail_core::RunOptions { streams: vec!["contacts_to_companies".into()], ..Default::default() };
    let r = p.run(options).await.unwrap();
    assert_eq!(r.outcome, dovetail_core::RunOutcome::Succeeded, "{:?}", r.error);
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    assert!(server.unused().is_empty(), "every recorded exchange is asked for: {:?}", server.unused());
    let mut rows: Vec<Value> = sink.rows("contacts_to_companies");
    rows.sort_by_key(|r| (r["from_id"].to_string(), r["to_id"].to_string(), r["type_id"].as_i64()));
    let row = |from: &str, to: &str, type_id: i64, category: &str, label: Value| json!({ "from_id": from, "to_id": to, "type_id": type_id, "category": category, "label": label });
    assert_eq!(
        rows,
        [
            row("101", "5001", 1, "HUBSPOT_DEFINED", json!("Primary")),
            row("101", "5001", 279, "HUBSPOT_DEFINED", Value::Null),
            row("101", "5002", 279, "HUBSPOT_DEFINED", Value::Null),
            row("101", "5003", 37, "USER_DEFINED", json!("Billing contact")),
            row("101", "5003", 279, "HUBSPOT_DEFINED", Value::Null),
            row("103", "5001", 279, "HUBSPOT_DEFINED", Value::Null),
        ]
    );
    assert_eq!(r.streams["contacts_to_companies"].written, 6);
}

/// Objects by object name: each a map of property → value, as HubSpot stores text.
type Store = Arc<Mutex<HashMap<String, Vec<Map<String, Value>>>>>;

/// The object a directory writes to: a hash of its whole path, so two checks never share one.
fn object(dir: &Path) -> String {
    let h = dir
        .to_string_lossy()
        .bytes()
        .fold(1469598103934665603u64, |h, b| (h ^ u64::from(b)).wrapping_mul(1099511628211));
    format!("p_contract{h:x}")
}

fn object_of(req: &Request) -> String {
    req.url.path().split('/').nth(4).unwrap_or_default().to_owned()
}

struct Upsert(Store);

impl Respond for Upsert {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let mut store = self.0.lock().unwrap();
        let objects = store.entry(object_of(req)).or_default();
        let mut results = Vec::new();
        for input in body["inputs"].as_array().into_iter().flatten() {
            let (prop, id) = (input["idProperty"].as_str().unwrap_or(""), &input["id"]);
            let at = match objects.iter().position(|o| o.get(prop) == Some(id)) {
                Some(i) => i,
                None => {
                    objects.push(Map::new());
                    objects.len() - 1
                }
            };
            objects[at].extend(input["properties"].as_object().cloned().unwrap_or_default());
            results.push(json!({ "id": (at + 1).to_string(), "properties": objects[at] }));
        }
        ResponseTemplate::new(200).set_body_json(json!({ "status": "COMPLETE", "results": results }))
    }
}

/// What an object holds, its values back in the contract's JSON types: `id` and `amount` as
/// exact numbers, `meta` as the document it was sent as.
fn read(store: &Store, dir: &Path) -> Vec<Value> {
    let store = store.lock().unwrap();
    let number = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| serde_json::from_str::<Value>(s).ok());
    store
        .get(&object(dir))
        .into_iter()
        .flatten()
        .map(|o| {
            json!({
                "id": number(o.get("id")), "name": o.get("name"), "amount": number(o.get("amount")),
                "meta": number(o.get("meta")),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubspot_sink_honours_the_sink_contract() {
    let server = MockServer::start().await;
    let props = json!({ "results": [
        { "name": "id", "type": "number", "fieldType": "number", "options": [] },
        { "name": "name", "type": "string", "fieldType": "text", "options": [] },
        { "name": "amount", "type": "number", "fieldType": "number", "options": [] },
        { "name": "meta", "type": "string", "fieldType": "textarea", "options": [] },
    ]});
    Mock::given(method("GET"))
        .and(path_regex("^/crm/properties/2026-09/[a-z0-9_]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(props))
        .mount(&server)
        .await;
    let store = Store::default();
    Mock::given(method("POST"))
        .and(path_regex("^/crm/objects/2026-09/[a-z0-9_]+/batch/upsert$"))
        .respond_with(Upsert(store.clone()))
        .mount(&server)
        .await;
    let uri = server.uri();
    SinkContract::new(
        "hubspot",
        move |dir| {
            let config: HubspotSinkConfig = serde_json::from_value(json!({
                "token": "pat-na1-sink-contract-not-real", "base_url": uri, "object": object(dir), "id_property": "id",
                "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
            }))
            .map_err(|e| dovetail_core::Error::config(e.to_string()))?;
            HubspotSink::build(config, &BuildCx::default())
        },
        move |dir, _stream| Ok(read(&store, dir)),
    )
    .bad_record(json!({ "id": 99, "name": "x", "shoe_size": 44 }))
    .example_config::<HubspotSinkConfig>(json!({
        "token": "${HUBSPOT_TOKEN}", "object": "contacts", "id_property": "email",
    }))
    .run()
    .await;
}
