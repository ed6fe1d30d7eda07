//! `cargo xtask stripe-schemas SPEC [--out DIR] [--source LABEL]`: the JSON Schema of each
//! Stripe stream's rows from Stripe's published OpenAPI spec (`openapi/spec3.json` of
//! github.com/stripe/openapi: SPEC is its path), one file per stream in DIR (default
//! `connectors/stripe/schemas`), each recording the spec's version (`x-stripe-spec-version`)
//! and where the spec came from (`x-stripe-spec-source`: LABEL, else `$STRIPE_SPEC_SOURCE`;
//! one of them is required, so no file says less than where it is from).
//!
//! Only the top-level fields are typed — what the drift baseline compares and a database sink
//! makes columns of; nested objects are `object`. A `$ref` takes its target's type; an
//! expandable field (`anyOf` of an id and objects) is `string` or `object`; `nullable` adds
//! `null`; a string `enum` is kept (a value Stripe added since is `enum_value` drift);
//! `format: decimal` and `*_decimal` strings are `format: decimal` (exact decimal strings,
//! never floats); amounts stay integers; `unix-time` is kept. Nothing is `required`: which
//! fields an object carries changes with the API version, and a field the spec declares that
//! the pinned version no longer sends is no drift. Every stream also declares `stripe_account`,
//! the field the source adds with `accounts`.

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

/// The field the Stripe source adds to every row of a connected account
/// (`dovetail_stripe::source::ACCOUNT_FIELD`; xtask depends on no dovetail crate).
const ACCOUNT_FIELD: &str = "stripe_account";

/// Where the source label comes from when `--source` is not given.
const SOURCE_ENV: &str = "STRIPE_SPEC_SOURCE";

/// `$ref`s followed for one property, so a cycle ends.
const REF_DEPTH: usize = 8;

const USAGE: &str = "usage: cargo xtask stripe-schemas SPEC.json [--out DIR] [--source LABEL]";

/// Runs `stripe-schemas SPEC [--out DIR] [--source LABEL]` in the workspace at `root`.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let (spec_path, out, source) = parse_args(root, args, std::env::var(SOURCE_ENV).ok())?;
    let text = fs::read_to_string(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", spec_path.display()))?;
    let version = write_all(&spec, &source, &out)?;
    println!("stripe-schemas: {} schemas from spec version {version} ({source}) in {}", STREAMS.len(), out.display());
    Ok(true)
}

/// SPEC, DIR and the source label from the arguments (`env_source`: `$STRIPE_SPEC_SOURCE`).
fn parse_args(root: &Path, args: &[String], env_source: Option<String>) -> Result<(PathBuf, PathBuf, String)> {
    let mut spec = None;
    let mut out = root.join("connectors/stripe/schemas");
    let mut source = env_source.filter(|s| !s.trim().is_empty());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().context(USAGE)?),
            "--source" => source = Some(it.next().context(USAGE)?.clone()),
            flag if flag.starts_with("--") => bail!("unknown flag `{flag}`; {USAGE}"),
            path if spec.is_none() => spec = Some(PathBuf::from(path)),
            extra => bail!("unexpected argument `{extra}`; {USAGE}"),
        }
    }
    let Some(spec) = spec else { bail!("{USAGE}") };
    let Some(source) = source else {
        bail!(
            "say where the spec came from, to record it in each file: --source LABEL or ${SOURCE_ENV}, e.g. \
             \"github.com/stripe/openapi@<commit> openapi/spec3.json (<commit date>)\""
        )
    };
    Ok((spec, out, source))
}

/// Writes every stream's schema into `out`; the spec's version.
pub fn write_all(spec: &Value, source: &str, out: &Path) -> Result<String> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (stream, component) in STREAMS {
        let schema = schema(spec, component, source).with_context(|| format!("stream `{stream}`"))?;
        let path = out.join(format!("{stream}.json"));
        fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(spec.pointer("/info/version").and_then(Value::as_str).unwrap_or("?").to_owned())
}

/// The row schema of the objects of `component` in `spec`, recording `source`.
pub fn schema(spec: &Value, component: &str, source: &str) -> Result<Value> {
    let pointer = format!("/components/schemas/{component}");
    let Some(c) = spec.pointer(&pointer) else { bail!("the spec has no `{pointer}`") };
    let Some(props) = c.get("properties").and_then(Value::as_object) else { bail!("`{pointer}` has no properties") };
    let Some(version) = spec.pointer("/info/version").and_then(Value::as_str) else {
        bail!("the spec has no `/info/version`: which API version it describes is unknown")
    };
    let mut properties: Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), property(spec, k, p))).collect();
    properties.entry(ACCOUNT_FIELD).or_insert_with(|| {
        json!({ "type": "string", "description": "Added by dovetail: the connected account the row came from (with `accounts`)." })
    });
    Ok(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": c.get("title").cloned().unwrap_or_else(|| Value::String(component.to_owned())),
        "description": format!(
            "Generated by `cargo xtask stripe-schemas` from Stripe's OpenAPI spec, version {version} \
             ({source}); do not edit, regenerate. Top-level fields only; none required."
        ),
        "x-stripe-spec-version": version,
        "x-stripe-spec-source": source,
        "x-stripe-component": component,
        "type": "object",
        "properties": properties,
    }))
}

/// One top-level field: its JSON types, and the values and format it keeps.
fn property(spec: &Value, name: &str, p: &Value) -> Value {
    let mut types: Vec<&'static str> = Vec::new();
    collect_types(spec, p, 0, &mut types);
    if p.get("nullable").and_then(Value::as_bool) == Some(true) && !types.contains(&"null") {
        types.push("null");
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
    let only_strings = types.iter().all(|t| matches!(*t, "string" | "null"));
    let format = p.get("format").and_then(Value::as_str);
    if types.contains(&"string") && (format == Some("decimal") || name.ends_with("_decimal")) {
        out.insert("format".into(), json!("decimal"));
    } else if format == Some("unix-time") {
        out.insert("format".into(), json!("unix-time"));
    }
    if let Some(values) = p.get("enum").and_then(Value::as_array).filter(|_| only_strings && types.contains(&"string"))
    {
        let values: Vec<&Value> = values.iter().filter(|v| v.is_string()).collect();
        if !values.is_empty() {
            out.insert("enum".into(), json!(values));
        }
    }
    Value::Object(out)
}

/// The JSON types `v` allows into `types`: its `type`, a `$ref`'s target's, every `anyOf` /
/// `oneOf` member's.
fn collect_types(spec: &Value, v: &Value, depth: usize, types: &mut Vec<&'static str>) {
    fn add(types: &mut Vec<&'static str>, t: &'static str) {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if let Some(target) = v.get("$ref").and_then(Value::as_str) {
        match spec.pointer(target.trim_start_matches('#')).filter(|_| depth < REF_DEPTH) {
            Some(t) => collect_types(spec, t, depth + 1, types),
            // A component is an object unless it says otherwise.
            None => add(types, "object"),
        }
        return;
    }
    let t = match v.get("type").and_then(Value::as_str) {
        Some("string") => Some("string"),
        Some("integer") => Some("integer"),
        Some("number") => Some("number"),
        Some("boolean") => Some("boolean"),
        Some("array") => Some("array"),
        Some("object") => Some("object"),
        Some(_) => None,
        None => v.get("properties").map(|_| "object"),
    };
    if let Some(t) = t {
        add(types, t);
    }
    for member in ["anyOf", "oneOf"].iter().filter_map(|k| v.get(*k)).filter_map(Value::as_array).flatten() {
        collect_types(spec, member, depth + 1, types);
    }
    if v.get("nullable").and_then(Value::as_bool) == Some(true) && depth > 0 {
        add(types, "null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written fixture in the shape of Stripe's spec3.json (not Stripe's file).
    const TINY: &str = include_str!("../fixtures/stripe_spec_tiny.json");
    const SOURCE: &str = "xtask/fixtures/stripe_spec_tiny.json (hand-written)";

    #[test]
    fn spec_fields_become_row_types_with_the_spec_version_and_source() {
        let spec: Value = serde_json::from_str(TINY).unwrap();
        let s = schema(&spec, "price", SOURCE).unwrap();
        assert_eq!(s["x-stripe-spec-version"], "2099-01-01.tiny");
        assert_eq!(s["x-stripe-spec-source"], SOURCE);
        assert_eq!(s["x-stripe-component"], "price");
        assert!(s.get("required").is_none(), "no field is required: presence changes with API versions");
        let p = &s["properties"];
        assert_eq!(p["id"], json!({ "type": "string" }));
        assert_eq!(p["created"], json!({ "type": "integer", "format": "unix-time" }));
        assert_eq!(p["unit_amount"], json!({ "type": ["integer", "null"] }), "amounts stay integers");
        assert_eq!(p["unit_amount_decimal"], json!({ "type": ["string", "null"], "format": "decimal" }));
        assert_eq!(p["amount_decimal"], json!({ "type": "string", "format": "decimal" }), "by name too");
        assert_eq!(p["product"], json!({ "type": ["string", "object"] }), "an id, or the object expanded");
        assert_eq!(p["recurring"], json!({ "type": ["object", "null"] }));
        assert_eq!(p["metadata"], json!({ "type": "object" }));
        assert_eq!(p["tiers"], json!({ "type": "array" }));
        assert_eq!(p["tax_behavior"], json!({ "type": ["string", "null"], "enum": ["exclusive", "inclusive"] }));
        assert_eq!(p["object"], json!({ "type": "string", "enum": ["price"] }));
        assert_eq!(p["currency_options"], json!({ "type": "object" }), "a $ref takes its target's type");
        assert_eq!(p["billing_thresholds"], json!({ "type": ["object", "null"] }), "a nullable $ref target");
        assert_eq!(p["livemode"], json!({ "type": "boolean" }));
        assert_eq!(p[ACCOUNT_FIELD]["type"], "string", "the field the source adds with `accounts`");
        let err = schema(&spec, "customer", SOURCE).unwrap_err().to_string();
        assert!(err.contains("no `/components/schemas/customer`"), "{err}");
    }

    #[test]
    fn the_source_label_is_required_from_the_flag_or_the_environment() {
        let root = Path::new("/w");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (spec, out, source) = parse_args(root, &args(&["s.json", "--source", "repo@abc"]), None).unwrap();
        assert_eq!((spec, out, source.as_str()), ("s.json".into(), root.join("connectors/stripe/schemas"), "repo@abc"));
        let (_, out, source) = parse_args(root, &args(&["s.json", "--out", "d"]), Some("env@def".into())).unwrap();
        assert_eq!((out, source.as_str()), ("d".into(), "env@def"));
        let flag_wins = parse_args(root, &args(&["s.json", "--source", "flag"]), Some("env".into())).unwrap();
        assert_eq!(flag_wins.2, "flag");
        let err = parse_args(root, &args(&["s.json"]), None).unwrap_err().to_string();
        assert!(err.contains("--source") && err.contains(SOURCE_ENV), "{err}");
        assert!(parse_args(root, &args(&[]), Some("x".into())).is_err());
        assert!(parse_args(root, &args(&["a.json", "b.json"]), Some("x".into())).is_err());
    }

    #[test]
    fn every_stream_is_written_from_a_spec_that_has_its_component() {
        let tiny: Value = serde_json::from_str(TINY).unwrap();
        let mut spec = tiny.clone();
        for (_, component) in STREAMS {
            spec["components"]["schemas"][component] = tiny["components"]["schemas"]["price"].clone();
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_all(&spec, SOURCE, dir.path()).unwrap(), "2099-01-01.tiny");
        for (stream, _) in STREAMS {
            let text = fs::read_to_string(dir.path().join(format!("{stream}.json"))).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                (v["x-stripe-spec-version"].as_str(), v["x-stripe-spec-source"].as_str()),
                (Some("2099-01-01.tiny"), Some(SOURCE))
            );
        }
        let err = format!("{:#}", write_all(&tiny, SOURCE, dir.path()).unwrap_err());
        assert!(err.contains("stream `customers`"), "{err}");
    }
}
