//! `cargo xtask stripe-schemas SPEC [--out DIR]`: the JSON Schema of each Stripe stream's
//! rows from Stripe's published OpenAPI spec (`openapi/spec3.json` of
//! github.com/stripe/openapi, downloaded by hand: SPEC is its path), one file per stream in
//! DIR (default `connectors/stripe/schemas`), each recording the spec's version
//! (`x-stripe-spec-version`) and component. Only the top-level fields are typed — what the
//! drift baseline compares; nested objects are `object`. An expandable field (an id, or the
//! object when expanded) is `string` or `object`; `nullable` adds `null`; `*_decimal` strings
//! are marked `format: decimal` (exact decimal strings, never floats); amounts stay integers.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

/// Stream → the spec's component schema of its objects (the stream table of
/// connectors/stripe/src/streams.rs, by name).
pub const STREAMS: &[(&str, &str)] = &[
    ("customers", "customer"),
    ("products", "product"),
    ("prices", "price"),
    ("charges", "charge"),
    ("payment_intents", "payment_intent"),
    ("invoices", "invoice"),
    ("subscriptions", "subscription"),
    ("refunds", "refund"),
    ("balance_transactions", "balance_transaction"),
    ("events", "event"),
];

/// Runs `stripe-schemas SPEC [--out DIR]` in the workspace at `root`.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let (spec_path, out) = match args {
        [spec] => (PathBuf::from(spec), root.join("connectors/stripe/schemas")),
        [spec, flag, dir] if flag == "--out" => (PathBuf::from(spec), PathBuf::from(dir)),
        _ => bail!("usage: cargo xtask stripe-schemas SPEC.json [--out DIR]"),
    };
    let text = fs::read_to_string(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", spec_path.display()))?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (stream, component) in STREAMS {
        let schema = schema(&spec, component).with_context(|| format!("stream `{stream}`"))?;
        let path = out.join(format!("{stream}.json"));
        fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let version = spec.pointer("/info/version").and_then(Value::as_str).unwrap_or("?");
    println!("stripe-schemas: {} schemas from spec version {version} in {}", STREAMS.len(), out.display());
    Ok(true)
}

/// The row schema of the objects of `component` in `spec`.
pub fn schema(spec: &Value, component: &str) -> Result<Value> {
    let pointer = format!("/components/schemas/{component}");
    let Some(c) = spec.pointer(&pointer) else { bail!("the spec has no `{pointer}`") };
    let Some(props) = c.get("properties").and_then(Value::as_object) else { bail!("`{pointer}` has no properties") };
    let properties: Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), property(k, p))).collect();
    Ok(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": c.get("title").cloned().unwrap_or_else(|| Value::String(component.to_owned())),
        "x-stripe-spec-version": spec.pointer("/info/version").cloned().unwrap_or(Value::Null),
        "x-stripe-component": component,
        "type": "object",
        "properties": properties,
        "required": c.get("required").cloned().unwrap_or_else(|| json!([])),
    }))
}

/// One top-level field: its JSON types (an expandable reference is `string` or `object`).
fn property(name: &str, p: &Value) -> Value {
    let mut types: Vec<&str> = Vec::new();
    let mut add = |t: &'static str| {
        if !types.contains(&t) {
            types.push(t);
        }
    };
    let mut one = |v: &Value| {
        if v.get("$ref").is_some() {
            add("object");
        }
        match v.get("type").and_then(Value::as_str) {
            Some("string") => add("string"),
            Some("integer") => add("integer"),
            Some("number") => add("number"),
            Some("boolean") => add("boolean"),
            Some("array") => add("array"),
            Some("object") => add("object"),
            _ => {}
        }
    };
    one(p);
    for member in ["anyOf", "oneOf"].iter().filter_map(|k| p.get(*k)).filter_map(Value::as_array).flatten() {
        one(member);
    }
    if p.get("nullable").and_then(Value::as_bool) == Some(true) {
        add("null");
    }
    let mut out = Map::new();
    out.insert(
        "type".into(),
        match types.as_slice() {
            [] => json!(["string", "integer", "number", "boolean", "array", "object", "null"]),
            [t] => json!(t),
            ts => json!(ts),
        },
    );
    if name.ends_with("_decimal") && types.contains(&"string") {
        out.insert("format".into(), json!("decimal"));
    }
    if let Some(f) = p.get("format").and_then(Value::as_str).filter(|f| *f == "unix-time") {
        out.insert("format".into(), json!(f));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fields_become_row_types_with_the_spec_version() {
        let spec = json!({
            "info": { "version": "2025-03-31.basil" },
            "components": { "schemas": { "price": {
                "title": "Price",
                "required": ["id", "object"],
                "properties": {
                    "id": { "type": "string", "maxLength": 5000 },
                    "created": { "type": "integer", "format": "unix-time" },
                    "unit_amount": { "type": "integer", "nullable": true },
                    "unit_amount_decimal": { "type": "string", "format": "decimal", "nullable": true },
                    "product": { "anyOf": [{ "type": "string" }, { "$ref": "#/components/schemas/product" }] },
                    "recurring": { "anyOf": [{ "$ref": "#/components/schemas/recurring" }], "nullable": true },
                    "metadata": { "type": "object", "additionalProperties": { "type": "string" } },
                    "livemode": { "type": "boolean" },
                    "tiers": { "type": "array", "items": { "$ref": "#/components/schemas/price_tier" } }
                }
            } } }
        });
        let s = schema(&spec, "price").unwrap();
        assert_eq!(s["x-stripe-spec-version"], "2025-03-31.basil");
        assert_eq!(s["required"], json!(["id", "object"]));
        let p = &s["properties"];
        assert_eq!(p["id"], json!({ "type": "string" }));
        assert_eq!(p["created"], json!({ "type": "integer", "format": "unix-time" }));
        assert_eq!(p["unit_amount"], json!({ "type": ["integer", "null"] }), "amounts stay integers");
        assert_eq!(p["unit_amount_decimal"], json!({ "type": ["string", "null"], "format": "decimal" }));
        assert_eq!(p["product"], json!({ "type": ["string", "object"] }), "an id, or the object expanded");
        assert_eq!(p["recurring"], json!({ "type": ["object", "null"] }));
        assert_eq!(p["metadata"], json!({ "type": "object" }));
        assert_eq!(p["tiers"], json!({ "type": "array" }));
        assert!(schema(&spec, "customer").unwrap_err().to_string().contains("no `/components/schemas/customer`"));
    }
}
