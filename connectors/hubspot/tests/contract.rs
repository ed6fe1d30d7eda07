//! The connector contract suite (dovetail-testkit) over the HubSpot fixtures in
//! `fixtures/contract/` (HubSpot's list, search, error, 429 and token shapes).
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
