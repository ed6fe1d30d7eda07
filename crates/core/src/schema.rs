//! Minimal JSON Schema inference from sample records, for streams without a declared schema.

use serde_json::{Map, Value, json};

/// Infer a JSON Schema (draft 2020-12 subset: type, properties, required, items) from sample
/// records. A property is `required` when every sample object has it (null or not).
pub fn infer<'a>(samples: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut acc: Option<Value> = None;
    for s in samples {
        let one = of_value(s);
        acc = Some(match acc {
            None => one,
            Some(prev) => merge(prev, one),
        });
    }
    acc.unwrap_or_else(|| json!({"type": "object"}))
}

/// The JSON Schema type name of a value (`integer` for integral numbers): the shared
/// [`crate::json::json_type_name`], under the name drift and older callers use.
pub use crate::json::json_type_name as type_name;

fn of_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let props: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), of_value(v))).collect();
            let required: Vec<&String> = m.keys().collect();
            json!({"type": "object", "properties": props, "required": required})
        }
        Value::Array(items) => {
            let mut s = json!({"type": "array"});
            if !items.is_empty() {
                s["items"] = infer(items.iter());
            }
            s
        }
        other => json!({"type": type_name(other)}),
    }
}

/// The types a schema allows (`type` as a string or an array).
pub(crate) fn types_of(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

fn merge(a: Value, b: Value) -> Value {
    let mut types = types_of(&a);
    for t in types_of(&b) {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    // An integer seen where a number was seen is still a number.
    if types.contains(&"number".to_owned()) {
        types.retain(|t| t != "integer");
    }
    types.sort();
    let mut out = Map::new();
    out.insert("type".into(), if types.len() == 1 { json!(types[0]) } else { json!(types) });
    let (pa, pb) = (a.get("properties").cloned(), b.get("properties").cloned());
    if pa.is_some() || pb.is_some() {
        let mut props = pa.and_then(|p| p.as_object().cloned()).unwrap_or_default();
        for (k, v) in pb.and_then(|p| p.as_object().cloned()).unwrap_or_default() {
            let merged = match props.remove(&k) {
                Some(prev) => merge(prev, v),
                None => v,
            };
            props.insert(k, merged);
        }
        out.insert("properties".into(), Value::Object(props));
    }
    // Required in the merge: what both sides require (an object sample that lacks a key
    // makes it optional; a non-object sample requires nothing of the object side).
    if let (Some(ra), Some(rb)) =
        (a.get("required").and_then(Value::as_array), b.get("required").and_then(Value::as_array))
    {
        let both: Vec<Value> = ra.iter().filter(|k| rb.contains(k)).cloned().collect();
        out.insert("required".into(), Value::Array(both));
    } else if let Some(r) = a.get("required").or(b.get("required")).filter(|_| {
        // Only one side is an object schema: keep its requirements when the other side is
        // not an object at all (e.g. `null`), since a null object has no fields to miss.
        !(a.get("properties").is_some() && b.get("properties").is_some())
    }) {
        out.insert("required".into(), r.clone());
    }
    match (a.get("items").cloned(), b.get("items").cloned()) {
        (Some(x), Some(y)) => {
            out.insert("items".into(), merge(x, y));
        }
        (Some(x), None) | (None, Some(x)) => {
            out.insert("items".into(), x);
        }
        _ => {}
    }
    Value::Object(out)
}

/// The top-level JSON types a schema allows for a property (`["integer","null"]`).
pub fn property_types(schema: &Value, field: &str) -> Vec<String> {
    schema.get("properties").and_then(|p| p.get(field)).map(types_of).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_and_merges_types() {
        let a = json!({"id": 1, "name": "x", "tags": ["a"], "n": {"k": 1.5}});
        let b = json!({"id": 2, "name": null, "n": {"k": 2}});
        let s = infer([&a, &b]);
        assert_eq!(s["properties"]["id"]["type"], json!("integer"));
        assert_eq!(s["properties"]["name"]["type"], json!(["null", "string"]));
        assert_eq!(s["properties"]["tags"]["items"]["type"], json!("string"));
        assert_eq!(s["properties"]["n"]["properties"]["k"]["type"], json!("number"));
        assert_eq!(property_types(&s, "name"), vec!["null", "string"]);
    }
}
