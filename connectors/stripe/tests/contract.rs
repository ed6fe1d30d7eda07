//! The connector contract suite (dovetail-testkit) over the Stripe fixtures (Stripe's list,
//! error and rate-limit shapes: `connectors/stripe/fixtures`). `cargo xtask contract stripe`
//! runs it and prints the table. `customers.json` ends with the one request a resumed pass
//! adds (the window from its last second on, empty here), which `resumes_from_a_checkpoint`
//! sends. The schema and row snapshots are in tests/snapshots: when
//! you change a fixture, update them with
//! `INSTA_UPDATE=always cargo test -p dovetail-stripe --test contract` and review the diff.

use std::time::{Duration, UNIX_EPOCH};

use dovetail_core::{BuildCx, SourceConnector};
use dovetail_http::FakeClock;
use dovetail_stripe::{StripeConfig, StripeSource};
use dovetail_testkit::{Skip, SourceContract};
use serde_json::{Value, json};

const KEY: &str = "sk_test_fixture_key_not_real_4eC39HqLyjWDarjtT1zdp7dc";

fn build(base_url: &str, overrides: Value) -> Result<StripeSource, dovetail_core::Error> {
    let mut cfg = json!({
        "api_key": KEY,
        "base_url": base_url,
        "expand": { "charges": ["balance_transaction"] },
        "event_types": ["customer.*"],
        "http": { "retry": { "max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 2 } },
    });
    for (k, v) in overrides.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    let config: StripeConfig = serde_json::from_value(cfg).map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    StripeSource::build_at(config, &BuildCx::default(), FakeClock::starting_at(UNIX_EPOCH + NOW))
}

/// 2023-09-01T00:00:00Z: the fixtures' objects were created before, their events within
/// Stripe's 30-day retention.
const NOW: Duration = Duration::from_secs(1_693_526_400);

#[tokio::test]
async fn stripe_honours_the_connector_contract() {
    SourceContract::http("stripe", |url| build(url, json!({})))
        .fixtures_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
        .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
        .stream("customers", "customers.json")
        .rerun("customers", "customers_rerun.json")
        .stream("products", "products.json")
        .rerun("products", "products_rerun.json")
        .stream("prices", "prices.json")
        .rerun("prices", "prices_rerun.json")
        .stream("charges", "charges.json")
        .rerun("charges", "charges_rerun.json")
        .stream("payment_intents", "payment_intents.json")
        .rerun("payment_intents", "payment_intents_rerun.json")
        .stream("invoices", "invoices.json")
        .rerun("invoices", "invoices_rerun.json")
        .stream("subscriptions", "subscriptions.json")
        .rerun("subscriptions", "subscriptions_rerun.json")
        .stream("refunds", "refunds.json")
        .rerun("refunds", "refunds_rerun.json")
        .stream("balance_transactions", "balance_transactions.json")
        .rerun("balance_transactions", "balance_transactions_rerun.json")
        .stream("events", "events.json")
        .rerun("events", "events_rerun.json")
        .scenario("unauthorized", "customers", "customers_unauthorized.json")
        .scenario("server_error_then_ok", "customers", "customers_server_error.json")
        .scenario("rate_limited_then_ok", "customers", "customers_rate_limited.json")
        .skip("refreshes_on_401", Skip::VendorCannot("Stripe API keys are static: nothing to refresh".into()))
        .version_header("stripe-version")
        .secret(KEY)
        .example_config::<StripeConfig>(json!({
            "api_key": "${STRIPE_API_KEY}", "streams": ["customers", "charges", "events"],
            "accounts": ["acct_1Nv0FGQ9RKHgCVdK"], "expand": { "charges": ["balance_transaction"] },
            "start_date": "2024-01-01T00:00:00Z",
        }))
        .run()
        .await;
}

#[test]
fn accounts_take_a_list_or_the_word_all_and_nothing_else() {
    let parse = |v: Value| serde_json::from_value::<StripeConfig>(json!({ "api_key": KEY, "accounts": v }));
    assert!(parse(json!("all")).is_ok());
    assert!(parse(json!(["acct_1"])).is_ok());
    assert!(parse(json!("some")).is_err());
    let bad = parse(json!(["cus_1"])).unwrap();
    let e = StripeSource::build(bad, &BuildCx::default()).unwrap_err();
    assert!(e.to_string().contains("`accounts`: `cus_1` is not a Stripe account id"), "{e}");
}

#[test]
fn streams_and_expansions_are_checked_against_the_stream_table() {
    let cfg = |v: Value| serde_json::from_value::<StripeConfig>(v).unwrap();
    let e = StripeSource::build(cfg(json!({ "api_key": KEY, "streams": ["custommers"] })), &BuildCx::default())
        .unwrap_err();
    assert!(e.to_string().contains("no stream `custommers`; the streams are customers, products"), "{e}");
    let e = StripeSource::build(
        cfg(json!({ "api_key": KEY, "streams": ["charges"], "expand": { "charges": ["refunds"] } })),
        &BuildCx::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`expand.charges`: `refunds` is not expandable on charges"), "{e}");
}

#[test]
fn the_rate_budget_follows_the_keys_mode() {
    use dovetail_stripe::Mode;
    assert_eq!(Mode::of_key("sk_test_abc"), Some(Mode::Test));
    assert_eq!(Mode::of_key("rk_test_abc"), Some(Mode::Test));
    assert_eq!(Mode::of_key("sk_live_abc"), Some(Mode::Live));
    assert_eq!(Mode::of_key("rk_live_abc"), Some(Mode::Live));
    assert_eq!(Mode::of_key("pk_live_abc"), None);
    assert_eq!((Mode::Test.requests_per_second(), Mode::Live.requests_per_second()), (25, 100));
}
