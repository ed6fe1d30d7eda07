//! Issue 24, the Stripe sink: records from a file become Stripe customers once each —
//! through responses lost after Stripe created the object (the retry, under the same
//! `Idempotency-Key`, is answered from Stripe's store and counted as a replay) — with each
//! Stripe id in the ledger, and a changed record updates its customer instead of creating.

use std::collections::BTreeMap;
use std::process::Output;

use dovetail_e2e::stripe::{KEY, StripeDouble, form_params};
use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};

const CUSTOMERS: usize = 6;

fn lines(renamed: Option<usize>) -> String {
    (1..=CUSTOMERS)
        .map(|i| {
            let name = if renamed == Some(i) { format!("Renamed {i}") } else { format!("Customer {i}") };
            format!("{}\n", json!({ "email": format!("c{i}@example.com"), "name": name }))
        })
        .collect()
}

fn setup(base_url: &str) -> Scratch {
    let s = Scratch::new();
    s.write("customers.jsonl", &lines(None));
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.crm]

[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "customers"
path = "customers.jsonl"
primary_key = ["email"]

[pipelines.crm.sink]
kind = "stripe"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base_url}"
http = {{ timeout_ms = 500, retry = {{ base_delay_ms = 1, max_delay_ms = 5, max_elapsed_ms = 10000 }} }}
"#
        ),
    );
    s
}

async fn run(s: &Scratch) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("STRIPE_API_KEY", KEY);
    let out = output_async(cmd).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(KEY), "the key leaked:\n{text}");
    (out, report)
}

/// The ledger's destination ids of `customers`, by key.
fn ledger_ids(s: &Scratch) -> BTreeMap<String, Option<String>> {
    let db = s.db(".dovetail/state.db");
    let mut st = db
        .prepare(
            "SELECT l.key, l.dest_id FROM ledger l JOIN streams s ON s.id = l.stream_id WHERE s.stream = 'customers'",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_responses_are_replayed_not_created_again_and_changes_update() {
    let stripe = StripeDouble::start().await;
    stripe.drop_creates(2);
    let s = setup(&stripe.uri());
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "written"), CUSTOMERS as u64, "{report:#}");
    let (created, replays, updates) = stripe.writes();
    assert_eq!((created, replays, updates.len()), (CUSTOMERS, 2, 0), "each customer created once");
    let objects = stripe.objects("/v1/customers");
    let mut by_key = BTreeMap::new();
    for o in &objects {
        let key = o["metadata"]["dovetail_key"].as_str().unwrap_or_else(|| panic!("no dovetail_key in {o}"));
        assert_eq!(key, format!("\"{}\"", o["email"].as_str().unwrap()), "{o}");
        by_key.insert(key.to_owned(), Some(o["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(ledger_ids(&s), by_key, "every customer's Stripe id is in the ledger");
    let creates: Vec<_> = stripe.server.received_requests().await.unwrap_or_default();
    for r in creates.iter().filter(|r| r.url.path() == "/v1/customers") {
        assert!(r.headers.get("idempotency-key").is_some(), "a create without Idempotency-Key");
        assert_eq!(r.headers.get("content-type").unwrap(), "application/x-www-form-urlencoded");
    }

    s.write("customers.jsonl", &lines(Some(3)));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "written"), 1, "{report:#}");
    let (created, _, updates) = stripe.writes();
    assert_eq!(created, CUSTOMERS, "no create on the second run");
    let id = by_key["\"c3@example.com\""].clone().unwrap();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].0, format!("/v1/customers/{id}"));
    assert_eq!(updates[0].1["name"], "Renamed 3");
    assert_eq!(form_params("name=a&metadata[k]=v"), json!({ "name": "a", "metadata": { "k": "v" } }));
}
