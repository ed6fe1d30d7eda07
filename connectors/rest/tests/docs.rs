//! "Document every key": each key and each enumerated value of the REST connector's config
//! schema (the one `dovetail config-schema` publishes) appears in backticks, alone or at the
//! end of a dotted path, in docs/connectors/rest.md or, for the shared `auth` and `http`
//! blocks, docs/http.md.

use std::collections::BTreeSet;

use dovetail_rest::{RestSinkConfig, RestSourceConfig};
use serde_json::Value;

/// Property names, and string values of `const` / `enum` (tags such as `type = "cursor"`).
fn words(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                out.extend(props.keys().cloned());
            }
            if let Some(Value::String(c)) = m.get("const") {
                out.insert(c.clone());
            }
            if let Some(Value::Array(values)) = m.get("enum") {
                out.extend(values.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            m.values().for_each(|v| words(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| words(v, out)),
        _ => {}
    }
}

#[test]
fn every_config_key_and_value_is_documented() {
    let docs_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let docs: String = ["connectors/rest.md", "http.md"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{docs_dir}/{f}")).unwrap_or_else(|e| panic!("docs/{f}: {e}")))
        .collect();
    let mut keys = BTreeSet::new();
    for schema in [schemars::schema_for!(RestSourceConfig), schemars::schema_for!(RestSinkConfig)] {
        words(&serde_json::to_value(schema).unwrap(), &mut keys);
    }
    // The schema must have been walked, not skipped: these are certainly in it.
    for known in ["base_url", "pagination", "refresh_skew_secs", "max_elapsed_ms", "oauth2_refresh_token"] {
        assert!(keys.contains(known), "`{known}` not found in the schema: {keys:?}");
    }
    // A key is named alone (`mode`) or at the end of its path (`streams.NAME.mode`).
    let documented = |k: &str| docs.contains(&format!("`{k}`")) || docs.contains(&format!(".{k}`"));
    let missing: Vec<&String> = keys.iter().filter(|k| !documented(k)).collect();
    assert!(
        missing.is_empty(),
        "config keys or values not documented in docs/connectors/rest.md or docs/http.md: {missing:?}"
    );
}

#[test]
fn the_auth_and_http_example_is_a_valid_config() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/http.md")).unwrap();
    let example = text.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml example");
    let doc: toml::Table = toml::from_str(example).unwrap_or_else(|e| panic!("docs/http.md example: {e}"));
    let source = &doc["pipelines"]["shop"]["source"];
    let config = serde_json::json!({
        "base_url": "https://api.example.com",
        "auth": source["auth"],
        "http": source["http"],
        "streams": [{ "name": "items", "path": "/v1/items", "primary_key": ["id"] }]
    });
    let parsed: RestSourceConfig =
        serde_json::from_value(config).unwrap_or_else(|e| panic!("docs/http.md example does not parse: {e}"));
    let http = parsed.http;
    assert_eq!(http.retry.and_then(|r| r.max_attempts), Some(6));
    assert_eq!(http.rate_limit.and_then(|r| r.per_second), Some(20));
    assert_eq!(http.circuit.and_then(|c| c.cool_down_ms), Some(30000));
    assert!(parsed.auth.is_some());
}
