//! Issue 24, the Stripe sink: records from a file become Stripe customers once each —
//! through responses lost after Stripe created the object (the retry, under the same
//! `Idempotency-Key`, is answered from Stripe's store and counted as a replay) — with each
//! Stripe id in the ledger, and a changed record updates its customer instead of creating.
//! A create whose outcome is unknown (a 500 Stripe stored under the key, a `400
//! idempotency_error` after the record changed) is resolved by looking the customer up by
//! `metadata[dovetail_key]`, never by a second create; a `409` (key in flight) is retried.

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

/// `dovetail.toml`: the JSONL file `STREAM.jsonl` keyed by `key` into the Stripe sink at
/// `base_url`, retrying for up to `max_elapsed_ms`, with `sink_extra` lines in its table.
fn files_to_stripe(s: &Scratch, base_url: &str, (stream, key): (&str, &str), max_elapsed_ms: u32, sink_extra: &str) {
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.crm]

[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "{stream}"
path = "{stream}.jsonl"
primary_key = ["{key}"]

[pipelines.crm.sink]
kind = "stripe"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base_url}"
http = {{ timeout_ms = 1000, retry = {{ base_delay_ms = 1, max_delay_ms = 5, max_elapsed_ms = {max_elapsed_ms} }} }}
{sink_extra}
"#
        ),
    );
}

fn setup(base_url: &str) -> Scratch {
    setup_with(base_url, "")
}

/// [`setup`] with more lines in the sink's table.
fn setup_with(base_url: &str, sink_extra: &str) -> Scratch {
    let s = Scratch::new();
    s.write("customers.jsonl", &lines(None));
    files_to_stripe(&s, base_url, ("customers", "email"), 10_000, sink_extra);
    s
}

/// Two prices keyed by `lookup_key` into a `prices` stream, the sink with `sink_extra`.
fn price_setup(base_url: &str, amount: u32, sink_extra: &str) -> Scratch {
    let s = Scratch::new();
    s.write("prices.jsonl", &price_lines(amount));
    files_to_stripe(&s, base_url, ("prices", "lookup_key"), 10_000, sink_extra);
    s
}

/// `gold` at `amount` cents a month and `silver` at 500, with a nickname.
fn price_lines(amount: u32) -> String {
    [("gold", amount), ("silver", 500)]
        .iter()
        .map(|(k, a)| {
            let p = json!({ "lookup_key": k, "unit_amount": a, "currency": "usd", "product": "prod_1",
                "recurring": { "interval": "month" }, "nickname": format!("{k} plan") });
            format!("{p}\n")
        })
        .collect()
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
    ledger_ids_of(s, "customers")
}

/// The ledger's destination ids of `stream`, by key.
fn ledger_ids_of(s: &Scratch, stream: &str) -> BTreeMap<String, Option<String>> {
    let db = s.db(".dovetail/state.db");
    let mut st = db
        .prepare("SELECT l.key, l.dest_id FROM ledger l JOIN streams s ON s.id = l.stream_id WHERE s.stream = ?1")
        .unwrap();
    st.query_map([stream], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
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
    assert_eq!(count(&report, "customers", "replayed"), 2, "replays counted in the run report: {report:#}");
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

/// Each customer's id is in the ledger, and Stripe holds exactly one customer per record.
fn assert_once_each_with_ids_in_ledger(stripe: &StripeDouble, s: &Scratch) {
    let objects = stripe.objects("/v1/customers");
    assert_eq!(objects.len(), CUSTOMERS, "one customer per record: {objects:#?}");
    let by_key: BTreeMap<String, Option<String>> = objects
        .iter()
        .map(|o| {
            (o["metadata"]["dovetail_key"].as_str().unwrap().to_owned(), Some(o["id"].as_str().unwrap().to_owned()))
        })
        .collect();
    assert_eq!(by_key.len(), CUSTOMERS);
    assert_eq!(ledger_ids(s), by_key, "every customer's Stripe id is in the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_stored_under_the_key_is_resolved_by_lookup_not_a_second_create() {
    let stripe = StripeDouble::start().await;
    // Two creates made the customer yet answer a 500, replayed to every retry of the key;
    // the first lookup lags behind the write, so the batch waits in the outbox for the next run.
    stripe.fail_creates(2, None);
    stripe.search_lag(1);
    let s = setup(&stripe.uri());
    let (out, report) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["customers"]["outbox_pending"], CUSTOMERS, "{report:#}");
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["customers"]["outbox_delivered"], CUSTOMERS, "{report:#}");
    let (created, replays, _) = stripe.writes();
    assert_eq!(created, CUSTOMERS, "no second create");
    assert!(replays >= 2, "the stored 500s were replayed: {replays}");
    assert_once_each_with_ids_in_ledger(&stripe, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_meeting_idempotency_error_is_resolved_by_lookup() {
    let stripe = StripeDouble::start().await;
    // A create made the customer, answered a final 500, and search had not caught up: the
    // record is dead-lettered with Stripe's Request-Id.
    stripe.fail_creates(1, Some("false"));
    stripe.search_lag(1);
    let s = setup(&stripe.uri());
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "dead_lettered"), 1, "{report:#}");
    let list = s.run(&["dead-letters", "list", "--pipeline", "crm", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("Request-Id req_w"), "the dead letter names the Request-Id: {text}");

    // The record changes and the file is read again: the same key with other parameters is
    // `400 idempotency_error`, resolved by finding the customer and updating it.
    s.write("customers.jsonl", &lines(Some(1)));
    let out = s.run(&["reset", "crm"]);
    assert!(out.status.success(), "{}", show(&out));
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let (created, _, updates) = stripe.writes();
    assert_eq!(created, CUSTOMERS, "no second create");
    assert!(updates.iter().any(|(_, p)| p["name"] == "Renamed 1"), "{updates:?}");
    assert_once_each_with_ids_in_ledger(&stripe, &s);
}

/// The state's pending creates of `customers`: (key, idempotency key).
fn pending_creates(s: &Scratch) -> Vec<(String, String)> {
    let db = s.db(".dovetail/state.db");
    let mut st =
        db.prepare("SELECT key, idempotency_key FROM pending_creates WHERE stream = 'customers' ORDER BY key").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// A create whose response is lost for good (every retry's too) leaves the batch in the
/// outbox and the create pending in the state. A day later Stripe has forgotten the key
/// (`expire_keys`; `key_life_secs = 0` stands for the day): the rerun looks the customer up
/// before creating, finds it, and creates none twice; each id is in the ledger and no create
/// is left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_lost_past_the_keys_life_is_looked_up_not_created_twice() {
    let stripe = StripeDouble::start().await;
    stripe.lose_responses(true);
    let s = setup_with(&stripe.uri(), "key_life_secs = 0");
    let (out, report) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["customers"]["outbox_pending"], CUSTOMERS, "{report:#}");
    assert_eq!(stripe.writes().0, 1, "the first create was made, its answer lost");
    let pending = pending_creates(&s);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].1.starts_with("dt-"), "{pending:?}");
    stripe.lose_responses(false);
    stripe.expire_keys();
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["customers"]["outbox_delivered"], CUSTOMERS, "{report:#}");
    assert_eq!(stripe.writes().0, CUSTOMERS, "no second create");
    assert_once_each_with_ids_in_ledger(&stripe, &s);
    assert_eq!(pending_creates(&s), [], "every pending create is cleared once its id is committed");
}

/// A 500 Stripe stored under the key, search lagging, then the key expires before the
/// rerun: the pending create is looked up first and found — one customer per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_under_an_expired_key_is_looked_up_not_created_twice() {
    let stripe = StripeDouble::start().await;
    stripe.fail_creates(1, None);
    stripe.search_lag(1);
    let s = setup_with(&stripe.uri(), "key_life_secs = 0");
    let (out, _) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    stripe.expire_keys();
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "dead_lettered"), 0, "{report:#}");
    assert_eq!(stripe.writes().0, CUSTOMERS, "no second create");
    assert_once_each_with_ids_in_ledger(&stripe, &s);
    assert_eq!(pending_creates(&s), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_flight_409_is_retried() {
    let stripe = StripeDouble::start().await;
    stripe.conflict_creates(2);
    let s = setup(&stripe.uri());
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "written"), CUSTOMERS as u64, "{report:#}");
    assert_eq!(stripe.writes().0, CUSTOMERS);
    assert_once_each_with_ids_in_ledger(&stripe, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_amount_change_is_dead_lettered_or_replaces_the_price_as_configured() {
    for replace in [false, true] {
        let stripe = StripeDouble::start().await;
        let extra = if replace { "price_changes = \"replace\"" } else { "" };
        let s = price_setup(&stripe.uri(), 1000, extra);
        let (out, _) = run(&s).await;
        assert!(out.status.success(), "{}", show(&out));
        let gold = stripe.objects("/v1/prices")[0]["id"].as_str().unwrap().to_owned();

        // The nickname alone changes: an update carrying only what a price update takes.
        s.write("prices.jsonl", &price_lines(1000).replace("gold plan", "Gold plan"));
        let (out, _) = run(&s).await;
        assert!(out.status.success(), "{}", show(&out));
        let (created, _, updates) = stripe.writes();
        assert_eq!(created, 2);
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0].0, format!("/v1/prices/{gold}"));
        assert_eq!(updates[0].1["nickname"], "Gold plan");
        assert!(updates[0].1.get("unit_amount").is_none(), "a price update never sends its amount: {updates:?}");

        s.write("prices.jsonl", &price_lines(1200).replace("gold plan", "Gold plan"));
        let (out, report) = run(&s).await;
        assert!(out.status.success(), "{}", show(&out));
        let (created, _, updates) = stripe.writes();
        let ids = ledger_ids_of(&s, "prices");
        if replace {
            assert_eq!(created, 3, "a new price");
            let new = stripe.objects("/v1/prices")[2].clone();
            assert_eq!((new["unit_amount"].as_str(), new["lookup_key"].as_str()), (Some("1200"), Some("gold")));
            assert_eq!(updates.last().unwrap(), &(format!("/v1/prices/{gold}"), json!({ "active": "false" })));
            assert_eq!(ids["\"gold\""].as_deref(), new["id"].as_str(), "the ledger holds the new price");
        } else {
            assert_eq!(created, 2, "no new price");
            assert_eq!(count(&report, "prices", "dead_lettered"), 1, "{report:#}");
            let list = s.run(&["dead-letters", "list", "--pipeline", "crm", "--json"]);
            let text = String::from_utf8_lossy(&list.stdout);
            assert!(text.contains("`unit_amount` cannot change") && text.contains("price_changes"), "{text}");
            assert_eq!(ids["\"gold\""].as_deref(), Some(gold.as_str()), "the ledger keeps the price");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_item_with_an_unknown_outcome_is_found_by_listing_its_customer() {
    let stripe = StripeDouble::start().await;
    stripe.fail_creates(1, Some("false"));
    let s = Scratch::new();
    let items: String = (1..=3)
        .map(|i| {
            let item = json!({ "customer": "cus_1", "amount": i * 100, "currency": "usd",
                "description": format!("seat {i}") });
            format!("{item}\n")
        })
        .collect();
    s.write("items.jsonl", &items);
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.crm]

[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "invoice_items"
path = "items.jsonl"
primary_key = ["description"]

[pipelines.crm.sink]
kind = "stripe"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{}"
http = {{ retry = {{ base_delay_ms = 1, max_delay_ms = 5, max_elapsed_ms = 3000 }} }}
"#,
            stripe.uri()
        ),
    );
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "invoice_items", "written"), 3, "{report:#}");
    assert_eq!(stripe.writes().0, 3, "no second create");
    let listed = stripe.queries("/v1/invoiceitems").await;
    assert!(listed.iter().any(|q| q.contains(&("customer".into(), "cus_1".into()))), "{listed:?}");
    let ids: Vec<String> =
        stripe.objects("/v1/invoiceitems").iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    let ledger: Vec<String> = ledger_ids_of(&s, "invoice_items").into_values().map(Option::unwrap).collect();
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|id| ids.contains(id)), "{ledger:?} vs {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_found_after_an_unknown_outcome_is_updated_as_a_price() {
    let stripe = StripeDouble::start().await;
    stripe.fail_creates(1, Some("false"));
    let s = price_setup(&stripe.uri(), 1000, "");
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "prices", "written"), 2, "{report:#}");
    let (created, _, updates) = stripe.writes();
    assert_eq!(created, 2, "no second create");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(updates[0].1.get("unit_amount").is_none(), "a price update never sends its amount: {updates:?}");
    assert_eq!(ledger_ids_of(&s, "prices").len(), 2);
}

/// Connect in the sink: a record's `stripe_account` sends its create to that connected
/// account (`Stripe-Account`) and is no parameter of the customer; a record without one goes
/// to the key's own account; one that is not an account id is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_stripe_account_sends_its_writes_to_that_connected_account() {
    let stripe = StripeDouble::start().await;
    let s = setup(&stripe.uri());
    let rows = [
        json!({ "email": "c1@example.com", "stripe_account": "acct_1Conn" }),
        json!({ "email": "c2@example.com" }),
        json!({ "email": "c3@example.com", "stripe_account": 42 }),
    ];
    s.write("customers.jsonl", &rows.iter().map(|r| format!("{r}\n")).collect::<String>());
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "written"), 2, "{report:#}");
    assert_eq!(count(&report, "customers", "dead_lettered"), 1, "{report:#}");
    let requests = stripe.server.received_requests().await.unwrap_or_default();
    let creates: Vec<(Option<String>, Value)> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/customers")
        .map(|r| {
            let account = r.headers.get("stripe-account").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (account, form_params(&String::from_utf8_lossy(&r.body)))
        })
        .collect();
    assert_eq!(creates.len(), 2, "{creates:?}");
    for (account, params) in &creates {
        assert!(params.get("stripe_account").is_none(), "{params}");
        let want = (params["email"] == "c1@example.com").then(|| "acct_1Conn".to_owned());
        assert_eq!(account, &want, "{params}");
    }
}

/// `dovetail explain` shows the Request-Id of the write that delivered a record: the create's
/// first, the update's after the record changed (each as the double answered it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_request_id_of_the_write_that_delivered_the_record() {
    let stripe = StripeDouble::start().await;
    let s = setup(&stripe.uri());
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let explain_cmd = |s: &Scratch, json: bool| {
        let mut args = vec!["explain", "crm", "customers", "c1@example.com"];
        args.extend(json.then_some("--json"));
        s.cmd(&args).env("STRIPE_API_KEY", KEY).output().expect("run dovetail")
    };
    let explain = |s: &Scratch| {
        let out = explain_cmd(s, true);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = explain(&s)["write"]["request_id"].as_str().map(str::to_owned);
    let created = created.unwrap_or_else(|| panic!("no request id: {}", explain(&s)));
    assert!(created.starts_with("req_w"), "{created}");
    let text = String::from_utf8_lossy(&explain_cmd(&s, false).stdout).into_owned();
    assert!(text.lines().any(|l| l.trim_start().starts_with("request id") && l.contains(&created)), "{text}");

    s.write("customers.jsonl", &lines(Some(1)));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "customers", "written"), 1, "{report:#}");
    let updated = explain(&s)["write"]["request_id"].as_str().unwrap_or_default().to_owned();
    assert!(updated.starts_with("req_w") && updated != created, "{updated} after {created}");
}

/// `price_changes = "replace"` creates a price like any create: recorded pending before it
/// is sent. Its response lost for good and the key expired (`key_life_secs = 0`), the rerun
/// looks the new price up (by `metadata[dovetail_key]`, not the replaced one) instead of
/// creating a second: one new price, the old one deactivated, the new id in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_replacement_lost_past_the_keys_life_is_looked_up_not_created_twice() {
    let stripe = StripeDouble::start().await;
    let s = price_setup(&stripe.uri(), 1000, "price_changes = \"replace\"\nkey_life_secs = 0");
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let gold = stripe.objects("/v1/prices")[0]["id"].as_str().unwrap().to_owned();

    stripe.lose_responses(true);
    s.write("prices.jsonl", &price_lines(1200));
    let (out, _) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(stripe.writes().0, 3, "the new price was made, its answer lost");
    let db = s.db(".dovetail/state.db");
    let pending: Vec<String> = db
        .prepare("SELECT key FROM pending_creates WHERE stream = 'prices'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pending, ["\"gold\""], "the replacement is pending");
    drop(db);

    stripe.lose_responses(false);
    stripe.expire_keys();
    let (out, _) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let (created, _, updates) = stripe.writes();
    assert_eq!(created, 3, "no second new price");
    let new = stripe.objects("/v1/prices")[2].clone();
    assert_eq!(new["unit_amount"].as_str(), Some("1200"));
    assert_eq!(updates.last().unwrap(), &(format!("/v1/prices/{gold}"), json!({ "active": "false" })));
    assert_eq!(ledger_ids_of(&s, "prices")["\"gold\""].as_deref(), new["id"].as_str());
    let db = s.db(".dovetail/state.db");
    let left: i64 = db.query_row("SELECT count(*) FROM pending_creates", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "cleared once the new id is committed");
}

/// `product_ids = "key"`: a product is created with an id derived from its key
/// (`dovetail_stripe::product_id`: `dt_` and the create key's hex), so a create lost past the key's life is found by `GET
/// /v1/products/{id}` — no search, whose lag would otherwise create it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_with_ids_from_their_keys_are_looked_up_by_id_not_search() {
    let stripe = StripeDouble::start().await;
    let s = Scratch::new();
    let products: String =
        ["basic", "pro"].iter().map(|sku| format!("{}\n", json!({ "sku": sku, "name": sku }))).collect();
    s.write("products.jsonl", &products);
    files_to_stripe(&s, &stripe.uri(), ("products", "sku"), 3_000, "key_life_secs = 0\nproduct_ids = \"key\"");
    stripe.lose_responses(true);
    let (out, _) = run(&s).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(stripe.writes().0, 1, "the first create was made, its answer lost");
    stripe.lose_responses(false);
    stripe.expire_keys();
    stripe.search_lag(100);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "products", "dead_lettered"), 0, "{report:#}");
    assert_eq!(stripe.writes().0, 2, "each product created once");
    let ids = ledger_ids_of(&s, "products");
    for sku in ["basic", "pro"] {
        // `dovetail_stripe::product_id`: the create's key function, as an id.
        let key = dovetail_core::Key::from_canonical(format!("\"{sku}\""));
        let idem = dovetail_core::record::idempotency_key("crm", "products", &key, &dovetail_core::ContentHash::VOID);
        let want = idem.replacen("dt-", "dt_", 1);
        assert_eq!(ids[&format!("\"{sku}\"")].as_deref(), Some(want.as_str()), "{ids:?}");
    }
    assert!(stripe.queries("/v1/products/search").await.is_empty(), "no search");
}
