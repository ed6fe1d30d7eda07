//! Response-shape drift: records compared, before mapping, with the stream's stored
//! baseline schema.
//!
//! Classes: a field whose JSON type is not one the baseline allows (`type_changed`), a null
//! where the baseline does not allow one (`null_value`), a field the baseline does not know
//! (`new_field`), a field the baseline marks required that is absent (`missing_field`).
//! `integer` and `number` are one numeric type here. A null is tolerated (the record goes
//! on, the value stays null) but recorded; a field only ever seen as null has no type to
//! change from. Each distinct (path, class) is one [`DriftEvent`] with a count, never one
//! event per record.

use std::collections::BTreeMap;

use serde_json::Value;

/// One kind of difference at one JSON path, seen `count` times in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriftEvent {
    /// JSON pointer of the field, e.g. `/price` or `/owner/login`.
    pub path: String,
    /// `type_changed`, `null_value`, `new_field` or `missing_field`.
    pub change: String,
    /// What the baseline allows (`number`, `string|null`), or `absent` for a new field.
    pub expected: String,
    /// What arrived (`string`), or `absent` for a missing field.
    pub observed: String,
    /// Records that showed it in this run.
    pub count: u64,
    /// When it was first seen in this run (RFC 3339).
    pub first_seen: String,
    /// Where it was first seen (`GET /v1/items?... item 3`).
    pub first_at: String,
}

/// Compares records with a baseline schema and accumulates drift events.
#[derive(Debug)]
pub struct DriftTracker {
    baseline: Value,
    events: BTreeMap<(String, &'static str), DriftEvent>,
}

/// Array elements checked per array: enough to see a type change, bounded per record.
const ITEMS_CHECKED: usize = 8;

impl DriftTracker {
    /// A tracker against `baseline` (a JSON Schema as `schema::infer` writes it, or declared).
    pub fn new(baseline: Value) -> Self {
        DriftTracker { baseline, events: BTreeMap::new() }
    }

    /// Check one record; returns the events it triggered for the first time in this run
    /// (so the caller can log each once).
    pub fn check(&mut self, data: &Value, at: &dyn Fn() -> String) -> Vec<DriftEvent> {
        let mut fresh = Vec::new();
        let baseline = std::mem::take(&mut self.baseline);
        let mut path = String::new();
        self.walk(&baseline, data, &mut path, at, &mut fresh);
        self.baseline = baseline;
        fresh
    }

    /// Every event of the run, by path.
    pub fn events(&self) -> Vec<DriftEvent> {
        self.events.values().cloned().collect()
    }

    fn walk(
        &mut self,
        schema: &Value,
        v: &Value,
        path: &mut String,
        at: &dyn Fn() -> String,
        fresh: &mut Vec<DriftEvent>,
    ) {
        let observed = type_name(v);
        let allowed = types_of(schema);
        if observed == "null" {
            if !allowed.is_empty() && !allowed.iter().any(|t| t == "null") {
                self.note(path, "null_value", allowed.join("|"), "null".into(), at, fresh);
            }
            return;
        }
        let known: Vec<&str> = allowed.iter().map(String::as_str).filter(|t| *t != "null").collect();
        if !known.is_empty() && !known.iter().any(|t| compatible(t, observed)) {
            self.note(path, "type_changed", allowed.join("|"), observed.to_owned(), at, fresh);
            return;
        }
        match v {
            Value::Object(obj) => {
                let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
                let len = path.len();
                for (k, child) in obj {
                    push_segment(path, k);
                    match props.get(k) {
                        Some(s) => self.walk(s, child, path, at, fresh),
                        None if !child.is_null() => {
                            self.note(path, "new_field", "absent".into(), type_name(child).to_owned(), at, fresh)
                        }
                        None => {}
                    }
                    path.truncate(len);
                }
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if !obj.contains_key(r) {
                            push_segment(path, r);
                            let expected = props.get(r).map(|s| types_of(s).join("|")).unwrap_or_default();
                            self.note(path, "missing_field", expected, "absent".into(), at, fresh);
                            path.truncate(len);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let Some(item_schema) = schema.get("items") else { return };
                let len = path.len();
                path.push_str("/*");
                for item in items.iter().take(ITEMS_CHECKED) {
                    self.walk(item_schema, item, path, at, fresh);
                }
                path.truncate(len);
            }
            _ => {}
        }
    }

    fn note(
        &mut self,
        path: &str,
        change: &'static str,
        expected: String,
        observed: String,
        at: &dyn Fn() -> String,
        fresh: &mut Vec<DriftEvent>,
    ) {
        let key = (path.to_owned(), change);
        if let Some(e) = self.events.get_mut(&key) {
            e.count += 1;
            return;
        }
        let e = DriftEvent {
            path: path.to_owned(),
            change: change.to_owned(),
            expected,
            observed,
            count: 1,
            first_seen: crate::now_rfc3339(),
            first_at: at(),
        };
        fresh.push(e.clone());
        self.events.insert(key, e);
    }
}

/// Append `/key` to a JSON pointer, escaping `~` and `/` (RFC 6901).
fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn compatible(allowed: &str, observed: &str) -> bool {
    allowed == observed || matches!((allowed, observed), ("number", "integer") | ("integer", "number"))
}

fn types_of(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if crate::number::is_integral(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_changes_new_and_missing_fields_are_one_event_each_with_a_count() {
        let baseline = crate::schema::infer([&json!({"id": 1, "price": 1.5, "name": "a", "owner": {"login": "x"}})]);
        let mut t = DriftTracker::new(baseline);
        let at = || "item 0".to_owned();
        let nulls = t.check(&json!({"id": 2, "price": 3, "name": null, "owner": {"login": "y"}}), &at);
        assert_eq!((nulls.len(), nulls[0].path.as_str(), nulls[0].change.as_str()), (1, "/name", "null_value"));
        let fresh = t.check(&json!({"id": 3, "price": "12.50", "title": "b", "owner": {"login": 7}}), &at);
        let got: Vec<(&str, &str)> = fresh.iter().map(|e| (e.path.as_str(), e.change.as_str())).collect();
        assert_eq!(
            got,
            [
                ("/owner/login", "type_changed"),
                ("/price", "type_changed"),
                ("/title", "new_field"),
                ("/name", "missing_field")
            ]
        );
        for _ in 0..9 {
            assert!(t.check(&json!({"id": 4, "price": "1.00", "name": "c", "owner": {"login": "z"}}), &at).is_empty());
        }
        let price = t.events().into_iter().find(|e| e.path == "/price").unwrap();
        assert_eq!((price.count, price.expected.as_str(), price.observed.as_str()), (10, "number", "string"));
    }
}
