//! The HubSpot source through `dovetail run` into SQLite, on its recorded fixtures
//! (connectors/hubspot/fixtures, replayed by the testkit's server over loopback).

use std::path::PathBuf;
use std::process::Output;

use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::FixtureServer;
use serde_json::Value;

/// The private-app token the configs read from `HUBSPOT_TOKEN`; no output may contain it.
const TOKEN: &str = "pat-na1-e2e-fixture-token-not-real";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/hubspot/fixtures").join(format!("{name}.json"))
}

fn config(base_url: &str) -> String {
    format!(
        r#"[pipelines.crm.source]
kind = "hubspot"
token = "${{HUBSPOT_TOKEN}}"
base_url = "{base_url}"
objects = ["contacts"]
http = {{ retry = {{ max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2 }} }}

[pipelines.crm.sink]
kind = "sqlite"
path = "out.db"
"#
    )
}

async fn run(s: &Scratch) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("HUBSPOT_TOKEN", TOKEN);
    let out = output_async(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let report =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}", show(&out)));
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(TOKEN), "the token leaked into the output");
    (out, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_sync_page_by_page_into_sqlite_typed_by_the_properties_api() {
    let server = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.base_url()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "contacts", "written"), 3, "{report:#}");
    let drift = report["streams"]["contacts"]["drift"].as_array().cloned().unwrap_or_default();
    assert!(drift.is_empty(), "{report:#}");
    assert!(server.unmatched().is_empty(), "{:?}", server.unmatched());
    let rows: i64 = s.db("out.db").query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_added_in_the_portal_and_a_new_option_are_drift_with_their_paths() {
    let first = FixtureServer::from_file(fixture("contacts")).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&first.base_url()));
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    // The portal gained `favorite_color` and a lifecycle stage `evangelist`.
    let second = FixtureServer::from_file(fixture("contacts_drift")).await.unwrap();
    s.write("dovetail.toml", &config(&second.base_url()));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(second.unmatched().is_empty(), "{:?}", second.unmatched());
    let drift = report["streams"]["contacts"]["drift"].as_array().cloned().unwrap_or_default();
    let seen: Vec<(String, String)> = drift
        .iter()
        .map(|d| (d["path"].as_str().unwrap_or("").to_owned(), d["change"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(seen.contains(&("/properties/favorite_color".into(), "new_field".into())), "{report:#}");
    assert!(seen.contains(&("/properties/lifecyclestage".into(), "enum_value".into())), "{report:#}");
}
