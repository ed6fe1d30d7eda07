//! Every key of the Stripe source's config schema and every stream of its table appears in
//! backticks in docs/connectors/stripe.md.

use dovetail_stripe::StripeConfig;
use dovetail_stripe::streams::STREAMS;

#[test]
fn every_config_key_and_stream_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/connectors/stripe.md");
    let docs = std::fs::read_to_string(path).expect("docs/connectors/stripe.md");
    let schema = serde_json::to_value(schemars::schema_for!(StripeConfig)).unwrap();
    let keys: Vec<&String> = schema["properties"].as_object().expect("the config's properties").keys().collect();
    assert!(keys.len() >= 9, "{keys:?}");
    let missing: Vec<String> = keys
        .iter()
        .map(|k| k.as_str())
        .chain(STREAMS.iter().map(|s| s.name))
        .chain(STREAMS.iter().flat_map(|s| s.expandable.iter().copied()))
        .filter(|w| !docs.contains(&format!("`{w}`")))
        .map(str::to_owned)
        .collect();
    assert!(missing.is_empty(), "not in docs/connectors/stripe.md: {missing:?}");
}
