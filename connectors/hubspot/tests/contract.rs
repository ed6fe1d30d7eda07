//! The connector contract suite (dovetail-testkit) over the HubSpot fixtures in
//! `fixtures/contract/` (HubSpot's list, search, error, 429 and token shapes).
//! `cargo xtask contract hubspot` runs it and prints the table. A stream's schema comes
//! from the properties API, read before any page: `setup.json` holds that answer (and the
//! account info) as setup exchanges every replay server of the suite also answers. The
//! schema and row snapshots are in tests/snapshots: when you change a fixture, update them
//! with `INSTA_UPDATE=always cargo test -p dovetail-hubspot --test contract` and review the
//! diff.

use dovetail_core::{BuildCx, SourceConnector};
use dovetail_hubspot::{HubspotConfig, HubspotSource};
use dovetail_testkit::{Skip, SourceContract};
use serde_json::{Value, json};

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
