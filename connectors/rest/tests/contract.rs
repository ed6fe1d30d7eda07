//! The connector contract suite (dovetail-testkit) for the declarative REST source, over
//! fixtures in the testkit format written by hand (connectors/rest/fixtures/): a two-page
//! cursor listing, the same listing behind a 503, and behind an OAuth2 token that is
//! refused once (401, a new token, the pages); and the REST sink (upserts by PUT) through
//! the sink contract against the fake vendor. `cargo xtask contract rest` runs it.

use std::path::Path;

use dovetail_core::{BuildCx, SinkConnector, SourceConnector};
use dovetail_fake_vendor::{FakeVendor, VendorConfig, VendorHandle};
use dovetail_rest::{RestSink, RestSinkConfig, RestSource, RestSourceConfig};
use dovetail_testkit::{SinkContract, SourceContract};
use serde_json::{Value, json};

const CLIENT_SECRET: &str = "rest-fixture-client-secret-not-real";

fn build(base_url: &str) -> Result<RestSource, dovetail_core::Error> {
    build_with(base_url, None)
}

/// The items source; with OAuth2 client credentials against the replay server's token URL.
fn build_oauth(base_url: &str) -> Result<RestSource, dovetail_core::Error> {
    let auth = json!({
        "type": "oauth2_client_credentials", "token_url": format!("{base_url}/oauth/token"),
        "client_id": "dovetail-contract", "client_secret": CLIENT_SECRET,
    });
    build_with(base_url, Some(auth))
}

fn build_with(base_url: &str, auth: Option<serde_json::Value>) -> Result<RestSource, dovetail_core::Error> {
    let config: RestSourceConfig = serde_json::from_value(json!({
        "base_url": base_url,
        "auth": auth,
        "api_version": { "header": "X-Api-Version", "value": "2026-01-01" },
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
        "streams": [{
            "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"],
            "query": { "limit": "2" },
            "pagination": { "type": "cursor", "pointer": "/meta/next", "param": "cursor" },
            // Declared, so the schema snapshot is checked and drift is measured against it.
            "schema": {
                "type": "object",
                "properties": {
                    "id": { "type": "integer" },
                    "name": { "type": "string" },
                    "price": { "type": "string" },
                    "stock": { "type": "integer" },
                    "updated_at": { "type": "string", "format": "date-time" }
                },
                "required": ["id", "updated_at"]
            },
        }],
    }))
    .map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    RestSource::build(config, &BuildCx::default())
}

#[tokio::test]
async fn rest_source_honours_the_connector_contract() {
    SourceContract::http("rest", build)
        .fixtures_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
        .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
        .stream("items", "items.json")
        .scenario("server_error_then_ok", "items", "items_server_error.json")
        .scenario("unauthorized", "items", "items_unauthorized.json")
        .scenario("rate_limited_then_ok", "items", "items_rate_limited.json")
        .refreshes_on_401("items", "items_oauth_refresh.json", build_oauth)
        .version_header("x-api-version")
        .secret(CLIENT_SECRET)
        .example_config::<RestSourceConfig>(json!({
            "base_url": "https://api.example.com",
            "streams": [{ "name": "items", "path": "/v1/items", "records": "/data", "primary_key": ["id"] }],
        }))
        .run()
        .await;
}

/// Each temp dir the sink contract uses gets its own namespace of external ids
/// (`<dir name>-<id>`), so its checks do not see each other's objects in the one vendor.
fn namespace(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().replace(|c: char| !c.is_ascii_alphanumeric(), "")).unwrap_or_default()
}

/// What the vendor holds under the dir's namespace, with our `id` back in place of the
/// vendor's own object id (which it keeps across upserts).
fn read_vendor(vendor: &VendorHandle, dir: &Path) -> Vec<Value> {
    let prefix = format!("{}-", namespace(dir));
    vendor
        .created()
        .into_iter()
        .filter_map(|mut o| {
            let ext = o.get("external_id")?.as_str()?.strip_prefix(&prefix)?.to_owned();
            o["id"] = serde_json::from_str(&ext).unwrap_or(Value::String(ext));
            o.as_object_mut()?.remove("external_id");
            Some(o)
        })
        .collect()
}

#[tokio::test]
async fn rest_sink_honours_the_sink_contract() {
    let vendor = std::sync::Arc::new(FakeVendor::start(VendorConfig::default()).await.expect("the fake vendor starts"));
    let base_url = vendor.base_url();
    SinkContract::new(
        "rest",
        move |dir| {
            let config: RestSinkConfig = serde_json::from_value(json!({
                "base_url": base_url,
                "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
                "streams": { "contract_items": { "mode": "upsert", "path": format!("/v1/items/{}-{{id}}", namespace(dir)) } },
            }))
            .map_err(|e| dovetail_core::Error::config(e.to_string()))?;
            RestSink::build(config, &BuildCx::default())
        },
        move |dir, _stream| Ok(read_vendor(&vendor, dir)),
    )
    .refuses_nothing(
        "the fake vendor answers every PUT with 200; a refused write (4xx → dead letter) is covered by tests/sink.rs",
    )
    .example_config::<RestSinkConfig>(json!({
        "base_url": "https://api.example.com",
        "streams": { "contacts": { "mode": "create", "path": "/v1/contacts", "update_path": "/v1/contacts/{id}" } },
    }))
    .run()
    .await;
}
